"""One `simulate label`: rules and LLM judges over a run folder, written as they come.

One pass over the episodes hands every unit not labeled yet to its `Labeler` (rules and
judges alike) through the run's bounded work pool. Labels go to `labels/*.parquet` through the
folder's shard writer, so a killed labeling keeps what it wrote, and a re-run skips every unit
already labeled by the same labeler and rubric version. A unit the judge fails on (after the
LLM layer's retries) is reported and skipped; a spent budget or a replay miss stops the
labeling cleanly. With `--engine ray` the episodes are sharded over Ray workers, each running
the same loop (`label_units`) and writing label shards of its own (`engines/ray.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import Field

from simulate import prompts
from simulate.engines import EngineFlags, check_engine
from simulate.errors import ConfigError, LLMError, RunStopped, did_you_mean
from simulate.label import Labeler, Unit, unit_key, units_of
from simulate.label.judges import (
    SYSTEM_PROMPT,
    UNIT_PROMPT,
    FewShot,
    JudgeLabeler,
    excerpt,
    pick_examples,
)
from simulate.label.rubrics import load_rubric_specs
from simulate.label.rules import RuleLabeler, RuleLimits, rule_criteria
from simulate.llm import model_spec
from simulate.llm.cassette import record_calls
from simulate.llm.pool import EndpointFlags, LLMPool
from simulate.llm.settings import LLMSettings
from simulate.runner import run_bounded
from simulate.schema import (
    Criterion,
    Episode,
    Label,
    LabelingRecord,
    LabelKey,
    Model,
    Rubric,
    Usage,
    is_rated,
)
from simulate.store import LABELS, RunFolder, ShardWriter


class LabelConfig(EndpointFlags, EngineFlags):
    """Everything one labeling session does."""

    run_dir: str
    rubrics: list[str] = Field(default_factory=list)
    """Rubric files or shipped rubric names, judged by `judge`."""
    judge: str | None = None
    """`llm:MODEL`; default: the config file's `models.judge`."""
    samples: int = Field(1, ge=1)
    """Answers asked per unit; the label keeps the majority."""
    rules: bool = True
    """Label with the deterministic rules too."""
    criteria: list[str] = Field(default_factory=list)
    """Only these criterion ids (rules' and rubrics'); empty: all."""
    concurrency: int = Field(8, ge=1)
    """Units judged at once."""
    human_examples: int = Field(3, ge=0)
    """People's labels shown to the judge as examples, per criterion."""
    limits: RuleLimits = Field(default_factory=RuleLimits)


@dataclass
class LabelResult:
    """What a labeling session did."""

    run_dir: Path
    written: int = 0
    """Labels written by this session."""
    skipped: int = 0
    """Units already labeled by the same labeler and rubric version."""
    failures: list[str] = field(default_factory=list)
    """One line per unit the judge failed on (not labeled; a re-run tries again)."""
    judged: int = 0
    """Units the judge answered in this session."""
    stopped: str | None = None
    """Why the labeling stopped early (a spent budget, a replay miss), or None."""
    usage: list[Usage] = field(default_factory=list)
    endpoints: dict[str, str] = field(default_factory=dict)
    """The judge's endpoint host."""
    summary: list[CriterionTally] = field(default_factory=list)
    """Per criterion and labeler over the whole folder."""


@dataclass
class _Plan:
    rules: list[Criterion]
    judged: list[tuple[Rubric, Criterion]]
    judge_spec: str | None


BREAKER_FAILURES = 10
"""Judged units that fail in a row, before any succeeds, that stop a labeling: an endpoint
that always fails (or hangs to its timeout) should not be asked about every unit."""


class JudgeUnreachable(LLMError):
    """The judge failed on the first units in a row; the labeling stopped."""


