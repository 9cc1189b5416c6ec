"""The goal rate's two intervals: the suite (within-cell) and the population (two-way
cluster-robust) one, against statsmodels and by their coverage in simulations with known cell
effects."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from statsmodels.stats.proportion import proportion_confint

from simulate.stats import (
    effective_wilson,
    population_rate,
    suite_rate,
    two_way_cluster_variance,
    within_cell_variance,
)


def crossed(personas: int, scenarios: int) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's persona and scenario codes, persona-major."""
    return np.repeat(np.arange(personas), scenarios), np.tile(np.arange(scenarios), personas)


def test_two_way_variance_is_statsmodels_two_way_cluster_robust_variance():
    # An unbalanced run: 7 personas x 5 scenarios, 1 to 4 rated trials, some cells missing.
    rng = np.random.default_rng(3)
    rows = []
    for persona in range(7):
        for scenario in range(5):
            if rng.random() < 0.15:
                continue
            chance = rng.uniform(0.3, 0.95)
            rows += [(persona, scenario, rng.random() < chance) for _ in range(rng.integers(1, 5))]
    data = np.array(rows, dtype=float)
    fit = sm.OLS(data[:, 2], np.ones(len(data))).fit(
        cov_type="cluster", cov_kwds={"groups": data[:, :2].astype(int)}
    )
    cells = {(int(p), int(s)) for p, s, _ in rows}
    keys = sorted(cells)
    successes = np.array([sum(ok for p, s, ok in rows if (p, s) == key) for key in keys])
    trials = np.array([sum(1 for p, s, _ in rows if (p, s) == key) for key in keys])
    personas = np.array([p for p, _ in keys])
    scenarios = np.array([s for _, s in keys])
    variance, df = two_way_cluster_variance(successes, trials, personas, scenarios)
    assert float(variance) == pytest.approx(fit.bse[0] ** 2, rel=1e-9)
    assert df == 4  # min(7, 5) - 1


def test_within_cell_variance_is_the_anova_within_mean_square_over_n():
    successes = np.array([3, 0, 4, 2, 1])
    trials = np.array([4, 4, 4, 3, 2])
    outcomes = [np.array([1] * s + [0] * (n - s)) for s, n in zip(successes, trials, strict=True)]
    within = sum(((o - o.mean()) ** 2).sum() for o in outcomes)
    df = trials.sum() - len(trials)
    variance, got_df = within_cell_variance(successes, trials)
    assert got_df == df
    assert float(variance) == pytest.approx(within / df / trials.sum())


@pytest.mark.parametrize(("count", "n"), [(11, 15), (0, 20), (20, 20), (37, 108)])
def test_effective_wilson_at_the_binomial_variance_is_the_wilson_interval(count, n):
    p = count / n
    low, high = effective_wilson(p, p * (1 - p) / n, n, df=1e9)
    assert (float(low), float(high)) == pytest.approx(
        proportion_confint(count, n, method="wilson"), abs=1e-6
    )


def coverage(
    personas: int, scenarios: int, trials: int, effects: tuple[float, float, float, float]
) -> tuple[float, float]:
    """Coverage of the population and the suite intervals over 2,000 simulated runs.

    Success is logistic(mu + persona + scenario + persona×scenario), each effect normal with
    the given sd: the population target is E[p] over new personas and scenarios (Gauss–Hermite
    over the summed logit), the suite target the mean p of the run's own cells.
    """
    mu, sd_persona, sd_scenario, sd_cell = effects
    reps = 2000
    rng = np.random.default_rng(personas * 1000 + scenarios * 10 + trials)
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    spread = np.sqrt(sd_persona**2 + sd_scenario**2 + sd_cell**2)
    target = float((weights / (1 + np.exp(-(mu + spread * nodes)))).sum() / weights.sum())
    logit = (
        mu
        + rng.normal(0, sd_persona, (reps, personas, 1))
        + rng.normal(0, sd_scenario, (reps, 1, scenarios))
        + rng.normal(0, sd_cell, (reps, personas, scenarios))
    )
    chance = (1 / (1 + np.exp(-logit))).reshape(reps, -1)
    successes = rng.binomial(trials, chance).astype(float)
    n = np.full(personas * scenarios, float(trials))
    rate = successes.sum(axis=1) / n.sum()
    variance, df = two_way_cluster_variance(successes, n, *crossed(personas, scenarios))
    low, high = effective_wilson(rate, variance, n.sum(), df, at_most_n=True)
    population = float(((low <= target) & (target <= high)).mean())
    variance, df = within_cell_variance(successes, n)
    low, high = effective_wilson(rate, variance, n.sum(), df)
    suite_target = chance.mean(axis=1)
    suite = float(((low <= suite_target) & (suite_target <= high)).mean())
    return population, suite


