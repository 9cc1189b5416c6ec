"""Labeling: the `Labeler` seam, the units a label judges, and helpers every labeler shares.

A unit is the whole episode, one agent reply (`turn_index`, its index in `messages`), or one
tool call of a reply (`turn_index` and `tool_call_index`). Implementations: `rules.py`
(deterministic checks), `judges.py` (LLM judges with a rubric), `imports.py` (labels people
gave elsewhere); `labeling.py` runs them over a run folder.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from simulate.schema import Criterion, Episode, Label, LabelerKind, LabelKey, Message
from simulate.store import now_iso


class Labeler(Protocol):
    """Judges one unit of an episode on one criterion (rules, LLM judges)."""

    async def label(self, episode: Episode, criterion: Criterion, unit: Unit) -> Label | None:
        """The label of ``unit``, or None when the labeler has nothing to say about it."""
        ...


@dataclass(frozen=True)
class Unit:
    """What one label judges: the episode (both None), a reply, or one tool call of a reply."""

    turn_index: int | None = None
    tool_call_index: int | None = None

    def describe(self) -> str:
        """`episode`, `reply 3`, `tool call 0 of reply 3`, for messages."""
        if self.turn_index is None:
            return "episode"
        if self.tool_call_index is None:
            return f"reply {self.turn_index}"
        return f"tool call {self.tool_call_index} of reply {self.turn_index}"


def make_label(
    episode_id: str,
    criterion: Criterion,
    unit: Unit,
    value: str,
    *,
    labeler: str,
    kind: LabelerKind,
    rationale: str = "",
    rubric: str | None = None,
    **extra: Any,
) -> Label:
    """A label for one unit, its score and pass worked out from the criterion."""
    score, passed = criterion.judge_value(value)
    return Label(
        episode_id=episode_id,
        criterion=criterion.id,
        turn_index=unit.turn_index,
        tool_call_index=unit.tool_call_index,
        value=value,
        score=score,
        passed=passed,
        rationale=rationale,
        labeler=labeler,
        labeler_kind=kind,
        rubric=rubric,
        created_at=now_iso(),
        **extra,
    )


def assistant_turns(messages: Sequence[Message]) -> list[int]:
    """Indexes in ``messages`` of the agent's replies."""
    return [i for i, m in enumerate(messages) if m.role == "assistant"]


def units_of(episode: Episode, applies_to: str) -> list[Unit]:
    """The units of ``episode`` a criterion with this `applies_to` judges, in message order."""
    if applies_to == "episode":
        return [Unit()]
    turns = assistant_turns(episode.messages)
    if applies_to == "assistant_turn":
        return [Unit(i) for i in turns]
    return [Unit(i, j) for i in turns for j in range(len(episode.messages[i].tool_calls))]


def label_key(label: Label) -> LabelKey:
    """The slot ``label`` fills (`Label.key`)."""
    return label.key


def unit_key(
    episode_id: str, criterion: str, unit: Unit, labeler: str, rubric: str | None
) -> LabelKey:
    """The slot of a unit not labeled yet."""
    return (episode_id, criterion, unit.turn_index, unit.tool_call_index, labeler, rubric)


_TRUE = {"yes", "y", "true", "pass", "passed"}
_FALSE = {"no", "n", "false", "fail", "failed"}


def normalize_value(criterion: Criterion, raw: Any) -> str | None:
    """``raw`` as one of the criterion's allowed values, or None when it is none of them.

    Forgives case, surrounding quotes and punctuation, `true`/`false` for yes/no, `4.0` for a
    scale point, and spaces or dashes for underscores in category options.
    """
    return match_value(criterion.kind, tuple(criterion.allowed_values()), raw)


def match_value(kind: str, allowed: Sequence[str], raw: Any) -> str | None:
    """`normalize_value` for a criterion given by its kind and allowed values."""
    if isinstance(raw, bool):
        text = "yes" if raw else "no"
    elif isinstance(raw, int | float):
        text = str(int(raw)) if float(raw).is_integer() else str(raw)
    elif isinstance(raw, str):
        text = raw.strip().strip("\"'`").strip().rstrip(".!").strip()
    else:
        return None
    if text in allowed:
        return text
    folded = text.casefold()
    if kind == "binary":
        return "yes" if folded in _TRUE else "no" if folded in _FALSE else None
    if kind == "scale":
        match = re.fullmatch(r"([0-9]+)(?:\.0+)?(?:\s*/\s*[0-9]+)?", folded)
        return match.group(1) if match and match.group(1) in allowed else None
    squashed = re.sub(r"[\s\-]+", "_", folded)
    return next((o for o in allowed if o.casefold() == squashed), None)
