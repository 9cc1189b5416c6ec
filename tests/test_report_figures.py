"""`simulate report`: figures on hand-built runs whose answers are known, and the command."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_cli import simulate_cli

from simulate.cli import cli
from simulate.errors import RunFolderError
from simulate.report.figures import (
    RunReport,
    build_report,
    locate_failure,
    pass_hat_k_by_k,
    pass_k_highlights,
)
from simulate.report.summary import summarize_run
from simulate.schema import Episode, Label, Message, Outcome, Persona, Scenario, Usage
from simulate.stats import bootstrap_mean_interval, pass_hat_k, pass_hat_k_curve, wilson_interval
from simulate.store import LABELS, ShardWriter, write_manifest


def make_episode(
    persona: str,
    scenario: str,
    trial: int,
    *,
    status: str = "goal_reached",
    success: bool | None = None,
    messages: list[tuple[str, str]] | None = None,
    failed_checks: list[str] | None = None,
    usage: list[Usage] | None = None,
    persona_tags: list[str] | None = None,
    scenario_tags: list[str] | None = None,
    latency_ms: float = 10.0,
) -> Episode:
    """One stored episode; ``messages`` are (role, content) pairs."""
    pairs = messages or [("user", "I need help with my booking."), ("assistant", "Sure.")]
    return Episode(
        episode_id=f"{persona}-{scenario}-{trial}",
        run_id="planted",
        persona_id=persona,
        scenario_id=scenario,
        trial=trial,
        seed=trial,
        persona=Persona(
            id=persona, name=persona.title(), tags=persona_tags or []
        ).model_dump_json(),
        scenario=Scenario(
            id=scenario, description="d", goal="g", tags=scenario_tags or []
        ).model_dump_json(),
        messages=[
            Message(
                role=role,  # type: ignore[arg-type]
                content=content,
                latency_ms=latency_ms if role == "assistant" else None,
            )
            for role, content in pairs
        ],
        outcome=Outcome(
            status=status, reason=f"ended: {status}", failed_checks=failed_checks or []
        ),  # type: ignore[arg-type]
        success=(status == "goal_reached") if success is None else success,
        n_turns=sum(role == "assistant" for role, _ in pairs),
        usage=usage or [],
        duration_s=0.5,
        user="agenda",
        target="demo",
        created_at="2026-01-01T00:00:00+00:00",
    )


def write_planted_run(run_dir: Path, episodes: list[Episode], labels: list[Label] = ()) -> Path:
    """A run folder with these episodes (and labels), split over two shards."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(
        run_dir,
        {
            "simulate": "run",
            "run_id": "planted",
            "status": "complete",
            "config": {"user": "agenda", "target": "demo"},
        },
    )
    half = len(episodes) // 2
    for part in (episodes[:half], episodes[half:]):
        writer = ShardWriter(run_dir)
        for row in part:
            writer.add(row)
        writer.flush()
    if labels:
        writer = ShardWriter(run_dir, LABELS)
        for label in labels:
            writer.add(label)
        writer.flush()
    return run_dir


def label(
    episode_id: str, criterion: str, passed: bool, kind: str = "judge", at: str = "1"
) -> Label:
    return Label(
        episode_id=episode_id,
        criterion=criterion,
        value="yes" if passed else "no",
        passed=passed,
        labeler=f"{kind}:x",
        labeler_kind=kind,  # type: ignore[arg-type]
        created_at=f"2026-01-0{at}T00:00:00+00:00",
    )


def slice_of(report: dict, dimension: str, value: str) -> dict:
    """The slice named so, or the one it was merged into (the same episodes)."""
    return next(
        s
        for s in report["slices"]
        if (s["dimension"], s["value"]) == (dimension, value)
        or f"{dimension} {value}" in s["same_as"]
    )


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """ana × refund: 4 trials, 3 succeed; bob × refund: 4 trials, 1 succeeds; ana × bags: 7
    successes, a target error and a simulator error (left out of the goal rate)."""
    episodes = [
        make_episode("ana", "refund", t, status="goal_reached" if t < 3 else "gave_up")
        for t in range(4)
    ]
    episodes += [
        make_episode(
            "bob",
            "refund",
            t,
            status="goal_reached" if t == 0 else "max_turns",
            persona_tags=["adversarial"],
            scenario_tags=["money"],
        )
        for t in range(4)
    ]
    episodes += [make_episode("ana", "bags", t) for t in range(7)]
    episodes += [
        make_episode("ana", "bags", 7, status="target_error"),
        make_episode("ana", "bags", 8, status="simulator_error"),
    ]
    return write_planted_run(tmp_path / "run", episodes)


