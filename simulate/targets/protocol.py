"""The target protocol: what an agent is sent each turn, and every reply shape it may send back.

Sent (the history, OpenAI chat format, so an agent can hand it to a model as it is):

    {"role": "user", "content": "..."}
    {"role": "assistant", "content": "", "tool_calls": [{"id", "type": "function",
                                                       "function": {"name", "arguments"}}]}
    {"role": "tool", "tool_call_id": "...", "content": "<the result, JSON unless a string>"}
    {"role": "assistant", "content": "the reply the user saw"}

An earlier reply with tool calls is sent as those three steps, so an agent that rebuilds its
state from the list sees what it did and what its tools returned. Every `content` is a string
(empty beside tool calls), so code that joins the contents keeps working.

Accepted back, all normalised into one `Reply`:

- a string: the reply text;
- Simulate's object: `{"reply", "tool_calls"?, "context"?, "end"?}`;
- an OpenAI chat-completion message (`{"role": "assistant", "content", "tool_calls"}`), a whole
  chat completion (`{"choices": [{"message": ...}]}`), or a list of OpenAI messages (the turn's
  tool calls, their `tool` results and the final text);
- pydantic objects of those shapes (the `openai` client's own types).

A tool call is `{"name", "arguments", "result"?, "id"?}` or OpenAI's `{"id", "type": "function",
"function": {"name", "arguments"}}`; `arguments` is an object or a JSON string of one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import Field, ValidationError

from simulate.errors import TargetError
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


# --- what the agent is sent ---------------------------------------------------------------------


def expand_tool_turns(messages: Sequence[Message]) -> list[Message]:
    """The transcript as a model saw it: each reply's tool calls and results before its text.

    Calls without an id get `call_<message index>_<call index>`, so each result names its call.
    """
    expanded: list[Message] = []
    for index, message in enumerate(messages):
        if message.role == "assistant" and message.tool_calls:
            calls = [
                c.model_copy(update={"id": c.id or f"call_{index}_{i}"})
                for i, c in enumerate(message.tool_calls)
            ]
            expanded.append(
                Message(
                    role="assistant",
                    tool_calls=[c.model_copy(update={"result": None}) for c in calls],
                )
            )
            expanded += [tool_message(c) for c in calls]
            expanded.append(Message(role="assistant", content=message.content))
        elif message.role in ("user", "assistant"):
            expanded.append(Message(role=message.role, content=message.content))
    return expanded


def tool_message(call: ToolCall) -> Message:
    """The `tool` message answering ``call``: its result, as JSON unless it is a string."""
    content = call.result if isinstance(call.result, str) else json.dumps(call.result, default=str)
    return Message(role="tool", tool_call_id=call.id, content=content)


def to_protocol(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The conversation as OpenAI chat messages, tool calls and their results included."""
    from simulate.llm.openai import to_openai_message

    wire = [to_openai_message(m, i) for i, m in enumerate(expand_tool_turns(messages))]
    for message in wire:
        if message["content"] is None:
            message["content"] = ""
    return wire


# --- what the agent sends back ------------------------------------------------------------------


def parse_reply(raw: Any, source: str) -> Reply:
    """Read any accepted reply shape (see the module docstring), or raise TargetError naming
    ``source`` and what was wrong."""
    if isinstance(raw, Reply):
        return raw
    raw = _plain(raw)
    if isinstance(raw, str):
        return Reply(reply=raw)
    if isinstance(raw, list):
        return _from_openai_messages(raw, source)
    if not isinstance(raw, dict):
        raise _out_of_protocol(
            source,
            "expected a string, an object with 'reply', or an OpenAI chat message, "
            f"got {type(raw).__name__}",
        )
    if "choices" in raw and "reply" not in raw:
        return _from_completion(raw, source)
    if raw.get("role") == "assistant" and "reply" not in raw:
        return _from_openai_messages([raw], source)
    data = dict(raw)
    if "tool_calls" in data:
        data["tool_calls"] = normalize_tool_calls(data["tool_calls"], source)
    try:
        return Reply.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "reply"
        raise _out_of_protocol(source, f"{where}: {first['msg']}") from None


