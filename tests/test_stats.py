"""stats.py against scipy, statsmodels, published formulas and hand-worked counts."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)

from simulate.cli import cli
from simulate.stats import (
    adjust_pvalues,
    bootstrap_mean_interval,
    compare_proportions,
    count_trials,
    episodes_needed,
    episodes_needed_wilson,
    mean_pass_at_k,
    mean_pass_hat_k,
    pass_at_k,
    pass_at_k_curve,
    pass_hat_k,
    pass_hat_k_curve,
    wilson_interval,
)

COUNTS = [(0, 1), (1, 1), (0, 7), (3, 7), (7, 7), (17, 20), (412, 1000)]


# --- Wilson --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("successes", "n"), COUNTS)
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_equals_statsmodels(successes, n, confidence):
    expected = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    assert wilson_interval(successes, n, confidence) == pytest.approx(expected, abs=1e-12)


def test_wilson_hand_worked_value():
    # 8 of 10 at 95%: (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)
    z, p, n = 1.959963984540054, 0.8, 10
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson_interval(8, 10) == pytest.approx((centre - half, centre + half), abs=1e-12)


def test_wilson_with_no_episodes_is_the_whole_range():
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((3, 2), "0 <= successes <= n"),
        ((-1, 2), "0 <= successes <= n"),
        ((1, 2, 1.0), "confidence"),
        ((1, 2, 0), "confidence"),
    ],
)
def test_wilson_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        wilson_interval(*args)


# --- bootstrap -----------------------------------------------------------------------------------


SKEWED = [3.0, 4.0, 4.0, 5.0, 6.0, 7.0, 9.0, 12.0, 20.0, 41.0]


@pytest.mark.parametrize("method", ["BCa", "percentile"])
def test_bootstrap_equals_scipy_with_the_same_seed(method):
    expected = scipy_stats.bootstrap(
        (np.array(SKEWED),),
        np.mean,
        n_resamples=2000,
        confidence_level=0.9,
        method=method,
        rng=np.random.default_rng(7),
    ).confidence_interval
    got = bootstrap_mean_interval(SKEWED, confidence=0.9, seed=7, method=method)
    assert got == pytest.approx((expected.low, expected.high), rel=1e-12)


def test_bootstrap_is_deterministic_per_seed_and_brackets_the_mean():
    first = bootstrap_mean_interval(SKEWED, seed=3)
    assert first == bootstrap_mean_interval(SKEWED, seed=3)
    assert first != bootstrap_mean_interval(SKEWED, seed=4)
    assert first is not None
    assert first[0] < np.mean(SKEWED) < first[1]


def test_bootstrap_of_a_large_sample_uses_percentile_and_matches_scipy():
    values = np.random.default_rng(0).exponential(2.0, size=6000)
    expected = scipy_stats.bootstrap(
        (values,), np.mean, n_resamples=500, method="percentile", rng=np.random.default_rng(1)
    ).confidence_interval
    got = bootstrap_mean_interval(values, resamples=500, seed=1)
    assert got == pytest.approx((expected.low, expected.high), rel=1e-12)


def test_bootstrap_small_and_constant_samples():
    assert bootstrap_mean_interval([]) is None
    assert bootstrap_mean_interval([4.0]) is None
    assert bootstrap_mean_interval([2.0, 2.0, 2.0]) == (2.0, 2.0)
    two = bootstrap_mean_interval([1.0, 3.0])
    assert two is not None
    assert 1.0 <= two[0] <= two[1] <= 3.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"values": [1.0, float("nan")]}, "finite"),
        ({"values": [[1.0, 2.0]]}, "one-dimensional"),
        ({"values": [1.0, 2.0], "resamples": 0}, "resamples"),
        ({"values": [1.0, 2.0], "method": "basic"}, "'BCa' or 'percentile'"),
        ({"values": [1.0, 2.0], "confidence": 95}, "confidence"),
    ],
)
def test_bootstrap_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_mean_interval(**kwargs)


# --- pass^k and pass@k ---------------------------------------------------------------------------


def humaneval_pass_at_k(n: int, c: int, k: int) -> float:
    """The reference implementation from Chen et al. 2021 (HumanEval), figure 3, as published."""
    if n - c < k:
        return 1.0
    return 1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1))


ALL_NCK = [(n, c, k) for n in range(1, 9) for c in range(n + 1) for k in range(1, n + 1)]


@pytest.mark.parametrize(("n", "k"), [(1, 1), (4, 1), (4, 4), (8, 3)])
def test_pass_hat_k_all_pass_is_one_and_all_fail_is_zero(n, k):
    assert pass_hat_k(n, n, k) == 1.0
    assert pass_hat_k(n, 0, k) == 0.0
    assert pass_at_k(n, n, k) == 1.0
    assert pass_at_k(n, 0, k) == 0.0


def test_pass_hat_k_mixed_hand_worked():
    # 4 trials, 2 passed: of the 6 pairs of trials only one has both passing.
    assert pass_hat_k(4, 2, 2) == pytest.approx(1 / 6)
    assert pass_hat_k(4, 2, 1) == pytest.approx(1 / 2)
    assert pass_hat_k(4, 3, 2) == pytest.approx(3 / 6)
    assert pass_hat_k(4, 3, 4) == 0.0
    # ... and 5 of the 6 pairs have at least one pass.
    assert pass_at_k(4, 2, 2) == pytest.approx(5 / 6)


@pytest.mark.parametrize(("n", "c", "k"), ALL_NCK)
def test_pass_hat_k_equals_the_published_formula(n, c, k):
    # tau-bench (Yao et al. 2024): pass^k = C(c, k) / C(n, k)
    assert pass_hat_k(n, c, k) == pytest.approx(math.comb(c, k) / math.comb(n, k), abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), ALL_NCK)
def test_pass_at_k_equals_humaneval_and_its_formula(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(humaneval_pass_at_k(n, c, k), abs=1e-12)
    assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)


def test_pass_k_large_counts_stay_finite():
    assert pass_hat_k(2000, 1900, 100) == pytest.approx(
        math.comb(1900, 100) / math.comb(2000, 100), rel=1e-9
    )
    assert pass_at_k(2000, 3, 500) == pytest.approx(humaneval_pass_at_k(2000, 3, 500), rel=1e-12)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((3, 1, 4), "k must be between 1 and n=3"),
        ((3, 1, 0), "k must be between 1 and n=3"),
        ((0, 0, 1), "n .* must be at least 1"),
        ((3, 4, 1), "c .* between 0 and n=3"),
        ((3, -1, 1), "c .* between 0 and n=3"),
    ],
)
def test_pass_k_rejects_bad_counts(args, message):
    with pytest.raises(ValueError, match=message):
        pass_hat_k(*args)
    with pytest.raises(ValueError, match=message):
        pass_at_k(*args)


def test_task_averages_and_curves():
    results = [(("ann", "refund"), True)] * 3 + [(("ann", "refund"), False)]
    results += [(("bob", "refund"), True)] * 3
    results += [(("bob", "cancel"), False)] * 3
    tasks = count_trials(results)
    assert tasks == {
        ("ann", "refund"): (4, 3),
        ("bob", "refund"): (3, 3),
        ("bob", "cancel"): (3, 0),
    }
    counts = list(tasks.values())
    # k = 2: ann 3/6, bob-refund 1, bob-cancel 0
    assert mean_pass_hat_k(counts, 2) == pytest.approx((0.5 + 1 + 0) / 3)
    assert mean_pass_at_k(counts, 2) == pytest.approx((1 + 1 + 0) / 3)
    hat = pass_hat_k_curve(counts)
    assert list(hat) == [1, 2, 3]  # up to the fewest trials of any task
    assert hat[1] == pytest.approx((0.75 + 1 + 0) / 3)
    assert hat[3] == pytest.approx((0.25 + 1 + 0) / 3)
    assert all(hat[k] >= hat[k + 1] for k in (1, 2))
    at = pass_at_k_curve(counts)
    assert at[1] == hat[1]
    assert all(at[k] <= at[k + 1] for k in (1, 2))
    with pytest.raises(ValueError, match="at least one task"):
        pass_hat_k_curve([])
    with pytest.raises(ValueError, match="k must be between 1 and n=3"):
        mean_pass_hat_k(counts, 4)


# --- sample sizes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("margin", "confidence", "expected", "n"),
    [
        (0.05, 0.95, 0.5, 385),  # 1.96² · 0.25 / 0.0025 = 384.15
        (0.05, 0.95, 0.8, 246),  # 1.96² · 0.16 / 0.0025 = 245.85
        (0.03, 0.95, 0.5, 1068),  # 1.96² · 0.25 / 0.0009 = 1067.07
        (0.1, 0.9, 0.5, 68),  # 1.645² · 0.25 / 0.01 = 67.64
        (0.05, 0.99, 0.5, 664),  # 2.576² · 0.25 / 0.0025 = 663.49
        (0.05, 0.95, 1.0, 1),  # no spread: the approximation asks for nothing, floor at 1
    ],
)
def test_episodes_needed_hand_computed(margin, confidence, expected, n):
    assert episodes_needed(margin, confidence, expected) == n


@pytest.mark.parametrize(
    ("margin", "confidence", "expected"),
    [(0.05, 0.95, 0.5), (0.05, 0.95, 0.8), (0.02, 0.99, 0.97), (0.1, 0.9, 0.0), (0.5, 0.5, 0.5)],
)
def test_episodes_needed_wilson_is_the_smallest_n_within_the_margin(margin, confidence, expected):
    n = episodes_needed_wilson(margin, confidence, expected)

    def half_width(size: int) -> float:
        low, high = proportion_confint(expected * size, size, 1 - confidence, method="wilson")
        return (high - low) / 2

    assert half_width(n) <= margin
    assert n == 1 or half_width(n - 1) > margin


def test_episodes_needed_wilson_hand_computed():
    # p = 0: half-width z²/(2(n + z²)) <= 0.05 → n >= 1.96²/0.1 - 1.96² = 34.57
    assert episodes_needed_wilson(0.05, 0.95, 0.0) == 35
    assert episodes_needed_wilson(0.05, 0.95, 0.5) == 381


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0.0,), "margin"),
        ((0.6,), "margin"),
        ((0.05, 1.0), "confidence"),
        ((0.05, 0.95, 1.2), "expected"),
        ((0.05, 0.95, -0.1), "expected"),
    ],
)
def test_episodes_needed_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        episodes_needed(*args)
    with pytest.raises(ValueError, match=message):
        episodes_needed_wilson(*args)


# --- comparing two runs --------------------------------------------------------------------------


@pytest.mark.parametrize(("s1", "n1", "s2", "n2"), [(40, 50, 30, 50), (120, 200, 150, 210)])
def test_compare_large_counts_uses_z_test_equal_to_statsmodels(s1, n1, s2, n2):
    result = compare_proportions(s1, n1, s2, n2)
    low, high = confint_proportions_2indep(s2, n2, s1, n1, method="newcomb", compare="diff")
    _, p_value = proportions_ztest([s2, s1], [n2, n1])
    assert result.test == "z"
    assert result.difference == pytest.approx(s2 / n2 - s1 / n1)
    assert (result.low, result.high) == pytest.approx((low, high), abs=1e-12)
    assert result.p_value == pytest.approx(p_value, abs=1e-12)
    assert (result.rate1, result.rate2) == (s1 / n1, s2 / n2)
    assert result.low < result.difference < result.high


def test_compare_hand_worked_z():
    # 40/50 vs 30/50: pooled p = 0.7, se = sqrt(0.7·0.3·(2/50)) = 0.09165, z = -2.182
    result = compare_proportions(40, 50, 30, 50)
    z = -0.2 / math.sqrt(0.7 * 0.3 * (2 / 50))
    assert result.p_value == pytest.approx(2 * scipy_stats.norm.sf(abs(z)), abs=1e-12)


@pytest.mark.parametrize(
    ("s1", "n1", "s2", "n2"), [(3, 4, 1, 4), (9, 10, 2, 10), (48, 50, 50, 50), (0, 30, 0, 30)]
)
def test_compare_small_counts_uses_fisher(s1, n1, s2, n2):
    result = compare_proportions(s1, n1, s2, n2)
    _, p_value = scipy_stats.fisher_exact([[s1, n1 - s1], [s2, n2 - s2]])
    assert result.test == "fisher"
    assert result.p_value == pytest.approx(p_value, abs=1e-12)
    assert 0 <= result.p_value <= 1


def test_compare_switches_to_fisher_exactly_below_five_expected():
    # 10/20 vs 0/20: expected cells are 5 (= 20·10/40), so the z-test applies ...
    assert compare_proportions(10, 20, 0, 20).test == "z"
    # ... 9/20 vs 0/20: expected 4.5 in the pass column, so Fisher.
    assert compare_proportions(9, 20, 0, 20).test == "fisher"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((5, 4, 1, 4), "run 1 counts"),
        ((1, 4, -1, 4), "run 2 counts"),
        ((0, 0, 1, 4), "at least one episode"),
        ((1, 4, 1, 4, 1.5), "confidence"),
    ],
)
def test_compare_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        compare_proportions(*args)


# --- many slices ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["holm", "bonferroni", "fdr_bh"])
def test_adjust_pvalues_equals_statsmodels(method):
    pvalues = [0.001, 0.04, 0.03, 0.2, 0.012]
    expected = multipletests(pvalues, method=method)[1]
    assert adjust_pvalues(pvalues, method) == pytest.approx(list(expected), abs=1e-12)


def test_adjust_pvalues_holm_hand_worked():
    # sorted 0.01, 0.03, 0.04 × 3, 2, 1 = 0.03, 0.06, 0.04 → monotone: 0.03, 0.06, 0.06
    assert adjust_pvalues([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert adjust_pvalues([]) == []


def test_adjust_pvalues_rejects_bad_input():
    with pytest.raises(ValueError, match=r"'hlm' \(did you mean 'holm'\?\); choose from"):
        adjust_pvalues([0.1], "hlm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"in \[0, 1\], got 1\.5"):
        adjust_pvalues([0.1, 1.5])
    with pytest.raises(ValueError, match=r"in \[0, 1\], got nan"):
        adjust_pvalues([float("nan")])


# --- simulate plan-size --------------------------------------------------------------------------


def plan_size(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulate", "plan-size", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "120"},
    )


def test_plan_size_prints_both_estimates_and_the_trials_per_cell():
    done = plan_size(
        "--margin", "0.05", "--confidence", "0.95", "--expected", "0.8", "--cells", "108"
    )
    assert done.returncode == 0, done.stderr
    assert "normal approximation: 246" in done.stdout
    assert "Wilson score interval: 245" in done.stdout
    # the larger of the two, spread over 108 cells: ceil(246 / 108) = 3 trials, 324 episodes
    assert "3 trials per cell (324 episodes)" in done.stdout


def test_plan_size_defaults_to_a_rate_of_one_half():
    done = plan_size("--margin", "0.05")
    assert done.returncode == 0, done.stderr
    assert "normal approximation: 385" in done.stdout
    assert "trials per cell" not in done.stdout


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--margin", "0"], "--margin"),
        (["--margin", "0.7"], "--margin"),
        (["--margin", "0.05", "--confidence", "1"], "--confidence"),
        (["--margin", "0.05", "--expected", "1.5"], "--expected"),
        (["--margin", "0.05", "--cells", "0"], "--cells"),
        ([], "--margin"),
    ],
)
def test_plan_size_rejects_bad_flags_with_usage_exit(args, flag):
    result = CliRunner().invoke(cli, ["plan-size", *args])
    assert result.exit_code == 2
    assert flag in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_plan_size_bad_flag_from_the_console_is_one_error_line():
    done = plan_size("--margin", "0")
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error")]
    assert errors == ["Error: Invalid value for '--margin': 0.0 is not in the range 0<x<=0.5."]
    assert "Traceback" not in done.stderr
