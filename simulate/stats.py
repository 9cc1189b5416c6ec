"""The statistics behind reports: intervals for rates and means, pass^k and pass@k over repeated
trials, sample sizes, and run-against-run tests. Thin, checked wrappers over scipy and statsmodels.

scipy and statsmodels are imported inside the functions that use them, so a command that only
reads a `Rate` starts fast.

Bad inputs raise ``ValueError``: callers (the report, compare) pass counts they computed, so a bad
count here is a bug, not a user mistake.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, computed_field, field_validator, model_validator

from simulate.errors import did_you_mean

BootstrapMethod = Literal["BCa", "percentile"]
PAdjustMethod = Literal["holm", "bonferroni", "fdr_bh", "fdr_by", "hommel", "sidak", "holm-sidak"]
PADJUST_METHODS: tuple[str, ...] = get_args(PAdjustMethod)

BCA_MAX_N = 5000
"""Above this many values the bootstrap uses percentile intervals: BCa's jackknife costs n²,
and at that size its skew correction no longer matters."""

_BOOTSTRAP_CELLS = 4_000_000
"""Values resampled per batch, so a large sample does not need resamples × n memory at once."""

FISHER_BELOW = 5
"""compare_proportions uses Fisher's exact test when any expected 2×2 cell count is below this."""


def _check_count(successes: int, n: int, name: str = "") -> None:
    label = f"{name} " if name else ""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(
            f"{label}counts must satisfy 0 <= successes <= n, got successes={successes!r}, n={n!r}"
        )


def z_value(confidence: float) -> float:
    """The two-sided normal quantile of a ``confidence`` level (1.96 at 0.95)."""
    from scipy.stats import norm

    return float(norm.ppf(1 - (1 - confidence) / 2))


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence!r}")