def normalize_tool_calls(calls: Any, source: str) -> list[ToolCall]:
    """Tool calls in Simulate's or OpenAI's shape as ToolCalls; TargetError names a bad one."""
    calls = _plain(calls)
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise _out_of_protocol(source, f"tool_calls: expected a list, got {type(calls).__name__}")
    return [_tool_call(call, f"tool_calls.{i}", source) for i, call in enumerate(calls)]


def _tool_call(raw: Any, where: str, source: str) -> ToolCall:
    raw = _plain(raw)
    if isinstance(raw, ToolCall):
        return raw
    if not isinstance(raw, dict):
        raise _out_of_protocol(source, f"{where}: expected an object, got {type(raw).__name__}")
    body = dict(raw)
    if "function" in body:  # OpenAI's wrapper: {"id", "type": "function", "function": {...}}
        kind = body.pop("type", "function")
        if kind != "function":
            raise _out_of_protocol(source, f"{where}.type: only 'function' calls, got {kind!r}")
        function = _plain(body.pop("function"))
        if not isinstance(function, dict):
            raise _out_of_protocol(source, f"{where}.function: expected an object")
        unknown = set(function) - {"name", "arguments"}
        if unknown:
            raise _out_of_protocol(source, f"{where}.function: unknown key {sorted(unknown)[0]!r}")
        body.update(function)
        where = f"{where}.function"
    if not isinstance(body.get("name"), str) or not body["name"]:
        raise _out_of_protocol(source, f"{where}.name: a tool call needs a name")
    body["arguments"] = _arguments(body.get("arguments"), f"{where}.arguments", source)
    try:
        return ToolCall.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise _out_of_protocol(source, f"{where}.{field}: {first['msg']}") from None


def _arguments(value: Any, where: str, source: str) -> dict[str, Any]:
    """An object, or a JSON string of one (what OpenAI sends); empty means no arguments."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise _out_of_protocol(
                source, f"{where}: not valid JSON ({exc.msg}): {value[:80]!r}"
            ) from None
    if not isinstance(value, dict):
        raise _out_of_protocol(
            source, f"{where}: expected an object of arguments, got {type(value).__name__}"
        )
    return value


def _from_completion(raw: dict[str, Any], source: str) -> Reply:
    choices = raw.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _out_of_protocol(source, "choices: a chat completion needs at least one choice")
    return _from_openai_messages([choices[0].get("message")], source)


def _from_openai_messages(messages: list[Any], source: str) -> Reply:
    """A turn given as OpenAI messages: tool calls, their `tool` results, the final text."""
    calls: list[ToolCall] = []
    text = ""
    for i, message in enumerate(_plain(m) for m in messages):
        if not isinstance(message, dict) or message.get("role") not in ("assistant", "tool"):
            raise _out_of_protocol(
                source, f"messages.{i}: expected an assistant or tool message in OpenAI's shape"
            )
        if message["role"] == "tool":
            _attach_result(calls, message, f"messages.{i}", source)
            continue
        calls += normalize_tool_calls(message.get("tool_calls"), source)
        content = _text(message.get("content"))
        if content:
            text = content
    return Reply(reply=text, tool_calls=calls)


def _attach_result(calls: list[ToolCall], message: dict[str, Any], where: str, source: str) -> None:
    call_id = message.get("tool_call_id")
    if not attach_result(calls, call_id, json_or_text(message.get("content"))):
        raise _out_of_protocol(source, f"{where}: a tool result for unknown call {call_id!r}")


def attach_result(calls: list[ToolCall], call_id: Any, result: Any) -> bool:
    """Give the call with id ``call_id`` its result (in place); False when there is none."""
    for index, call in enumerate(calls):
        if call.id == call_id:
            calls[index] = call.model_copy(update={"result": result})
            return True
    return False


def _text(content: Any) -> str:
    """A message's content as text: a string, or OpenAI's list of parts."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def json_or_text(content: Any) -> Any:
    """A tool result sent as text: the JSON it holds, or the text itself."""
    text = _text(content)
    try:
        return json.loads(text)
    except ValueError:
        return text


def _plain(value: Any) -> Any:
    """Pydantic objects (the openai client's types) as plain data; anything else as it is."""
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, Model):
        return dump(exclude_none=True)
    return value


def _out_of_protocol(source: str, what: str) -> TargetError:
    return TargetError(f"{source} replied out of protocol: {what}")
