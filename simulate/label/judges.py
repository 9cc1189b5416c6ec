"""LLM judges: one structured call per criterion and unit, graded against a rubric.

The judge sees the criterion (its question, its answers, its examples, and labels people gave
on other episodes) and the conversation up to the unit: the whole transcript for an episode,
the transcript up to and including the judged reply with its context passages, or the
conversation before a tool call and the call with its arguments and result. It never sees
the persona, the scenario (goal, success checks) or the outcome. Prompts are
`simulate/prompts/judge_system.md.j2` and `judge_unit.md.j2`.

With `samples` > 1 the judge is asked that many times, each with its own `seed` (so the cache
keeps them apart), and the label keeps the majority answer with its `spread`; a tie goes to
the stricter answer (a fail before a pass, then the lower score, then the first option).
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model, field_validator

from simulate import prompts
from simulate.label import Unit, make_label, match_value
from simulate.llm import LLM
from simulate.schema import Criterion, Episode, Example, Label, Message, Rubric

SYSTEM_PROMPT = "judge_system.md.j2"
UNIT_PROMPT = "judge_unit.md.j2"

SAMPLE_TEMPERATURE = 0.7
"""Temperature when a unit is asked several times (one answer is asked at temperature 0)."""
EXCERPT_CHARS = 1500
"""Longest excerpt of a people-labeled unit shown as an example (its end is kept)."""


@dataclass(frozen=True)
class FewShot:
    """A unit people labeled, shown to the judge as a worked example."""

    episode_id: str
    text: str
    value: str
    why: str = ""


class _VerdictBase(BaseModel):
    rationale: str = Field(
        description="One or two sentences citing the messages that decide the answer."
    )


@functools.cache
def verdict_model(kind: str, allowed: tuple[str, ...]) -> type[BaseModel]:
    """The judge's output type for a criterion: a rationale and one of ``allowed``.

    Near misses (`"Yes"`, `4` for `"4"`, `"partly relevant"`) are mapped onto the allowed
    value; anything else fails validation, so the LLM layer asks once more with the error.
    """

    def map_value(cls: type[BaseModel], value: Any) -> Any:
        mapped = match_value(kind, allowed, value)
        return value if mapped is None else mapped

    return create_model(
        "Verdict",
        __base__=_VerdictBase,
        __validators__={"map_value": field_validator("value", mode="before")(map_value)},
        value=(Literal[allowed], Field(description="The answer: " + ", ".join(allowed))),  # type: ignore[valid-type]
    )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _message_view(index: int, message: Message, *, context: bool, judged: bool) -> dict[str, Any]:
    """One message as the unit template shows it."""
    return {
        "index": index,
        "role": {"assistant": "agent", "tool": "tool result"}.get(message.role, message.role),
        "content": message.content,
        "judged": judged,
        "tool_calls": [
            {"name": c.name, "arguments": _json(c.arguments), "result": _json(c.result)}
            for c in message.tool_calls
        ],
        "context": message.context if context else [],
    }


def render_unit(episode: Episode, unit: Unit) -> str:
    """What the judge is shown of ``episode`` for ``unit``: no persona, scenario or outcome."""
    shown = [(i, m) for i, m in enumerate(episode.messages) if m.role != "system"]
    tool_call = None
    if unit.turn_index is None:
        views = [_message_view(i, m, context=True, judged=False) for i, m in shown]
    elif unit.tool_call_index is None:
        views = [
            _message_view(i, m, context=i == unit.turn_index, judged=i == unit.turn_index)
            for i, m in shown
            if i <= unit.turn_index
        ]
    else:
        views = [
            _message_view(i, m, context=False, judged=False)
            for i, m in shown
            if i < unit.turn_index
        ]
        calls = episode.messages[unit.turn_index].tool_calls
        call = calls[unit.tool_call_index]
        tool_call = {
            "turn_index": unit.turn_index,
            "name": call.name,
            "arguments": _json(call.arguments),
            "result": _json(call.result),
            "earlier": [c.name for c in calls[: unit.tool_call_index]],
        }
    return prompts.render(prompts.text(UNIT_PROMPT), messages=views, tool_call=tool_call).strip()


def excerpt(episode: Episode, unit: Unit) -> str:
    """A unit's rendering, cut to its last `EXCERPT_CHARS` characters, for few-shot examples."""
    text = render_unit(episode, unit)
    return text if len(text) <= EXCERPT_CHARS else "…" + text[-EXCERPT_CHARS:]


