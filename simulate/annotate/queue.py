"""What an annotator labels, in which order: questions per episode, the queue, filters, progress.

A *question* is one criterion asked of one unit (the episode, an agent reply, or a tool call).
The queue is a list of episodes, each with every question its rubric asks of it, ordered so
that each answer counts:

0. episodes nobody (no judge, rule or person) has answered any question of;
1. episodes where machines disagree on a question: judges with each other or with rules, or a
   judge whose samples were split;
2. episodes whose answers would most narrow the judge-vs-people calibration: a judge's verdict
   of the kind (pass or fail) that people have checked least for that judge and criterion;
3. the rest.

`--overlap N` assigns each episode to N people the way Label Studio's overlap does: an episode
stays in everyone's queue until N people have answered all its questions (and in the queue of
anyone who answered part of it). In adjudication mode the queue holds the episodes with a
question that people answered differently, and only those questions are asked.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from simulate.label import Unit, units_of
from simulate.schema import Criterion, Episode, Label, Rubric

Slot = tuple[str, str, int | None, int | None]
"""(episode_id, criterion, turn_index, tool_call_index): what one answer fills."""

TIER_REASONS = (
    "nobody has labeled it",
    "machines disagree",
    "narrows the judge calibration",
    "the rest",
)


@dataclass(frozen=True)
class Question:
    """One criterion asked of one unit of an episode."""

    episode_id: str
    criterion: Criterion
    rubric: str
    """`id@version` of the rubric the criterion comes from."""
    unit: Unit

    @property
    def slot(self) -> Slot:
        return (self.episode_id, self.criterion.id, self.unit.turn_index, self.unit.tool_call_index)


def questions_of(episode: Episode, criteria: Sequence[tuple[Rubric, Criterion]]) -> list[Question]:
    """Every question of ``episode``, in reading order: each reply's and each tool call's
    questions where they occur, the whole episode's at the end."""
    asked = [
        Question(episode.episode_id, criterion, rubric.ref, unit)
        for rubric, criterion in criteria
        for unit in units_of(episode, criterion.applies_to)
    ]

    def position(question: Question) -> tuple[float, int]:
        turn, call = question.unit.turn_index, question.unit.tool_call_index
        return (float("inf") if turn is None else turn, -1 if call is None else call)

    return sorted(asked, key=position)  # stable: rubric order within a unit


def slot_of(label: Label) -> Slot:
    """The slot ``label`` fills."""
    return (label.episode_id, label.criterion, label.turn_index, label.tool_call_index)


def latest_answers(labels: Iterable[Label]) -> dict[Slot, dict[str, Label]]:
    """Per slot, each labeler's latest answer; withdrawn answers (empty value) are dropped."""
    latest: dict[Slot, dict[str, tuple[tuple[str, int], Label]]] = defaultdict(dict)
    for order, label in enumerate(labels):
        key = (label.created_at, order)
        seen = latest[slot_of(label)].get(label.labeler)
        if seen is None or seen[0] <= key:
            latest[slot_of(label)][label.labeler] = (key, label)
    return {
        slot: {who: label for who, (_, label) in by_labeler.items() if label.value}
        for slot, by_labeler in latest.items()
    }


def people(answers: dict[str, Label]) -> dict[str, Label]:
    """The answers given by people (not judges, rules or adjudicators)."""
    return {who: label for who, label in answers.items() if label.labeler_kind == "human"}


def disputed(answers: dict[str, Label]) -> bool:
    """Two or more people answered and not all alike."""
    given = people(answers)
    return len(given) >= 2 and len({label.value for label in given.values()}) > 1


@dataclass(frozen=True)
class Filters:
    """What the annotator narrowed the queue to (empty: everything)."""

    persona: str = ""
    scenario: str = ""
    outcome: str = ""
    tag: str = ""
    criterion: str = ""

    def keeps(self, episode: Episode, tags: set[str]) -> bool:
        """Whether ``episode`` (whose persona and scenario tags are ``tags``) passes."""
        return (
            (not self.persona or episode.persona_id == self.persona)
            and (not self.scenario or episode.scenario_id == self.scenario)
            and (not self.outcome or episode.outcome.status == self.outcome)
            and (not self.tag or self.tag in tags)
        )

    def asks(self, question: Question) -> bool:
        return not self.criterion or question.criterion.id == self.criterion


@dataclass
class Item:
    """One episode of an annotator's queue."""

    episode_id: str
    tier: int
    questions: list[Question]
    answered: int = 0
    """Questions this annotator answered (their latest answer stands)."""

    @property
    def done(self) -> bool:
        return self.answered >= len(self.questions)

    @property
    def reason(self) -> str:
        return TIER_REASONS[self.tier]


