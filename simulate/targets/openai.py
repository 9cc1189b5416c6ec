"""The `openai:MODEL` target: an agent that is a chat model, a system prompt and optional tools.

For stress-testing a system prompt before any agent code exists. Tools are declared in a YAML
file; each call is answered by a canned `result` or by a Python `handler` function, and the
calls and their results are recorded in the transcript:

    tools:
      - name: lookup_order
        description: Find an order by its number.
        parameters: {type: object, properties: {order_number: {type: string}},
                     required: [order_number]}
        result: {status: shipped, eta: "2026-03-14"}     # canned answer, any JSON
      - name: issue_refund
        description: Refund an order.
        parameters: {type: object, properties: {order_number: {type: string}}}
        handler: python:tools.py:issue_refund           # called with the arguments as a dict
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from simulate.errors import ConfigError, TargetError
from simulate.llm import LLM
from simulate.loader import read_yaml
from simulate.schema import Message, Model, ToolCall
from simulate.targets import Reply, TargetFactory, TargetOptions
from simulate.targets.protocol import expand_tool_turns, tool_message

MAX_TOOL_ROUNDS = 8


class ToolSpec(Model):
    """One tool the model may call."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    """The function name the model sees."""
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    """JSON schema of the arguments."""
    result: Any = None
    """A canned answer returned for every call."""
    handler: str | None = None
    """`python:FILE_OR_MODULE:FUNCTION` computing the answer from the arguments."""

    @model_validator(mode="after")
    def _one_answer(self) -> ToolSpec:
        if self.handler is not None and self.result is not None:
            raise ValueError("give either `result` or `handler`, not both")
        return self

    def as_function(self) -> dict[str, Any]:
        """The tool as the model is told of it."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


def load_tools(path: str) -> list[ToolSpec]:
    """Read a tools file (`tools:` list, or a bare list); ConfigError names file and tool."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--tools {path!r}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--tools {path!r}: not UTF-8 text") from exc
    data = read_yaml(text, path)  # the one safe reader: aliases bounded, lines named
    items = data.get("tools") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{path}: expected a `tools:` list of tools")
    tools = []
    for index, item in enumerate(items):
        label = f"tools[{index}]" + (
            f" ({item['name']!r})" if isinstance(item, dict) and "name" in item else ""
        )
        try:
            tools.append(ToolSpec.model_validate(item))
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"]) or "tool"
            raise ConfigError(f"{path}: {label}: {field}: {error['msg']}") from exc
    names = [t.name for t in tools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{path}: duplicate tool name {duplicates[0]!r}")
    return tools


def load_handlers(tools: Sequence[ToolSpec]) -> dict[str, Callable[..., Any]]:
    """Import every tool's handler once (`python:FILE:FUNCTION`)."""
    from simulate.targets.python import import_callable

    handlers = {}
    for tool in tools:
        if tool.handler is None:
            continue
        kind, _, rest = tool.handler.partition(":")
        if kind != "python" or not rest:
            raise ConfigError(
                f"tool {tool.name!r}: handler {tool.handler!r} must look like "
                "python:FILE_OR_MODULE:FUNCTION"
            )
        handlers[tool.name] = import_callable(rest, flag=f"tool {tool.name!r} handler")
    return handlers


class OpenAITarget:
    """One conversation with a model-backed agent: system prompt, history, tool loop."""

    def __init__(
        self,
        llm: LLM,
        model: str,
        system_prompt: str,
        tools: Sequence[ToolSpec] = (),
        handlers: dict[str, Callable[..., Any]] | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        self.llm = llm
        self.model = model
        self.system_prompt = system_prompt
        self.tools = {t.name: t for t in tools}
        self.handlers = handlers or {}
        self.params = params or {}

    async def respond(self, messages: Sequence[Message]) -> Reply:
        """Answer the conversation, running tool calls until the model writes to the user."""
        conversation = [
            Message(role="system", content=self.system_prompt),
            *expand_tool_turns(messages),
        ]
        functions = [t.as_function() for t in self.tools.values()] or None
        made: list[ToolCall] = []
        for _ in range(MAX_TOOL_ROUNDS):
            completion = await self.llm.complete(conversation, tools=functions, **self.params)
            if not completion.tool_calls:
                return Reply(reply=completion.content, tool_calls=made)
            calls = [
                await self._run(call, len(made) + i) for i, call in enumerate(completion.tool_calls)
            ]
            made += calls
            conversation.append(
                Message(
                    role="assistant",
                    content=completion.content,
                    tool_calls=[c.model_copy(update={"result": None}) for c in calls],
                )
            )
            conversation += [tool_message(c) for c in calls]
        raise TargetError(f"the model kept calling tools for {MAX_TOOL_ROUNDS} rounds")

    async def _run(self, call: ToolCall, index: int) -> ToolCall:
        """Answer one tool call; an unknown tool or a failing handler answers with an error."""
        call = call.model_copy(update={"id": call.id or f"call_{index}"})
        tool = self.tools.get(call.name)
        if tool is None:
            return call.model_copy(update={"result": {"error": f"unknown tool {call.name!r}"}})
        if call.name not in self.handlers:
            return call.model_copy(
                update={"result": tool.result if tool.result is not None else "ok"}
            )
        try:
            result = self.handlers[call.name](call.arguments)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # the tool's failure is the model's to handle, as in production
            result = {"error": f"{type(exc).__name__}: {exc}"}
        return call.model_copy(update={"result": result})


def openai_target_factory(model: str, options: TargetOptions) -> TargetFactory:
    """A factory of per-episode model-backed agents sharing one LLM client."""
    if not model:
        raise ConfigError("--target openai needs a model: --target openai:MODEL")
    if options.system_prompt is None:
        raise ConfigError("--target openai:MODEL needs --system-prompt FILE (the agent's prompt)")
    if options.get_llm is None:
        raise ConfigError("--target openai:MODEL needs a model endpoint, and none was configured")
    tools = load_tools(options.tools_file) if options.tools_file else []
    handlers = load_handlers(tools)
    llm = options.get_llm(f"openai:{model}", "target")
    return lambda session_id: OpenAITarget(llm, model, options.system_prompt or "", tools, handlers)
