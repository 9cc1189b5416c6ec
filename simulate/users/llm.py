"""The LLM simulated user: a chat model plays the persona, pursuing the scenario's goal.

The model sees a system prompt built from the persona and the scenario (a Jinja2 template,
`simulate/prompts/user.md.j2`, overridable) and the conversation with roles flipped: the
agent's messages are its "user" turns and its own messages are "assistant" turns, so any chat
model can play the user. Each turn it returns a structured `UserMove`: the message and, for
the harness only, whether the goal is reached, still pursued, or abandoned.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import jinja2
from pydantic import BaseModel, Field

from simulate import prompts
from simulate.errors import ConfigError
from simulate.llm import LLM
from simulate.schema import EpisodeSpec, Message
from simulate.users import EpisodeState, UserTurn, attack_kinds, default_attacks

START = "[The support chat has opened. Write your first message to the agent.]"


class UserMove(BaseModel):
    """One turn of the LLM user: its message, and the state of its goal (hidden from the agent)."""

    message: str = Field(description="Your next message to the agent, in character.")
    status: Literal["continue", "goal_reached", "gave_up"] = Field(
        description="continue while you still need something; goal_reached once the agent "
        "has done what you wanted; gave_up if you have run out of patience."
    )
    reason: str = Field(description="One short sentence on why, for the test report.")


def default_prompt() -> str:
    """The shipped system-prompt template of the LLM user."""
    return prompts.text("user.md.j2")


def read_prompt(path: str | None) -> str:
    """The user-prompt template from ``path`` (`--user-prompt`), or the shipped one."""
    if path is None:
        return default_prompt()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--user-prompt {path!r}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--user-prompt {path!r}: not UTF-8 text") from exc
    return prompts.check(text, path)


def render_prompt(template: str, spec: EpisodeSpec) -> str:
    """The system prompt of one episode's simulated user."""
    persona = spec.persona
    known = attack_kinds()
    kinds = [t.split(":", 1)[1] for t in persona.tags if t.startswith("attack:")]
    attacks = (
        []
        if "adversarial" not in persona.tags
        else [known[k]["what"] for k in (kinds or default_attacks()) if k in known]
    )
    try:
        return prompts.render(
            template,
            persona=persona.model_dump(),
            scenario=spec.scenario.model_dump(),
            attacks=attacks,
        )
    except jinja2.TemplateError as exc:
        raise ConfigError(f"user prompt template: {exc}") from exc


class LLMUser:
    """Plays one episode's user with a chat model."""

    def __init__(
        self,
        spec: EpisodeSpec,
        llm: LLM,
        template: str,
        model: str,
        temperature: float | None = None,
    ) -> None:
        self.spec = spec
        self.llm = llm
        self.model = model
        self.system = render_prompt(template, spec)
        self.params = {"seed": spec.seed % 2**31}
        if temperature is not None:
            self.params["temperature"] = temperature

    async def next_turn(self, state: EpisodeState) -> UserTurn:
        """Ask the model for the next move; scripted turns come first."""
        sent = sum(1 for m in state.messages if m.role == "user")
        script = self.spec.scenario.script
        if sent < len(script):
            return UserTurn(script[sent])
        if sent == 0 and self.spec.scenario.opening:
            return UserTurn(self.spec.scenario.opening)
        completion = await self.llm.complete(
            self._flipped(state.messages), output_type=UserMove, **self.params
        )
        move: UserMove = completion.parsed
        if move.status == "continue":
            if not move.message.strip():
                raise ValueError("the LLM user sent an empty message while continuing")
            return UserTurn(move.message.strip())
        return UserTurn(
            move.message.strip() or None, done=True, status=move.status, reason=move.reason
        )

    def _flipped(self, messages: list[Message]) -> list[Message]:
        """The conversation from the simulated user's side: roles swapped, tools left out."""
        flipped = [Message(role="system", content=self.system)]
        if not messages or messages[0].role != "assistant":
            flipped.append(Message(role="user", content=START))
        for message in messages:
            if message.role == "user":
                flipped.append(Message(role="assistant", content=message.content))
            elif message.role == "assistant" and message.content:
                flipped.append(Message(role="user", content=message.content))
        return flipped


def llm_user_factory(
    llm: LLM, model: str, template: str, temperature: float | None = None
) -> Callable[[EpisodeSpec], LLMUser]:
    """A per-episode factory of LLM users sharing one model client."""
    return lambda spec: LLMUser(spec, llm, template, model, temperature)
