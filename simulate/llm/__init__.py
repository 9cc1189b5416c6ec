"""The one way to reach a model: the LLM seam, completions, and `backend:model` specs.

Every part of Simulate that needs a model (simulated users, the `openai:` target, judges,
generators) holds an `LLM` and calls `complete()`. Backends:

    openai:MODEL   any OpenAI-compatible endpoint (OpenAI, Azure, vLLM, Ollama, LiteLLM...)
    fake:echo      replies with the last user message, offline (for demos and tests)

A bare `MODEL` means `openai:MODEL`, Ollama's `llama3.1:8b` included (its prefix names no
backend). Every flag that names a model for a role takes `MODEL`, `backend:MODEL` or
`llm:MODEL`, read by one parser, `model_spec`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from simulate.errors import ConfigError, unknown_choice
from simulate.schema import Message, ToolCall

LLMRole = Literal["user", "target", "agent", "judge", "generator"]
"""Whose calls these are: the simulated user; the `openai:` target (a model Simulate plays as the
agent under test); the agent's own calls through the model proxy (`--agent-llm-proxy`); a judge;
a generator of personas or scenarios."""


@dataclass
class Completion:
    """One model answer, in Simulate's terms."""

    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    parsed: Any = None
    """The validated `output_type` instance, when one was asked for."""
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    cached: bool = False
    """Served from the cache: no request was made and nothing was spent."""


class LLM(Protocol):
    """A chat model."""

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        output_type: type[BaseModel] | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
        **params: Any,
    ) -> Completion:
        """Answer a conversation.

        Args:
            messages: the conversation, system prompt first when there is one.
            output_type: a pydantic model the answer must fit (structured output); the
                validated instance is in `Completion.parsed`.
            tools: function tools in the OpenAI shape `{"name", "description", "parameters"}`.
            params: sampling parameters such as `temperature`, `seed`, `max_tokens`.
        """
        ...


def _openai(model: str, **options: Any) -> LLM:
    from simulate.llm.openai import OpenAILLM

    return OpenAILLM(model, **options)


def _fake(model: str, **options: Any) -> LLM:
    from simulate.llm.fake import fake_llm

    return fake_llm(model)


#: Backend name -> factory of an LLM for one model.
BACKENDS: dict[str, Callable[..., LLM]] = {"openai": _openai, "fake": _fake}


def split_spec(spec: str) -> tuple[str, str]:
    """`openai:gpt-4o-mini` -> (`openai`, `gpt-4o-mini`); a name whose prefix is no backend
    (`gpt-4o`, `llama3.1:8b`) is an OpenAI-compatible model; a near miss (`openia:`) is an
    error."""
    backend, sep, model = spec.partition(":")
    if sep and backend in BACKENDS:
        return backend, model
    if sep and difflib.get_close_matches(backend, list(BACKENDS), n=1, cutoff=0.75):
        raise unknown_choice("model backend", backend, BACKENDS)
    return "openai", spec


def model_spec(flag: str, given: str | None, *, default: str | None = None, hint: str = "") -> str:
    """The model a role flag names (`MODEL`, `backend:MODEL` or `llm:MODEL`), `llm:` dropped.

    Args:
        flag: the flag, for messages (`--judge`).
        given: what the user typed; None falls back to ``default``.
        default: the config file's model for the role, if any.
        hint: where else a model can be set, for the message when there is none.

    Raises:
        ConfigError: no model, an empty one, or a misspelt backend.
    """
    model = given or default
    if not model:
        raise ConfigError(f"{flag} MODEL is required (e.g. {flag} gpt-4o-mini){hint}")
    model = model.removeprefix("llm:")
    if not model:
        raise ConfigError(f"{flag} {given!r}: name a model, e.g. {flag} gpt-4o-mini")
    backend, name = split_spec(model)
    if not name:
        raise ConfigError(f"{flag} {given!r}: name a model after {backend!r}:")
    return model


def get_llm(spec: str, **options: Any) -> LLM:
    """The LLM for a `backend:model` spec; ``options`` go to the backend (endpoint, cache...)."""
    backend, model = split_spec(spec)
    return BACKENDS[backend](model, **options)
