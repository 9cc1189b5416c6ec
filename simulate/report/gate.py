"""The sequential regression gate (`simulate run ... --baseline RUN --until-decided`): play the
run in rounds (round r plays trial r of every persona × scenario cell) and stop as soon as an
always-valid test decides "regression", "no regression larger than the margin", or the trials
run out. Its false alarms stay at or below ``alpha`` however often it looks.

The test, for the cells both runs share (`decide`):

- the new run's goal rate so far lies inside a time-uniform confidence sequence (Robbins'
  normal mixture, one-sided, Hoeffding's variance for [0, 1] outcomes: `stats.mixture_boundary`)
  at ``alpha / 2`` per side: valid at every round at once, so looking after each round costs
  nothing; it holds for outcomes whose chances differ from cell to cell;
- the baseline, which is fixed, lies inside Hoeffding's bound at ``alpha / 2`` per side;
- "regression": the new run's upper bound is below the baseline's lower bound. If the agent did
  not get worse, that needs one of the two bounds to fail: chance at most ``alpha``;
- "no regression larger than the margin": the new run's lower bound is above the baseline's
  upper bound minus ``margin`` (wrong, if the agent lost more than the margin, with chance at
  most ``alpha``).

The rates compared are per episode over the shared cells, so both runs should play every cell
alike (rounds do); target and simulator errors are left out, as everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from simulate.engines import one_cluster
from simulate.errors import ConfigError, RunFolderError
from simulate.runner import Tally
from simulate.schema import Episode, Model
from simulate.simulation import RunConfig, RunResult, prepare, run
from simulate.stats import hoeffding_bound, mixture_boundary, mixture_precision
from simulate.store import RunFolder, rated, write_atomic

GATE_FILE = "gate.json"
Decision = Literal["regression", "no regression larger than the margin", "undecided"]

METHOD = (
    "always-valid: the new run's rate in a one-sided normal-mixture confidence sequence "
    "(Robbins 1970; Howard et al. 2021) and the baseline's in Hoeffding's bound, alpha/2 each"
)


class Round(Model):
    """The gate after one round."""

    round: int
    episodes: int
    """Rated episodes of the new run so far, in the shared cells."""
    rate: float | None
    low: float
    """The new run's rate: lower end of its confidence sequence."""
    high: float
    decision: Decision


class GateResult(Model):
    """What `run_until_decided` did: its rounds, the baseline, the decision (`gate.json`)."""

    baseline: str
    baseline_rate: float
    baseline_low: float
    baseline_high: float
    baseline_episodes: int
    cells: int
    """Persona × scenario cells both runs have."""
    alpha: float
    margin: float
    max_rounds: int
    method: str = METHOD
    rounds: list[Round]
    decision: Decision
    stopped: str | None = None
    """Why the run stopped before the gate could decide (a spent budget, a replay miss)."""

    @property
    def regressed(self) -> bool:
        return self.decision == "regression"


@dataclass
class Gated:
    """The gate's result and the run's, its rounds' sessions taken together."""

    gate: GateResult
    result: RunResult


def check_gate(alpha: float, margin: float) -> None:
    """ConfigError for an alpha or a margin outside (0, 1)."""
    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha must be between 0 and 1 (exclusive), got {alpha!r}")
    if not 0 < margin < 1:
        raise ConfigError(f"--margin must be between 0 and 1 (exclusive), got {margin!r}")


