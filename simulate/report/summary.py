"""The end-of-run summary: outcome counts, goal rates overall and per persona, the failures; and
the one table of failure kinds that both the summary and the report are built from.

Computed with polars lazily over the run's shards, so it costs little however big the run.
Goal rates leave out episodes that ended in target or simulator errors (`store.rated`).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from pydantic import BaseModel, ConfigDict

from simulate.schema import Status
from simulate.stats import Rate, population_rate, suite_rate
from simulate.store import RunFolder, rated


class PersonaRate(BaseModel):
    """One persona's goal rate."""

    model_config = ConfigDict(extra="forbid")

    persona_id: str
    n: int
    """Rated episodes of the persona."""
    successes: int
    goal_rate: float


class FailureKindCount(BaseModel):
    """How many failing episodes failed one way, and one of them."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    n: int
    example: str
    """An episode id."""


class FailureRow(BaseModel):
    """One failing episode."""

    model_config = ConfigDict(extra="forbid")

    episode_id: str
    persona_id: str
    scenario_id: str
    trial: int
    status: str
    reason: str | None
    failed_checks: list[str] | None


class RoleUsage(BaseModel):
    """Model calls, tokens and cost of one role over the episodes' `usage` rows."""

    model_config = ConfigDict(extra="forbid")

    role: str
    episodes: int
    """Episodes that have a row of this role."""
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    """None when a model of the role has no price."""


class RunSummary(BaseModel):
    """Headline figures of a run folder (`summarize_run`)."""

    model_config = ConfigDict(extra="forbid")

    episodes: int
    by_status: dict[str, int]
    rated: int
    """Episodes not ended by a target or simulator error: the goal rate's denominator."""
    successes: int
    goal_rate: float | None
    rate: Rate
    """The goal rate with its Wilson interval (every episode independent)."""
    rate_suite: Rate
    """The same rate with the suite interval: the same personas and scenarios again."""
    rate_population: Rate
    """The same rate with the population interval: similar users and tasks."""
    per_persona: list[PersonaRate]
    """Lowest goal rate first."""
    failure_kinds: list[FailureKindCount]
    failures: list[FailureRow]
    """The first failing episodes, by persona, scenario and trial."""
    n_failures: int
    usage_by_role: list[RoleUsage]
    """Users first; the agent's calls that named no episode are in `agent_calls_run_wide`."""
    agent_calls_run_wide: int


def failure_kinds(failures: pl.DataFrame) -> pl.DataFrame:
    """Failing episodes by what went wrong, one row per (kind, episode): how they ended (when
    not at the goal), each forbidden phrase said or expression matched, and, for episodes that
    ended at the goal, each unmet check. An episode that gave up and also leaked a forbidden
    phrase counts under both.

    ``failures`` needs `episode_id`, `persona_id`, `scenario_id`, `trial`, `status` and
    `failed_checks`; the result has `kind` and those ids, sorted by kind, persona, scenario, trial.
    """
    ids = ["episode_id", "persona_id", "scenario_id", "trial"]
    ended = failures.filter(pl.col("status") != Status.GOAL_REACHED.value).select(
        pl.col("status").alias("kind"), *ids
    )
    checks = failures.explode("failed_checks").filter(pl.col("failed_checks").is_not_null())
    checks = checks.filter(
        pl.col("failed_checks").str.starts_with("must_not_")
        | (pl.col("status") == Status.GOAL_REACHED.value)
    ).select(pl.col("failed_checks").alias("kind"), *ids)
    return pl.concat([ended, checks]).sort("kind", "persona_id", "scenario_id", "trial")


def count_failure_kinds(failures: pl.DataFrame, examples: int = 1) -> pl.DataFrame:
    """`failure_kinds` counted: `kind`, `n` and the first ``examples`` episode ids, most
    common first."""
    return (
        failure_kinds(failures)
        .group_by("kind", maintain_order=True)
        .agg(pl.len().alias("n"), pl.col("episode_id").head(examples).alias("examples"))
        .sort(["n", "kind"], descending=[True, False])
    )


def summarize_run(run_dir: str | Path, max_failures: int = 10) -> RunSummary:
    """Headline figures of a run folder (printed by the CLI, or as JSON)."""
    folder = RunFolder(run_dir)
    if not folder.has():
        return RunSummary(
            episodes=0,
            by_status={},
            rated=0,
            successes=0,
            goal_rate=None,
            rate=Rate.wilson(0, 0, empty="no episodes"),
            rate_suite=Rate.wilson(0, 0, empty="no episodes"),
            rate_population=Rate.wilson(0, 0, empty="no episodes"),
            per_persona=[],
            failure_kinds=[],
            failures=[],
            n_failures=0,
            usage_by_role=[],
            agent_calls_run_wide=0,
        )
    episodes = folder.scan_episodes()
    by_status = episodes.group_by("status").len().collect()
    per_persona = (
        episodes.filter(rated())
        .group_by("persona_id")
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
    cells = (
        episodes.filter(rated())
        .group_by("persona_id", "scenario_id")
        .agg(pl.len().alias("n"), pl.col("success").sum().alias("s"))
        .sort("persona_id", "scenario_id")
        .collect()
    )
    trials, passed = cells["n"].to_numpy(), cells["s"].to_numpy()
    personas = cells["persona_id"].rank("dense").to_numpy().astype(int) - 1
    scenarios = cells["scenario_id"].rank("dense").to_numpy().astype(int) - 1
    n_rated = int(per_persona["n"].sum())
    successes = int(per_persona["successes"].sum())
    kinds = count_failure_kinds(failures)
    return RunSummary(
        episodes=int(by_status["len"].sum()),
        by_status=dict(sorted(zip(by_status["status"], by_status["len"], strict=True))),
        rated=n_rated,
        successes=successes,
        goal_rate=successes / n_rated if n_rated else None,
        rate=Rate.wilson(successes, n_rated, empty="every episode ended in an error"),
        rate_suite=suite_rate(passed, trials),
        rate_population=population_rate(passed, trials, personas, scenarios),
        per_persona=[PersonaRate(**row) for row in per_persona.to_dicts()],
        failure_kinds=[
            FailureKindCount(kind=row["kind"], n=row["n"], example=row["examples"][0])
            for row in kinds.to_dicts()
        ],
        failures=[FailureRow(**row) for row in failures.head(max_failures).to_dicts()],
        n_failures=failures.height,
        usage_by_role=usage_by_role(folder),
        agent_calls_run_wide=agent_calls_run_wide(folder),
    )


ROLE_ORDER = ("user", "target", "agent", "judge", "generator")


def usage_by_role(folder: RunFolder) -> list[RoleUsage]:
    """Model calls, tokens and cost per role over the episodes' `usage` rows, users first.

    An agent's calls through the model proxy that named no episode are in no row:
    `agent_calls_run_wide`.
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
        rows.append(RoleUsage(**row))
    order = {role: i for i, role in enumerate(ROLE_ORDER)}
    rows.sort(key=lambda r: (order.get(r.role, len(order)), r.role))
    return rows


def agent_calls_run_wide(folder: RunFolder) -> int:
    """The agent's calls through the model proxy that named no episode (in no episode's row)."""
    llm = folder.manifest.llm
    return llm.agent_calls_run_wide if llm is not None else 0
