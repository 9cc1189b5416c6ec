"""The noise floor (`simulate calibrate`): one configuration played R times with seeds seed,
seed + 1, ..., to measure how far the goal rate moves between identical runs, how often
`simulate compare` raises a false alarm between them, and so the smallest difference worth
trusting for this agent and this many episodes.

Repeats go to ``DIR/repeat-1`` ... ``DIR/repeat-R``, each an ordinary run folder; the figures go
to ``DIR/calibration.json``. With ``resume`` a killed calibration reuses every finished repeat
and completes a partial one.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.optimize import brentq
from scipy.stats import binom, chi2, norm
from statsmodels.stats.power import NormalIndPower

from simulate.engines import one_cluster
from simulate.errors import ConfigError, RunAborted, RunFolderError, RunStopped
from simulate.report.compare import check_options, compare_runs, load_outcomes
from simulate.runner import Tally
from simulate.schema import Episode
from simulate.simulation import RunConfig, run
from simulate.stats import wilson_interval
from simulate.store import MANIFEST, rated, write_atomic

CALIBRATION = "calibration.json"
POWER = 0.8


def repeat_folder(out: str | Path, index: int) -> Path:
    """The run folder of repeat ``index`` (from 1)."""
    return Path(out) / f"repeat-{index}"


def repeat_configs(config: RunConfig, repeats: int) -> list[RunConfig]:
    """The R run configurations of a calibration into ``config.out``: seeds seed, seed + 1, ...

    A repeat folder that already holds a run is resumed (finished repeats play nothing), which
    ``config.resume`` must allow; a folder holding anything else is refused.
    """
    if repeats < 2:
        raise ConfigError(f"--repeats must be at least 2 to measure a spread, got {repeats!r}")
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {str(out)!r} is a file, not a folder")
    started = [i for i in range(1, repeats + 1) if (repeat_folder(out, i) / MANIFEST).is_file()]
    if started and not config.resume:
        raise RunFolderError(
            f"--out {str(out)!r} already holds a calibration; pass --resume to reuse its "
            "finished repeats, or choose another --out"
        )
    foreign = [
        p.name
        for p in (out.iterdir() if out.is_dir() else [])
        if not (
            p.name == CALIBRATION
            or (p.name.startswith(f".{CALIBRATION}.") and p.name.endswith(".tmp"))
            or (p.is_dir() and p.name.startswith("repeat-"))
        )
    ]
    if foreign:
        raise RunFolderError(
            f"--out {str(out)!r} is not empty and is not a calibration folder "
            f"(holds {foreign[0]!r})"
        )
    name = config.name or out.resolve().name
    return [
        config.model_copy(
            update={
                "out": str(repeat_folder(out, i)),
                "seed": config.seed + i - 1,
                "name": f"{name}-repeat-{i}",
                "resume": i in started,
            }
        )
        for i in range(1, repeats + 1)
    ]


@dataclass(frozen=True)
class RepeatRate:
    """One repeat's goal rate."""

    path: str
    seed: int | None
    episodes: int
    rated: int
    """Episodes that did not end in a target or simulator error."""
    successes: int
    goal_rate: float | None


@dataclass(frozen=True)
class PairCheck:
    """`simulate compare` between two repeats: any significant change is a false alarm."""

    first: str
    second: str
    difference: float
    """Goal rate of ``second`` minus ``first``, on their shared rated episodes."""
    p_value: float
    """Compare's primary test (CMH over cells: the repeats play other seeds)."""
    compared: int
    """Matched pairs of episodes (same persona, scenario and trial) rated in both repeats."""
    discordant: int
    """Pairs whose outcome differs between the two repeats."""
    flagged: list[str]
    """Overall or slices with a significant change: what would trip `--fail-on-regression`
    with the runs in one order or the other."""


