"""The one way to reach a model: the LLM seam, completions, and `backend:model` specs.

Every part of Simulate that needs a model (simulated users, the `openai:` target, judges,
generators) holds an `LLM` and calls `complete()`. Backends:

    openai:MODEL   any OpenAI-compatible endpoint (OpenAI, Azure, vLLM, Ollama, LiteLLM...)
    fake:echo      replies with the last user message, offline (for demos and tests)

A bare `MODEL` means `openai:MODEL`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from simulate.errors import unknown_choice
from simulate.schema import Message, ToolCall

LLMRole = Literal["user", "target", "judge", "generator"]


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
    """`openai:gpt-4o-mini` -> (`openai`, `gpt-4o-mini`); a bare model name means openai."""
    backend, sep, model = spec.partition(":")
    if not sep:
        return "openai", spec
    if backend not in BACKENDS:
        raise unknown_choice("model backend", backend, BACKENDS)
    return backend, model


def get_llm(spec: str, **options: Any) -> LLM:
    """The LLM for a `backend:model` spec; ``options`` go to the backend (endpoint, cache...)."""
    backend, model = split_spec(spec)
    return BACKENDS[backend](model, **options)
