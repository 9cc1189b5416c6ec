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


class _FakeBase:
    """What both fakes share: a model name, a log of calls, and reply decoding."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.calls: list[FakeCall] = []

    def _answer(self, reply: FakeReply, output_type: type[BaseModel] | None) -> Completion:
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, Completion):
            return reply
        if isinstance(reply, str):
            reply = {"content": reply}
        content = reply.get("content", "")
        if "json" in reply:
            content = json.dumps(reply["json"])
        calls = [ToolCall.model_validate(c) for c in reply.get("tool_calls", [])]
        parsed = None
        if output_type is not None:
            try:
                parsed = output_type.model_validate_json(content)
            except ValidationError as exc:
                raise LLMError(f"fake reply does not fit {output_type.__name__}: {exc}") from exc
        words = len(content.split())
        return Completion(
            content=content,
            tool_calls=calls,
            parsed=parsed,
            model=self.model,
            completion_tokens=words,
            finish_reason="tool_calls" if calls else "stop",
        )

    def _log(
        self,
        messages: Sequence[Message],
        output_type: type[BaseModel] | None,
        tools: Sequence[dict[str, Any]] | None,
        params: dict[str, Any],
    ) -> None:
        self.calls.append(FakeCall(list(messages), output_type, list(tools or []), params))


class ScriptedLLM(_FakeBase):
    """Answers with the given replies in order; raises ScriptExhausted after the last."""

    def __init__(self, replies: Sequence[FakeReply], model: str = "scripted") -> None:
        super().__init__(model=model)
        self.replies = list(replies)
        self._next = 0

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        output_type: type[BaseModel] | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
        **params: Any,
    ) -> Completion:
        """The next scripted reply."""
        self._log(messages, output_type, tools, params)
        if self._next >= len(self.replies):
            raise ScriptExhausted(f"ScriptedLLM ran out of replies after {len(self.replies)} calls")
        reply = self.replies[self._next]
        self._next += 1
        return self._answer(reply, output_type)

    def assert_complete(self) -> None:
        """Fail unless every scripted reply was used."""
        left = len(self.replies) - self._next
        assert left == 0, f"ScriptedLLM: {left} scripted replies were never asked for"


class FunctionLLM(_FakeBase):
    """Answers with a function of the conversation (and the call's keyword arguments)."""

    def __init__(self, function: Callable[..., FakeReply], model: str = "function") -> None:
        super().__init__(model=model)
        self.function = function

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        output_type: type[BaseModel] | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
        **params: Any,
    ) -> Completion:
        """The function's reply to this conversation."""
        self._log(messages, output_type, tools, params)
        reply = self.function(list(messages), output_type=output_type, tools=tools, **params)
        return self._answer(reply, output_type)


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
