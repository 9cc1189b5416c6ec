"""The end-of-run summary: outcome counts, goal rates overall and per persona, the failures.

Computed with polars lazily over the run's shards, so it costs little however big the run.
Goal rates leave out episodes that ended in target or simulator errors (not the agent's fault).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from simulate.schema import NOT_AGENT_FAULT
from simulate.store import EPISODES, polars_schema, shard_paths


def scan_shards(run_dir: str | Path, kind: str = EPISODES) -> pl.LazyFrame:
    """The run's shards of ``kind`` as one lazy frame (the run must have some).

    The files are listed, not globbed by polars, so a run folder named `runs/[v1]` works;
    columns a shard lacks (written by an older version) are read as null.
    """
    return pl.scan_parquet(
        [str(p) for p in shard_paths(run_dir, kind)],
        glob=False,
        schema=polars_schema(kind),
        missing_columns="insert",
    )


def scan_episodes(run_dir: str | Path) -> pl.LazyFrame:
    """The run's episodes as a lazy frame, with `status`, `reason` and `failed_checks` lifted."""
    return scan_shards(run_dir).with_columns(
        pl.col("outcome").struct.field("status").alias("status"),
        pl.col("outcome").struct.field("reason").alias("reason"),
        pl.col("outcome").struct.field("failed_checks").alias("failed_checks"),
    )


def summarize_run(run_dir: str | Path, max_failures: int = 10) -> dict[str, Any]:
    """Headline figures of a run folder, as plain data (printed by the CLI, or as JSON)."""
    if not shard_paths(run_dir):
        return {
            "episodes": 0,
            "by_status": {},
            "rated": 0,
            "successes": 0,
            "goal_rate": None,
            "per_persona": [],
            "failures": [],
        }
    episodes = scan_episodes(run_dir)
    rated = episodes.filter(~pl.col("status").is_in([s.value for s in NOT_AGENT_FAULT]))
    by_status = episodes.group_by("status").len().collect()
    per_persona = (
        rated.group_by("persona_id")
        .agg(pl.len().alias("n"), pl.col("success").sum().alias("successes"))
        .with_columns((pl.col("successes") / pl.col("n")).alias("goal_rate"))
        .sort(["goal_rate", "persona_id"])
        .collect()
    )
    failures = (
        episodes.filter(~pl.col("success"))
        .select(
            "episode_id", "persona_id", "scenario_id", "trial", "status", "reason", "failed_checks"
        )
        .sort(["persona_id", "scenario_id", "trial"])
        .collect()
    )
    n_rated = int(per_persona["n"].sum())
    successes = int(per_persona["successes"].sum())
    return {
        "episodes": int(by_status["len"].sum()),
        "by_status": dict(sorted(zip(by_status["status"], by_status["len"], strict=True))),
        "rated": n_rated,
        "successes": successes,
        "goal_rate": successes / n_rated if n_rated else None,
        "per_persona": per_persona.to_dicts(),
        "failure_kinds": _failure_kinds(failures),
        "failures": failures.head(max_failures).to_dicts(),
        "n_failures": failures.height,
    }


def _failure_kinds(failures: pl.DataFrame) -> list[dict[str, Any]]:
    """Failures grouped by what went wrong: how the episode ended, and each leak-type check.

    An episode that gave up and also leaked a forbidden phrase counts under both.
    """
    ended = failures.filter(pl.col("status") != "goal_reached").select(
        pl.col("status").alias("kind"), "episode_id"
    )
    violated = (
        failures.explode("failed_checks")
        .filter(pl.col("failed_checks").str.starts_with("must_not_"))
        .select(pl.col("failed_checks").alias("kind"), "episode_id")
    )
    unmet = failures.filter(
        (pl.col("status") == "goal_reached")
        & pl.col("failed_checks")
        .list.eval(pl.element().str.starts_with("must_not"))
        .list.all()
        .not_()
    ).select(pl.lit("goal_reached, checks unmet").alias("kind"), "episode_id")
    kinds = (
        pl.concat([ended, violated, unmet])
        .group_by("kind")
        .agg(pl.len().alias("n"), pl.col("episode_id").first().alias("example"))
        .sort(["n", "kind"], descending=[True, False])
    )
    return kinds.to_dicts()
