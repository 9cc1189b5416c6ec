"""Tiny in-process agents for loop and simulator tests (targets with `respond`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from simulate.schema import Message
from simulate.targets import Reply, parse_reply


class FunctionTarget:
    """A target whose reply is a function of the conversation so far."""

    def __init__(self, reply: Callable[[list[Message]], object]) -> None:
        self.reply = reply
        self.seen: list[list[Message]] = []

    async def respond(self, messages: Sequence[Message]) -> Reply:
        self.seen.append(list(messages))
        return parse_reply(self.reply(list(messages)), "test agent")


class ScriptTarget(FunctionTarget):
    """A target that replies with the next line of a script (the last one repeats)."""

    def __init__(self, *replies: object) -> None:
        self.replies = list(replies)
        super().__init__(
            lambda messages: self.replies[
                min(sum(m.role == "user" for m in messages), len(self.replies)) - 1
            ]
        )


class RaisingTarget:
    """A target that crashes on its n-th reply."""

    def __init__(self, after: int = 0) -> None:
        self.after = after
        self.calls = 0

    async def respond(self, messages: Sequence[Message]) -> Reply:
        self.calls += 1
        if self.calls > self.after:
            raise RuntimeError("database connection lost")
        return Reply(reply="What is your order number?")


class SlowTarget:
    """A target that never answers in time."""

    async def respond(self, messages: Sequence[Message]) -> Reply:
        await asyncio.sleep(60)
        return Reply(reply="too late")