@dataclass(frozen=True)
class Calibration:
    """How much the goal rate moves between identical runs, and what that means for compare."""

    folder: str
    alpha: float
    correction: str
    repeats: list[RepeatRate]
    mean_rate: float
    """Successes over rated episodes, all repeats pooled."""
    episodes_per_run: float
    """Rated episodes per repeat, on average: the n every figure below is for."""
    sd: float
    """Standard deviation of the repeats' goal rates."""
    min_rate: float
    max_rate: float
    binomial_sd: float
    """What ``sd`` would be if every episode were an independent coin with the mean rate."""
    pairs: list[PairCheck]
    false_alarms: int
    """Pairs of repeats that compare finds significantly different (overall or a slice)."""
    false_alarm_rate: float
    overall_false_alarms: int
    """Pairs whose overall difference alone is significant."""
    noise_95: float
    """``1.96 · √2 · sd``: 95% of differences between two identical runs are smaller."""
    discordance: float
    """Share of matched pairs whose outcome differs between two repeats, on average."""
    minimum_detectable_drop: float | None
    """The smallest drop from ``mean_rate`` compare's primary (paired) test detects with 80%
    power at ``alpha``, given ``discordance`` (None when no drop is detectable)."""
    minimum_detectable_drop_independent: float | None
    """The same for a two-proportion test, as if the runs shared no conversations."""
    smallest_trusted_difference: float | None
    """The larger of ``noise_95`` and ``minimum_detectable_drop`` (None: no drop is
    detectable at this n)."""
    sd_interval: tuple[float, float] = (0.0, 0.0)
    """95% interval of ``sd`` (chi-square, from R repeats: wide when R is small)."""
    noise_95_interval: tuple[float, float] = (0.0, 0.0)
    """``noise_95`` at the ends of ``sd_interval``."""
    false_alarm_interval: tuple[float, float] = (0.0, 1.0)
    """95% Wilson interval of ``false_alarm_rate`` (the pairs share repeats: a rough one)."""
    slices: tuple[SliceDetectable, ...] = ()
    """Per persona and scenario: the smallest drop compare detects there, least first."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as written to calibration.json."""
        return asdict(self)


def minimum_detectable_drop(
    rate: float, n: float, alpha: float = 0.05, power: float = POWER
) -> float | None:
    """Smallest drop from ``rate`` that a two-sided two-proportion test between two runs of
    ``n`` episodes each detects with ``power`` at ``alpha``.

    The effect size is Cohen's h (arcsine: ``2 asin √p1 - 2 asin √p2``) solved with statsmodels
    ``NormalIndPower``; None when even a drop to 0 is not detectable. Compare's primary test is
    paired, and detects somewhat smaller drops when outcomes repeat across runs.
    """
    if not 0 <= rate <= 1 or n <= 0:
        raise ValueError(f"need 0 <= rate <= 1 and n > 0, got rate={rate!r}, n={n!r}")
    h = float(
        NormalIndPower().solve_power(effect_size=None, nobs1=n, alpha=alpha, power=power, ratio=1.0)
    )
    angle = math.asin(math.sqrt(rate))
    if h / 2 > angle:
        return None
    return rate - math.sin(angle - h / 2) ** 2


def minimum_detectable_drop_paired(
    rate: float, n: int, discordance: float, alpha: float = 0.05, power: float = POWER
) -> float | None:
    """Smallest drop from ``rate`` that compare's primary test (McNemar exact, two-sided, over
    ``n`` matched pairs) detects with ``power`` at ``alpha``.

    The model: between two runs of the same agent a share ``discordance`` of the pairs changes
    outcome, half each way (measured between repeats); a drop ``d`` turns another ``d`` of the
    pairs from pass to fail. The power is exact: a sum over the number of discordant pairs of
    the chance that the binomial test rejects towards a drop. None when even a drop of the
    whole ``rate`` is not detectable.
    """
    if not 0 <= rate <= 1 or n < 1 or not 0 <= discordance <= 1:
        raise ValueError(
            f"need 0 <= rate, discordance <= 1 and n >= 1, got {rate}, {discordance}, {n}"
        )
    power_at = paired_power(n, discordance, alpha)
    if rate == 0 or power_at(rate) < power:
        return None
    return float(brentq(lambda d: power_at(d) - power, 0.0, rate, xtol=1e-4))


