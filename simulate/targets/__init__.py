"""Agents under test: the seam, the reply protocol, and the dict of `--target` spec forms.

Every target speaks the same protocol, whatever carries it (a Python call, HTTP, JSON lines):

    request:  {"session_id": str, "messages": [{"role": "user"|"assistant", "content": str}]}
    reply:    "text"  or  {"reply": str, "tool_calls": [...]?, "context": [str]?, "end": bool?}

The agent never sees the persona or the scenario: only the conversation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import Field, ValidationError

from simulate.errors import TargetError, unknown_choice
from simulate.schema import Message, Model, ToolCall


class Reply(Model):
    """One answer of the agent under test."""

    reply: str = ""
    """The text the user sees."""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    """Tools the agent called to produce this reply."""
    context: list[str] = Field(default_factory=list)
    """Passages the agent used (retrieval), for faithfulness checks."""
    end: bool = False
    """The agent closes the conversation."""


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
    agent_env: Callable[[str], Mapping[str, str]] | None = None
    """Session id -> environment variables for that episode's agent process (`cmd:`): the
    model proxy's address and token (`--agent-llm-proxy`)."""


def to_protocol(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The conversation as the protocol's plain dicts: user and assistant text only."""
    return [
        {"role": m.role, "content": m.content} for m in messages if m.role in ("user", "assistant")
    ]


def parse_reply(raw: Any, source: str) -> Reply:
    """Read a protocol reply (a string or a dict), or raise TargetError naming ``source``."""
    if isinstance(raw, Reply):
        return raw
    if isinstance(raw, str):
        return Reply(reply=raw)
    if isinstance(raw, dict):
        try:
            return Reply.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "reply"
            raise TargetError(f"{source} replied out of protocol: {where}: {first['msg']}") from exc
    raise TargetError(
        f"{source} replied out of protocol: expected a string or an object with 'reply', "
        f"got {type(raw).__name__}"
    )


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


def load_python_target_class(cls: type) -> TargetFactory:
    """A factory for a class with `respond()` (and optionally `reset()`): one instance each."""
    from simulate.targets.python import PythonTarget

    return lambda session_id: PythonTarget(cls(), source=cls.__name__)


#: `--target` spec prefix -> factory maker. `http:`/`https:` keep the whole URL.
TARGETS: dict[str, Callable[[str, TargetOptions], TargetFactory]] = {
    "python": _python,
    "http": _http,
    "https": _http,
    "cmd": _cmd,
    "openai": _openai,
    "demo": _demo,
}


def needs_llm(spec: str) -> bool:
    """Whether a `--target` spec is a model reached through the LLM layer."""
    return spec.partition(":")[0] == "openai"


def load_target(spec: str, options: TargetOptions | None = None) -> TargetFactory:
    """Turn a `--target` spec into a factory of per-episode targets.

    Forms: `python:FILE_OR_MODULE:CALLABLE`, `http://host/path`, `cmd:"COMMAND"`,
    `openai:MODEL` (with `system_prompt`), `demo`.
    """
    options = options or TargetOptions()
    kind, _, arg = spec.partition(":")
    if kind not in TARGETS:
        raise unknown_choice("--target form", kind, TARGETS)
    return TARGETS[kind](spec if kind in ("http", "https") else arg, options)