class Estimate(BaseModel):
    """A figure with its interval and the n it rests on; None with a reason when undefined.

    Never NaN: a value or an end that is not a finite number becomes None (JSON has no NaN).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float | None
    """The figure; None when it cannot be computed (``reason`` says why)."""
    low: float | None = None
    """Lower end of the interval; None when there is none."""
    high: float | None = None
    """Upper end of the interval."""
    n: int = 0
    """Units the figure rests on (episodes, labeled units, messages)."""
    method: str | None = None
    """How the interval was computed (`wilson`, `bootstrap`, `t`...)."""
    reason: str | None = None
    """Why the value or the interval is missing, when one is."""

    @field_validator("value", "low", "high")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        return value if value is None or math.isfinite(value) else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """``(low, high)``, or None when there is no interval."""
        if self.low is None or self.high is None:
            return None
        return (self.low, self.high)


class Rate(Estimate):
    """A share of ``n`` (``count`` of them), with its interval: every rate Simulate reports.

    ``successes`` is the same number as ``count``, kept in the JSON for readers of the goal
    rate's older shape.
    """

    count: int | None = None
    """How many of the ``n`` units had the property (passed, repeated, ...); None for a rate
    that is not a plain count (a corrected or weighted estimate)."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def successes(self) -> int | None:
        """The same as ``count``."""
        return self.count

    @model_validator(mode="before")
    @classmethod
    def _read_back(cls, data: Any) -> Any:
        """A dumped rate reads back: `successes` is `count` again."""
        if isinstance(data, dict) and "successes" in data:
            data = {k: v for k, v in data.items() if k != "successes"}
        return data

    @classmethod
    def wilson(
        cls, count: int, n: int, confidence: float = 0.95, *, empty: str = "nothing to count"
    ) -> Rate:
        """``count`` of ``n`` with its Wilson score interval; no value and no interval at n = 0
        (``empty`` says why)."""
        if n == 0:
            _check_count(count, n)
            return cls(value=None, n=0, count=0, method="wilson", reason=empty)
        low, high = wilson_interval(count, n, confidence)
        return cls(value=count / n, low=low, high=high, n=n, count=count, method="wilson")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a rate of ``successes`` out of ``n`` (statsmodels).

    With ``n == 0`` nothing is known, so the interval is the whole range ``(0.0, 1.0)``; a caller
    that shows the figure should show its n beside it.
    """
    _check_count(successes, n)
    _check_confidence(confidence)
    if n == 0:
        return (0.0, 1.0)
    from statsmodels.stats.proportion import proportion_confint

    # 1 - 0.95 is 0.050000000000000044 in floating point: round it back to the level meant.
    alpha = round(1 - confidence, 12)
    low, high = proportion_confint(successes, n, alpha=alpha, method="wilson")
    return (float(low), float(high))


def bootstrap_mean_interval(
    values: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    method: BootstrapMethod = "BCa",
) -> tuple[float, float] | None:
    """Bootstrap interval for the mean of ``values`` (scipy.stats.bootstrap), same seed same result.

    BCa (bias-corrected and accelerated) by default, since turns, latency and tokens are skewed;
    percentile above ``BCA_MAX_N`` values, or when BCa is undefined for the sample. None for fewer
    than two values (one value says nothing about spread); ``(x, x)`` when every value is ``x``.
    """
    _check_confidence(confidence)
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples!r}")
    if method not in ("BCa", "percentile"):
        raise ValueError(f"method must be 'BCa' or 'percentile', got {method!r}")
    data = np.asarray(values, dtype=float)
    if data.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError("values must be finite numbers (no NaN or infinity)")
    if data.size < 2:
        return None
    if np.all(data == data[0]):
        return (float(data[0]), float(data[0]))
    if data.size > BCA_MAX_N:
        method = "percentile"
    low, high = _bootstrap(data, confidence, resamples, seed, method)
    if method == "BCa" and not (math.isfinite(low) and math.isfinite(high)):
        low, high = _bootstrap(data, confidence, resamples, seed, "percentile")
    return (low, high)


def _bootstrap(
    data: np.ndarray, confidence: float, resamples: int, seed: int, method: BootstrapMethod
) -> tuple[float, float]:
    from scipy import stats as scipy_stats

    result = scipy_stats.bootstrap(
        (data,),
        np.mean,
        n_resamples=resamples,
        batch=max(1, _BOOTSTRAP_CELLS // data.size),
        vectorized=True,
        confidence_level=confidence,
        method=method,
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return (float(interval.low), float(interval.high))


def _check_pass_k(n: int, c: int, k: int) -> None:
    if n < 1:
        raise ValueError(f"n (trials of a task) must be at least 1, got {n!r}")
    if not 0 <= c <= n:
        raise ValueError(f"c (passed trials) must be between 0 and n={n}, got {c!r}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and n={n} (trials of the task), got {k!r}")


def pass_hat_k(n: int, c: int, k: int) -> float:
    """pass^k (tau-bench): chance that k trials drawn from n, c of them passed, all pass.

    Unbiased estimator ``C(c, k) / C(n, k)``, computed as the product ``∏ (c - i) / (n - i)``
    over ``i < k`` so large n does not overflow.
    """
    _check_pass_k(n, c, k)
    if c < k:
        return 0.0
    return float(np.prod((c - np.arange(k)) / (n - np.arange(k))))


def pass_at_k(n: int, c: int, k: int) -> float:
    """pass@k (HumanEval, Chen et al. 2021): chance that at least one of k trials drawn passes.

    Unbiased estimator ``1 - C(n - c, k) / C(n, k)`` in the paper's stable product form.
    """
    _check_pass_k(n, c, k)
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def count_trials(results: Iterable[tuple[Hashable, bool]]) -> dict[Hashable, tuple[int, int]]:
    """``(task, passed)`` pairs to ``{task: (n, c)}``; a task is e.g. (persona_id, scenario_id)."""
    counts: dict[Hashable, tuple[int, int]] = {}
    for task, passed in results:
        n, c = counts.get(task, (0, 0))
        counts[task] = (n + 1, c + int(bool(passed)))
    return counts


def _check_tasks(tasks: Sequence[tuple[int, int]]) -> None:
    if not tasks:
        raise ValueError("need at least one task's (n, c) counts, got none")


def mean_pass_hat_k(tasks: Sequence[tuple[int, int]], k: int) -> float:
    """pass^k averaged over tasks, each given as ``(n, c)``: trials and passed trials."""
    _check_tasks(tasks)
    return float(np.mean([pass_hat_k(n, c, k) for n, c in tasks]))


def mean_pass_at_k(tasks: Sequence[tuple[int, int]], k: int) -> float:
    """pass@k averaged over tasks, each given as ``(n, c)``: trials and passed trials."""
    _check_tasks(tasks)
    return float(np.mean([pass_at_k(n, c, k) for n, c in tasks]))


def pass_hat_k_curve(tasks: Sequence[tuple[int, int]]) -> dict[int, float]:
    """Mean pass^k for every k from 1 to the fewest trials any task had."""
    _check_tasks(tasks)
    return {k: mean_pass_hat_k(tasks, k) for k in range(1, min(n for n, _ in tasks) + 1)}


def pass_at_k_curve(tasks: Sequence[tuple[int, int]]) -> dict[int, float]:
    """Mean pass@k for every k from 1 to the fewest trials any task had."""
    _check_tasks(tasks)
    return {k: mean_pass_at_k(tasks, k) for k in range(1, min(n for n, _ in tasks) + 1)}


def _check_plan(margin: float, confidence: float, expected: float) -> None:
    if not 0 < margin <= 0.5:
        raise ValueError(f"margin must be in (0, 0.5], got {margin!r}")
    _check_confidence(confidence)
    if not 0 <= expected <= 1:
        raise ValueError(f"expected rate must be in [0, 1], got {expected!r}")


def episodes_needed(margin: float, confidence: float = 0.95, expected: float = 0.5) -> int:
    """Episodes for a rate's interval to have half-width ``margin``, normal approximation.

    ``n = z² p (1 - p) / margin²`` rounded up (statsmodels), at least 1. Too optimistic for an
    expected rate near 0 or 1, where it gives almost nothing: see ``episodes_needed_wilson``.
    """
    _check_plan(margin, confidence, expected)
    from statsmodels.stats.proportion import samplesize_confint_proportion

    n = samplesize_confint_proportion(expected, margin, alpha=1 - confidence, method="normal")
    # Round off float noise before ceil, so an exact integer is not pushed up by one.
    return max(1, math.ceil(round(float(n), 9)))


def _wilson_half_width(n: int, z: float, p: float) -> float:
    return z / (n + z * z) * math.sqrt(n * p * (1 - p) + z * z / 4)


def episodes_needed_wilson(margin: float, confidence: float = 0.95, expected: float = 0.5) -> int:
    """Smallest n whose Wilson interval around an observed rate ``expected`` has half-width
    at most ``margin``. The half-width falls as n grows, so a bisection finds it."""
    _check_plan(margin, confidence, expected)
    z = z_value(confidence)
    return _smallest_n(lambda n: _wilson_half_width(n, z, expected) <= margin)


def _smallest_n(enough: Callable[[int], bool]) -> int:
    """The smallest n >= 1 that is ``enough``, for a test that holds from some n on:
    doubling, then bisection."""
    high = 1
    while not enough(high):
        high *= 2
    low = high // 2  # not enough, or 0
    while high - low > 1:
        middle = (low + high) // 2
        if enough(middle):
            high = middle
        else:
            low = middle
    return high


def _wilson_reach(n: int, z: float, p: float) -> float:
    """How far the Wilson interval at an observed rate p reaches from p: its farther end."""
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(p - (center - half), center + half - p)


def episodes_within(margin: float, confidence: float = 0.95, expected: float = 0.5) -> int:
    """Smallest n whose Wilson interval around an observed rate ``expected`` has both ends
    within ``margin`` of it: "the rate, ± margin".

    Near 0 and 1 the Wilson interval is lopsided, so its half-width (`episodes_needed_wilson`)
    understates how far its far end reaches: at 99%, ±5 points needs 87 episodes, not 43.
    The reach falls as n grows, so a bisection finds n exactly.
    """
    _check_plan(margin, confidence, expected)
    z = z_value(confidence)
    return _smallest_n(lambda n: _wilson_reach(n, z, expected) <= margin)


@dataclass(frozen=True)
class ProportionComparison:
    """Run 2's rate against run 1's: ``difference`` is ``rate2 - rate1``."""

    rate1: float
    rate2: float
    difference: float
    low: float
    """Lower end of the difference's interval (Newcombe's hybrid score interval)."""
    high: float
    p_value: float
    """Two-sided p-value of the test named in ``test``."""
    test: Literal["z", "fisher"]
    """``z``: pooled two-proportion z-test; ``fisher``: Fisher's exact test (small counts)."""


