"""Agents for `--target python:tests/data/python_agent.py:NAME` tests."""

import asyncio
import itertools
import threading
import time

from agent_replies import make_reply

NOT_CALLABLE = 42
_serial = itertools.count(1)


def respond(messages):
    """A sync agent; says which thread ran it."""
    return make_reply(messages, who=f"thread {threading.get_ident()}")


async def arespond(messages):
    """An async agent."""
    await asyncio.sleep(0)
    return make_reply(messages, who="async")


def plain(messages):
    """An agent that answers with a bare string."""
    return "hello"


def broken(messages):
    """An agent that crashes."""
    raise RuntimeError("agent exploded")


def wrong_type(messages):
    """An agent that breaks the protocol."""
    return 42


class CountingAgent:
    """A stateful agent: each instance has a serial number and counts its resets."""

    def __init__(self):
        self.serial = next(_serial)
        self.resets = 0

    async def reset(self):
        self.resets += 1

    def respond(self, messages):
        return make_reply(messages, who=f"instance {self.serial} resets {self.resets}")


class NoRespond:
    """A class that is not an agent."""


def slow(messages):
    """A blocking agent."""
    time.sleep(0.3)
    return "done"
