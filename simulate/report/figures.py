"""The run report as plain data: rates with intervals, pass^k, slices worst first, label criteria,
failure examples with the turn where each went wrong, and simulator health.

Computed with polars lazily over the run's shards: the scan keeps a few numbers per episode
(status, turns, latency, tokens, cost), and only the handful of example transcripts are read
whole. `simulate report` prints it as tables, as JSON, and renders it to `report.html`.
"""

from __future__ import annotations

import ast
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy import stats as scipy_stats

from simulate.checks import matched_at
from simulate.errors import RunFolderError
from simulate.report.health import simulator_health
from simulate.report.summary import agent_calls_run_wide, usage_by_role
from simulate.schema import NOT_AGENT_FAULT, Episode, Manifest, Status, Usage
from simulate.stats import bootstrap_mean_interval, wilson_interval
from simulate.store import LABELS, RunFolder

CONFIDENCE = 0.95
BOOTSTRAP_MAX_N = 500
"""Means of up to this many values get a bootstrap (BCa) interval; above it the t interval,
as good at that size (the mean is near normal) and free, where a bootstrap per slice and figure
would dominate the report's time on a large run."""

EXCLUDED_FROM_GOAL_RATE = sorted(s.value for s in NOT_AGENT_FAULT)
GOAL_RATE_NOTE = (
    "goal rate = episodes that reached the goal with every success check holding, over "
    f"episodes not ended by {' or '.join(EXCLUDED_FROM_GOAL_RATE)} (not the agent's fault); "
    "95% Wilson intervals"
)
WORST_FIRST_NOTE = (
    "slices are sorted by the upper end of the goal rate's interval, lowest first: a slice comes "
    "first when the data say it is bad, not when a few episodes happened to fail"
)
FAULTS_NOTE = (
    "simulator faults are the simulated user's, not the agent's: breaking role, stating a fact "
    "it was not given, revealing the success checks, repeating itself, ending at a "
    "confirmation question; the goal rate without them leaves those episodes out"
)
MAX_MESSAGE_CHARS = 5_000
"""Characters of one message the report (and report.html) embeds; the run keeps them all."""
_MAX_RESULT_CHARS = 2000


def _rate(successes: int, n: int) -> dict[str, Any]:
    """A rate with its Wilson interval and n; value None when n is 0."""
    low, high = wilson_interval(successes, n, CONFIDENCE)
    return {
        "value": successes / n if n else None,
        "low": low,
        "high": high,
        "successes": successes,
        "n": n,
    }


def _mean(values: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """A mean with its interval (bootstrap BCa up to BOOTSTRAP_MAX_N values, else t) and n."""
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data)]
    n = int(data.size)
    if n == 0:
        return {"value": None, "low": None, "high": None, "n": 0, "method": None}
    mean = float(data.mean())
    if n <= BOOTSTRAP_MAX_N:
        interval = bootstrap_mean_interval(data, CONFIDENCE, resamples=1000)
        method = "bootstrap"
    else:
        half = float(scipy_stats.t.ppf((1 + CONFIDENCE) / 2, n - 1) * data.std(ddof=1) / n**0.5)
        interval, method = (mean - half, mean + half), "t"
    low, high = interval if interval else (None, None)
    return {"value": mean, "low": low, "high": high, "n": n, "method": method}


def scan_episode_figures(run_dir: str | Path) -> pl.LazyFrame:
    """One row of numbers per episode, lazily: the columns every slice is computed from."""
    tokens = pl.element().struct.field("prompt_tokens") + pl.element().struct.field(
        "completion_tokens"
    )
    role = pl.element().struct.field("role")
    return (
        RunFolder(run_dir)
        .scan_episodes()
        .select(
            "episode_id",
            "persona_id",
            "scenario_id",
            "trial",
            "status",
            "failed_checks",
            "success",
            (~pl.col("status").is_in(EXCLUDED_FROM_GOAL_RATE)).alias("rated"),
            "n_turns",
            "duration_s",
            pl.col("messages")
            .list.eval(pl.element().struct.field("latency_ms").drop_nulls())
            .list.mean()
            .alias("latency_ms"),
            pl.col("usage").list.eval(tokens).list.sum().alias("tokens"),
            pl.col("usage")
            .list.eval(pl.when(role == "target").then(tokens).otherwise(0))
            .list.sum()
            .alias("target_tokens"),
            pl.col("usage")
            .list.eval(pl.when(role == "user").then(tokens).otherwise(0))
            .list.sum()
            .alias("user_tokens"),
            pl.col("usage")
            .list.eval(pl.element().struct.field("cost_usd"))
            .list.sum()
            .alias("cost"),
            pl.col("usage")
            .list.eval(pl.element().struct.field("cost_usd").is_not_null())
            .list.any()
            .alias("priced"),
            pl.col("usage").list.len().alias("usage_rows"),
            pl.col("simulator_faults").list.len().fill_null(0).alias("n_faults"),
            pl.col("simulator_faults").is_not_null().alias("faults_checked"),
        )
    )


