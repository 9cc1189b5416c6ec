"""Rule labels: deterministic checks that need no model.

From each episode's scenario success checks (`must_mention`, `must_not_mention`, `must_match`,
`must_not_match`, `must_call_tools`: one label per kind of check, naming each phrase, expression
or tool; `must_mention` phrases said only inside a refusal do not count, as in `checks`), its
outcome
(`goal_reached`), and limits on turns (`max_turns`), reply length (`reply_chars`) and latency
(`latency_ms`), the last two per agent reply. Every value is `yes` (the rule holds: a pass) or
`no`; the labeler is `rule:<criterion>` and the rubric None.

Episodes that ended in a target or simulator error get no episode-level rule labels: they say
nothing about the agent's quality (DESIGN), and are left out of its rates.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import Field

from simulate.checks import called_at, contained_at, matched_at, mentioned_at
from simulate.label import Unit, make_label, units_of
from simulate.schema import (
    Criterion,
    Episode,
    Label,
    Message,
    Model,
    Scenario,
    Status,
    is_rated,
)


class RuleLimits(Model):
    """Thresholds of the limit rules."""

    max_turns: int = Field(10, ge=1)
    """Agent replies a conversation may take."""
    reply_chars: int = Field(1200, ge=1)
    """Characters one agent reply may have."""
    latency_ms: float = Field(10_000, gt=0)
    """Milliseconds one agent reply may take."""


def rule_criteria(limits: RuleLimits | None = None) -> list[Criterion]:
    """The criteria the rules answer, with their thresholds in the questions."""
    limits = limits or RuleLimits()
    return [
        Criterion(
            id="must_mention",
            question="Did the agent say every phrase the scenario requires?",
        ),
        Criterion(
            id="must_not_mention",
            question="Did the agent avoid every phrase the scenario forbids?",
        ),
        Criterion(
            id="must_match",
            question="Did some reply of the agent match every expression the scenario requires?",
        ),
        Criterion(
            id="must_not_match",
            question="Did the agent avoid every expression the scenario forbids?",
        ),
        Criterion(
            id="must_call_tools",
            question="Did the agent call every tool the scenario requires?",
        ),
        Criterion(id="goal_reached", question="Did the conversation end with the goal reached?"),
        Criterion(
            id="max_turns",
            question=f"Did the conversation end within {limits.max_turns} agent replies?",
        ),
        Criterion(
            id="reply_chars",
            question=f"Is this reply at most {limits.reply_chars} characters long?",
            applies_to="assistant_turn",
        ),
        Criterion(
            id="latency_ms",
            question=f"Did this reply come within {limits.latency_ms:g} ms?",
            applies_to="assistant_turn",
        ),
    ]


RULE_IDS = [c.id for c in rule_criteria()]

Finding = tuple[bool, str]
"""(the rule holds, why)."""


class RuleLabeler:
    """Labels episodes with the deterministic rules (a `Labeler`)."""

    def __init__(self, limits: RuleLimits | None = None) -> None:
        self.limits = limits or RuleLimits()
        self._episode_rules: dict[str, Callable[[Episode, Scenario], Finding | None]] = {
            **_SUCCESS_RULES,
            "goal_reached": _goal_reached,
            "max_turns": self._max_turns,
        }
        self._reply_rules: dict[str, Callable[[Episode, int], Finding | None]] = {
            "reply_chars": self._reply_chars,
            "latency_ms": self._latency,
        }

    async def label(self, episode: Episode, criterion: Criterion, unit: Unit) -> Label | None:
        """The rule's label for one unit: None when the rule does not apply to it."""
        return self.label_unit(episode, criterion, unit)

    def label_unit(self, episode: Episode, criterion: Criterion, unit: Unit) -> Label | None:
        """`label()` without the event loop: rules never wait."""
        if criterion.id in self._episode_rules:
            if not is_rated(episode.outcome.status):
                return None
            scenario = Scenario.model_validate_json(episode.scenario)
            verdict = self._episode_rules[criterion.id](episode, scenario)
        elif criterion.id in self._reply_rules:
            assert unit.turn_index is not None
            verdict = self._reply_rules[criterion.id](episode, unit.turn_index)
        else:
            raise KeyError(f"no rule for criterion {criterion.id!r}")
        return None if verdict is None else _label(episode, criterion, unit, verdict)

    def label_now(self, episode: Episode, criterion: Criterion) -> list[Label]:
        """The rule's labels of every unit of ``episode`` it applies to."""
        units = units_of(episode, criterion.applies_to)
        labels = (self.label_unit(episode, criterion, unit) for unit in units)
        return [label for label in labels if label is not None]

    def _max_turns(self, episode: Episode, scenario: Scenario) -> Finding:
        limit = self.limits.max_turns
        return episode.n_turns <= limit, f"{episode.n_turns} agent replies (limit {limit})"

    def _reply_chars(self, episode: Episode, turn: int) -> Finding:
        size, limit = len(episode.messages[turn].content), self.limits.reply_chars
        return size <= limit, f"{size} characters (limit {limit})"

    def _latency(self, episode: Episode, turn: int) -> Finding | None:
        latency, limit = episode.messages[turn].latency_ms, self.limits.latency_ms
        if latency is None:
            return None
        return latency <= limit, f"{latency:g} ms (limit {limit:g} ms)"


