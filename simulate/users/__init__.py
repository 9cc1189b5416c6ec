"""Simulated users: the seam, and the dict that turns a `--user` spec into a factory.

A user simulator is made once per episode (it may keep state across turns) and is asked for
the next user message until it says it is done.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from simulate import prompts
from simulate.errors import ConfigError, unknown_choice
from simulate.llm import LLM, model_spec
from simulate.schema import EpisodeSpec, Message


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


@dataclass(frozen=True)
class UserOptions:
    """What model-backed simulators need beyond their spec."""

    get_llm: Callable[[str, str], LLM] | None = None
    """(model spec, role) -> the run's shared LLM for it."""
    prompt: str | None = None
    """The system-prompt template (`--user-prompt`); None: the shipped one."""
    temperature: float | None = None


def _agenda(arg: str, options: UserOptions) -> UserFactory:
    from simulate.users.agenda import AgendaUser

    return AgendaUser


def _scripted(arg: str, options: UserOptions) -> UserFactory:
    from simulate.users.scripted import ScriptedUser

    return ScriptedUser


def _llm(arg: str, options: UserOptions) -> UserFactory:
    from simulate.users.llm import default_prompt, llm_user_factory

    model = model_spec("--user llm:", arg)
    if options.get_llm is None:
        raise ConfigError("--user llm:MODEL needs a model endpoint, and none was configured")
    llm = options.get_llm(model, "user")
    return llm_user_factory(llm, model, options.prompt or default_prompt(), options.temperature)


#: `--user` spec prefix -> function of the rest of the spec returning a per-episode factory.
USERS: dict[str, Callable[[str, UserOptions], UserFactory]] = {
    "agenda": _agenda,
    "scripted": _scripted,
    "llm": _llm,
}


def parse_user(spec: str) -> tuple[str, str]:
    """(kind, rest) of a `--user` spec; a model (`MODEL`, `backend:MODEL`) is kind `llm`.

    Raises:
        ConfigError: a near miss of a kind (`agendaa`), with the kinds that exist.
    """
    kind, _, arg = spec.partition(":")
    if kind in USERS:
        return kind, arg
    if difflib.get_close_matches(kind, list(USERS), n=1, cutoff=0.75):
        raise unknown_choice("--user", spec, USERS)
    return "llm", spec


def llm_model(spec: str) -> str | None:
    """The model a `--user` spec plays the user with, or None for offline users."""
    kind, arg = parse_user(spec)
    return model_spec("--user llm:", arg) if kind == "llm" else None


def needs_llm(spec: str) -> bool:
    """Whether a `--user` spec plays the user with a model."""
    return parse_user(spec)[0] == "llm"


def load_user(spec: str, options: UserOptions | None = None) -> UserFactory:
    """Turn a `--user` spec (`agenda`, `scripted`, `llm:MODEL` or a model) into a per-episode
    factory."""
    kind, arg = parse_user(spec)
    return USERS[kind](arg, options or UserOptions())


def attack_kinds() -> dict[str, dict[str, Any]]:
    """Every attack kind simulated users know (`prompts/attacks.yaml`): what it is, whether an
    `adversarial` persona that names none draws from it, and the offline user's messages."""
    return prompts.data("attacks.yaml")


def default_attacks() -> list[str]:
    """The kinds an `adversarial` persona tries when its tags name none."""
    return [kind for kind, spec in attack_kinds().items() if spec.get("default")]