def render_system(criterion: Criterion, examples: Sequence[Example | FewShot]) -> str:
    """The judge's system prompt for one criterion."""
    return prompts.render(
        prompts.text(SYSTEM_PROMPT),
        criterion=criterion,
        allowed=criterion.allowed_values(),
        examples=examples,
    ).strip()


def majority(criterion: Criterion, values: Sequence[str]) -> tuple[str, float]:
    """The most frequent value and the share of ``values`` that differ from it.

    Ties go to the stricter value: one that does not pass before one that does, then the
    lower score, then the earlier allowed value.
    """
    counts = Counter(values)
    top = max(counts.values())
    allowed = criterion.allowed_values()

    def strictness(value: str) -> tuple[bool, float, int]:
        score, passed = criterion.judge_value(value)
        return bool(passed), score if score is not None else 0.0, allowed.index(value)

    winner = min((v for v, n in counts.items() if n == top), key=strictness)
    return winner, (len(values) - top) / len(values)


class JudgeLabeler:
    """Labels units with an LLM against a rubric's criteria (a `Labeler`).

    Args:
        llm: the judge model.
        model: its name, for the labeler id `judge:<model>`.
        rubric: the rubric the criteria come from (its `id@version` is on every label).
        samples: answers asked per unit; the label keeps the majority.
        human_examples: per criterion id, units people labeled, shown as examples (those of
            the episode being judged are left out).
        max_human_examples: how many of them to show at most.
    """

    def __init__(
        self,
        llm: LLM,
        model: str,
        rubric: Rubric,
        *,
        samples: int = 1,
        human_examples: Mapping[str, Sequence[FewShot]] | None = None,
        max_human_examples: int = 3,
    ) -> None:
        self.llm = llm
        self.name = f"judge:{model}"
        self.rubric = rubric
        self.samples = samples
        self.human_examples = dict(human_examples or {})
        self.max_human_examples = max_human_examples

    async def label(self, episode: Episode, criterion: Criterion, unit: Unit) -> Label:
        """Ask the judge about one unit (``samples`` times) and make its label.

        Raises:
            LLMError: the model failed after retries, or answered outside the allowed values
                even after a repair round.
            RunStopped: a budget ran out.
        """
        output_type = verdict_model(criterion.kind, tuple(criterion.allowed_values()))
        messages = [
            Message(
                role="system", content=render_system(criterion, self._examples(episode, criterion))
            ),
            Message(role="user", content=render_unit(episode, unit)),
        ]
        temperature = 0.0 if self.samples == 1 else SAMPLE_TEMPERATURE
        verdicts = []
        for seed in range(self.samples):
            completion = await self.llm.complete(
                messages, output_type=output_type, temperature=temperature, seed=seed
            )
            verdicts.append(completion.parsed)
        value, spread = majority(criterion, [v.value for v in verdicts])
        return make_label(
            episode.episode_id,
            criterion,
            unit,
            value,
            labeler=self.name,
            kind="judge",
            rationale=next(v.rationale for v in verdicts if v.value == value),
            rubric=self.rubric.ref,
            samples=self.samples,
            spread=spread,
        )

    def _examples(self, episode: Episode, criterion: Criterion) -> list[Example | FewShot]:
        """The criterion's own examples, then people's labels from other episodes."""
        people = [
            e
            for e in self.human_examples.get(criterion.id, [])
            if e.episode_id != episode.episode_id
        ]
        return [*criterion.examples, *people[: self.max_human_examples]]


def pick_examples(labels: Sequence[Label], limit: int) -> list[Label]:
    """Up to ``limit`` labels, one per episode, taking each value in turn.

    Taking values in turn keeps one answer from crowding out the others; one per episode means
    leaving out the judged episode's removes at most one. Deterministic for a given order.
    """
    by_value: dict[str, list[Label]] = {}
    for label in labels:
        by_value.setdefault(label.value, []).append(label)
    queues = [by_value[v] for v in sorted(by_value)]
    picked: list[Label] = []
    episodes: set[str] = set()
    while len(picked) < limit and any(queues):
        for queue in queues:
            while queue and queue[0].episode_id in episodes:
                queue.pop(0)
            if queue and len(picked) < limit:
                label = queue.pop(0)
                picked.append(label)
                episodes.add(label.episode_id)
    return picked