def compare_proportions(
    s1: int, n1: int, s2: int, n2: int, confidence: float = 0.95
) -> ProportionComparison:
    """Compare ``s2/n2`` (e.g. after a change) with ``s1/n1`` (before).

    The difference's interval is Newcombe's (statsmodels ``confint_proportions_2indep``). The
    p-value is from a two-proportion z-test (statsmodels ``proportions_ztest``), or from Fisher's
    exact test (scipy) when any expected cell of the 2×2 table is below ``FISHER_BELOW``.
    """
    _check_count(s1, n1, "run 1")
    _check_count(s2, n2, "run 2")
    _check_confidence(confidence)
    if n1 == 0 or n2 == 0:
        raise ValueError(f"both runs need at least one episode, got n1={n1!r}, n2={n2!r}")
    from scipy import stats as scipy_stats
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    low, high = confint_proportions_2indep(
        s2, n2, s1, n1, method="newcomb", compare="diff", alpha=1 - confidence
    )
    total = n1 + n2
    passes = s1 + s2
    expected_cells = [n * col / total for n in (n1, n2) for col in (passes, total - passes)]
    if min(expected_cells) < FISHER_BELOW:
        _, p_value = scipy_stats.fisher_exact([[s1, n1 - s1], [s2, n2 - s2]])
        test: Literal["z", "fisher"] = "fisher"
    else:
        _, p_value = proportions_ztest([s2, s1], [n2, n1])
        test = "z"
    return ProportionComparison(
        rate1=s1 / n1,
        rate2=s2 / n2,
        difference=s2 / n2 - s1 / n1,
        low=float(low),
        high=float(high),
        p_value=float(p_value),
        test=test,
    )