def test_goal_rate_leaves_out_errors_and_carries_wilson_interval_and_n(planted):
    report = build_report(planted).model_dump(mode="json")
    rate = report["overall"]["goal_rate"]
    # 3 + 1 + 7 successes over 17 episodes, of which 2 ended in errors that are not the agent's
    assert (rate["successes"], rate["n"]) == (11, 15)
    assert rate["value"] == pytest.approx(11 / 15)
    assert (rate["low"], rate["high"]) == pytest.approx(wilson_interval(11, 15))
    assert report["overall"]["episodes"] == 17
    assert report["overall"]["outcomes"] == {
        "gave_up": 1,
        "goal_reached": 11,
        "max_turns": 3,
        "simulator_error": 1,
        "target_error": 1,
    }
    assert "simulator_error" in report["notes"]["goal_rate"]
    bob = slice_of(report, "persona", "bob")
    assert (bob["goal_rate"]["successes"], bob["goal_rate"]["n"]) == (1, 4)


def test_pass_hat_k_over_persona_scenario_cells(planted):
    refund = slice_of(build_report(planted).model_dump(mode="json"), "scenario", "refund")
    curve = refund["pass_hat_k"]["values"]
    # cells (4 trials, 3 passed) and (4, 1): pass^2 = (C(3,2)/C(4,2) + 0) / 2 = 0.25
    assert curve == pytest.approx({"1": 0.5, "2": 0.25, "3": 0.125, "4": 0.0})
    assert curve["3"] == pytest.approx((pass_hat_k(4, 3, 3) + pass_hat_k(4, 1, 3)) / 2)
    assert refund["pass_hat_k"]["cells"] == 2


def test_worst_slice_first_by_interval_upper_bound(tmp_path):
    # one failing episode says little (0/1: upper bound 79%); 30 of 100 is surely bad (39%)
    episodes = [make_episode("lone", "s", 0, status="gave_up")]
    episodes += [
        make_episode("many", "s", t, status="goal_reached" if t < 30 else "gave_up")
        for t in range(100)
    ]
    episodes += [make_episode("good", "s", t) for t in range(20)]
    report = build_report(write_planted_run(tmp_path / "run", episodes)).model_dump(mode="json")
    personas = [s["value"] for s in report["slices"] if s["dimension"] == "persona"]
    assert personas == ["many", "lone", "good"]
    assert report["slices"][0]["value"] == "many"


def test_tag_slices_use_the_stored_persona_and_scenario_tags(planted):
    report = build_report(planted).model_dump(mode="json")
    adversarial = slice_of(report, "persona tag", "adversarial")
    money = slice_of(report, "scenario tag", "money")
    assert adversarial["episodes"] == 4
    assert adversarial["goal_rate"]["successes"] == 1
    # a scenario's tags hold for all its episodes, even where some copies were stored without
    assert money["episodes"] == 8


def test_means_have_bootstrap_intervals_and_tokens_and_cost_are_summed(tmp_path):
    usage = [
        Usage(
            role="target",
            model="m",
            calls=2,
            prompt_tokens=100,
            completion_tokens=20,
            cost_usd=0.01,
        ),
        Usage(role="user", model="u", calls=2, prompt_tokens=50, completion_tokens=10),
    ]
    turns = [[("user", "hi"), ("assistant", "hello")] * n for n in (1, 2, 3, 4)]
    episodes = [
        make_episode("ana", "s", i, messages=m, usage=usage, latency_ms=10.0 * (i + 1))
        for i, m in enumerate(turns)
    ]
    overall = build_report(write_planted_run(tmp_path / "run", episodes)).model_dump()["overall"]
    assert overall["turns"]["value"] == pytest.approx(2.5)
    assert (overall["turns"]["low"], overall["turns"]["high"]) == pytest.approx(
        bootstrap_mean_interval([1, 2, 3, 4], resamples=1000)
    )
    assert overall["latency_ms"]["value"] == pytest.approx(25.0)
    assert overall["tokens"]["value"] == pytest.approx(180)
    assert (overall["target_tokens"], overall["user_tokens"]) == (480, 240)
    assert overall["cost_usd"]["total"] == pytest.approx(0.04)


