"""`simulate calibrate`: R repeats with seeds seed, seed + 1, ..., their spread, compare's
false alarms between them, the minimum detectable drop, and resuming a calibration."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import binom, norm
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_effectsize
from test_cli import simulate_cli

from simulate.cli import cli, main
from simulate.report.calibrate import (
    CALIBRATION,
    minimum_detectable_drop,
    minimum_detectable_drop_paired,
    repeat_folder,
)
from simulate.report.compare import compare_runs
from simulate.report.summary import summarize_run
from simulate.store import read_manifest, shard_paths

DEMO = Path(str(resources.files("simulate.demo")))
#: Three demo personas (one calm, two attackers) x nine scenarios: 27 episodes per repeat.
SMALL = [
    "--personas",
    str(DEMO / "personas"),
    "--scenarios",
    str(DEMO / "scenarios"),
    "--target",
    "demo",
    "--persona",
    "maya_patel",
    "--persona",
    "nina_volkova",
    "--persona",
    "alex_rowe",
    "-q",
]


def calibrate_cli(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return simulate_cli(
        "calibrate", *SMALL, "--out", str(out), *extra, env={"COLUMNS": "200"}, timeout=300
    )


def shard_state(folder: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in shard_paths(folder)}


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cal") / "noise"
    result = calibrate_cli(out, "--repeats", "3", "--seed", "5")
    assert result.returncode == 0, result.stderr
    assert "goal rate of 3 identical runs" in result.stdout
    assert "trust differences of at least" in result.stdout
    return out


def test_repeats_play_with_consecutive_seeds(calibrated: Path) -> None:
    for index, seed in ((1, 5), (2, 6), (3, 7)):
        manifest = read_manifest(repeat_folder(calibrated, index))
        assert manifest["config"]["seed"] == seed
        assert manifest["status"] == "complete"
        assert manifest["counts"]["stored"] == 27


def test_calibration_figures(calibrated: Path) -> None:
    figures = json.loads((calibrated / CALIBRATION).read_text())
    summaries = [summarize_run(repeat_folder(calibrated, i)).model_dump() for i in (1, 2, 3)]
    rates = [s["goal_rate"] for s in summaries]
    assert [r["goal_rate"] for r in figures["repeats"]] == pytest.approx(rates)
    assert [r["seed"] for r in figures["repeats"]] == [5, 6, 7]
    assert figures["sd"] == pytest.approx(statistics.stdev(rates))
    assert (figures["min_rate"], figures["max_rate"]) == (min(rates), max(rates))
    mean = sum(s["successes"] for s in summaries) / sum(s["rated"] for s in summaries)
    assert figures["mean_rate"] == pytest.approx(mean)
    assert figures["binomial_sd"] == pytest.approx(math.sqrt(mean * (1 - mean) / 27))
    assert figures["noise_95"] == pytest.approx(1.959964 * math.sqrt(2) * figures["sd"])

    assert len(figures["pairs"]) == 3
    for pair in figures["pairs"]:
        comparison = compare_runs(pair["first"], pair["second"], criteria=False)
        assert pair["difference"] == pytest.approx(comparison.overall.difference)
        assert pair["flagged"] == [c.name for c in comparison.changes]
    assert figures["false_alarms"] == sum(bool(p["flagged"]) for p in figures["pairs"])
    discordance = np.mean([p["discordant"] / p["compared"] for p in figures["pairs"]])
    assert figures["discordance"] == pytest.approx(discordance)
    assert figures["minimum_detectable_drop"] == pytest.approx(
        minimum_detectable_drop_paired(mean, 27, discordance)
    )
    trusted = figures["smallest_trusted_difference"]
    assert trusted == max(figures["noise_95"], figures["minimum_detectable_drop"])


def test_resume_reuses_finished_repeats(calibrated: Path, capsys: pytest.CaptureFixture) -> None:
    before = {i: shard_state(repeat_folder(calibrated, i)) for i in (1, 2, 3)}
    # Without --resume a calibration folder is never overwritten.
    with pytest.raises(SystemExit) as exited:
        main(["calibrate", *SMALL, "--out", str(calibrated), "--repeats", "3", "--seed", "5"])
    assert exited.value.code == 1
    assert "already holds a calibration; pass --resume" in capsys.readouterr().err
    # A killed repeat: the third lost its episodes. --resume plays only those, and a fourth.
    for shard in shard_paths(repeat_folder(calibrated, 3)):
        shard.unlink()
    result = CliRunner().invoke(
        cli,
        [
            "calibrate",
            *SMALL,
            "--out",
            str(calibrated),
            "--repeats",
            "4",
            "--seed",
            "5",
            "--resume",
        ],
    )
    assert result.exit_code == 0, result.output
    assert shard_state(repeat_folder(calibrated, 1)) == before[1]
    assert shard_state(repeat_folder(calibrated, 2)) == before[2]
    assert read_manifest(repeat_folder(calibrated, 3))["last_session"]["played"] == 27
    assert read_manifest(repeat_folder(calibrated, 1))["last_session"]["played"] == 0
    assert read_manifest(repeat_folder(calibrated, 4))["config"]["seed"] == 8
    assert len(json.loads((calibrated / CALIBRATION).read_text())["repeats"]) == 4


def test_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    def error(*args: str) -> str:
        with pytest.raises(SystemExit) as exited:
            main(["calibrate", *SMALL, *args])
        assert exited.value.code == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        return lines[0]

    assert "--alpha must be between 0 and 1" in error("--out", str(tmp_path / "a"), "--alpha", "2")
    assert not (tmp_path / "a").exists()  # nothing played
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    assert "not a calibration folder" in error("--out", str(tmp_path / "b"))
    assert (tmp_path / "b" / "notes.txt").read_text() == "mine"
    one = CliRunner().invoke(
        cli, ["calibrate", *SMALL, "--out", str(tmp_path / "c"), "--repeats", "1"]
    )
    assert one.exit_code == 2 and "--repeats" in one.output


def test_dry_run_plays_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["calibrate", *SMALL, "--out", str(tmp_path / "d"), "--dry-run", "--repeats", "4"]
    )
    assert result.exit_code == 0, result.output
    assert "plan: 27 episodes" in result.output and "× 4 repeats" in result.output
    assert not (tmp_path / "d").exists()


# --- minimum detectable drops -----------------------------------------------------------------


@pytest.mark.parametrize(("rate", "n"), [(0.8, 108), (0.5, 400), (0.95, 1000), (0.3, 60)])
def test_independent_drop_matches_normal_formula(rate: float, n: int) -> None:
    drop = minimum_detectable_drop(rate, n)
    assert drop is not None and 0 < drop < rate
    # Cohen's h of the drop times sqrt(n/2) is z(1 - alpha/2) + z(power), as in textbooks.
    h = proportion_effectsize(rate, rate - drop)
    assert h * math.sqrt(n / 2) == pytest.approx(norm.ppf(0.975) + norm.ppf(0.8), rel=1e-3)


def test_independent_drop_none_when_undetectable() -> None:
    assert minimum_detectable_drop(0.05, 5) is None


def test_paired_drop_without_noise_is_exact() -> None:
    # With no discordance between identical runs, McNemar rejects when at least 6 pairs flip
    # and none flips back (2 · 0.5^6 < 0.05 < 2 · 0.5^5); the drop's flips are Binomial(n, d).
    n = 108
    drop = minimum_detectable_drop_paired(0.8, n, 0.0)
    assert drop is not None
    assert binom.sf(5, n, drop) == pytest.approx(0.8, abs=2e-3)


def test_paired_drop_has_its_power_by_simulation() -> None:
    rng = np.random.default_rng(0)
    n, discordance = 108, 0.1
    drop = minimum_detectable_drop_paired(0.8, n, discordance)
    assert drop is not None
    down_share = discordance / 2 + drop
    up_share = discordance / 2
    hits = 0
    trials = 3000
    for _ in range(trials):
        draws = rng.multinomial(n, [down_share, up_share, 1 - down_share - up_share])
        down, up = int(draws[0]), int(draws[1])
        p = mcnemar([[0, down], [up, 0]], exact=True).pvalue if down + up else 1.0
        hits += p < 0.05 and down > up
    assert hits / trials == pytest.approx(0.8, abs=0.025)
    # More noise between identical runs needs a larger drop.
    assert (
        minimum_detectable_drop_paired(0.8, n, 0.3)
        > drop
        > minimum_detectable_drop_paired(0.8, n, 0.0)
    )


def test_noise_figures_carry_intervals_and_slices_their_detectable_drop(calibrated: Path) -> None:
    from scipy.stats import chi2

    from simulate.report.calibrate import paired_power

    figures = json.loads((calibrated / CALIBRATION).read_text())
    sd, repeats = figures["sd"], len(figures["repeats"])
    low, high = figures["sd_interval"]
    assert low == pytest.approx(sd * math.sqrt((repeats - 1) / chi2.ppf(0.975, repeats - 1)))
    assert high == pytest.approx(sd * math.sqrt((repeats - 1) / chi2.ppf(0.025, repeats - 1)))
    assert low <= sd <= high
    slices = figures["slices"]
    names = {s["name"] for s in slices}
    assert "scenario:baggage_allowance" in names and "persona:maya_patel" in names
    level = 0.05 / len(slices)  # Bonferroni over the slices
    for row in slices:
        size = max(1, round(row["n"]))
        expected = minimum_detectable_drop_paired(row["rate"], size, figures["discordance"], level)
        assert row["minimum_detectable_drop"] == (
            None if expected is None else pytest.approx(expected)
        )
        power = paired_power(size, figures["discordance"], level)(row["rate"] / 2)
        assert row["power_if_halved"] == pytest.approx(power)
    powers = [s["power_if_halved"] for s in slices]
    assert powers == sorted(powers)


def test_the_sd_interval_never_passes_what_a_rate_can_spread():
    # Two repeats: the chi-square upper end is ~32 x the sd; a rate's sd is at most 0.5.
    from simulate.report.calibrate import _sd_interval

    low, high = _sd_interval(0.02, 2)
    assert low < 0.02 and high == 0.5
