"""Fake models for tests, yours and ours: a queue of replies, or a function of the request.

llm = ScriptedLLM(["Hi!", {"json": {"done": True}}])   # answers in order, logs every call
llm = FunctionLLM(lambda messages, **kw: "echo: " + messages[-1].content)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from simulate.errors import LLMError, unknown_choice
from simulate.llm import LLM, Completion
from simulate.schema import Message, ToolCall

#: What a fake may answer: text, a dict {"content"?, "json"?, "tool_calls"?}, a Completion,
#: or an exception to raise.
FakeReply = str | dict[str, Any] | Completion | BaseException


class ScriptExhausted(LLMError):
    """A ScriptedLLM was asked for more replies than it was given."""


@dataclass
class FakeCall:
    """One request a fake received."""

    messages: list[Message]
    output_type: type[BaseModel] | None
    tools: list[dict[str, Any]]
    params: dict[str, Any]


class FunctionLLM:
    """Answers with a function of the conversation (and the call's keyword arguments)."""

    def __init__(self, function: Callable[..., FakeReply], model: str = "function") -> None:
        self.function = function
        self.model = model
        self.calls: list[FakeCall] = []

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        output_type: type[BaseModel] | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
        **params: Any,
    ) -> Completion:
        """The function's reply to this conversation."""
        self.calls.append(FakeCall(list(messages), output_type, list(tools or []), params))
        reply = self.function(list(messages), output_type=output_type, tools=tools, **params)
        return self._answer(reply, output_type)

    def _answer(self, reply: FakeReply, output_type: type[BaseModel] | None) -> Completion:
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, Completion):
            return reply
        if isinstance(reply, str):
            reply = {"content": reply}
        content = json.dumps(reply["json"]) if "json" in reply else reply.get("content", "")
        calls = [ToolCall.model_validate(c) for c in reply.get("tool_calls", [])]
        parsed = None
        if output_type is not None:
            try:
                parsed = output_type.model_validate_json(content)
            except ValidationError as exc:
                raise LLMError(f"fake reply does not fit {output_type.__name__}: {exc}") from exc
        return Completion(
            content=content,
            tool_calls=calls,
            parsed=parsed,
            model=self.model,
            completion_tokens=len(content.split()),
            finish_reason="tool_calls" if calls else "stop",
        )


class ScriptedLLM(FunctionLLM):
    """Answers with the given replies in order; raises ScriptExhausted after the last."""

    def __init__(self, replies: Sequence[FakeReply], model: str = "scripted") -> None:
        super().__init__(self._next_reply, model=model)
        self.replies = list(replies)
        self._used = 0

    def _next_reply(self, messages: list[Message], **_: Any) -> FakeReply:
        if self._used >= len(self.replies):
            raise ScriptExhausted(f"ScriptedLLM ran out of replies after {len(self.replies)} calls")
        self._used += 1
        return self.replies[self._used - 1]

    def assert_complete(self) -> None:
        """Fail unless every scripted reply was used."""
        left = len(self.replies) - self._used
        assert left == 0, f"ScriptedLLM: {left} scripted replies were never asked for"


def _echo(messages: list[Message], **_: Any) -> str:
    users = [m.content for m in messages if m.role == "user"]
    return users[-1] if users else ""


#: `fake:NAME` models.
FAKES: dict[str, Callable[[], LLM]] = {"echo": lambda: FunctionLLM(_echo, model="fake:echo")}


def fake_llm(name: str) -> LLM:
    """The fake model named by a `fake:NAME` spec."""
    if name not in FAKES:
        raise unknown_choice("fake model", name, FAKES)
    return FAKES[name]()