@dataclass
class _FailureStreak:
    """Counts failures in a row before the first success; trips after `BREAKER_FAILURES`."""

    failures: int = 0
    succeeded: bool = False

    def answered(self) -> None:
        self.succeeded = True

    def failed(self, why: str) -> None:
        self.failures += 1
        if not self.succeeded and self.failures >= BREAKER_FAILURES:
            raise JudgeUnreachable(
                f"the judge failed on the first {self.failures} units in a row (last: {why}); "
                "check the endpoint and the model, then run the same command again"
            )


@dataclass(frozen=True)
class Assignment:
    """A criterion and who labels it: the labeler, its id on labels, and the rubric."""

    criterion: Criterion
    labeler: Labeler
    labeler_id: str
    rubric: str | None = None


def judge_model(spec: str) -> str:
    """The model of a `--judge` spec (`MODEL`, `backend:MODEL` or `llm:MODEL`)."""
    return model_spec("--judge", spec)


def _plan(config: LabelConfig) -> _Plan:
    """Check the run folder, rubrics, criteria and judge before anything is opened."""
    check_engine(config)
    RunFolder.open(config.run_dir)
    rubrics = load_rubric_specs(config.rubrics)
    rules = rule_criteria(config.limits) if config.rules else []
    judged = [(r, c) for r in rubrics for c in r.criteria]
    if config.criteria:
        known = [c.id for c in rules] + [c.id for _, c in judged]
        for wanted in config.criteria:
            if wanted not in known:
                raise ConfigError(
                    f"--criterion {wanted!r} is not in the rules or rubrics given"
                    f"{did_you_mean(wanted, known)}; known: {', '.join(known)}"
                )
        rules = [c for c in rules if c.id in config.criteria]
        judged = [(r, c) for r, c in judged if c.id in config.criteria]
    if config.judge is not None:
        judge_model(config.judge)
        if not rubrics:
            raise ConfigError("--judge needs a rubric: --rubric FILE_OR_NAME (e.g. support)")
    return _Plan(rules=rules, judged=judged, judge_spec=config.judge)


async def label_run(
    config: LabelConfig, on_label: Callable[[Label], Any] | None = None
) -> LabelResult:
    """Label a run folder with rules and judges; resumable, and safe to cancel.

    Raises:
        ConfigError: a bad rubric, criterion, judge or endpoint setting (nothing is written).
        RunFolderError: ``config.run_dir`` is not a run folder.
    """
    plan = _plan(config)
    folder = RunFolder.open(config.run_dir)
    with folder.lock("labels", "simulate label"):
        return await _label(folder, config, plan, on_label)


async def _label(
    folder: RunFolder,
    config: LabelConfig,
    plan: _Plan,
    on_label: Callable[[Label], Any] | None,
) -> LabelResult:
    """`label_run` with the folder's labels lock held."""
    result = LabelResult(run_dir=folder.path)
    pool = LLMPool.from_config(config) if plan.judged else None
    judge_name = None
    try:
        if pool is not None:
            plan.judge_spec = plan.judge_spec or _default_judge(pool.settings)
            judge_name = judge_model(plan.judge_spec)
        if config.engine == "ray":  # units sharded over a cluster; the workers write labels
            from simulate.engines.ray import label_on_ray

            await label_on_ray(config, plan, folder, result, on_label, pool)
        else:
            assignments = make_assignments(config, folder, plan, pool)
            todo = _todo(folder, assignments, folder.label_keys(), result)
            async with folder.writer(LABELS) as writer:
                await label_units(todo, writer, result, config.concurrency, on_label)
    finally:
        if pool is not None:
            await pool.aclose()
            result.usage = pool.meter.as_usage_list()
            result.endpoints = dict(pool.endpoints())
            record_calls(folder.path, pool.used_keys())
        _record_session(folder, config, plan, result)
    labelers_used = {f"rule:{c.id}" for c in plan.rules}
    if judge_name is not None:
        labelers_used.add(f"judge:{judge_name}")
    result.summary = summarize_labels(
        folder.path, labelers_used, {c.id for c in plan.rules} | {c.id for _, c in plan.judged}
    )
    return result


