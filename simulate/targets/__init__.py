"""Agents under test: the seam, the reply protocol, and the dict of `--target` spec forms.

Every target speaks the same protocol, whatever carries it (a Python call, HTTP, JSON lines):

    request:  {"session_id": str, "messages": [OpenAI chat messages, tool calls included]}
    reply:    "text"  or  {"reply": str, "tool_calls": [...]?, "context": [str]?, "end": bool?}
              or an OpenAI chat-completion message (see `targets.protocol` for every shape)

Framework adapters (`agents:`, `pydantic-ai:`, `langgraph:`) drive an agent object the
framework's own way instead. The agent never sees the persona or the scenario: only the
conversation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from simulate.errors import unknown_choice
from simulate.schema import Message
from simulate.targets.protocol import Reply, parse_reply, to_protocol

__all__ = [
    "TARGETS",
    "Reply",
    "Target",
    "TargetFactory",
    "TargetOptions",
    "load_target",
    "parse_reply",
    "target_from_object",
    "to_protocol",
]


class Target(Protocol):
    """The agent under test, for one conversation."""

    async def respond(self, messages: Sequence[Message]) -> Reply: ...


#: Makes the Target of one episode from its session id. May also have `async aclose()`.
TargetFactory = Callable[[str], Target]


@dataclass(frozen=True)
class TargetOptions:
    """Settings every target form shares."""

    turn_timeout_s: float = 30.0
    """Seconds one reply may take before the episode ends as `target_error`."""
    system_prompt: str | None = None
    """For `openai:` targets: the agent's system prompt (`--system-prompt` file's text)."""
    tools_file: str | None = None
    """For `openai:` targets: a YAML file of tools the model may call (`--tools`)."""
    get_llm: Callable[[str, str], Any] | None = None
    """(model spec, role) -> the run's shared LLM, for model-backed targets."""
    headers: tuple[tuple[str, str], ...] = ()
    """For `http:` targets: headers sent with every request (`--header`, already expanded)."""
    secrets: tuple[str, ...] = ()
    """Values redacted from every error message (the headers' credentials)."""
    retries: int = 2
    """For `http:` targets: retries of a request after a connection error, 429 or 503."""
    max_reply_chars: int = 100_000
    """Longest reply accepted (`--max-reply-chars`); HTTP bodies are cut off beyond it."""
    agent_env: Callable[[str], Mapping[str, str]] | None = None
    """Session id -> environment variables for that episode's agent process (`cmd:`): the
    model proxy's address and token (`--agent-llm-proxy`)."""


def _python(arg: str, options: TargetOptions) -> TargetFactory:
    from simulate.targets.python import load_python_target

    return load_python_target(arg, options)


def _http(arg: str, options: TargetOptions) -> TargetFactory:
    from simulate.targets.http import HttpTargetFactory

    return HttpTargetFactory(arg, options)


def _cmd(arg: str, options: TargetOptions) -> TargetFactory:
    from simulate.targets.command import CommandTargetFactory

    return CommandTargetFactory(arg, options)


def _openai(arg: str, options: TargetOptions) -> TargetFactory:
    from simulate.targets.openai import openai_target_factory

    return openai_target_factory(arg, options)


def _demo(arg: str, options: TargetOptions) -> TargetFactory:
    from simulate.demo.agent import DemoAgent

    return load_python_target_class(DemoAgent)


def _adapter(kind: str) -> Callable[[str, TargetOptions], TargetFactory]:
    def load(arg: str, options: TargetOptions) -> TargetFactory:
        from simulate.targets.frameworks import load_adapter

        return load_adapter(kind, arg, options)

    return load


def load_python_target_class(cls: type) -> TargetFactory:
    """A factory for a class with `respond()` (and optionally `reset()`): one instance each."""
    from simulate.targets.python import PythonTarget

    return lambda session_id: PythonTarget(cls(), source=cls.__name__, session_id=session_id)


#: `--target` spec prefix -> factory maker. `http:`/`https:` keep the whole URL.
TARGETS: dict[str, Callable[[str, TargetOptions], TargetFactory]] = {
    "python": _python,
    "http": _http,
    "https": _http,
    "cmd": _cmd,
    "openai": _openai,
    "demo": _demo,
    "agents": _adapter("agents"),
    "pydantic-ai": _adapter("pydantic-ai"),
    "langgraph": _adapter("langgraph"),
}


def target_from_object(obj: Any, options: TargetOptions | None = None) -> TargetFactory:
    """A factory for an agent given as a Python object rather than a spec: a framework's agent
    or graph (when its framework is imported), a function, a class, or an object with
    `respond()`."""
    from simulate.targets.frameworks import adapter_for
    from simulate.targets.python import python_factory

    options = options or TargetOptions()
    source = getattr(obj, "__qualname__", None) or type(obj).__name__
    return adapter_for(obj) or python_factory(obj, f"python:{source}", options)


def needs_llm(spec: str) -> bool:
    """Whether a `--target` spec is a model reached through the LLM layer."""
    return spec.partition(":")[0] == "openai"


def load_target(spec: str, options: TargetOptions | None = None) -> TargetFactory:
    """Turn a `--target` spec into a factory of per-episode targets.

    Forms: `python:FILE_OR_MODULE:CALLABLE`, `http://host/path`, `cmd:"COMMAND"`,
    `openai:MODEL` (with `system_prompt`), `demo`, and the framework adapters
    `agents:FILE:AGENT`, `pydantic-ai:FILE:AGENT`, `langgraph:FILE:GRAPH`.
    """
    options = options or TargetOptions()
    kind, _, arg = spec.partition(":")
    if kind not in TARGETS:
        raise unknown_choice("--target form", kind, TARGETS)
    return TARGETS[kind](spec if kind in ("http", "https") else arg, options)
