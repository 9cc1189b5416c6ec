"""`simulate compare`: a planted regression is flagged, identical agents are not, the figures
equal statsmodels and scipy, and bad inputs get one-line errors."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from rich.console import Console
from scipy.stats import binomtest, fisher_exact
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
from test_cli import simulate_cli as run_simulate

from simulate.cli import cli, main
from simulate.cli.render.figures import print_comparison
from simulate.demo.agent import DemoAgent
from simulate.errors import ConfigError, RunFolderError
from simulate.label.labeling import LabelConfig, label_run
from simulate.plan import episode_id
from simulate.report.compare import compare_runs
from simulate.schema import Episode, Outcome, Persona, Scenario
from simulate.simulation import RunConfig, run
from simulate.store import RunFolder, ShardWriter, write_manifest

DEMO = Path(str(resources.files("simulate.demo")))


class PolicyBlindAgent(DemoAgent):
    """The demo agent with a planted regression: it no longer answers policy questions
    (baggage, pets), which it used to answer from passages it returned as `context`."""

    def respond(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        turn = super().respond(messages)
        if turn.get("context"):
            return {"reply": "Sorry, I can't help with that. Anything else?", "context": []}
        return turn


WEAK_TARGET = f"python:{__file__}:PolicyBlindAgent"


def simulate_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI at a terminal width that keeps its tables whole."""
    return run_simulate(*args, env={"COLUMNS": "200"})