def decide(
    baseline_successes: np.ndarray | int,
    baseline_n: int,
    successes: np.ndarray | int,
    n: int,
    max_n: int,
    *,
    alpha: float = 0.05,
    margin: float = 0.05,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The gate's test after ``n`` rated episodes of the new run (of at most ``max_n``).

    Returns the new run's bounds (low, high), whether it is a regression and whether it is
    no regression larger than ``margin``. Vectorised over ``successes`` (simulated runs).
    """
    rate = np.asarray(successes, dtype=float) / n
    base = baseline_successes / baseline_n
    slack = float(hoeffding_bound(baseline_n, alpha / 2))
    rho = mixture_precision(max_n / 4, alpha / 2)
    reach = mixture_boundary(n / 4, rho, alpha / 2) / n
    low, high = np.clip(rate - reach, 0, 1), np.clip(rate + reach, 0, 1)
    regression = high < base - slack
    fine = (low > base + slack - margin) & ~regression
    return low, high, regression, fine


def _cell_outcomes(folder: RunFolder) -> pl.DataFrame:
    return (
        folder.scan_episodes()
        .filter(rated())
        .select("persona_id", "scenario_id", "trial", "success")
        .collect()
    )


def baseline_cells(baseline: str | Path) -> pl.DataFrame:
    """The baseline's rated outcomes: persona, scenario, trial, success."""
    folder = RunFolder.open(baseline)
    if not folder.has():
        raise RunFolderError(f"--baseline {str(baseline)!r} holds no episodes")
    return _cell_outcomes(folder)


async def run_until_decided(
    config: RunConfig,
    baseline: str | Path,
    *,
    alpha: float = 0.05,
    margin: float = 0.05,
    on_round: Callable[[Round], Any] | None = None,
    on_start: Callable[[Any], Any] | None = None,
    on_episode: Callable[[Episode, Any], Any] | None = None,
) -> Gated:
    """Play ``config`` one trial of every cell at a time, up to ``config.trials`` rounds, and
    stop when the gate decides; the rounds and the decision go to ``RUN/gate.json``.

    Raises:
        ConfigError: a bad ``alpha`` or ``margin``.
        RunFolderError: the baseline is not a run, or shares no cell with this run's plan.
    """
    check_gate(alpha, margin)
    before = baseline_cells(baseline)
    planned = {(spec.persona.id, spec.scenario.id) for spec in prepare(config).specs}
    if not planned & set(before.select("persona_id", "scenario_id").iter_rows()):
        raise RunFolderError(  # said before a round is played, not after
            f"--baseline {str(baseline)!r} shares no persona × scenario cell with this run"
        )
    with one_cluster(config):  # with --engine ray, one cluster for every round
        return await _play_rounds(
            config, baseline, before, alpha, margin, on_round, on_start, on_episode
        )


async def _play_rounds(
    config: RunConfig,
    baseline: str | Path,
    before: pl.DataFrame,
    alpha: float,
    margin: float,
    on_round: Callable[[Round], Any] | None,
    on_start: Callable[[Any], Any] | None,
    on_episode: Callable[[Episode, Any], Any] | None,
) -> Gated:
    """`run_until_decided` once its options and the baseline (``before``) are checked."""
    rounds: list[Round] = []
    result: RunResult | None = None
    played = Tally()
    base: tuple[int, int] = (0, 0)
    cells = 0
    for number in range(1, config.trials + 1):
        session = config.model_copy(update={"resume": config.resume or number > 1})
        result = await run(session, on_start, on_episode, only_trials=number)
        _add(played, result.tally, first=number == 1)
        new = _cell_outcomes(RunFolder(config.out))
        shared = (
            new.select("persona_id", "scenario_id")
            .unique()
            .join(
                before.select("persona_id", "scenario_id").unique(),
                on=["persona_id", "scenario_id"],
            )
        )
        cells = shared.height
        base_rows = before.join(shared, on=["persona_id", "scenario_id"])
        new_rows = new.join(shared, on=["persona_id", "scenario_id"])
        base = (int(base_rows["success"].sum()), base_rows.height)
        n = new_rows.height
        if n == 0:  # nothing rated yet in a shared cell (the plan shares some: checked)
            continue
        low, high, regression, fine = decide(
            base[0],
            base[1],
            int(new_rows["success"].sum()),
            n,
            cells * config.trials,
            alpha=alpha,
            margin=margin,
        )
        decision: Decision = (
            "regression"
            if bool(regression)
            else "no regression larger than the margin"
            if bool(fine)
            else "undecided"
        )
        rounds.append(
            Round(
                round=number,
                episodes=n,
                rate=float(new_rows["success"].mean()),  # type: ignore[arg-type]
                low=float(low),
                high=float(high),
                decision=decision,
            )
        )
        if on_round:
            on_round(rounds[-1])
        if result.stopped or decision != "undecided":
            break
    slack = float(hoeffding_bound(max(base[1], 1), alpha / 2))
    base_rate = base[0] / base[1] if base[1] else 0.0
    gate = GateResult(
        baseline=str(baseline),
        baseline_rate=base_rate,
        baseline_low=max(0.0, base_rate - slack),
        baseline_high=min(1.0, base_rate + slack),
        baseline_episodes=base[1],
        cells=cells,
        alpha=alpha,
        margin=margin,
        max_rounds=config.trials,
        rounds=rounds,
        decision=rounds[-1].decision if rounds else "undecided",
        stopped=result.stopped if result else None,
    )
    folder = RunFolder(config.out)
    write_atomic(folder.path / GATE_FILE, json.dumps(gate.model_dump(mode="json"), indent=2))
    if gate.decision != "undecided" and len(rounds) < config.trials:

        def decided(manifest: Any) -> None:
            manifest.stopped_because = (
                f"the gate decided after {len(rounds)} of {config.trials} rounds: "
                f"{gate.decision}; --resume plays the rest"
            )

        folder.update_manifest(decided)
    assert result is not None  # config.trials >= 1: at least one round played
    result.tally = played
    return Gated(gate=gate, result=result)


def _add(total: Tally, session: Tally, first: bool) -> None:
    """Count one round's session into the whole run's tally (stored before: the first's)."""
    total.planned = session.planned
    if first:
        total.skipped = session.skipped
    total.statuses.update(session.statuses)
    total.successes += session.successes
    total.faulted += session.faulted