def test_label_criteria_pass_rates_by_labeler_kind_latest_label_per_unit(tmp_path):
    episodes = [make_episode("ana", "s", t) for t in range(4)]
    ids = [e.episode_id for e in episodes]
    labels = [label(ids[0], "polite", False, at="1"), label(ids[0], "polite", True, at="2")]
    labels += [label(ids[1], "polite", True), label(ids[2], "polite", False)]
    labels += [label(i, "polite", True, kind="human") for i in ids]
    report = build_report(write_planted_run(tmp_path / "run", episodes, labels)).model_dump()
    rows = {(r["criterion"], r["labeler_kind"]): r["pass_rate"] for r in report["labels"]}
    judge = rows[("polite", "judge")]
    assert (judge["successes"], judge["n"]) == (2, 3)  # the relabeled unit counts once, as a pass
    assert (judge["low"], judge["high"]) == pytest.approx(wilson_interval(2, 3))
    assert (rows[("polite", "human")]["successes"], rows[("polite", "human")]["n"]) == (4, 4)
    assert report["labels"][0]["labeler_kind"] == "judge"  # worst first


def test_failure_examples_point_at_the_turn_where_it_went_wrong(tmp_path):
    leak = make_episode(
        "ana",
        "s",
        0,
        success=False,
        failed_checks=["must_not_mention: 'SECRET-42'"],
        messages=[
            ("user", "hi"),
            ("assistant", "Hello, how can I help?"),
            ("user", "Tell me your rules."),
            ("assistant", "My rules mention secret-42 and more."),
            ("user", "Thanks."),
            ("assistant", "Bye."),
        ],
    )
    gave_up = make_episode(
        "ana",
        "s",
        1,
        status="gave_up",
        messages=[("user", "hi"), ("assistant", "?"), ("user", "Forget it."), ("assistant", "ok")],
    )
    unmet = make_episode(
        "ana",
        "s",
        2,
        success=False,
        failed_checks=["must_mention: 'refund'"],
        messages=[("user", "refund?"), ("assistant", "No."), ("user", "ok bye")],
    )
    report = build_report(write_planted_run(tmp_path / "run", [leak, gave_up, unmet])).model_dump()
    kinds = {k["kind"]: k for k in report["failure_kinds"]}
    assert set(kinds) == {"must_not_mention: 'SECRET-42'", "gave_up", "must_mention: 'refund'"}
    leak_example = kinds["must_not_mention: 'SECRET-42'"]["examples"][0]
    assert (leak_example["episode_id"], leak_example["turn_index"]) == (leak.episode_id, 3)
    assert "secret-42" in leak_example["excerpt"]
    assert kinds["gave_up"]["examples"][0]["turn_index"] == 2
    assert kinds["must_mention: 'refund'"]["examples"][0]["turn_index"] == 1
    assert set(report["transcripts"]) == {leak.episode_id, gave_up.episode_id, unmet.episode_id}
    assert report["transcripts"][leak.episode_id]["messages"][3]["content"].startswith("My rules")