def _where(indexes: list[int]) -> str:
    return ", ".join(str(i) for i in indexes)


def _required(
    phrases: list[str], found: Callable[[str], list[int]], said: str, never: str
) -> Finding | None:
    """Every phrase (or expression) found somewhere: `said 'x' in message 2; never said 'y'`."""
    if not phrases:
        return None
    parts, ok = [], True
    for phrase in phrases:
        at = found(phrase)
        ok = ok and bool(at)
        parts.append(f"{said} {phrase!r} in message {_where(at)}" if at else f"{never} {phrase!r}")
    return ok, "; ".join(parts)


def _forbidden(
    phrases: list[str], found: Callable[[str], list[int]], said: str, never: str
) -> Finding | None:
    """No phrase (or expression) found anywhere."""
    if not phrases:
        return None
    hits = {p: at for p in phrases if (at := found(p))}
    if not hits:
        return True, f"{never} " + ", ".join(repr(p) for p in phrases)
    return False, "; ".join(f"{said} {p!r} in message {_where(at)}" for p, at in hits.items())


def _success_rule(
    check: str, found: Callable[[list[Message], str], list[int]], said: str, never: str
) -> Callable[[Episode, Scenario], Finding | None]:
    """The rule for one kind of success check: required items must each be found somewhere,
    forbidden ones (`must_not_*`) nowhere."""
    judge = _forbidden if check.startswith("must_not_") else _required

    def rule(episode: Episode, scenario: Scenario) -> Finding | None:
        items = getattr(scenario.success, check)
        return judge(items, lambda item: found(episode.messages, item), said, never)

    return rule


#: Success check -> its rule.
_SUCCESS_RULES = {
    "must_mention": _success_rule(
        "must_mention", mentioned_at, "said", "never said (outside a refusal)"
    ),
    "must_not_mention": _success_rule("must_not_mention", contained_at, "said", "never said"),
    "must_match": _success_rule("must_match", matched_at, "matched", "nothing matched"),
    "must_not_match": _success_rule("must_not_match", matched_at, "matched", "nothing matched"),
    "must_call_tools": _success_rule("must_call_tools", called_at, "called", "never called"),
}


def _goal_reached(episode: Episode, scenario: Scenario) -> Finding:
    outcome = episode.outcome
    why = f"ended {outcome.status.value}" + (f": {outcome.reason}" if outcome.reason else "")
    return outcome.status == Status.GOAL_REACHED, why


def _label(episode: Episode, criterion: Criterion, unit: Unit, verdict: Finding) -> Label:
    held, why = verdict
    return make_label(
        episode.episode_id,
        criterion,
        unit,
        "yes" if held else "no",
        labeler=f"rule:{criterion.id}",
        kind="rule",
        rationale=why,
    )
