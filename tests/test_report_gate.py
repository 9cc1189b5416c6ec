"""The sequential gate (`simulate run --baseline RUN --until-decided`): false alarms at or below
alpha over thousands of simulated null runs however often it looks, power against a real drop,
and the command end to end."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from simulate.cli import cli
from simulate.report.gate import GATE_FILE, decide
from simulate.stats import mixture_boundary

DEMO = Path(str(resources.files("simulate.demo")))
CELLS, BASELINE_TRIALS, ROUNDS = 60, 3, 8


def first_decisions(drop: float, runs: int = 4000, alpha: float = 0.05, margin: float = 0.05):
    """Play ``runs`` simulated gates: a baseline of 3 trials per cell, then up to 8 rounds of
    the new agent, whose chance in every cell is the baseline's minus ``drop``. Returns each
    run's first decision: 1 regression, -1 no regression beyond the margin, 0 undecided."""
    rng = np.random.default_rng(int(drop * 1000) + 7)
    chance = rng.uniform(0.5, 0.97, CELLS)
    baseline = rng.binomial(BASELINE_TRIALS, chance, (runs, CELLS)).sum(axis=1)
    rounds = rng.random((runs, ROUNDS, CELLS)) < np.clip(chance - drop, 0, 1)
    successes = rounds.sum(axis=2).cumsum(axis=1)
    decision = np.zeros(runs, dtype=int)
    for r in range(ROUNDS):
        _, _, regression, fine = decide(
            baseline,
            BASELINE_TRIALS * CELLS,
            successes[:, r],
            (r + 1) * CELLS,
            ROUNDS * CELLS,
            alpha=alpha,
            margin=margin,
        )
        open_ = decision == 0
        decision[open_ & regression] = 1
        decision[open_ & fine] = -1
    return decision


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_false_alarms_stay_at_or_below_alpha_over_4000_null_runs(alpha):
    # The agent did not change; the gate looks after each of 8 rounds.
    decisions = first_decisions(drop=0.0, alpha=alpha)
    assert (decisions == 1).mean() <= alpha


def test_no_regression_is_not_declared_when_the_agent_lost_more_than_the_margin():
    decisions = first_decisions(drop=0.08, margin=0.05)
    assert (decisions == -1).mean() <= 0.05


def test_a_real_drop_is_caught_and_an_unchanged_agent_is_cleared():
    assert (first_decisions(drop=0.25, runs=500) == 1).mean() >= 0.9
    # The price of validity at every look: with 180 baseline episodes it clears a margin of
    # 0.25, not of 0.05 (Hoeffding's variance is the worst case, 1/4).
    assert (first_decisions(drop=0.0, runs=500, margin=0.25) == -1).mean() >= 0.9


def test_the_mixture_boundary_crosses_one_over_alpha():
    # At the boundary the mixture martingale equals 1/alpha (Ville): by hand for one point.
    from scipy.stats import norm

    v, rho, alpha = 30.0, 5.0, 0.025
    s = mixture_boundary(v, rho, alpha)
    martingale = 2 * np.sqrt(rho / (v + rho)) * np.exp(s**2 / (2 * (v + rho)))
    assert martingale * norm.cdf(s / np.sqrt(v + rho)) == pytest.approx(1 / alpha)


def play(*args: str) -> object:
    return CliRunner().invoke(
        cli,
        [
            "run",
            "--personas",
            str(DEMO / "personas"),
            "--scenarios",
            str(DEMO / "scenarios"),
            "-q",
            *args,
        ],
    )


def test_until_decided_stops_at_a_regression_and_exits_1(tmp_path):
    base = tmp_path / "base"
    assert play("--target", "demo", "--trials", "2", "--out", str(base)).exit_code == 0
    weak = f"python:{Path(__file__).parent / 'test_report_compare.py'}:PolicyBlindAgent"
    result = play(
        "--target", weak, "--trials", "6", "--seed", "3", "--out", str(tmp_path / "weak"),
        "--baseline", str(base), "--until-decided",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    gate = json.loads((tmp_path / "weak" / GATE_FILE).read_text())
    assert gate["decision"] == "regression" and len(gate["rounds"]) < 6
    assert "regression after" in result.output
    manifest = json.loads((tmp_path / "weak" / "manifest.json").read_text())
    assert "the gate decided" in manifest["stopped_because"]
    report = CliRunner().invoke(cli, ["report", str(tmp_path / "weak"), "--no-html"])
    assert "stopped early: the gate decided after" in report.output
    same = play(
        "--target", "demo", "--trials", "2", "--seed", "4", "--out", str(tmp_path / "same"),
        "--baseline", str(base), "--until-decided",
    )  # fmt: skip
    assert same.exit_code == 0, same.output
    assert "regression after" not in same.output


def test_fail_under_holds_with_until_decided(tmp_path):
    base = tmp_path / "base"
    assert play("--target", "demo", "--out", str(base)).exit_code == 0
    result = play(
        "--target", "demo", "--trials", "2", "--seed", "4", "--out", str(tmp_path / "gated"),
        "--baseline", str(base), "--until-decided", "--fail-under", "0.95",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "below --fail-under 0.95" in result.output


def test_until_decided_needs_a_baseline():
    result = play("--target", "demo", "--out", "x", "--until-decided")
    assert result.exit_code == 2 and "--until-decided needs --baseline RUN" in result.output


def test_a_baseline_with_no_shared_cell_is_refused_before_anything_is_played(tmp_path):
    base = tmp_path / "base"
    assert play("--target", "demo", "--persona", "alex_rowe", "--out", str(base)).exit_code == 0
    result = play(
        "--target", "demo", "--persona", "nina_volkova", "--out", str(tmp_path / "other"),
        "--baseline", str(base), "--until-decided",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "shares no persona × scenario cell" in str(result.exception)
    assert not (tmp_path / "other").exists()