def make_assignments(
    config: LabelConfig, folder: RunFolder, plan: _Plan, pool: LLMPool | None
) -> list[Assignment]:
    """Who labels each criterion: the rules, then the judge (with ``pool``'s model)."""
    assignments = [Assignment(c, RuleLabeler(config.limits), f"rule:{c.id}") for c in plan.rules]
    if pool is not None and plan.judge_spec is not None:
        judge_name = judge_model(plan.judge_spec)
        assignments += _judge_assignments(config, folder, plan, pool, judge_name)
    return assignments


async def label_units(
    todo: Iterable[tuple[Assignment, Episode, Unit]],
    writer: ShardWriter,
    result: LabelResult,
    concurrency: int,
    on_label: Callable[[Label], Any] | None = None,
) -> None:
    """Label every unit of ``todo`` through the bounded pool into ``writer`` (open), counting
    in ``result``: a unit the judge fails on is noted and skipped, a run of failures before any
    answer raises JudgeUnreachable, a spent budget or a replay miss ends it (``stopped``)."""
    streak = _FailureStreak()

    def store(label: Label | None) -> None:
        if label is not None:
            writer.add(label)
            result.written += 1
            if on_label:
                on_label(label)

    async def work(item: tuple[Assignment, Episode, Unit]) -> Label | None:
        assignment, episode, unit = item
        try:
            label = await assignment.labeler.label(episode, assignment.criterion, unit)
        except LLMError as exc:
            if isinstance(exc, RunStopped):
                raise
            result.failures.append(
                f"episode {episode.episode_id}, {assignment.criterion.id}, {unit.describe()}: {exc}"
            )
            streak.failed(result.failures[-1])
            return None
        if isinstance(assignment.labeler, JudgeLabeler):
            streak.answered()
            result.judged += 1
        return label

    try:
        await run_bounded(todo, work, concurrency=concurrency, on_done=store)
    except RunStopped as exc:
        result.stopped = str(exc)


def _judge_assignments(
    config: LabelConfig, folder: RunFolder, plan: _Plan, pool: LLMPool, judge_name: str
) -> list[Assignment]:
    """One assignment per judged criterion, each rubric's judge shown people's examples."""
    judge_llm = pool.get(judge_name, "judge")
    examples = _human_examples(config, folder, [c for _, c in plan.judged])
    labelers = {
        rubric.id: JudgeLabeler(
            judge_llm,
            judge_name,
            rubric,
            samples=config.samples,
            human_examples=examples,
            max_human_examples=config.human_examples,
        )
        for rubric, _ in plan.judged
    }
    return [Assignment(c, labelers[r.id], labelers[r.id].name, r.ref) for r, c in plan.judged]


def _default_judge(settings: LLMSettings) -> str:
    model = settings.models.get("judge")
    if not model:
        raise ConfigError(
            "--rubric needs a judge: --judge llm:MODEL (or `models: {judge: MODEL}` in the "
            "--llm-config file)"
        )
    return f"llm:{model}"


def _todo(
    folder: RunFolder,
    assignments: Sequence[Assignment],
    done: set[LabelKey],
    result: LabelResult,
    ids: set[str] | None = None,
) -> Iterator[tuple[Assignment, Episode, Unit]]:
    """Every unit not labeled yet, in one pass over the episodes (those of ``ids``)."""
    for episode in folder.episodes(ids=ids):
        for assignment in assignments:
            criterion = assignment.criterion
            if criterion.applies_to == "episode" and not is_rated(episode.outcome.status):
                continue  # says nothing of the agent's quality (DESIGN): left out
            for unit in units_of(episode, criterion.applies_to):
                key = unit_key(
                    episode.episode_id,
                    criterion.id,
                    unit,
                    assignment.labeler_id,
                    assignment.rubric,
                )
                if key in done:
                    result.skipped += 1
                else:
                    yield assignment, episode, unit


