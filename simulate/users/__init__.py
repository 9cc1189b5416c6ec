"""Simulated users: the seam, and the dict that turns a `--user` spec into a factory.

A user simulator is made once per episode (it may keep state across turns) and is asked for
the next user message until it says it is done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from simulate.errors import unknown_choice
from simulate.schema import EpisodeSpec, Message, Usage


@dataclass
class EpisodeState:
    """What a simulated user sees: its own spec and the transcript so far."""

    spec: EpisodeSpec
    messages: list[Message] = field(default_factory=list)

    @property
    def n_turns(self) -> int:
        """Agent replies so far."""
        return sum(1 for m in self.messages if m.role == "assistant")


@dataclass
class UserTurn:
    """The user's next move: a message, and whether the conversation ends with it.

    When ``done`` is true, ``content`` (if any) is recorded as the user's last words but not
    sent to the agent, and ``status`` says how it ended.
    """

    content: str | None
    done: bool = False
    status: Literal["goal_reached", "gave_up"] | None = None
    reason: str = ""


class UserSimulator(Protocol):
    """Plays the user of one episode."""

    async def next_turn(self, state: EpisodeState) -> UserTurn: ...


UserFactory = Callable[[EpisodeSpec], UserSimulator]


def _agenda(arg: str) -> UserFactory:
    from simulate.users.agenda import AgendaUser

    return AgendaUser


def _scripted(arg: str) -> UserFactory:
    from simulate.users.scripted import ScriptedUser

    return ScriptedUser


#: `--user` spec prefix -> function of the rest of the spec returning a per-episode factory.
USERS: dict[str, Callable[[str], UserFactory]] = {"agenda": _agenda, "scripted": _scripted}


def load_user(spec: str) -> UserFactory:
    """Turn a `--user` spec such as `agenda` into a factory of per-episode simulators."""
    kind, _, arg = spec.partition(":")
    if kind not in USERS:
        raise unknown_choice("--user", spec, USERS)
    return USERS[kind](arg)


def usage_of(user: UserSimulator) -> list[Usage]:
    """Tokens a simulator spent, for simulators that call models (none offline)."""
    return list(getattr(user, "usage", []))
