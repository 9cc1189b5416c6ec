"""How many episodes a goal rate "within ±margin" needs (`simulate plan-size`), for independent
episodes and, from a pilot run, for the clustering of persona × scenario cells.

The pilot's design effect (Kish) is the ratio of the goal rate's population variance (two-way
cluster-robust, `stats.two_way_cluster_variance`) to the binomial one at the same n. Trials
only shrink the within-cell part of that variance: with the pilot's personas and scenarios,
the between-cell part is a floor no number of trials goes below.

For similar users and tasks, personas and scenarios are crossed random effects: the variance
of the rate is σ²_persona/P + σ²_scenario/S + σ²_cell/(PS) + σ²_episode/(PST). Growing both P
and S k-fold divides the between-cell part by k (its main effects; the interaction falls
faster, so taking all of it as 1/k plans on the safe side) and the within-cell part by k², so
the plan is the smallest k that brings the variance to the margin's — not the Kish episodes
times the design effect, which a crossed design does not keep constant as it grows.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

from simulate.errors import RunFolderError
from simulate.schema import Model
from simulate.stats import (
    episodes_needed,
    episodes_needed_wilson,
    episodes_within,
    two_way_cluster_variance,
    within_cell_variance,
    z_value,
)
from simulate.store import RunFolder, rated


class Pilot(Model):
    """What a pilot run says about clustering."""

    path: str
    episodes: int
    """Rated episodes."""
    personas: int
    scenarios: int
    cells: int
    rate: float
    design_effect: float
    """Population variance of the goal rate over the binomial variance at the same n."""
    between_cell_variance: float
    """The part of the population variance that more trials of the same cells cannot remove."""
    within_cell_variance: float
    """Per-episode variance within cells (the suite question's)."""


class PlanSize(Model):
    """Episodes for a goal rate within ±margin (`plan_size`)."""

    margin: float
    confidence: float
    expected: float
    normal: int
    """Normal approximation, half-width only."""
    wilson: int
    """Wilson interval, half-width only."""
    within: int
    """Wilson interval with both ends within ±margin of the rate: the figure to plan with."""
    cells: int | None
    trials_per_cell: int | None
    """With ``cells`` persona × scenario cells and independent episodes."""
    pilot: Pilot | None = None
    clustered_episodes: int | None = None
    """Episodes for similar users and tasks: `clustered_personas` × `clustered_scenarios`
    shaped like the pilot (its cells' share of all pairs, its trials per cell)."""
    clustered_personas: int | None = None
    clustered_scenarios: int | None = None
    clustered_trials_per_cell: int | None = None
    """Trials per cell of the pilot's cells that reach ±margin; None when none do."""
    floor: float | None = None
    """The closest ± any number of trials of the pilot's cells reaches."""


def plan_size(
    margin: float,
    confidence: float = 0.95,
    expected: float | None = None,
    cells: int | None = None,
    pilot: str | Path | None = None,
) -> PlanSize:
    """Episodes for a goal rate within ±``margin``; with ``pilot``, for clustered runs too.

    Raises:
        RunFolderError: the pilot is not a run, or rated too little to measure clustering.
    """
    measured = None if pilot is None else read_pilot(pilot)
    if expected is None:  # the pilot's rate, else the worst case
        expected = 0.5 if measured is None else measured.rate
    normal = episodes_needed(margin, confidence, expected)
    wilson = episodes_needed_wilson(margin, confidence, expected)
    within = episodes_within(margin, confidence, expected)
    largest = max(normal, wilson, within)
    plan = PlanSize(
        margin=margin,
        confidence=confidence,
        expected=expected,
        normal=normal,
        wilson=wilson,
        within=within,
        cells=cells,
        trials_per_cell=-(-largest // cells) if cells else None,
    )
    if measured is None:
        return plan
    target = expected * (1 - expected) / within if 0 < expected < 1 else None
    trials = floor = None
    update: dict[str, object] = {"pilot": measured}
    if target is not None:
        z = z_value(confidence)
        floor = z * math.sqrt(measured.between_cell_variance)
        room = target - measured.between_cell_variance
        if room > 0:
            trials = max(1, math.ceil(measured.within_cell_variance / (measured.cells * room)))
        k = _growth(measured, target)
        per_cell = measured.episodes / measured.cells
        update |= {
            "clustered_personas": max(1, math.ceil(k * measured.personas)),
            "clustered_scenarios": max(1, math.ceil(k * measured.scenarios)),
            "clustered_episodes": max(within, math.ceil(k * k * measured.cells * per_cell)),
        }
    update |= {"clustered_trials_per_cell": trials, "floor": floor}
    return plan.model_copy(update=update)


def _growth(pilot: Pilot, target: float) -> float:
    """The k-fold growth of both personas and scenarios (at the pilot's trials per cell) whose
    variance, between/k + within/(k² × episodes), is the ``target`` variance."""
    a = pilot.within_cell_variance / pilot.episodes  # the within part at k = 1
    b = pilot.between_cell_variance
    if b <= 0:
        return math.sqrt(a / target)
    # a x² + b x = target in x = 1/k
    x = (-b + math.sqrt(b * b + 4 * a * target)) / (2 * a) if a > 0 else target / b
    return 1 / x


def read_pilot(path: str | Path) -> Pilot:
    """The clustering of a pilot run's goal rate."""
    folder = RunFolder.open(path)
    if not folder.has():
        raise RunFolderError(f"--pilot {str(path)!r} holds no episodes")
    cells = (
        folder.scan_episodes()
        .filter(rated())
        .group_by("persona_id", "scenario_id")
        .agg(pl.len().alias("n"), pl.col("success").sum().alias("s"))
        .sort("persona_id", "scenario_id")
        .collect()
    )
    n, s = cells["n"].to_numpy(), cells["s"].to_numpy()
    total = int(n.sum())
    rate = float(s.sum() / total) if total else 0.0
    personas = cells["persona_id"].rank("dense").to_numpy().astype(int) - 1
    scenarios = cells["scenario_id"].rank("dense").to_numpy().astype(int) - 1
    population, df = two_way_cluster_variance(s, n, personas, scenarios)
    within, within_df = within_cell_variance(s, n)
    missing = [
        why
        for why, lacking in (
            ("two or more personas or scenarios", df < 1),
            ("two or more rated trials in some cell (play it with --trials 2)", within_df <= 0),
            ("both passes and failures", not 0 < rate < 1),
        )
        if lacking
    ]
    if missing:
        raise RunFolderError(
            f"--pilot {str(path)!r} cannot show clustering: it needs {'; '.join(missing)}"
        )
    binomial = rate * (1 - rate) / total
    per_episode = float(within) * total
    return Pilot(
        path=str(path),
        episodes=total,
        personas=int(personas.max()) + 1,
        scenarios=int(scenarios.max()) + 1,
        cells=len(cells),
        rate=rate,
        design_effect=float(population) / binomial,
        between_cell_variance=max(0.0, float(population) - float(within)),
        within_cell_variance=per_episode,
    )


__all__ = ["Pilot", "PlanSize", "plan_size", "read_pilot"]