def _human_examples(
    config: LabelConfig, folder: RunFolder, criteria: Sequence[Criterion]
) -> dict[str, list[FewShot]]:
    """Per criterion id, units people labeled in this run, as examples for the judge."""
    if config.human_examples == 0:
        return {}
    by_id = {c.id: c for c in criteria}
    people = sorted(
        (
            label
            for label in folder.labels()
            if label.labeler_kind == "human"
            and label.criterion in by_id
            and label.value in by_id[label.criterion].allowed_values()
        ),
        key=lambda label: (str(label.key), label.created_at),
    )
    # one spare per criterion, for when the episode being judged is among them
    picked = {
        criterion_id: pick_examples(
            [label for label in people if label.criterion == criterion_id],
            config.human_examples + 1,
        )
        for criterion_id in by_id
    }
    wanted = {label.episode_id for labels in picked.values() for label in labels}
    if not wanted:
        return {}
    episodes = {e.episode_id: e for e in folder.episodes(ids=wanted)}
    return {
        criterion_id: [
            FewShot(
                episode_id=label.episode_id,
                text=excerpt(
                    episodes[label.episode_id], Unit(label.turn_index, label.tool_call_index)
                ),
                value=label.value,
                why=label.rationale,
            )
            for label in labels
            if label.episode_id in episodes
        ]
        for criterion_id, labels in picked.items()
    }


class CriterionTally(Model):
    """One labeler's labels of one criterion in a run folder."""

    criterion: str
    labeler: str
    units: int
    """Units labeled."""
    rated: int
    """Units with a pass or a fail."""
    passed: int
    pass_rate: float | None
    """passed / rated; None when nothing is rated."""


def summarize_labels(
    run_dir: str | Path, labelers: set[str] | None = None, criteria: set[str] | None = None
) -> list[CriterionTally]:
    """Per (criterion, labeler) in the folder: units labeled, rated (pass/fail), pass rate."""
    folder = RunFolder(run_dir)
    if not folder.has(LABELS):
        return []
    frame = folder.scan(LABELS).select("criterion", "labeler", "passed")
    if labelers is not None:
        frame = frame.filter(pl.col("labeler").is_in(sorted(labelers)))
    if criteria is not None:
        frame = frame.filter(pl.col("criterion").is_in(sorted(criteria)))
    table = (
        frame.group_by("criterion", "labeler")
        .agg(
            units=pl.len(),
            rated=pl.col("passed").is_not_null().sum(),
            passed=pl.col("passed").cast(pl.Int64).sum(),
        )
        .sort("criterion", "labeler")
        .collect()
    )
    return [
        CriterionTally(**row, pass_rate=row["passed"] / row["rated"] if row["rated"] else None)
        for row in table.to_dicts()
    ]


def prompt_hashes() -> dict[str, str]:
    """Short hashes of the judge prompt templates, for the manifest."""
    return {name: prompts.digest(prompts.text(name)) for name in (SYSTEM_PROMPT, UNIT_PROMPT)}


def _record_session(
    folder: RunFolder, config: LabelConfig, plan: _Plan, result: LabelResult
) -> None:
    judged = bool(plan.judged)
    folder.record_labeling(
        LabelingRecord(
            rules=[c.id for c in plan.rules],
            limits=config.limits.model_dump() if plan.rules else None,
            rubrics=sorted({r.ref for r, _ in plan.judged}),
            criteria=[c.id for _, c in plan.judged],
            judge=plan.judge_spec if judged else None,
            samples=config.samples if judged else None,
            prompt_hashes=prompt_hashes() if judged else None,
            written=result.written,
            skipped=result.skipped,
            failed=len(result.failures),
            stopped_because=result.stopped,
            model_usage=result.usage,
            endpoints=result.endpoints,
        )
    )