def play(out: Path, target: str = "demo", seed: int = 0, **extra: Any) -> Path:
    """Play the demo personas and scenarios against ``target`` into ``out``."""
    config = RunConfig(
        personas=[str(DEMO / "personas")],
        scenarios=[str(DEMO / "scenarios")],
        target=target,
        seed=seed,
        out=str(out),
        **extra,
    )
    asyncio.run(run(config))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo agent (seeds 0 and 1) and the policy-blind agent (seed 0), rule-labeled."""
    root = tmp_path_factory.mktemp("runs")
    paths = {
        "before": play(root / "before"),
        "weak": play(root / "weak", WEAK_TARGET),
        "reseeded": play(root / "reseeded", seed=1),
    }
    for path in (paths["before"], paths["weak"]):
        asyncio.run(label_run(LabelConfig(run_dir=str(path))))
    return paths


def outcomes(path: Path) -> dict[tuple[str, str, int], bool]:
    """(persona, scenario, trial) -> success, read straight from the shards."""
    frame = (
        RunFolder(path)
        .scan_episodes()
        .select("persona_id", "scenario_id", "trial", "success")
        .collect()
    )
    return {(p, s, t): ok for p, s, t, ok in frame.iter_rows()}


# --- (a) a planted regression is flagged ------------------------------------------------------


def test_planted_regression_is_flagged(runs: dict[str, Path]) -> None:
    comparison = compare_runs(runs["before"], runs["weak"])
    before, after = outcomes(runs["before"]), outcomes(runs["weak"])
    lost = sorted(k for k in before if before[k] and not after[k])
    gained = sorted(k for k in before if not before[k] and after[k])
    assert lost, "the planted regression should lose conversations"
    assert {scenario for _, scenario, _ in lost} == {"baggage_allowance", "pets_policy"}

    assert comparison.matched == comparison.compared == 108
    overall = comparison.overall
    assert overall.passed_before == sum(before.values())
    assert overall.passed_after == sum(after.values())
    assert overall.difference < 0 and overall.dropped and overall.test == "mcnemar-exact"
    flagged = {s.name for s in comparison.regressions}
    assert {"overall", "scenario:baggage_allowance", "scenario:pets_policy"} <= flagged
    assert not any(
        s.name.startswith("scenario:") and "policy" not in s.name and "baggage" not in s.name
        for s in comparison.regressions
    )
    assert [(f.persona_id, f.scenario_id, f.trial) for f in comparison.pass_to_fail] == lost
    assert len(comparison.fail_to_pass) == len(gained)
    # worst change first
    differences = [s.difference for s in comparison.slices]
    assert differences == sorted(differences)


def test_regression_lists_episode_ids_of_both_runs(runs: dict[str, Path]) -> None:
    comparison = compare_runs(runs["before"], runs["weak"])
    flip = comparison.pass_to_fail[0]
    assert flip.episode_before == episode_id("before", flip.persona_id, flip.scenario_id, 0)
    assert flip.episode_after == episode_id("weak", flip.persona_id, flip.scenario_id, 0)
    assert flip.status_after != "goal_reached"


def test_cli_gate_exits_1_on_planted_regression(runs: dict[str, Path]) -> None:
    gated = simulate_cli("compare", str(runs["before"]), str(runs["weak"]), "--fail-on-regression")
    assert gated.returncode == 1, gated.stderr
    assert "regression: significant drop at alpha 0.05 in overall" in gated.stderr
    assert "scenario:baggage_allowance" in gated.stderr
    assert "pass → fail" in gated.stdout and "McNemar" in gated.stdout
    plain = CliRunner().invoke(cli, ["compare", str(runs["before"]), str(runs["weak"])])
    assert plain.exit_code == 0, plain.output  # without the flag, a drop is only reported


def test_cli_gate_passes_same_agent_other_seed(runs: dict[str, Path]) -> None:
    result = simulate_cli(
        "compare", str(runs["before"]), str(runs["reseeded"]), "--fail-on-regression", "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["regressed"] is False and report["regressions"] == []
    assert report["before"]["seed"] == 0 and report["after"]["seed"] == 1
    assert report["compared"] == 108


def test_json_report_matches_library(runs: dict[str, Path]) -> None:
    result = CliRunner().invoke(cli, ["compare", str(runs["before"]), str(runs["weak"]), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    comparison = compare_runs(runs["before"], runs["weak"])
    assert report["overall"]["p_value"] == comparison.overall.p_value
    assert report["regressions"] == [s.name for s in comparison.regressions]
    assert len(report["pass_to_fail"]) == len(comparison.pass_to_fail)
    assert report["primary_test"].startswith("mcnemar")


def test_label_criteria_compared_when_both_runs_have_labels(runs: dict[str, Path]) -> None:
    comparison = compare_runs(runs["before"], runs["weak"])
    criteria = {c.name: c for c in comparison.criteria}
    goal = criteria["goal_reached (rule:goal_reached)"]
    assert goal.n == 108 and goal.difference < 0 and goal.pass_to_fail > 0
    assert goal.p_adjusted is not None and goal.p_adjusted >= goal.p_value
    # the reseeded run has no labels: no criteria to compare
    unlabeled = compare_runs(runs["before"], runs["reseeded"])
    assert unlabeled.criteria == []
    assert f"only {runs['before']} has labels: label criteria not compared" in unlabeled.notes


# --- (b) two runs of one agent are rarely flagged ---------------------------------------------

PERSONAS = [
    Persona(id=f"p{i}", name=f"Person {i}", tags=["adversarial"] if i < 2 else ["baseline"])
    for i in range(6)
]
SCENARIOS = [
    Scenario(
        id=f"s{j}",
        description="a task",
        goal="done",
        tags=["booking"] if j < 3 else ["policy", "pets"] if j == 4 else ["policy"],
    )
    for j in range(5)
]
TRIALS = 2


def write_run(
    folder: Path,
    success: np.ndarray,
    statuses: dict[tuple[int, int, int], str] | None = None,
    *,
    personas: list[Persona] = PERSONAS,
    failed_checks: list[str] | None = None,
    seed: int = 0,
) -> Path:
    """A run folder in the real schema: ``success[i, j, t]`` for persona i, scenario j, trial t;
    failing episodes carry ``failed_checks``."""
    run_id = folder.name
    folder.mkdir(parents=True)
    write_manifest(folder, {"simulate": "run", "run_id": run_id, "config": {"seed": 0}})
    writer = ShardWriter(folder)
    for (i, j, t), ok in np.ndenumerate(success):
        persona, scenario = personas[i], SCENARIOS[j]
        status = (statuses or {}).get((i, j, t), "goal_reached" if ok else "gave_up")
        writer.add(
            Episode(
                episode_id=episode_id(run_id, persona.id, scenario.id, t),
                run_id=run_id,
                persona_id=persona.id,
                scenario_id=scenario.id,
                trial=t,
                seed=seed,
                persona=persona.model_dump_json(),
                scenario=scenario.model_dump_json(),
                messages=[],
                outcome=Outcome(status=status, failed_checks=[] if ok else failed_checks or []),
                success=bool(ok) and status == "goal_reached",
                n_turns=0,
                duration_s=0.0,
                user="agenda",
                target="synthetic",
                created_at="2026-01-01T00:00:00+00:00",
            )
        )
    writer.flush()
    return folder


#: Each persona x scenario task has its own chance of success, shared by both runs.
TASK_RATES = np.random.default_rng(7).uniform(0.55, 1.0, size=(len(PERSONAS), len(SCENARIOS)))
SHAPE = (len(PERSONAS), len(SCENARIOS), TRIALS)


def flagged_share(tmp_path: Path, drop: float, pairs: int, seed: int) -> float:
    """Share of run pairs `--fail-on-regression` flags; ``after`` loses ``drop`` per task."""
    rng = np.random.default_rng(seed)
    rates = TASK_RATES[:, :, None]
    flagged = 0
    # statsmodels' Holm adjustment calls gc.collect() each time, which costs ~0.2 s under
    # pytest's heap; freezing what exists keeps 200 comparisons fast.
    gc.freeze()
    try:
        for k in range(pairs):
            before = write_run(tmp_path / f"b{k}", rng.random(SHAPE) < rates)
            after = write_run(tmp_path / f"a{k}", rng.random(SHAPE) < rates - drop)
            flagged += bool(compare_runs(before, after, criteria=False).regressions)
    finally:
        gc.unfreeze()
    return flagged / pairs


def test_same_agent_is_rarely_flagged(tmp_path: Path) -> None:
    # 200 pairs of runs of the same agent (fixed seed): the gate's false alarms stay within
    # alpha, as the design promises (about 2% here; 6% without the slice correction).
    assert flagged_share(tmp_path, drop=0.0, pairs=200, seed=1) <= 0.05


def test_real_drop_is_usually_flagged(tmp_path: Path) -> None:
    # The same machinery with a 30-point drop: the gate must have power, not just stay quiet.
    assert flagged_share(tmp_path, drop=0.3, pairs=40, seed=2) >= 0.8


# --- (c) the figures are those of statsmodels and scipy ---------------------------------------


def test_figures_equal_statsmodels(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    before_ok = rng.random(SHAPE) < 0.8
    after_ok = rng.random(SHAPE) < 0.6
    comparison = compare_runs(
        write_run(tmp_path / "b", before_ok), write_run(tmp_path / "a", after_ok)
    )
    n = before_ok.size
    s1, s2 = int(before_ok.sum()), int(after_ok.sum())
    down = int((before_ok & ~after_ok).sum())
    up = int((~before_ok & after_ok).sum())

    overall = comparison.overall
    assert (overall.n, overall.passed_before, overall.passed_after) == (n, s1, s2)
    assert (overall.pass_to_fail, overall.fail_to_pass) == (down, up)
    assert overall.p_value == pytest.approx(binomtest(down, down + up, 0.5).pvalue)
    low, high = confint_proportions_2indep(s2, n, s1, n, method="newcomb", compare="diff")
    z = comparison.overall_independent
    # Newcombe's unpaired interval belongs to the two-proportion reference test; the primary
    # (paired) test's interval is built from its own p-value (test_report_compare_cmh.py).
    assert (z.low, z.high) == pytest.approx((low, high))
    assert z.test == "z"
    assert z.p_value == pytest.approx(proportions_ztest([s2, s1], [n, n])[1])

    raw = [s.p_value for s in comparison.slices]
    assert [s.p_adjusted for s in comparison.slices] == pytest.approx(
        list(multipletests(raw, method="holm")[1])
    )
    for change in comparison.slices:
        if change.test == "fisher":
            table = [
                [change.passed_before, change.n - change.passed_before],
                [change.passed_after, change.n - change.passed_after],
            ]
            assert change.p_value == pytest.approx(fisher_exact(table)[1])
    persona = next(s for s in comparison.slices if s.name == "persona:p3")
    assert persona.n == len(SCENARIOS) * TRIALS
    assert persona.passed_before == int(before_ok[3].sum())
    assert persona.passed_after == int(after_ok[3].sum())


def test_correction_flag_changes_adjustment(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    before = write_run(tmp_path / "b", rng.random(SHAPE) < 0.9)
    after = write_run(tmp_path / "a", rng.random(SHAPE) < 0.5)
    comparison = compare_runs(before, after, correction="bonferroni")
    raw = [s.p_value for s in comparison.slices]
    assert [s.p_adjusted for s in comparison.slices] == pytest.approx(
        [min(1.0, p * len(raw)) for p in raw]
    )


def test_tag_slice_equal_to_a_scenario_slice_is_tested_once(tmp_path: Path) -> None:
    # Only scenario s4 has the tag "pets": tag:pets holds the same pairs as scenario:s4, so it
    # is one test (one p-value in the correction), named under both.
    rng = np.random.default_rng(5)
    before = write_run(tmp_path / "b", rng.random(SHAPE) < 0.8)
    after = write_run(tmp_path / "a", rng.random(SHAPE) < 0.8)
    comparison = compare_runs(before, after)
    by_name = {s.name: s for s in comparison.slices}
    assert by_name["scenario:s4"].same_as == ["tag:pets"]
    assert "tag:pets" not in by_name
    names = list(by_name) + [alias for s in comparison.slices for alias in s.same_as]
    assert sorted(names) == sorted(
        [f"persona:{p.id}" for p in PERSONAS]
        + [f"scenario:{s.id}" for s in SCENARIOS]
        + ["tag:adversarial", "tag:baseline", "tag:booking", "tag:pets", "tag:policy"]
    )


def test_user_text_with_brackets_is_printed_as_written(tmp_path: Path) -> None:
    # Tags and check phrases are the user's text; rich must not read `[/bold]` or `[red]` in
    # them as markup (the first made `simulate compare` crash with a MarkupError).
    personas = [p.model_copy(update={"tags": ["[/bold]", "[red]vip"]}) for p in PERSONAS]
    personas[0] = personas[0].model_copy(update={"tags": ["[/bold]", "[red]vip", "first"]})
    before = write_run(tmp_path / "b", np.ones(SHAPE, dtype=bool), personas=personas)
    drop = np.ones(SHAPE, dtype=bool)
    drop[0] = False  # persona p0 now fails everything: its slice (and tag:first) changes
    after = write_run(
        tmp_path / "a", drop, personas=personas, failed_checks=["must_mention: '[/i] done'"]
    )
    result = CliRunner().invoke(cli, ["compare", str(before), str(after), "--limit", "1"])
    assert result.exit_code == 0, result.output
    console = Console(width=300, record=True, file=io.StringIO())
    print_comparison(compare_runs(before, after), console, limit=1)
    text = console.export_text()
    assert "failed must_mention: '[/i] done'" in text
    assert "persona:p0 (= tag:first)" in text


def test_errors_left_out_and_counted(tmp_path: Path) -> None:
    ok = np.ones(SHAPE, dtype=bool)
    before = write_run(tmp_path / "b", ok, {(0, 0, 0): "target_error"})
    after = write_run(tmp_path / "a", ok, {(1, 1, 1): "simulator_error", (2, 2, 0): "gave_up"})
    comparison = compare_runs(before, after)
    assert comparison.before.not_rated == 1 and comparison.after.not_rated == 1
    assert comparison.matched == ok.size
    assert comparison.compared == ok.size - 2
    assert comparison.overall.pass_to_fail == 1
    assert [(f.persona_id, f.scenario_id, f.status_after) for f in comparison.pass_to_fail] == [
        ("p2", "s2", "gave_up")
    ]


def test_unmatched_episodes_are_counted(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    before = write_run(tmp_path / "b", rng.random(SHAPE) < 0.8)
    partial = rng.random((2, len(SCENARIOS), TRIALS)) < 0.8  # personas p0, p1 only
    after = write_run(tmp_path / "a", partial)
    comparison = compare_runs(before, after)
    assert comparison.matched == partial.size
    assert comparison.before.unmatched == int(np.prod(SHAPE)) - partial.size
    assert comparison.after.unmatched == 0
    assert comparison.notes and "plans differ" in comparison.notes[0]


# --- (e) bad inputs -----------------------------------------------------------------------------


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def main_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The one line `simulate ARGS` prints on stderr, run in-process through cli.main."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    assert exited.value.code == 1, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def test_path_that_is_not_a_run(
    tmp_path: Path, runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes").mkdir()
    line = one_line_error(simulate_cli("compare", str(tmp_path / "notes"), str(runs["before"])))
    assert "is not a run folder" in line
    line = main_error(capsys, "compare", str(runs["before"]), str(tmp_path / "missing"))
    assert "no such run folder" in line


def test_runs_with_no_overlap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(8)
    before = write_run(tmp_path / "b", rng.random(SHAPE) < 0.8)
    other = tmp_path / "other"
    other.mkdir()
    write_manifest(other, {"simulate": "run", "run_id": "other", "config": {}})
    writer = ShardWriter(other)
    persona = Persona(id="zed", name="Zed")
    writer.add(
        Episode(
            episode_id="e1",
            run_id="other",
            persona_id="zed",
            scenario_id="s0",
            trial=0,
            seed=0,
            persona=persona.model_dump_json(),
            scenario=SCENARIOS[0].model_dump_json(),
            messages=[],
            outcome=Outcome(status="goal_reached"),
            success=True,
            n_turns=0,
            duration_s=0.0,
            user="agenda",
            target="synthetic",
            created_at="2026-01-01T00:00:00+00:00",
        )
    )
    writer.flush()
    with pytest.raises(RunFolderError, match="share no episode"):
        compare_runs(before, other)
    assert "share no episode" in main_error(capsys, "compare", str(before), str(other))


def test_bad_alpha_and_correction(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(9)
    before = write_run(tmp_path / "b", rng.random(SHAPE) < 0.8)
    after = write_run(tmp_path / "a", rng.random(SHAPE) < 0.8)
    for alpha in ("1.5", "0", "-0.1"):
        line = main_error(capsys, "compare", str(before), str(after), "--alpha", alpha)
        assert "--alpha must be between 0 and 1" in line
    line = main_error(capsys, "compare", str(before), str(after), "--correction", "holmm")
    assert "did you mean 'holm'" in line
    with pytest.raises(ConfigError):
        compare_runs(before, after, alpha=1.0)


def test_empty_run_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    before = write_run(tmp_path / "b", rng.random(SHAPE) < 0.8)
    empty = tmp_path / "empty"
    empty.mkdir()
    write_manifest(empty, {"simulate": "run", "run_id": "empty", "config": {}})
    with pytest.raises(RunFolderError, match="holds no episodes"):
        compare_runs(before, empty)
