"""One `simulate label`: rules and LLM judges over a run folder, written as they come.

Labels go to `labels/*.parquet` through a `ShardWriter` flushed at least every second, so a
killed labeling keeps what it wrote, and a re-run skips every unit already labeled by the same
labeler and rubric version. A unit the judge fails on (after the LLM layer's retries) is
reported and skipped; a spent budget or a replay miss stops the labeling cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import Field

from simulate.errors import ConfigError, LLMError, RunStopped, did_you_mean
from simulate.label import LabelKey, Unit, label_key, labeled_keys, unit_key, units_of
from simulate.label.judges import (
    SYSTEM_PROMPT,
    UNIT_PROMPT,
    FewShot,
    JudgeLabeler,
    excerpt,
    pick_examples,
    prompt_text,
)
from simulate.label.rubrics import load_rubric_specs
from simulate.label.rules import RuleLabeler, RuleLimits, rule_criteria
from simulate.llm.pool import EndpointFlags, LLMPool
from simulate.llm.settings import LLMSettings
from simulate.report.summary import scan_shards
from simulate.schema import NOT_AGENT_FAULT, Criterion, Episode, Label, Rubric, Usage
from simulate.store import (
    LABELS,
    ShardWriter,
    iter_episodes,
    now_iso,
    read_labels,
    read_manifest,
    shard_paths,
    write_manifest,
)

FLUSH_INTERVAL_S = 1.0
FLUSH_MAX_LABELS = 500
"""Rule labels come fast: flush a shard once this many are waiting."""

#: `--judge KIND:MODEL` kinds; only LLM judges so far.
JUDGES = {"llm": "an LLM judge, e.g. llm:gpt-4o-mini"}


class LabelConfig(EndpointFlags):
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
    stopped: str | None = None
    """Why the labeling stopped early (a spent budget, a replay miss), or None."""
    usage: list[Usage] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)
    """Per criterion and labeler over the whole folder: units, rated, passed, pass_rate."""


@dataclass
class _Plan:
    rules: list[Criterion]
    judged: list[tuple[Rubric, Criterion]]
    judge_spec: str | None


def judge_model(spec: str) -> str:
    """The model of a `--judge llm:MODEL` spec."""
    kind, sep, model = spec.partition(":")
    if not sep or kind not in JUDGES or not model:
        raise ConfigError(f"--judge {spec!r}: write llm:MODEL, e.g. --judge llm:gpt-4o-mini")
    return model


def _plan(config: LabelConfig) -> _Plan:
    """Check the run folder, rubrics, criteria and judge before anything is opened."""
    read_manifest(config.run_dir)
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
    result = LabelResult(run_dir=Path(config.run_dir))
    pool = LLMPool.from_config(config) if plan.judged else None
    judge_name, judge_llm = "", None
    if pool is not None:
        plan.judge_spec = plan.judge_spec or _default_judge(pool.settings)
        judge_name = judge_model(plan.judge_spec)
        judge_llm = pool.get(judge_name, "judge")
    done = labeled_keys(config.run_dir)
    writer = ShardWriter(config.run_dir, LABELS)

    def add(label: Label) -> None:
        writer.add(label)
        result.written += 1
        if on_label:
            on_label(label)

    flusher = asyncio.create_task(_flush_every_second(writer))
    try:
        if plan.rules:
            _label_with_rules(config, plan.rules, done, writer, add, result)
        if judge_llm is not None:
            examples = _human_examples(config, [c for _, c in plan.judged])
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
            await _label_with_judges(config, plan.judged, labelers, done, add, result)
    finally:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        writer.flush()
        if pool is not None:
            await pool.aclose()
            result.usage = pool.meter.as_usage_list()
        _record_session(config, plan, result)
    labelers_used = {f"rule:{c.id}" for c in plan.rules}
    if judge_llm is not None:
        labelers_used.add(f"judge:{judge_name}")
    result.summary = summarize_labels(
        config.run_dir, labelers_used, {c.id for c in plan.rules} | {c.id for _, c in plan.judged}
    )
    return result


def _default_judge(settings: LLMSettings) -> str:
    model = settings.models.get("judge")
    if not model:
        raise ConfigError(
            "--rubric needs a judge: --judge llm:MODEL (or `models: {judge: MODEL}` in the "
            "--llm-config file)"
        )
    return f"llm:{model}"


async def _flush_every_second(writer: ShardWriter) -> None:
    while True:
        await asyncio.sleep(FLUSH_INTERVAL_S)
        writer.flush()


def _label_with_rules(
    config: LabelConfig,
    criteria: Sequence[Criterion],
    done: set[LabelKey],
    writer: ShardWriter,
    add: Callable[[Label], None],
    result: LabelResult,
) -> None:
    labeler = RuleLabeler(config.limits)
    for episode in iter_episodes(config.run_dir):
        for criterion in criteria:
            for label in labeler.label_now(episode, criterion):
                if label_key(label) in done:
                    result.skipped += 1
                else:
                    add(label)
        if len(writer.buffer) >= FLUSH_MAX_LABELS:
            writer.flush()


async def _label_with_judges(
    config: LabelConfig,
    judged: Sequence[tuple[Rubric, Criterion]],
    labelers: dict[str, JudgeLabeler],
    done: set[LabelKey],
    add: Callable[[Label], None],
    result: LabelResult,
) -> None:
    """Judge every unit not labeled yet, ``config.concurrency`` at a time."""

    def todo() -> Iterator[tuple[JudgeLabeler, Episode, Criterion, Unit]]:
        for episode in iter_episodes(config.run_dir):
            for rubric, criterion in judged:
                labeler = labelers[rubric.id]
                if criterion.applies_to == "episode" and episode.outcome.status in NOT_AGENT_FAULT:
                    continue  # says nothing of the agent's quality (DESIGN): left out
                for unit in units_of(episode, criterion.applies_to):
                    key = unit_key(episode.episode_id, criterion.id, unit, labeler.name, rubric.ref)
                    if key in done:
                        result.skipped += 1
                    else:
                        yield labeler, episode, criterion, unit

    pending = todo()  # shared: each unit goes to exactly one worker
    stopped: list[RunStopped] = []

    async def worker() -> None:
        for labeler, episode, criterion, unit in pending:
            if stopped:
                return
            try:
                label = await labeler.label_unit(episode, criterion, unit)
            except RunStopped as exc:
                stopped.append(exc)
                return
            except LLMError as exc:
                result.failures.append(
                    f"episode {episode.episode_id}, {criterion.id}, {unit.describe()}: {exc}"
                )
                continue
            add(label)

    async with asyncio.TaskGroup() as group:
        for _ in range(config.concurrency):
            group.create_task(worker())
    if stopped:
        result.stopped = str(stopped[0])


def _human_examples(config: LabelConfig, criteria: Sequence[Criterion]) -> dict[str, list[FewShot]]:
    """Per criterion id, units people labeled in this run, as examples for the judge."""
    if config.human_examples == 0:
        return {}
    by_id = {c.id: c for c in criteria}
    people = sorted(
        (
            label
            for label in read_labels(config.run_dir)
            if label.labeler_kind == "human"
            and label.criterion in by_id
            and label.value in by_id[label.criterion].allowed_values()
        ),
        key=lambda label: (str(label_key(label)), label.created_at),
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
    episodes = {e.episode_id: e for e in iter_episodes(config.run_dir) if e.episode_id in wanted}
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


def summarize_labels(
    run_dir: str | Path, labelers: set[str] | None = None, criteria: set[str] | None = None
) -> list[dict[str, Any]]:
    """Per (criterion, labeler) in the folder: units labeled, rated (pass/fail), pass rate."""
    if not shard_paths(run_dir, LABELS):
        return []
    frame = scan_shards(run_dir, LABELS).select("criterion", "labeler", "passed")
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
    rows = table.to_dicts()
    for row in rows:
        row["pass_rate"] = row["passed"] / row["rated"] if row["rated"] else None
    return rows


def prompt_hashes() -> dict[str, str]:
    """Short hashes of the judge prompt templates, for the manifest."""
    return {
        name: hashlib.sha256(prompt_text(name).encode()).hexdigest()[:16]
        for name in (SYSTEM_PROMPT, UNIT_PROMPT)
    }


def record_labeling(run_dir: str | Path, entry: dict[str, Any]) -> None:
    """Append one labeling session's record to the manifest's `labeling` list."""
    manifest = read_manifest(run_dir)
    manifest.setdefault("labeling", []).append({"at": now_iso(), **entry})
    write_manifest(run_dir, manifest)


def _record_session(config: LabelConfig, plan: _Plan, result: LabelResult) -> None:
    judged = bool(plan.judged)
    record_labeling(
        config.run_dir,
        {
            "rules": [c.id for c in plan.rules],
            "limits": config.limits.model_dump() if plan.rules else None,
            "rubrics": sorted({r.ref for r, _ in plan.judged}),
            "criteria": [c.id for _, c in plan.judged],
            "judge": plan.judge_spec if judged else None,
            "samples": config.samples if judged else None,
            "prompt_hashes": prompt_hashes() if judged else None,
            "written": result.written,
            "skipped": result.skipped,
            "failed": len(result.failures),
            "stopped_because": result.stopped,
            "model_usage": [u.model_dump() for u in result.usage],
        },
    )