def paired_power(n: int, discordance: float, alpha: float = 0.05) -> Callable[[float], float]:
    """The exact power of McNemar's two-sided test over ``n`` pairs, as a function of the
    drop, under `minimum_detectable_drop_paired`'s model."""
    totals = np.arange(n + 1)
    # For each total of discordant pairs, the largest count of the smaller side (fail -> pass
    # when the rate drops) whose exact two-sided p-value, 2 · P(K <= m), is below alpha.
    critical = np.array(
        [np.count_nonzero(2 * binom.cdf(np.arange(d + 1), d, 0.5) < alpha) - 1 for d in totals]
    )

    def power_at(drop: float) -> float:
        share = min(1.0, discordance + drop)
        if share == 0:
            return 0.0
        towards_drop = min(1.0, (discordance / 2 + drop) / share)
        rejects = np.where(
            critical >= 0, binom.sf(totals - critical - 1, totals, towards_drop), 0.0
        )
        return float(binom.pmf(totals, n, share) @ rejects)

    return power_at


@dataclass(frozen=True)
class SliceDetectable:
    """How large a drop of one persona's or scenario's goal rate compare can catch."""

    name: str
    """`persona:ID` or `scenario:ID`."""
    n: float
    """Rated episodes of the slice per repeat, on average."""
    rate: float
    minimum_detectable_drop: float | None
    """With 80% power, at alpha divided by the number of slices (Bonferroni: at least as strict
    as the first step of compare's Holm adjustment); None when no drop is detectable."""
    power_if_halved: float
    """The chance compare flags the slice if its goal rate halves."""


def slice_detectability(
    rates: list[tuple[str, int, int, int]], repeats: int, discordance: float, alpha: float
) -> list[SliceDetectable]:
    """Per slice (name, rated episodes over all repeats, successes, slices tested): the
    smallest drop compare detects and its power against the slice halving; least
    detectable first."""
    found = []
    for name, rated_n, successes, tested in rates:
        n = rated_n / repeats
        rate = successes / rated_n if rated_n else 0.0
        level = alpha / max(1, tested)
        size = max(1, round(n))
        found.append(
            SliceDetectable(
                name=name,
                n=n,
                rate=rate,
                minimum_detectable_drop=minimum_detectable_drop_paired(
                    rate, size, discordance, level
                ),
                power_if_halved=paired_power(size, discordance, level)(rate / 2),
            )
        )
    return sorted(found, key=lambda s: (s.power_if_halved, s.name))


def _slice_rates(paths: list[Path]) -> list[tuple[str, int, int, int]]:
    """Rated episodes and successes of every persona and scenario slice, over the repeats."""
    frames = [load_outcomes(p)[1].filter(rated()) for p in paths]
    frame = pl.concat([f.select("persona_id", "scenario_id", "success") for f in frames])
    rows = []
    for column, kind in (("persona_id", "persona"), ("scenario_id", "scenario")):
        counts = frame.group_by(column).agg(pl.len(), pl.col("success").sum()).sort(column)
        rows += [(f"{kind}:{value}", n, s) for value, n, s in counts.iter_rows()]
    return [(name, n, s, len(rows)) for name, n, s in rows]


MAX_RATE_SD = 0.5
"""The largest standard deviation a rate in [0, 1] can have."""


def _sd_interval(sd: float, repeats: int, confidence: float = 0.95) -> tuple[float, float]:
    """The chi-square interval of a standard deviation from ``repeats`` values (normal
    repeats): sd·sqrt((R-1)/χ²) at the two tails; a rate's sd is at most 0.5, so no higher."""
    df = repeats - 1
    tail = (1 - confidence) / 2
    return (
        min(MAX_RATE_SD, sd * math.sqrt(df / chi2.ppf(1 - tail, df))),
        min(MAX_RATE_SD, sd * math.sqrt(df / chi2.ppf(tail, df))),
    )


def _repeat_rate(path: Path) -> RepeatRate:
    manifest, frame = load_outcomes(path)
    rated_frame = frame.filter(rated())
    successes = int(rated_frame["success"].sum())
    return RepeatRate(
        path=str(path),
        seed=manifest.config.seed,
        episodes=frame.height,
        rated=rated_frame.height,
        successes=successes,
        goal_rate=successes / rated_frame.height if rated_frame.height else None,
    )


