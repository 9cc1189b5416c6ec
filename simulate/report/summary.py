"""The end-of-run summary: outcome counts, goal rates overall and per persona, the failures.

Computed with polars lazily over the run's shards, so it costs little however big the run.
Goal rates leave out episodes that ended in target or simulator errors (not the agent's fault).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from simulate.schema import NOT_AGENT_FAULT
from simulate.store import RunFolder


def summarize_run(run_dir: str | Path, max_failures: int = 10) -> dict[str, Any]:
    """Headline figures of a run folder, as plain data (printed by the CLI, or as JSON)."""
    folder = RunFolder(run_dir)
    if not folder.has():
        return {
            "episodes": 0,
            "by_status": {},
            "rated": 0,
            "successes": 0,
            "goal_rate": None,
            "per_persona": [],
            "failures": [],
            "usage_by_role": [],
            "agent_calls_run_wide": 0,
        }
    episodes = folder.scan_episodes()
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
        "usage_by_role": usage_by_role(folder),
        "agent_calls_run_wide": agent_calls_run_wide(folder),
    }


ROLE_ORDER = ("user", "target", "agent", "judge", "generator")


def usage_by_role(folder: RunFolder) -> list[dict[str, Any]]:
    """Model calls, tokens and cost per role over the episodes' `usage` rows, users first.

    Each row: role, episodes (that have a row of this role), calls, prompt_tokens,
    completion_tokens, cost_usd (None when a model of the role has no price, or the run holds
    no usage of it). An agent's calls through the model proxy that named no episode are in no
    row: `agent_calls_run_wide`.
    """
    table = (
        folder.scan_episodes()
        .select("episode_id", "usage")
        .explode("usage")
        .drop_nulls("usage")
        .unnest("usage")
        .group_by("role")
        .agg(
            pl.col("episode_id").n_unique().alias("episodes"),
            pl.col("calls").sum(),
            pl.col("prompt_tokens").sum(),
            pl.col("completion_tokens").sum(),
            pl.col("cost_usd").sum(),
            pl.col("cost_usd").is_null().any().alias("unpriced"),
        )
        .collect()
    )
    rows = []
    for row in table.to_dicts():
        unpriced = row.pop("unpriced")
        row["cost_usd"] = None if unpriced else row["cost_usd"]
        rows.append(row)
    order = {role: i for i, role in enumerate(ROLE_ORDER)}
    rows.sort(key=lambda r: (order.get(r["role"], len(order)), r["role"]))
    return rows


def agent_calls_run_wide(folder: RunFolder) -> int:
    """The agent's calls through the model proxy that named no episode (in no episode's row)."""
    llm = folder.manifest.llm
    return llm.agent_calls_run_wide if llm is not None else 0


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