def _tags(run_dir: str | Path, column: str, id_column: str) -> dict[str, list[str]]:
    """Tags of every persona (or scenario) in the run, from the stored JSON, by id."""
    stored = (
        RunFolder(run_dir)
        .scan_episodes()
        .group_by(id_column)
        .agg(pl.col(column).unique().head(20))
        .collect()
    )
    tags: dict[str, list[str]] = {}
    for ident, texts in stored.iter_rows():
        found: set[str] = set()
        for text in texts:
            try:
                found.update(json.loads(text).get("tags") or [])
            except (json.JSONDecodeError, AttributeError):
                continue
        tags[ident] = sorted(found)
    return tags


def _slice(frame: pl.DataFrame, dimension: str, value: str, max_trials: int) -> dict[str, Any]:
    """Every figure of one slice of the run's episodes."""
    rated = frame.filter(pl.col("rated"))
    outcomes = dict(sorted(frame.group_by("status").len().iter_rows()))
    cells = (
        rated.group_by("persona_id", "scenario_id")
        .agg(pl.len().alias("n"), pl.col("success").sum().alias("c"))
        .select("n", "c")
        .rows()
    )
    curve = pass_hat_k_by_k(cells)
    priced = frame.filter(pl.col("priced"))
    with_usage = frame.filter(pl.col("usage_rows") > 0)
    clean = rated.filter(pl.col("n_faults") == 0)
    return {
        "dimension": dimension,
        "value": value,
        "episodes": frame.height,
        "outcomes": outcomes,
        "goal_rate": _rate(int(rated["success"].sum()), rated.height),
        "goal_rate_without_faults": _rate(int(clean["success"].sum()), clean.height),
        "faulted": int((frame["n_faults"] > 0).sum()),
        "pass_hat_k": {
            "cells": len(cells),
            "max_trials": max_trials,
            "values": {str(k): v for k, v in curve.items()},
        },
        "turns": _mean(frame["n_turns"].to_numpy()),
        "duration_s": _mean(frame["duration_s"].to_numpy()),
        "latency_ms": _mean(frame["latency_ms"].drop_nulls().to_numpy()),
        "tokens": _mean(with_usage["tokens"].to_numpy()) if with_usage.height else _mean([]),
        "target_tokens": int(frame["target_tokens"].fill_null(0).sum()),
        "user_tokens": int(frame["user_tokens"].fill_null(0).sum()),
        "cost_usd": {
            "total": float(priced["cost"].sum()) if priced.height else None,
            "per_episode": _mean(priced["cost"].to_numpy()),
        },
    }


def pass_hat_k_by_k(cells: Sequence[tuple[int, int]]) -> dict[int, float]:
    """Mean pass^k over cells of (trials, passes), for k from 1 to the fewest trials of a cell.

    The same figures as `stats.pass_hat_k_curve`, computed for every k at once: pass^k of a cell
    is the running product of (c - i) / (n - i) over i < k, so one cumulative product per cell
    gives its whole curve (a run with 100 trials per cell needs this to stay fast).
    """
    if not cells:
        return {}
    counts = np.asarray(cells, dtype=float)
    n, c = counts[:, :1], counts[:, 1:]
    steps = np.arange(int(n.min()))
    curves = np.cumprod(np.clip((c - steps) / (n - steps), 0.0, None), axis=1)
    return {int(k) + 1: float(v) for k, v in zip(steps, curves.mean(axis=0), strict=True)}


def pass_k_highlights(values: dict[str, float]) -> dict[str, float]:
    """A readable selection of a pass^k curve: k = 1, 2, 3, 5, 10, 20, 50, 100... and the last."""
    if not values:
        return {}
    last = max(int(k) for k in values)
    marks = {1, 2, 3, last} | {m for m in (5, 10, 20, 50, 100, 200, 500, 1000) if m < last}
    return {str(k): values[str(k)] for k in sorted(marks) if str(k) in values}