@dataclass
class Priority:
    """The order of every episode of the run, worked out once when the app starts."""

    tiers: dict[str, tuple[int, float]] = field(default_factory=dict)
    """episode_id -> (tier, score within the tier, higher first)."""
    order: list[str] = field(default_factory=list)


def prioritize(
    episodes: Sequence[Episode],
    questions: dict[str, list[Question]],
    answers: dict[Slot, dict[str, Label]],
) -> Priority:
    """Order episodes by the tiers of the module docstring; ties by persona, scenario, trial."""
    checked = _people_checked(answers)
    tiers: dict[str, tuple[int, float]] = {}
    for episode in episodes:
        slots = [q.slot for q in questions[episode.episode_id]]
        given = [answers.get(slot, {}) for slot in slots]
        if not any(given):
            tiers[episode.episode_id] = (0, 0.0)
        elif any(_machines_disagree(a) for a in given):
            tiers[episode.episode_id] = (1, 0.0)
        else:
            score = max((_calibration_value(a, checked) for a in given), default=0.0)
            tiers[episode.episode_id] = (2, score) if score > 0 else (3, 0.0)
    order = sorted(
        episodes,
        key=lambda e: (
            tiers[e.episode_id][0],
            -tiers[e.episode_id][1],
            e.persona_id,
            e.scenario_id,
            e.trial,
            e.episode_id,
        ),
    )
    return Priority(tiers=tiers, order=[e.episode_id for e in order])


def _machines(answers: dict[str, Label]) -> list[Label]:
    return [label for label in answers.values() if label.labeler_kind in ("judge", "rule")]


def _machines_disagree(answers: dict[str, Label]) -> bool:
    machines = _machines(answers)
    split = any((label.spread or 0) > 0 for label in machines)
    return split or len({label.value for label in machines}) > 1


def _people_checked(answers: dict[Slot, dict[str, Label]]) -> Counter[tuple[str, str, bool]]:
    """(criterion, judge, the judge's verdict) -> slots people answered too."""
    checked: Counter[tuple[str, str, bool]] = Counter()
    for slot, given in answers.items():
        if people(given):
            for label in _machines(given):
                if label.labeler_kind == "judge" and label.passed is not None:
                    checked[slot[1], label.labeler, label.passed] += 1
    return checked


def _calibration_value(answers: dict[str, Label], checked: Counter[tuple[str, str, bool]]) -> float:
    """How much a person's answer here would add to the judges' calibration (0: nothing).

    A judge's true-positive and true-negative rates are measured on the slots people answered;
    the rate measured on fewer slots has the wider interval, so a slot whose judge verdict is
    of the rarer kind counts more: 1 / (1 + slots of that kind people already checked).
    """
    if people(answers):
        return 0.0
    return max(
        (
            1 / (1 + checked[label.criterion, label.labeler, label.passed])
            for label in _machines(answers)
            if label.labeler_kind == "judge" and label.passed is not None
        ),
        default=0.0,
    )


def build_queue(
    priority: Priority,
    questions: dict[str, list[Question]],
    answers: dict[Slot, dict[str, Label]],
    *,
    labeler: str,
    overlap: int = 1,
    adjudicate: bool = False,
    keep: set[str] | None = None,
) -> list[Item]:
    """The episodes ``labeler`` has to do (or did), in priority order.

    Args:
        priority: the order of every episode.
        questions: every question per episode id, already narrowed by the criterion filter.
        answers: every labeler's latest answer per slot.
        labeler: `human:NAME` (or `adjudicator:NAME` when adjudicating).
        overlap: how many people each episode goes to.
        adjudicate: ask only the questions people answered differently.
        keep: episode ids the filters let through (None: all).
    """
    items = []
    for episode_id in priority.order:
        if keep is not None and episode_id not in keep:
            continue
        asked = questions.get(episode_id, [])
        if adjudicate:
            asked = [q for q in asked if disputed(answers.get(q.slot, {}))]
        if not asked:
            continue
        mine = sum(labeler in answers.get(q.slot, {}) for q in asked)
        if not adjudicate and mine == 0 and _full(asked, answers, overlap):
            continue
        items.append(Item(episode_id, priority.tiers[episode_id][0], asked, mine))
    return items


def _full(asked: Sequence[Question], answers: dict[Slot, dict[str, Label]], overlap: int) -> bool:
    """Every question already has ``overlap`` people's answers."""
    return all(len(people(answers.get(q.slot, {}))) >= overlap for q in asked)
