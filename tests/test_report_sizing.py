"""`simulate plan-size`: "within ±margin" delivered exactly (both ends of the interval, near 0
and 1 too), and a pilot run's design effect against statsmodels' clustered variance."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from click.testing import CliRunner
from statsmodels.stats.proportion import proportion_confint
from test_report_figures import make_episode, write_planted_run

from simulate.cli import cli
from simulate.report.sizing import plan_size, read_pilot
from simulate.stats import episodes_within


def reach(n: int, p: float, confidence: float) -> float:
    low, high = proportion_confint(p * n, n, alpha=1 - confidence, method="wilson")
    return max(p - low, high - p)


@pytest.mark.parametrize(
    ("margin", "confidence", "expected"),
    [(0.05, 0.95, 0.99), (0.05, 0.95, 0.0), (0.05, 0.95, 1.0), (0.03, 0.9, 0.8), (0.1, 0.99, 0.5)],
)
def test_both_ends_are_within_the_margin_at_the_smallest_n(margin, confidence, expected):
    n = episodes_within(margin, confidence, expected)
    assert reach(n, expected, confidence) <= margin + 1e-12
    assert n == 1 or reach(n - 1, expected, confidence) > margin


def test_the_issues_example_99_percent_plus_minus_5_points_needs_87():
    assert episodes_within(0.05, 0.95, 0.99) == 87
    assert plan_size(0.05, 0.95, 0.99).wilson == 43  # the half-width alone: far end 8.9 points


def test_a_pilot_gives_the_design_effect_of_its_clustering(tmp_path):
    rng = np.random.default_rng(4)
    chance = 1 / (1 + np.exp(-(1.0 + rng.normal(0, 1.2, (6, 5)))))
    rows, episodes = [], []
    for p in range(6):
        for s in range(5):
            for t in range(3):
                ok = bool(rng.random() < chance[p, s])
                rows.append((p, s, ok))
                episodes.append(
                    make_episode(f"p{p}", f"s{s}", t, status="goal_reached" if ok else "gave_up")
                )
    pilot = read_pilot(write_planted_run(tmp_path / "pilot", episodes))
    data = np.array(rows, dtype=float)
    fit = sm.OLS(data[:, 2], np.ones(len(data))).fit(
        cov_type="cluster", cov_kwds={"groups": data[:, :2].astype(int)}
    )
    rate = data[:, 2].mean()
    assert pilot.design_effect == pytest.approx(fit.bse[0] ** 2 / (rate * (1 - rate) / 90))
    plan = plan_size(0.1, 0.95, rate, pilot=tmp_path / "pilot")
    assert plan.clustered_episodes >= plan.within
    if plan.clustered_trials_per_cell is not None:  # reaching the target with the pilot's cells
        m = plan.clustered_trials_per_cell
        variance = pilot.between_cell_variance + pilot.within_cell_variance / (pilot.cells * m)
        assert variance <= rate * (1 - rate) / plan.within
    result = CliRunner().invoke(
        cli,
        ["plan-size", "--margin", "0.1", "--expected", "0.7", "--pilot", str(tmp_path / "pilot")],
    )
    assert result.exit_code == 0, result.output
    assert "design effect" in result.output and "both ends of the Wilson interval" in result.output


def crossed_rates(rng, personas: int, scenarios: int, trials: int, runs: int) -> np.ndarray:
    """Goal rates of ``runs`` suites drawn afresh from one population of users and tasks:
    logit 0.8 + persona effect + scenario effect, each normal with sd 0.8."""
    rates = np.empty(runs)
    for i in range(runs):
        logit = 0.8 + rng.normal(0, 0.8, (personas, 1)) + rng.normal(0, 0.8, (1, scenarios))
        chance = 1 / (1 + np.exp(-logit))
        rates[i] = rng.binomial(trials, chance).sum() / (personas * scenarios * trials)
    return rates


def test_the_pilot_plan_for_similar_users_and_tasks_reaches_the_margin(tmp_path):
    # A pilot of 12 personas x 10 scenarios x 2 trials from a crossed population; the plan
    # (57 x 47 here), drawn afresh 300 times, lands within ±5 points of the population's rate
    # 91% of the time: near the 95% asked, short of it by what a variance measured on 12 and
    # 10 clusters misses. Kish's episodes x design effect (30 x 25) managed 75%.
    rng = np.random.default_rng(8)
    logit = 0.8 + rng.normal(0, 0.8, (12, 1)) + rng.normal(0, 0.8, (1, 10))
    chance = 1 / (1 + np.exp(-logit))
    episodes = [
        make_episode(
            f"p{p}", f"s{s}", t, status="goal_reached" if rng.random() < chance[p, s] else "gave_up"
        )
        for p in range(12)
        for s in range(10)
        for t in range(2)
    ]
    write_planted_run(tmp_path / "pilot", episodes)
    truth = float(np.mean(crossed_rates(rng, 400, 400, 1, 3)))
    plan = plan_size(0.05, 0.95, truth, pilot=tmp_path / "pilot")
    assert plan.clustered_personas is not None and plan.clustered_scenarios is not None
    assert plan.clustered_personas > 12 and plan.clustered_scenarios > 10
    rates = crossed_rates(rng, plan.clustered_personas, plan.clustered_scenarios, 2, 300)
    within = np.mean(np.abs(rates - truth) <= 0.05)
    assert within >= 0.9, (within, plan)


def test_a_pilot_that_cannot_show_clustering_says_which_part_is_missing(tmp_path):
    # One trial per cell (as the demo plays): the error names the trials, not all three needs.
    episodes = [
        make_episode(f"p{p}", f"s{s}", 0, status="goal_reached" if (p + s) % 3 else "gave_up")
        for p in range(4)
        for s in range(3)
    ]
    write_planted_run(tmp_path / "pilot", episodes)
    result = CliRunner().invoke(
        cli, ["plan-size", "--margin", "0.1", "--pilot", str(tmp_path / "pilot")]
    )
    assert result.exit_code == 1  # main() prints it as one `error:` line
    assert "two or more rated trials in some cell" in str(result.exception)
    assert "both passes and failures" not in str(result.exception)


def test_with_a_pilot_the_expected_rate_is_the_pilots(tmp_path):
    rng = np.random.default_rng(2)
    episodes = [
        make_episode(
            f"p{p}", f"s{s}", t, status="goal_reached" if rng.random() < 0.8 else "gave_up"
        )
        for p in range(5)
        for s in range(4)
        for t in range(2)
    ]
    pilot = read_pilot(write_planted_run(tmp_path / "pilot", episodes))
    assert plan_size(0.1, pilot=tmp_path / "pilot").expected == pytest.approx(pilot.rate)
    assert plan_size(0.1).expected == 0.5