@pytest.mark.parametrize(
    ("personas", "scenarios", "trials", "effects"),
    [
        (12, 9, 4, (1.5, 0.8, 1.0, 0.5)),  # the demo's shape
        (8, 6, 4, (2.0, 0.8, 1.0, 0.5)),  # few clusters, a high rate
        (20, 15, 2, (1.0, 0.7, 0.7, 0.5)),
    ],
)
def test_both_intervals_cover_95_percent_within_3_points(personas, scenarios, trials, effects):
    population, suite = coverage(personas, scenarios, trials, effects)
    assert 0.92 <= population <= 0.98, population
    assert 0.92 <= suite <= 0.98, suite


def test_wilson_is_too_narrow_for_the_population_and_too_wide_for_the_suite():
    # The finding, on a run where most of the variance sits between cells.
    rng = np.random.default_rng(0)
    personas, scenarios = crossed(12, 9)
    chance = 1 / (
        1 + np.exp(-(1.5 + rng.normal(0, 1.5, 12)[personas] + rng.normal(0, 1.5, 9)[scenarios]))
    )
    successes = rng.binomial(4, chance)
    trials = np.full(108, 4)
    wilson = proportion_confint(successes.sum(), trials.sum(), method="wilson")
    suite = suite_rate(successes, trials)
    population = population_rate(successes, trials, personas, scenarios)
    width = wilson[1] - wilson[0]
    assert suite.high - suite.low < width < population.high - population.low
    assert suite.value == population.value == successes.sum() / trials.sum()


def test_intervals_that_cannot_be_computed_say_why():
    one_trial = suite_rate(np.array([1, 0, 1]), np.array([1, 1, 1]))
    assert one_trial.value == pytest.approx(2 / 3) and one_trial.interval is None
    assert "--trials 2" in one_trial.reason
    one_cell = population_rate(np.array([3]), np.array([4]), np.array([0]), np.array([0]))
    assert one_cell.interval is None and "one persona and one scenario" in one_cell.reason
    # One persona, several scenarios: the scenarios alone are the clusters.
    one_persona = population_rate(
        np.array([4, 1, 3]), np.array([4, 4, 4]), np.array([0, 0, 0]), np.array([0, 1, 2])
    )
    assert one_persona.interval is not None


def test_satterthwaite_df_is_the_anova_df_when_cells_vary_alike_and_few_when_few_vary():
    from simulate.stats import satterthwaite_df

    assert satterthwaite_df(np.array([1, 1, 1, 1]), np.array([2, 2, 2, 2])) == pytest.approx(4)
    assert satterthwaite_df(np.array([2, 2, 2]), np.array([4, 4, 4])) == pytest.approx(9)
    few = np.array([1, 1, 1] + [2] * 105)  # 3 of 108 cells split, 2 trials each
    assert satterthwaite_df(few, np.full(108, 2)) == pytest.approx(3)


def test_the_suite_interval_holds_when_only_a_few_cells_vary():
    # 8 of 108 cells at 20%, the rest always pass, 2 trials each: the pooled ANOVA df (108)
    # overstated how well the variance is known (82% coverage); Satterthwaite's df holds 95%.
    rng = np.random.default_rng(0)
    chance = np.ones(108)
    chance[:8] = 0.2
    hits = 0
    for _ in range(2000):
        figure = suite_rate(rng.binomial(2, chance), np.full(108, 2))
        hits += figure.low is not None and figure.low <= chance.mean() <= figure.high
    assert hits / 2000 >= 0.93