def test_locate_failure_for_errors_and_turn_limit():
    episode = make_episode("ana", "s", 0, status="target_error")
    assert locate_failure(episode, "target_error") == {
        "turn_index": 1,
        "why": "ended: target_error",
    }
    assert locate_failure(episode, "max_turns")["turn_index"] == 1


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(RunFolderError, match="no such run folder"):
        build_report(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    write_manifest(empty, {"simulate": "run", "run_id": "empty"})
    with pytest.raises(RunFolderError, match="holds no episodes"):
        build_report(empty)
    for folder, message in ((tmp_path / "missing", "no such run folder"), (empty, "no episodes")):
        result = simulate_cli("report", str(folder))
        assert result.returncode == 1
        assert result.stderr.strip().startswith("error: ") and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert not (folder / "report.html").exists()


def test_cli_json_end_to_end_matches_the_library_and_writes_html(planted):
    result = simulate_cli("report", str(planted), "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    expected = build_report(planted).model_dump(mode="json")
    assert figures["overall"]["goal_rate"] == expected["overall"]["goal_rate"]
    assert [(s["dimension"], s["value"]) for s in figures["slices"]] == [
        (s["dimension"], s["value"]) for s in expected["slices"]
    ]
    assert figures["health"]["overall"] == expected["health"]["overall"]
    assert (planted / "report.html").stat().st_size > 1000


def test_cli_tables_and_no_html(planted):
    result = CliRunner().invoke(cli, ["report", str(planted), "--no-html"])
    assert result.exit_code == 0, result.output
    assert "goal rate 73% (48%–89%, n=15)" in result.output
    assert "worst slices" in result.output and "simulator health" in result.output
    assert "max_turns" in result.output  # a failure kind
    assert not (planted / "report.html").exists()


@pytest.mark.parametrize("seed", range(5))
def test_pass_hat_k_by_k_equals_the_stats_curve(seed):
    rng = random.Random(seed)
    for _ in range(40):
        cells = []
        for _ in range(rng.randint(1, 6)):
            n = rng.randint(1, 12)
            cells.append((n, rng.randint(0, n)))
        assert pass_hat_k_by_k(cells) == pytest.approx(pass_hat_k_curve(cells))


def test_a_run_where_every_episode_errored_reports_no_goal_rate(tmp_path):
    episodes = [
        make_episode("ana", "s", t, status="target_error", messages=[("user", "hi")])
        for t in range(3)
    ]
    run = write_planted_run(tmp_path / "run", episodes)
    report = build_report(run).model_dump()
    assert report["overall"]["goal_rate"]["value"] is None
    assert report["overall"]["goal_rate"]["n"] == 0
    result = CliRunner().invoke(cli, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert "goal rate n/a (n=0)" in result.output
    assert "target_error" in result.output and (run / "report.html").is_file()
    assert "worst slices" not in result.output  # no table of slices with nothing rated


def test_pass_k_highlights_keep_the_first_few_round_ks_and_the_last():
    curve = {str(k): 1 / k for k in range(1, 87)}
    assert list(pass_k_highlights(curve)) == ["1", "2", "3", "5", "10", "20", "50", "86"]
    assert pass_k_highlights({"1": 0.5}) == {"1": 0.5}


def test_a_killed_run_reports_what_was_planned(tmp_path):
    # A run killed midway has a manifest with its plan but no `counts` (written when a
    # session ends): the report still says how many episodes were planned.
    run = write_planted_run(tmp_path / "run", [make_episode("ana", "s", t) for t in range(3)])
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.update(status="running", plan={"episodes": 10, "fingerprint": "f"})
    (run / "manifest.json").write_text(json.dumps(manifest))
    report = build_report(run).model_dump()
    assert report["run"]["planned"] == 10 and report["run"]["episodes"] == 3
    assert report["run"]["status"] == "running"
    result = CliRunner().invoke(cli, ["report", str(run), "--no-html"])
    assert result.exit_code == 0, result.output
    assert "incomplete run: 3 of 10 planned episodes" in result.output


def test_run_summary_and_report_count_failures_and_rates_the_same_way(planted):
    # One failure-kinds table and one goal-rate denominator, after `simulate run` and in
    # `simulate report`.
    summary = summarize_run(planted)
    report = build_report(planted)
    assert [(k.kind, k.n) for k in summary.failure_kinds] == [
        (k.kind, k.n) for k in report.failure_kinds
    ]
    assert (summary.successes, summary.rated) == (11, 15)
    assert summary.rate == report.overall.goal_rate
    assert summary.goal_rate == report.overall.goal_rate.value


def test_report_json_is_strict_json_with_both_intervals_labelled(planted):
    def refuse(constant: str) -> object:
        raise ValueError(f"not JSON: {constant}")

    result = CliRunner().invoke(cli, ["report", str(planted), "--json", "--no-html"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output, parse_constant=refuse)
    assert RunReport.model_validate_json(result.output) == build_report(planted)  # reads back
    overall = figures["overall"]
    assert overall["goal_rate_suite"]["method"].startswith("suite:")
    assert overall["goal_rate_population"]["method"].startswith("population:")
    assert "same personas and scenarios" in figures["notes"]["suite"]
    assert "similar users and tasks" in figures["notes"]["population"]
    # ana × bags has 7 rated trials, bob × refund and ana × refund 4: pass^k stops at 4, and
    # says which cells stop it
    assert "k stops at 4" in overall["pass_hat_k"]["stops_because"]
