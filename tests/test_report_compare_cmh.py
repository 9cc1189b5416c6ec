"""compare's stratified design: Cochran–Mantel–Haenszel over persona × scenario cells against
statsmodels and scipy, every rated episode of both runs used whatever their trial counts, and
intervals that never contradict their (adjusted) verdicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest, fisher_exact
from statsmodels.stats.contingency_tables import StratifiedTable
from test_report_compare import PERSONAS, SCENARIOS, write_run

from simulate.report.compare import compare_runs
from simulate.stats import cmh_compare, miettinen_interval


def tables(a, n1, c, n2) -> list[np.ndarray]:
    return [np.array([[a[k], n1[k] - a[k]], [c[k], n2[k] - c[k]]]) for k in range(len(a))]


@pytest.mark.parametrize("seed", range(6))
def test_cmh_equals_statsmodels_stratified_table(seed):
    rng = np.random.default_rng(seed)
    strata = 40
    n1, n2 = rng.integers(1, 6, strata), rng.integers(1, 6, strata)
    chance = rng.uniform(0.3, 0.95, strata)
    a = rng.binomial(n1, chance)
    c = rng.binomial(n2, np.clip(chance - 0.1 * seed / 5, 0, 1))
    result = cmh_compare(a, n1, c, n2)
    assert result.test == "cmh"
    reference = StratifiedTable(tables(a, n1, c, n2)).test_null_odds(correction=False)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    # the Mantel–Haenszel risk difference, by hand
    weights = n1 * n2 / (n1 + n2)
    by_hand = (weights * (c / n2 - a / n1)).sum() / weights.sum()
    assert result.difference == pytest.approx(by_hand)


def test_exact_cmh_with_one_stratum_is_fishers_exact_test():
    for a, n1, c, n2 in [(7, 9, 2, 8), (3, 3, 0, 4), (1, 5, 4, 6)]:
        result = cmh_compare(np.array([a]), np.array([n1]), np.array([c]), np.array([n2]))
        assert result.test == "cmh-exact"
        expected = fisher_exact([[a, n1 - a], [c, n2 - c]]).pvalue
        assert result.p_value == pytest.approx(expected, rel=1e-9)


def test_exact_cmh_over_pair_strata_is_mcnemars_exact_test():
    # 6 pairs pass -> fail, 1 fail -> pass, 30 concordant: one stratum per pair.
    before = np.array([1] * 6 + [0] * 1 + [1] * 20 + [0] * 10)
    after = np.array([0] * 6 + [1] * 1 + [1] * 20 + [0] * 10)
    ones = np.ones_like(before)
    result = cmh_compare(before, ones, after, ones)
    assert result.test == "cmh-exact"
    assert result.p_value == pytest.approx(binomtest(1, 7, 0.5).pvalue)
    assert result.difference == pytest.approx((1 - 6) / 37)


SHAPE = (len(PERSONAS), len(SCENARIOS))


def test_every_rated_episode_counts_whatever_the_trial_counts(tmp_path: Path):
    # Four trials per cell before, one after, other seeds: all 5 episodes of each cell count.
    rng = np.random.default_rng(1)
    rates = rng.uniform(0.6, 0.95, SHAPE)
    before = write_run(tmp_path / "b", rng.random((*SHAPE, 4)) < rates[..., None], seed=1)
    after = write_run(tmp_path / "a", rng.random((*SHAPE, 1)) < rates[..., None] - 0.3, seed=2)
    comparison = compare_runs(before, after)
    assert comparison.design == "stratified"
    overall = comparison.overall
    assert (overall.n_before, overall.n_after) == (120, 30)
    assert overall.test in ("cmh", "cmh-exact")
    assert comparison.compared == 30  # matched trial-0 pairs: only the pass -> fail list
    assert overall.dropped and "overall" in [s.name for s in comparison.regressions]


def test_other_seeds_compare_within_cells_the_same_seed_pairs(tmp_path: Path):
    rng = np.random.default_rng(2)
    same = rng.random((*SHAPE, 2)) < 0.8
    paired = compare_runs(write_run(tmp_path / "b", same), write_run(tmp_path / "a", same))
    assert paired.design == "paired" and paired.overall.test == "mcnemar-exact"
    other = compare_runs(tmp_path / "b", write_run(tmp_path / "c", same, seed=7))
    assert other.design == "stratified" and other.overall.test.startswith("cmh")
    assert any("other seeds" in note for note in other.notes)


@pytest.mark.parametrize("seed", range(8))
def test_an_interval_and_its_verdict_never_disagree(tmp_path: Path, seed: int):
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0.5, 0.95, SHAPE)
    trials = int(rng.integers(1, 4))
    drop = rng.uniform(0, 0.3, SHAPE)
    before = write_run(tmp_path / "b", rng.random((*SHAPE, trials)) < rates[..., None], seed=1)
    after = write_run(tmp_path / "a", rng.random((*SHAPE, 3)) < (rates - drop)[..., None], seed=2)
    comparison = compare_runs(before, after)
    for change in [comparison.overall, *comparison.slices, *comparison.criteria]:
        excludes_zero = change.low > 0 or change.high < 0
        assert excludes_zero == change.significant, change.name
        assert change.low <= change.difference <= change.high


def test_miettinen_limits_by_hand():
    # p = 0.05 exactly: the interval touches 0; smaller p: it leaves 0 out, larger: holds it.
    low, high = miettinen_interval(-0.1, 0.05, 0.04)
    assert high == pytest.approx(0.0, abs=1e-12) and low == pytest.approx(-0.2)
    assert miettinen_interval(-0.1, 0.01, 0.04)[1] < 0 < miettinen_interval(-0.1, 0.2, 0.04)[1]
    assert miettinen_interval(0.0, 1.0, 0.05) == pytest.approx((-0.098, 0.098), abs=1e-3)


def test_no_change_at_all_is_not_a_zero_width_interval(tmp_path: Path):
    # A run against itself: not one of the 60 pairs changed; the interval holds what 60 pairs
    # cannot rule out (Clopper-Pearson's bound for 0 of 60), not [0, 0].
    same = np.random.default_rng(3).random((*SHAPE, 2)) < 0.8
    run = write_run(tmp_path / "b", same)
    comparison = compare_runs(run, run)
    overall = comparison.overall
    assert overall.difference == 0 and not overall.significant
    bound = 1 - 0.025 ** (1 / overall.n_before)
    assert (overall.low, overall.high) == pytest.approx((-bound, bound))
    for change in comparison.slices:
        assert change.low < 0 < change.high, change.name


def test_compare_json_is_strict_json_and_names_the_design(tmp_path: Path):
    import json

    from click.testing import CliRunner

    from simulate.cli import cli

    def refuse(constant: str) -> object:
        raise ValueError(f"not JSON: {constant}")

    rng = np.random.default_rng(5)
    before = write_run(tmp_path / "b", rng.random((*SHAPE, 2)) < 0.8, seed=1)
    after = write_run(tmp_path / "a", np.ones((*SHAPE, 1), dtype=bool), seed=2)
    result = CliRunner().invoke(cli, ["compare", str(before), str(after), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output, parse_constant=refuse)
    assert data["design"] == "stratified"
    assert data["primary_test"].endswith("over persona × scenario cells")
    text = CliRunner().invoke(cli, ["compare", str(before), str(after)]).output
    assert "Cochran–Mantel–Haenszel over cells" in text
