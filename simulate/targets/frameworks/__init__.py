"""Framework adapters: agents built with a framework, driven the framework's own way, no glue.

    --target agents:my_app.py:agent         an OpenAI Agents SDK `Agent`   (simulate[agents])
    --target pydantic-ai:my_app.py:agent    a pydantic-ai `Agent`           (simulate[pydantic-ai])
    --target langgraph:my_app.py:graph      a compiled LangGraph graph with a `messages` state
                                            (simulate[langgraph])

Each episode gets a conversation of its own, kept as the framework keeps it (the Agents SDK's
input list, pydantic-ai's message history, the graph's messages or its checkpointer thread),
and is sent only the user's newest message. Every tool call is recorded with its arguments and
result, the agent's own tokens count toward the episode's usage (role `target`) where the
framework reports them, and a framework exception ends the episode as `target_error` with its
traceback. The frameworks are optional extras, imported only when their form is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from simulate.errors import ConfigError, TargetError
from simulate.schema import Message
from simulate.targets import Reply, TargetFactory, TargetOptions


@dataclass(frozen=True)
class Adapter:
    """One framework: where its adapter lives and what to install for it."""

    module: str
    """The adapter module under `simulate.targets.frameworks`."""
    requires: str
    """The framework's import name, checked before the user's file is imported."""
    extra: str
    """The `simulate[...]` extra that installs it."""
    what: str
    """What the named object must be, for messages."""


ADAPTERS: dict[str, Adapter] = {
    "agents": Adapter("agents_sdk", "agents", "agents", "an OpenAI Agents SDK Agent"),
    "pydantic-ai": Adapter("pydantic_ai", "pydantic_ai", "pydantic-ai", "a pydantic-ai Agent"),
    "langgraph": Adapter("langgraph", "langgraph", "langgraph", "a compiled LangGraph graph"),
}


def load_adapter(kind: str, arg: str, options: TargetOptions) -> TargetFactory:
    """A factory of per-episode targets for the framework object named by `FILE:NAME`.

    Raises:
        ConfigError: the framework is not installed (the message says what to install), the
            spec is malformed, or the object is not what the framework form expects.
    """
    from simulate.targets.python import import_callable

    adapter = ADAPTERS[kind]
    flag = f"--target {kind}:{arg}"
    try:
        importlib.import_module(adapter.requires)
    except ImportError as exc:
        raise ConfigError(
            f"{flag}: needs {adapter.requires!r}, which is not installed; "
            f"pip install 'simulate[{adapter.extra}]'"
        ) from exc
    obj = import_callable(arg, flag)
    module = importlib.import_module(f"simulate.targets.frameworks.{adapter.module}")
    name = arg.rpartition(":")[2]
    if not module.accepts(obj):
        raise ConfigError(f"{flag}: {name} is a {type(obj).__name__}, expected {adapter.what}")
    make: Callable[[Any, str, str], Any] = module.make_target
    return lambda session_id: make(obj, session_id, f"{kind}:{name}")


def adapter_for(obj: Any) -> TargetFactory | None:
    """A factory for ``obj`` when it is an agent of a framework already imported, else None."""
    import sys

    for kind, adapter in ADAPTERS.items():
        if sys.modules.get(adapter.requires) is None:
            continue  # not imported, so obj cannot be one of its agents
        module = importlib.import_module(f"simulate.targets.frameworks.{adapter.module}")
        if module.accepts(obj):
            source = f"{kind}:{type(obj).__name__}"
            return lambda session_id: module.make_target(obj, session_id, source)
    return None


class FrameworkTarget:
    """One episode's conversation with a framework's agent, kept as the framework keeps it;
    each adapter's subclass answers `respond`. The class is the adapter's `make_target`."""

    def __init__(self, agent: Any, session_id: str, source: str) -> None:
        self.agent = agent
        self.session_id = session_id
        self.source = source
        """The target spec, for messages."""
        self.history: list[Any] = []
        """The conversation in the framework's own shape."""


def newest_user_text(messages: Sequence[Message], source: str) -> str:
    """The user's newest message: all an adapter sends, since it keeps the conversation."""
    for message in reversed(messages):
        if message.role == "user":
            return message.content
    raise TargetError(f"{source}: no user message to answer")


def text_of(value: Any) -> str:
    """A framework's final output as the text the user sees (structured output as JSON)."""
    if isinstance(value, str):
        return value
    dump = getattr(value, "model_dump_json", None)
    if callable(dump):
        return str(dump())
    import json

    return json.dumps(value, default=str)


__all__ = ["ADAPTERS", "FrameworkTarget", "Reply", "load_adapter", "newest_user_text", "text_of"]
