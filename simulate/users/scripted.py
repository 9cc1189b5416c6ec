"""A user that plays only the scenario's `script`, then stops: for regression replays."""

from __future__ import annotations

from simulate.checks import has_goal_checks, unmet_goal_checks
from simulate.schema import EpisodeSpec
from simulate.users import EpisodeState, UserTurn


class ScriptedUser:
    """Sends the scenario's script turns in order; ends when they run out."""

    def __init__(self, spec: EpisodeSpec) -> None:
        self.script = spec.scenario.script
        self.success = spec.scenario.success

    async def next_turn(self, state: EpisodeState) -> UserTurn:
        """The next scripted message, or the end with the goal judged by the success checks."""
        sent = sum(1 for m in state.messages if m.role == "user")
        goal_met = has_goal_checks(self.success) and not unmet_goal_checks(
            self.success, state.messages
        )
        if goal_met:
            return UserTurn(
                None, done=True, status="goal_reached", reason="the agent did what the script asked"
            )
        if sent < len(self.script):
            return UserTurn(self.script[sent])
        return UserTurn(
            None, done=True, status="gave_up", reason="the script ended before the goal was reached"
        )