def _worst_first(slices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Slices with the lowest interval upper bound first; slices with nothing rated last."""

    def key(s: dict[str, Any]) -> tuple[Any, ...]:
        rate = s["goal_rate"]
        if not rate["n"]:
            return (1, 0.0, 0.0, 0, s["value"])
        return (0, rate["high"], rate["value"], -rate["n"], s["value"])

    return sorted(slices, key=key)


def _failure_kinds(failures: pl.DataFrame) -> pl.DataFrame:
    """Failing episodes by what went wrong: how they ended (when not at the goal), each
    forbidden phrase said or expression matched, and, for episodes that ended at the goal,
    each unmet check."""
    ended = failures.filter(pl.col("status") != Status.GOAL_REACHED.value).select(
        pl.col("status").alias("kind"), "episode_id", "persona_id", "scenario_id", "trial"
    )
    checks = failures.explode("failed_checks").filter(pl.col("failed_checks").is_not_null())
    checks = checks.filter(
        pl.col("failed_checks").str.starts_with("must_not_")
        | (pl.col("status") == Status.GOAL_REACHED.value)
    ).select(
        pl.col("failed_checks").alias("kind"), "episode_id", "persona_id", "scenario_id", "trial"
    )
    return pl.concat([ended, checks]).sort("kind", "persona_id", "scenario_id", "trial")


def _phrase(kind: str) -> str:
    """The phrase or tool of a check string like `must_not_mention: 'X'`."""
    try:
        return str(ast.literal_eval(kind.split(": ", 1)[1]))
    except (IndexError, ValueError, SyntaxError):
        return kind.split(": ", 1)[-1]


def locate_failure(episode: Episode, kind: str) -> dict[str, Any]:
    """The turn (index into `messages`) where an episode went wrong in the way ``kind`` names,
    and a sentence saying why that turn."""
    messages = episode.messages
    last = len(messages) - 1 if messages else None

    def last_of(role: str) -> int | None:
        return next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == role), last)

    if kind.startswith("must_not_mention"):
        phrase = _phrase(kind).casefold()
        for i, message in enumerate(messages):
            if message.role == "assistant" and phrase in message.content.casefold():
                return {"turn_index": i, "why": f"the agent said {_phrase(kind)!r}"}
        return {"turn_index": last, "why": f"{_phrase(kind)!r} was said"}
    if kind.startswith("must_not_match"):
        at = matched_at(messages, _phrase(kind))
        if at:
            return {"turn_index": at[0], "why": f"the agent's reply matched {_phrase(kind)!r}"}
        return {"turn_index": last, "why": f"{_phrase(kind)!r} matched"}
    if kind.startswith("must_match"):
        return {
            "turn_index": last_of("assistant"),
            "why": f"the agent's last reply; no reply matched {_phrase(kind)!r}",
        }
    if kind.startswith("must_mention"):
        return {
            "turn_index": last_of("assistant"),
            "why": f"the agent's last reply; it never said {_phrase(kind)!r} (outside a refusal)",
        }
    if kind.startswith("must_call_tools"):
        return {
            "turn_index": last_of("assistant"),
            "why": f"the agent's last reply; it never called {_phrase(kind)}",
        }
    if kind == Status.GAVE_UP.value:
        return {"turn_index": last_of("user"), "why": "the user gave up here"}
    if kind == Status.TARGET_ENDED.value:
        return {"turn_index": last_of("assistant"), "why": "the agent ended the conversation"}
    if kind == Status.MAX_TURNS.value:
        return {"turn_index": last, "why": "the turn limit was reached here"}
    return {"turn_index": last, "why": episode.outcome.reason or kind}


def _simulator_faults(frame: pl.DataFrame, run_dir: str | Path, examples: int) -> dict[str, Any]:
    """Episodes with simulator faults: how many, by kind, with examples (turn and evidence).

    `checked` counts the episodes that were checked for them (none in run folders written
    before Simulate recorded faults)."""
    faulted = int((frame["n_faults"] > 0).sum())
    rows = (
        RunFolder(run_dir)
        .scan_episodes()
        .select("episode_id", "persona_id", "scenario_id", "trial", "simulator_faults")
        .filter(pl.col("simulator_faults").list.len() > 0)
        .explode("simulator_faults")
        .unnest("simulator_faults")
        .sort("kind", "persona_id", "scenario_id", "trial", "turn")
        .collect()
    )
    kinds = []
    for (kind,), group in rows.group_by("kind", maintain_order=True):
        first = group.unique(subset="episode_id", keep="first", maintain_order=True)
        kinds.append(
            {
                "kind": kind,
                "episodes": first.height,
                "share": first.height / frame.height if frame.height else None,
                "examples": first.head(examples)
                .select("episode_id", "persona_id", "scenario_id", "trial", "turn", "evidence")
                .to_dicts(),
            }
        )
    return {
        "note": FAULTS_NOTE,
        "checked": int(frame["faults_checked"].sum()),
        "episodes": faulted,
        "share": _rate(faulted, frame.height),
        "kinds": sorted(kinds, key=lambda k: (-k["episodes"], k["kind"])),
    }


def _transcript(episode: Episode) -> dict[str, Any]:
    """An episode, as the report shows it: ids, outcome, and each message with its tool calls."""
    return {
        "episode_id": episode.episode_id,
        "persona_id": episode.persona_id,
        "scenario_id": episode.scenario_id,
        "trial": episode.trial,
        "status": episode.outcome.status.value,
        "reason": episode.outcome.reason,
        "failed_checks": episode.outcome.failed_checks,
        "success": episode.success,
        "n_turns": episode.n_turns,
        "messages": [
            {
                "index": i,
                "role": m.role,
                "content": clip_message(m.content),
                "latency_ms": m.latency_ms,
                "tool_calls": [
                    {
                        "name": call.name,
                        "arguments": _clip(json.dumps(call.arguments, ensure_ascii=False)),
                        "result": None
                        if call.result is None
                        else _clip(json.dumps(call.result, ensure_ascii=False, default=str)),
                    }
                    for call in m.tool_calls
                ],
            }
            for i, m in enumerate(episode.messages)
        ],
    }


def clip_message(text: str) -> str:
    """A message as the report embeds it: at most `MAX_MESSAGE_CHARS`, saying what was cut."""
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    cut = len(text) - MAX_MESSAGE_CHARS
    return f"{text[:MAX_MESSAGE_CHARS]} … [{cut:,} more characters: simulate show RUN --episode ID]"


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_RESULT_CHARS else text[:_MAX_RESULT_CHARS] + " …"


def _read_episodes(run_dir: str | Path, ids: set[str]) -> dict[str, Episode]:
    """Just the episodes named, read whole."""
    if not ids:
        return {}
    return {e.episode_id: e for e in RunFolder(run_dir).episodes(ids=ids)}


def _label_criteria(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every label criterion's pass rate by labeler kind, with interval; worst first.

    A unit judged more than once by the same labeler counts once, with its latest label.
    """
    folder = RunFolder(run_dir)
    if not folder.has(LABELS):
        return []
    unit = ["episode_id", "criterion", "turn_index", "tool_call_index", "labeler"]
    labels = (
        folder.scan(LABELS)
        .select(*unit, "labeler_kind", "passed", "score", "created_at")
        .sort("created_at")
        .unique(subset=unit, keep="last")
        .group_by("criterion", "labeler_kind")
        .agg(
            pl.len().alias("labels"),
            pl.col("passed").is_not_null().sum().alias("n"),
            pl.col("passed").sum().alias("passes"),
            pl.col("episode_id").n_unique().alias("episodes"),
            pl.col("labeler").unique().sort().alias("labelers"),
            pl.col("turn_index").is_not_null().any().alias("per_turn"),
            pl.col("score").mean().alias("mean_score"),
        )
        .collect()
    )
    rows = [
        {
            "criterion": r["criterion"],
            "labeler_kind": r["labeler_kind"],
            "labelers": r["labelers"],
            "unit": "turn" if r["per_turn"] else "episode",
            "labels": r["labels"],
            "episodes": r["episodes"],
            "mean_score": r["mean_score"],
            "pass_rate": _rate(int(r["passes"] or 0), int(r["n"])),
        }
        for r in labels.to_dicts()
    ]
    return sorted(
        rows,
        key=lambda r: (
            not r["pass_rate"]["n"],
            r["pass_rate"]["high"],
            r["criterion"],
            r["labeler_kind"],
        ),
    )


def _model_usage(manifest: Manifest) -> list[Usage]:
    """The latest session's model usage, when the manifest records one."""
    return manifest.last_session.model_usage if manifest.last_session else []


def build_report(run_dir: str | Path, examples_per_kind: int = 3) -> dict[str, Any]:
    """Every figure of the run report, as plain data (JSON-ready).

    Raises RunFolderError when ``run_dir`` is not a run folder or holds no episodes.
    """
    folder = RunFolder.open(run_dir)
    manifest = folder.manifest
    if not folder.has():
        raise RunFolderError(f"{str(run_dir)!r} holds no episodes yet; nothing to report")
    frame = scan_episode_figures(run_dir).collect()
    max_trials = int(
        frame.group_by("persona_id", "scenario_id").len()["len"].max() or 0  # type: ignore[arg-type]
    )
    persona_tags = _tags(run_dir, "persona", "persona_id")
    scenario_tags = _tags(run_dir, "scenario", "scenario_id")

    slices = [_slice(frame, "overall", "all", max_trials)]
    for dimension, column in (("persona", "persona_id"), ("scenario", "scenario_id")):
        for value in sorted(frame[column].unique().to_list()):
            slices.append(
                _slice(frame.filter(pl.col(column) == value), dimension, value, max_trials)
            )
    for dimension, column, tags in (
        ("persona tag", "persona_id", persona_tags),
        ("scenario tag", "scenario_id", scenario_tags),
    ):
        by_tag: dict[str, list[str]] = defaultdict(list)
        for ident, names in tags.items():
            for tag in names:
                by_tag[tag].append(ident)
        for tag in sorted(by_tag):
            subset = frame.filter(pl.col(column).is_in(by_tag[tag]))
            slices.append(_slice(subset, dimension, tag, max_trials))
    overall, rest = slices[0], slices[1:]

    failures = _failure_kinds(frame.filter(~pl.col("success")))
    kinds = (
        failures.group_by("kind", maintain_order=True)
        .agg(pl.len().alias("n"), pl.col("episode_id").head(examples_per_kind).alias("examples"))
        .sort(["n", "kind"], descending=[True, False])
    )
    health = simulator_health(run_dir)
    faults = _simulator_faults(frame, run_dir, examples_per_kind)
    wanted = {e for ids in kinds["examples"].to_list() for e in ids}
    wanted |= {e["episode_id"] for kind in faults["kinds"] for e in kind["examples"]}
    wanted |= {e["episode_id"] for rows in health["examples"].values() for e in rows}
    episodes = _read_episodes(run_dir, wanted)
    failure_kinds = []
    for row in kinds.to_dicts():
        examples = []
        for episode_id in row["examples"]:
            episode = episodes[episode_id]
            where = locate_failure(episode, row["kind"])
            turn = where["turn_index"]
            examples.append(
                {
                    "episode_id": episode_id,
                    "persona_id": episode.persona_id,
                    "scenario_id": episode.scenario_id,
                    "trial": episode.trial,
                    **where,
                    "excerpt": None if turn is None else _excerpt(episode.messages[turn].content),
                }
            )
        failure_kinds.append(
            {
                "kind": row["kind"],
                "agent_fault": row["kind"] not in EXCLUDED_FROM_GOAL_RATE,
                "n": row["n"],
                "share": row["n"] / frame.height,
                "examples": examples,
            }
        )
    return {
        "run": {
            "path": str(run_dir),
            "run_id": manifest.run_id,
            "status": manifest.status,
            # `running` with no live writer: killed, or its disk filled before it could say so
            "state": folder.state(),
            "created_at": manifest.created_at,
            "user": manifest.config.user,
            "target": manifest.config.target,
            # `counts` is written when a session ends; a killed run has only its `plan`.
            "planned": manifest.planned,
            "episodes": frame.height,
            "model_usage": [
                u.model_dump()
                for u in (manifest.last_session.model_usage if manifest.last_session else [])
            ],
        },
        "notes": {"goal_rate": GOAL_RATE_NOTE, "order": WORST_FIRST_NOTE},
        "overall": overall,
        "slices": _worst_first(rest),
        "turn_counts": dict(
            sorted((int(k), int(v)) for k, v in frame.group_by("n_turns").len().iter_rows())
        ),
        "usage_by_role": usage_by_role(folder),
        "agent_calls_run_wide": agent_calls_run_wide(folder),
        "labels": _label_criteria(run_dir),
        "failure_kinds": failure_kinds,
        "simulator_faults": faults,
        "health": health,
        "realism": _realism(run_dir),
        "transcripts": {e: _transcript(episodes[e]) for e in sorted(episodes)},
    }


def _realism(run_dir: str | Path) -> dict[str, Any] | None:
    """RUN/realism.json as plain data, when `simulate realism` measured the run."""
    from simulate.report.realism import load_realism

    report = load_realism(run_dir)
    return None if report is None else report.model_dump(mode="json")


def _excerpt(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def report_json(report: dict[str, Any]) -> str:
    """The report as JSON (NaN, which JSON lacks, becomes null)."""
    return json.dumps(_finite(report), indent=2, ensure_ascii=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
