"""The statistics behind reports: intervals for rates and means, pass^k and pass@k over repeated
trials, sample sizes, and run-against-run tests. Thin, checked wrappers over scipy and statsmodels.

Bad inputs raise ``ValueError``: callers (the report, compare) pass counts they computed, so a bad
count here is a bug, not a user mistake.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
    samplesize_confint_proportion,
)

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


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence!r}")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a rate of ``successes`` out of ``n`` (statsmodels).

    With ``n == 0`` nothing is known, so the interval is the whole range ``(0.0, 1.0)``; a caller
    that shows the figure should show its n beside it.
    """
    _check_count(successes, n)
    _check_confidence(confidence)
    if n == 0:
        return (0.0, 1.0)
    low, high = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
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
    n = samplesize_confint_proportion(expected, margin, alpha=1 - confidence, method="normal")
    # Round off float noise before ceil, so an exact integer is not pushed up by one.
    return max(1, math.ceil(round(float(n), 9)))


def _wilson_half_width(n: int, z: float, p: float) -> float:
    return z / (n + z * z) * math.sqrt(n * p * (1 - p) + z * z / 4)


def episodes_needed_wilson(margin: float, confidence: float = 0.95, expected: float = 0.5) -> int:
    """Smallest n whose Wilson interval around an observed rate ``expected`` has half-width
    at most ``margin``. The half-width falls as n grows, so a bisection finds it."""
    _check_plan(margin, confidence, expected)
    z = float(scipy_stats.norm.ppf(1 - (1 - confidence) / 2))
    high = 1
    while _wilson_half_width(high, z, expected) > margin:
        high *= 2
    low = high // 2  # fails the margin, or is 0
    while high - low > 1:
        middle = (low + high) // 2
        if _wilson_half_width(middle, z, expected) > margin:
            low = middle
        else:
            high = middle
    return high


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
    _, adjusted, _, _ = multipletests(list(pvalues), method=method)
    return [float(p) for p in adjusted]