def measure_noise(
    out: str | Path, repeats: int, *, alpha: float = 0.05, correction: str = "holm"
) -> Calibration:
    """Figures of the repeats ``out/repeat-1`` ... ``out/repeat-R``, written to
    ``out/calibration.json``.

    Raises:
        RunFolderError: a repeat folder is missing, empty, or every episode errored.
    """
    check_options(alpha, correction)
    paths = [repeat_folder(out, i) for i in range(1, repeats + 1)]
    rates = [_repeat_rate(p) for p in paths]
    empty = [r.path for r in rates if r.goal_rate is None]
    if empty:
        raise RunFolderError(
            f"{empty[0]!r}: every episode ended in a target or simulator error; "
            "no goal rate to calibrate"
        )
    goal_rates = [r.goal_rate for r in rates if r.goal_rate is not None]
    mean_rate = sum(r.successes for r in rates) / sum(r.rated for r in rates)
    n = sum(r.rated for r in rates) / len(rates)
    sd = statistics.stdev(goal_rates)
    pairs = []
    for first, second in itertools.combinations(paths, 2):
        comparison = compare_runs(first, second, alpha=alpha, correction=correction, criteria=False)
        pairs.append(
            PairCheck(
                first=str(first),
                second=str(second),
                difference=comparison.overall.difference,
                p_value=comparison.overall.p_value,
                compared=comparison.compared,
                discordant=comparison.overall.pass_to_fail + comparison.overall.fail_to_pass,
                flagged=[c.name for c in comparison.changes],
            )
        )
    discordance = sum(p.discordant / p.compared for p in pairs) / len(pairs)
    mdd = minimum_detectable_drop_paired(mean_rate, round(n), discordance, alpha)
    noise_95 = float(norm.ppf(0.975)) * math.sqrt(2) * sd
    sd_low, sd_high = _sd_interval(sd, len(rates))
    false_alarms = sum(bool(p.flagged) for p in pairs)
    calibration = Calibration(
        folder=str(out),
        alpha=alpha,
        correction=correction,
        repeats=rates,
        mean_rate=mean_rate,
        episodes_per_run=n,
        sd=sd,
        min_rate=min(goal_rates),
        max_rate=max(goal_rates),
        binomial_sd=math.sqrt(mean_rate * (1 - mean_rate) / n),
        pairs=pairs,
        false_alarms=false_alarms,
        false_alarm_rate=false_alarms / len(pairs),
        overall_false_alarms=sum("overall" in p.flagged for p in pairs),
        noise_95=noise_95,
        discordance=discordance,
        minimum_detectable_drop=mdd,
        minimum_detectable_drop_independent=minimum_detectable_drop(mean_rate, n, alpha),
        smallest_trusted_difference=None if mdd is None else max(noise_95, mdd),
        sd_interval=(sd_low, sd_high),
        noise_95_interval=(
            (min(1.0, noise_95 * sd_low / sd), min(1.0, noise_95 * sd_high / sd))
            if sd
            else (0.0, 0.0)
        ),
        false_alarm_interval=wilson_interval(false_alarms, len(pairs)),
        slices=tuple(slice_detectability(_slice_rates(paths), len(paths), discordance, alpha)),
    )
    _write_json(Path(out) / CALIBRATION, calibration.to_dict())
    return calibration


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


async def calibrate(
    config: RunConfig,
    repeats: int = 5,
    *,
    alpha: float = 0.05,
    correction: str = "holm",
    on_repeat: Callable[[int, RunConfig], Any] | None = None,
    on_start: Callable[[Tally], Any] | None = None,
    on_episode: Callable[[Episode, Tally], Any] | None = None,
) -> Calibration:
    """Play ``config`` ``repeats`` times into ``config.out`` and measure the noise floor.

    Every repeat plays in the caller's event loop, one after another, so agents that keep an
    async client at module level work in all of them.

    Args:
        on_repeat: called with the repeat's number (from 1) and config before it plays.
        on_start, on_episode: passed to each repeat's `run`.

    Raises:
        RunStopped: a repeat stopped early (a spent budget, a replay miss); finished repeats
            are kept and ``resume`` continues.
    """
    check_options(alpha, correction)
    with one_cluster(config):
        for index, repeat in enumerate(repeat_configs(config, repeats), 1):
            if on_repeat:
                on_repeat(index, repeat)
            result = await run(repeat, on_start=on_start, on_episode=on_episode)
            if result.stopped:
                raise (RunAborted if result.aborted else RunStopped)(
                    f"stopped early in {repeat.out}: {result.stopped}; finished repeats are kept"
                )
    return measure_noise(config.out, repeats, alpha=alpha, correction=correction)