def adjust_pvalues(pvalues: Sequence[float], method: PAdjustMethod = "holm") -> list[float]:
    """P-values adjusted for comparing many slices at once (statsmodels ``multipletests``).

    Holm by default: it controls the chance of any false alarm, and is never weaker than
    Bonferroni. Compare each adjusted value with the usual threshold (e.g. 0.05).
    """
    if method not in PADJUST_METHODS:
        raise ValueError(
            f"unknown p-value adjustment {method!r}{did_you_mean(method, PADJUST_METHODS)}; "
            f"choose from: {', '.join(PADJUST_METHODS)}"
        )
    if not pvalues:
        return []
    bad = [p for p in pvalues if not 0 <= p <= 1]
    if bad:
        raise ValueError(f"p-values must be in [0, 1], got {bad[0]!r}")
    from statsmodels.stats.multitest import multipletests

    _, adjusted, _, _ = multipletests(list(pvalues), method=method)
    return [float(p) for p in adjusted]


# --- rates of clustered episodes: the suite and the population questions ----------------------

SUITE_METHOD = (
    "suite: Wilson score interval at the effective sample size of the within-cell (trial-to-"
    "trial) variance (Korn & Graubard 1998), t degrees of freedom N - cells or Satterthwaite's "
    "when fewer cells vary"
)
POPULATION_METHOD = (
    "population: Wilson score interval at the effective sample size of the two-way "
    "cluster-robust variance over personas and scenarios (Cameron, Gelbach & Miller 2011), "
    "t degrees of freedom min(personas, scenarios) - 1 (Korn & Graubard 1998)"
)


def effective_wilson(
    p: np.ndarray | float,
    variance: np.ndarray | float,
    n: np.ndarray | float,
    df: np.ndarray | float,
    confidence: float = 0.95,
    *,
    at_most_n: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a rate ``p`` whose variance is ``variance`` (not p(1-p)/n).

    Korn & Graubard (1998, "Confidence intervals for proportions with small expected number of
    positive counts estimated from survey data") turn a design-based variance into an
    effective sample size ``p(1-p)/variance`` and shrink it by ``(z / t_df)²`` for the
    variance's own uncertainty; the Wilson interval at that size stays inside [0, 1] and is
    asymmetric near the edges (Dean & Pagano 2015 recommend it for clustered data). At p = 0 or
    1 the effective size is n. ``at_most_n``: never more precise than n independent episodes.
    Vectorised: every argument broadcasts.
    """
    from scipy.stats import t as student_t

    _check_confidence(confidence)
    p, variance, n, df = np.broadcast_arrays(
        *(np.asarray(x, dtype=float) for x in (p, variance, n, df))
    )
    z = z_value(confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = np.where(
            (p <= 0) | (p >= 1), n, np.where(variance > 0, p * (1 - p) / variance, np.inf)
        )
        if at_most_n:
            n_eff = np.minimum(n_eff, n)
        quantile = student_t.ppf(1 - (1 - confidence) / 2, np.maximum(df, 1e-9))
        n_star = n_eff * (z / quantile) ** 2
        denominator = 1 + z * z / n_star
        center = (p + z * z / (2 * n_star)) / denominator
        half = z * np.sqrt(p * (1 - p) / n_star + z * z / (4 * n_star**2)) / denominator
    low = np.clip(np.where(np.isinf(n_star), p, center - half), 0.0, 1.0)
    high = np.clip(np.where(np.isinf(n_star), p, center + half), 0.0, 1.0)
    return low, high


def _cluster_sums(residuals: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Residuals summed per cluster (the last axis of ``residuals`` is the cells)."""
    groups = int(index.max()) + 1
    return residuals @ np.eye(groups)[index]


def within_cell_variance(
    successes: np.ndarray, trials: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The variance of a rate over the same cells played again, and its degrees of freedom.

    The pooled within-cell variance (one-way ANOVA's within mean square, unbiased for the mean
    of the cells' p(1 - p)) over N: ``Σ (s - s²/n) / (N - cells) / N``. Cells are the last axis;
    leading axes are independent replicates.
    """
    s = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    total = n.sum(axis=-1)
    df = total - (n > 0).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        squares = np.where(n > 0, s - s * s / np.where(n > 0, n, 1), 0.0).sum(axis=-1)
        variance = np.where(df > 0, squares / df / total, np.nan)
    return variance, df


def satterthwaite_df(successes: np.ndarray, trials: np.ndarray) -> float:
    """The within-cell variance's effective degrees of freedom when cells vary unequally
    (Satterthwaite 1946): ``(Σ SS)² / Σ SS² / (n - 1)`` over the cells' sums of squares SS.
    N - cells when every cell varies alike; about the number of varying cells (times their
    trials - 1) when only a few vary — then the variance rests on those few. Infinite when no
    cell varies (there is no variance to be unsure of)."""
    s = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    used = n > 1
    squares = s[used] - s[used] ** 2 / n[used]
    spread = float((squares**2 / (n[used] - 1)).sum())
    return float(squares.sum() ** 2 / spread) if spread > 0 else math.inf


def two_way_cluster_variance(
    successes: np.ndarray, trials: np.ndarray, personas: np.ndarray, scenarios: np.ndarray
) -> tuple[np.ndarray, int]:
    """The variance of a rate for new personas and scenarios like these, and its degrees of
    freedom.

    Cameron, Gelbach & Miller (2011, "Robust inference with multiway clustering") for a mean:
    ``V_persona + V_scenario - V_cell``, each a one-way cluster-robust variance with the
    ``G / (G - 1)`` correction (as statsmodels' `cov_type="cluster"` with two group columns).
    With one persona (or one scenario) the other way alone; a negative two-way sum falls back
    to the larger one-way variance. Cells are the last axis of ``successes`` and ``trials``;
    ``personas`` and ``scenarios`` give each cell's codes 0..G-1. Degrees of freedom: the
    fewer clusters, minus one; 0 when there is nothing to generalise from (one cell).
    """
    s = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    total = n.sum(axis=-1)
    residuals = s - n * (s.sum(axis=-1) / total)[..., None]

    def one_way(index: np.ndarray) -> np.ndarray:
        sums = _cluster_sums(residuals, index)
        groups = sums.shape[-1]
        return groups / (groups - 1) * (sums**2).sum(axis=-1) / total**2

    n_personas, n_scenarios = int(personas.max()) + 1, int(scenarios.max()) + 1
    if n_personas >= 2 and n_scenarios >= 2:
        v_persona, v_scenario = one_way(personas), one_way(scenarios)
        cells = np.unique(personas * n_scenarios + scenarios, return_inverse=True)[1]
        both = v_persona + v_scenario - one_way(cells.reshape(-1))
        fallback = np.maximum(v_persona, v_scenario)
        return np.where(both > 0, both, fallback), min(n_personas, n_scenarios) - 1
    if n_scenarios >= 2:
        return one_way(scenarios), n_scenarios - 1
    if n_personas >= 2:
        return one_way(personas), n_personas - 1
    return np.full(np.shape(total), np.nan), 0


def suite_rate(successes: np.ndarray, trials: np.ndarray, confidence: float = 0.95) -> Rate:
    """The goal rate with the interval that answers "would the same personas and scenarios,
    played again, give another rate?" (`within_cell_variance`, `effective_wilson`)."""
    variance, df = within_cell_variance(successes, trials)
    return _clustered_rate(
        successes,
        trials,
        (variance, min(df, satterthwaite_df(successes, trials))),
        confidence,
        method=SUITE_METHOD,
        without="every cell has one rated trial: play --trials 2 or more",
    )


def population_rate(
    successes: np.ndarray,
    trials: np.ndarray,
    personas: np.ndarray,
    scenarios: np.ndarray,
    confidence: float = 0.95,
) -> Rate:
    """The goal rate with the interval that answers "how will the agent do on users and tasks
    like these?" (`two_way_cluster_variance`, `effective_wilson`, never narrower than for
    independent episodes)."""
    if not np.sum(trials):
        variance: tuple[Any, Any] = (np.nan, 0)
    else:
        variance = two_way_cluster_variance(
            successes, trials, np.asarray(personas), np.asarray(scenarios)
        )
    return _clustered_rate(
        successes,
        trials,
        variance,
        confidence,
        method=POPULATION_METHOD,
        without="one persona and one scenario: nothing to generalise from",
        at_most_n=True,
    )


def _clustered_rate(
    successes: np.ndarray,
    trials: np.ndarray,
    variance: tuple[Any, Any],
    confidence: float,
    *,
    method: str,
    without: str,
    at_most_n: bool = False,
) -> Rate:
    """A rate of cells' counts with `effective_wilson` at ``variance`` = (variance, df);
    ``without`` says why there is no interval when df < 1."""
    count, total = int(np.sum(successes)), int(np.sum(trials))
    if total == 0:
        return Rate(value=None, n=0, count=0, method=method, reason="nothing rated")
    value, df = variance
    figure = Rate(value=count / total, n=total, count=count, method=method)
    if not df >= 1:
        return figure.model_copy(update={"reason": without})
    low, high = effective_wilson(count / total, value, total, df, confidence, at_most_n=at_most_n)
    return figure.model_copy(update={"low": float(low), "high": float(high)})


# --- stratified comparison: Cochran–Mantel–Haenszel -------------------------------------------

MANTEL_FLEISS_MARGIN = 5.0
"""The CMH test is exact (conditional) when the expected count is nearer than this to either
of its bounds (Mantel & Fleiss 1980); the chi-square approximation is good beyond."""


@dataclass(frozen=True)
class StratifiedChange:
    """Run 2 against run 1 within strata: ``difference`` is the Mantel–Haenszel risk difference
    (run 2 minus run 1), tested by Cochran–Mantel–Haenszel."""

    difference: float
    p_value: float
    test: Literal["cmh", "cmh-exact"]
    null_se: float
    """The difference's standard error under no change (the CMH variance over the weights)."""
    strata: int
    """Strata with both runs in them and both outcomes seen: the ones that carry information."""


def cmh_compare(
    passed_1: np.ndarray, n_1: np.ndarray, passed_2: np.ndarray, n_2: np.ndarray
) -> StratifiedChange:
    """Compare run 2 with run 1 stratum by stratum (e.g. persona × scenario cells).

    Each stratum is a 2×2 table (run × pass/fail); strata that miss a run drop out, and strata
    where everything passed (or failed) count in the difference but carry no information for
    the test. The statistic is Cochran–Mantel–Haenszel's (the same as
    statsmodels' ``StratifiedTable.test_null_odds`` without continuity correction); when the
    Mantel–Fleiss criterion says the counts are too small for the chi-square, the p-value is
    the exact conditional one: the distribution of the pass count of run 1 summed over strata
    is the convolution of each stratum's hypergeometric, and the two-sided p-value sums the
    outcomes no likelier than the one seen (as R's ``mantelhaen.test(exact = TRUE)``).
    With one pair per stratum this is McNemar's exact test.
    """
    from scipy.stats import chi2, hypergeom

    a, n1, c, n2 = (np.asarray(x, dtype=float) for x in (passed_1, n_1, passed_2, n_2))
    total = n1 + n2
    passes = a + c
    keep = (n1 > 0) & (n2 > 0)
    a, n1, c, n2, total, passes = a[keep], n1[keep], c[keep], n2[keep], total[keep], passes[keep]
    weights = n1 * n2 / total
    informative = int(((passes > 0) & (passes < total)).sum())
    if not informative:
        difference = (
            float((weights * (c / n2 - a / n1)).sum() / weights.sum()) if keep.any() else 0.0
        )
        return StratifiedChange(difference, 1.0, "cmh-exact", 0.0, 0)
    difference = float((weights * (c / n2 - a / n1)).sum() / weights.sum())
    expected = n1 * passes / total
    variance = n1 * n2 * passes * (total - passes) / (total**2 * (total - 1))
    null_se = float(math.sqrt(variance.sum()) / weights.sum())
    lowest = np.maximum(0, n1 - (total - passes))
    highest = np.minimum(n1, passes)
    margin = min(expected.sum() - lowest.sum(), highest.sum() - expected.sum())
    if margin >= MANTEL_FLEISS_MARGIN:
        statistic = (a.sum() - expected.sum()) ** 2 / variance.sum()
        return StratifiedChange(
            difference, float(chi2.sf(statistic, 1)), "cmh", null_se, informative
        )
    distribution = np.ones(1)
    for t, m, k, low, high in zip(total, passes, n1, lowest, highest, strict=True):
        support = np.arange(low, high + 1)
        distribution = np.convolve(distribution, hypergeom.pmf(support, int(t), int(m), int(k)))
    observed = distribution[round(a.sum() - lowest.sum())]
    p_value = float(distribution[distribution <= observed * (1 + 1e-7)].sum())
    return StratifiedChange(difference, min(1.0, p_value), "cmh-exact", null_se, informative)


def miettinen_interval(
    difference: float,
    p_value: float,
    null_se: float,
    confidence: float = 0.95,
    *,
    no_change_n: int = 0,
) -> tuple[float, float]:
    """An interval for ``difference`` that agrees with the test that gave ``p_value``.

    Miettinen's test-based limits (1976, "Estimability and estimation in case-referent
    studies"): the standard error is the one at which the estimate's z equals the test's,
    ``|difference| / z(p)``, so the interval leaves out 0 exactly when ``p_value`` is below
    ``1 - confidence``. Given an adjusted p-value (Holm), it is adjusted the same way. With no
    difference the null standard error is used; when that is 0 too (not one outcome changed in
    ``no_change_n`` pairs), the exact bound on how often one could change: ±(1 - (α/2)^(1/n)),
    Clopper–Pearson's for 0 of n, never a zero-width interval. Clipped to [-1, 1], a difference
    of rates.
    """
    _check_confidence(confidence)
    from scipy.stats import norm

    z = z_value(confidence)
    if difference == 0 and null_se == 0:
        if no_change_n < 1:
            return (-1.0, 1.0)
        bound = 1 - ((1 - confidence) / 2) ** (1 / no_change_n)
        return (-bound, bound)
    if difference == 0 or p_value >= 1:
        se = null_se if difference == 0 else math.inf
    else:
        se = abs(difference) / float(norm.isf(p_value / 2))
    if not math.isfinite(se):
        return (-1.0, 1.0)
    return (max(-1.0, difference - z * se), min(1.0, difference + z * se))


# --- a judge's pass rate corrected by people's labels: prediction-powered inference ------------

PPI_METHOD = (
    "PPI++ (Angelopoulos, Duchi & Zrnic 2023): the judge's rate over every unit it labeled, "
    "rectified by its errors on the units people labeled too, power-tuned; normal interval"
)


def ppi_mean(
    labels: np.ndarray,
    predictions: np.ndarray,
    unlabeled_predictions: np.ndarray,
    confidence: float = 0.95,
) -> Estimate:
    """The mean of ``labels`` over a population, from a few labeled units and a model's
    predictions on all of them (prediction-powered inference with power tuning, PPI++).

    ``labels`` and ``predictions`` are the units people labeled (the people's answer and the
    model's), ``unlabeled_predictions`` the model's answers on the units people did not label;
    the labeled ones must be a random sample of all. The estimate is
    ``λ mean(f_unlabeled) + mean(y - λ f)`` with the tuning ``λ`` in [0, 1] that minimises its
    variance (λ = 0 is the people's own mean, λ = 1 plain PPI), and the interval is normal with
    ``Var = Var(λ f_unlabeled) / N + Var(y - λ f) / n`` — the formulas of the reference
    implementation (ppi_py's `ppi_mean_ci`, `_calc_lam_glm`). Deterministic: no resampling.
    """
    y = np.asarray(labels, dtype=float)
    f = np.asarray(predictions, dtype=float)
    f_unlabeled = np.asarray(unlabeled_predictions, dtype=float)
    n, big_n = y.size, f_unlabeled.size
    if n < 2 or big_n < 1:
        reason = "needs two units labeled by people" if n < 2 else "no unit left to predict"
        return Estimate(value=None, n=n, method=PPI_METHOD, reason=reason)
    lam = ppi_power_tuning(y, f, f_unlabeled)
    value = float(lam * f_unlabeled.mean() + (y - lam * f).mean())
    se = math.sqrt((lam * f_unlabeled).std() ** 2 / big_n + (y - lam * f).std() ** 2 / n)
    if se == 0 and np.isin(y, (0.0, 1.0)).all():
        # every answer alike: a normal interval would claim certainty from n people's labels
        people = Rate.wilson(int(y.sum()), n, confidence)
        return Estimate(
            value=value,
            low=people.low,
            high=people.high,
            n=n + big_n,
            method=f"{PPI_METHOD}; no spread in {n} people's labels: their Wilson interval",
        )
    z = z_value(confidence)
    return Estimate(
        value=value,
        low=max(0.0, value - z * se),
        high=min(1.0, value + z * se),
        n=n + big_n,
        method=f"{PPI_METHOD} (λ = {lam:.2f}, {n} labeled by people of {n + big_n})",
    )


def ppi_power_tuning(y: np.ndarray, f: np.ndarray, f_unlabeled: np.ndarray) -> float:
    """PPI++'s variance-minimising λ for a mean, clipped to [0, 1]:
    ``Cov(y, f) / ((1 + n/N) Var(f over all units))``; 0 when the predictions never vary."""
    n, big_n = y.size, f_unlabeled.size
    covariance = float(((y - y.mean()) * (f - f.mean())).mean())
    spread = float(np.var(np.concatenate([f, f_unlabeled]), ddof=1))
    if spread <= 0:
        return 0.0
    return float(np.clip(covariance / ((1 + n / big_n) * spread), 0.0, 1.0))


# --- always-valid bounds for a sequential gate ---------------------------------------------------


def mixture_boundary(variance: float, rho: float, alpha: float) -> float:
    """The one-sided normal-mixture boundary: with probability at least ``1 - alpha``, a sum
    ``S_t`` of [0, 1] outcomes minus their (possibly different) means
    means stays below this at every t at once (``variance`` = t/4, Hoeffding's sub-Gaussian
    variance of t such outcomes).

    Robbins' normal mixture (Robbins 1970; Howard, Ramdas, McAuliffe & Sekhon 2021, "Time-
    uniform, nonparametric, nonasymptotic confidence sequences", the one-sided normal mixture)
    with a half-normal mixing density of precision ``rho``: the mixture martingale
    ``2 sqrt(rho/(v+rho)) exp(S²/(2(v+rho))) Φ(S/sqrt(v+rho))`` crosses ``1/alpha`` with
    probability at most ``alpha`` (Ville's inequality); this solves for the crossing S.
    """
    from scipy.optimize import brentq
    from scipy.stats import norm

    total = variance + rho

    def log_martingale(s: float) -> float:
        return (
            math.log(2)
            + 0.5 * math.log(rho / total)
            + s * s / (2 * total)
            + float(norm.logcdf(s / math.sqrt(total)))
            + math.log(alpha)
        )

    high = math.sqrt(2 * total * (math.log(1 / alpha) + 0.5 * math.log(total / rho))) + 1
    while log_martingale(high) < 0:
        high *= 2
    return float(brentq(log_martingale, 0.0, high, xtol=1e-10))


def mixture_precision(variance: float, alpha: float) -> float:
    """The mixing precision that makes `mixture_boundary` tightest at ``variance`` (chosen
    before any data: from the budget, not the outcomes)."""
    from scipy.optimize import minimize_scalar

    best = minimize_scalar(
        lambda log_rho: mixture_boundary(variance, math.exp(log_rho), alpha),
        bounds=(math.log(variance) - 8, math.log(variance) + 4),
        method="bounded",
    )
    return float(math.exp(best.x))


def hoeffding_bound(n: int | np.ndarray, alpha: float) -> np.ndarray | float:
    """Hoeffding's one-sided bound: the mean of n independent [0, 1] outcomes (whatever their
    means) falls more than this below (or above) the mean of their means with probability at
    most ``alpha``."""
    return np.sqrt(math.log(1 / alpha) / (2 * np.asarray(n, dtype=float)))
