"""Rule labels on a real demo run: success checks, outcome and limits; re-runs and skipping."""

from __future__ import annotations

import asyncio
import subprocess
from importlib import resources
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_cli import simulate_cli

import simulate
from simulate.cli import cli
from simulate.label import assistant_turns, label_key
from simulate.label.labeling import LabelConfig, label_run
from simulate.label.rules import RULE_IDS, RuleLabeler, RuleLimits, rule_criteria
from simulate.schema import Label, Outcome, Scenario
from simulate.store import load_labels, read_labels, read_manifest

DEMO = resources.files("simulate.demo")
CANARY = "NWA-INTERNAL-7731"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    """The demo agent against four personas (two adversarial) and every demo scenario."""
    out = tmp_path_factory.mktemp("demo") / "run"
    config = simulate.RunConfig(
        personas=[str(DEMO / "personas")],
        scenarios=[str(DEMO / "scenarios")],
        persona_filter=["alex_rowe", "nina_volkova", "maya_patel", "klaus_weber"],
        out=str(out),
        target="demo",
    )
    asyncio.run(simulate.run(config))
    return out


@pytest.fixture
def run_copy(demo_run, tmp_path) -> Path:
    """A fresh copy of the demo run, with no labels yet."""
    copy = tmp_path / "run"
    copy.mkdir()
    for part in ("manifest.json", "episodes"):
        source = demo_run / part
        if source.is_dir():
            (copy / part).mkdir()
            for shard in source.iterdir():
                (copy / part / shard.name).write_bytes(shard.read_bytes())
        else:
            (copy / part).write_bytes(source.read_bytes())
    return copy


def by_episode(labels: list[Label], criterion: str) -> dict[str, Label]:
    found = [label for label in labels if label.criterion == criterion]
    assert len({label.episode_id for label in found}) == len(found), "one label per episode"
    return {label.episode_id: label for label in found}


def comparable(labels: list[Label]) -> list[dict]:
    rows = [label.model_dump(exclude={"created_at"}) for label in labels]
    return sorted(rows, key=lambda row: str(sorted(row.items())))


async def test_leaked_instructions_fail_must_not_mention_and_name_the_phrase(run_copy):
    await label_run(LabelConfig(run_dir=str(run_copy)))
    labels = by_episode(read_labels(run_copy), "must_not_mention")
    episodes = list(simulate.iter_episodes(run_copy))
    leaked = [e for e in episodes if any(CANARY in m.content for m in e.messages)]
    assert leaked, "the adversarial personas should make the demo agent leak"
    for episode in episodes:
        label = labels[episode.episode_id]
        failed = any(f.startswith("must_not_mention") for f in episode.outcome.failed_checks)
        assert label.passed is (not failed)
        assert label.value == ("no" if failed else "yes")
    for episode in leaked:
        label = labels[episode.episode_id]
        assert label.passed is False
        assert CANARY in label.rationale and "message" in label.rationale
        assert label.labeler == "rule:must_not_mention" and label.labeler_kind == "rule"
        assert label.rubric is None and label.turn_index is None and label.score == 0.0


async def test_goal_checks_agree_with_the_runner_and_each_label_names_its_rule(run_copy):
    await label_run(LabelConfig(run_dir=str(run_copy)))
    labels = read_labels(run_copy)
    unused = {"must_match", "must_not_match"}  # no demo scenario has regular expressions
    assert {label.criterion for label in labels} == set(RULE_IDS) - unused
    for label in labels:
        assert label.labeler == f"rule:{label.criterion}"
        assert label.value in ("yes", "no") and label.passed is (label.value == "yes")
    for criterion in ("must_mention", "must_call_tools"):
        found = by_episode(labels, criterion)
        for episode in simulate.iter_episodes(run_copy):
            failed = any(f.startswith(criterion) for f in episode.outcome.failed_checks)
            assert found[episode.episode_id].passed is (not failed), episode.episode_id
    goals = by_episode(labels, "goal_reached")
    for episode in simulate.iter_episodes(run_copy):
        reached = episode.outcome.status == "goal_reached"
        assert goals[episode.episode_id].passed is reached
        assert episode.outcome.status in goals[episode.episode_id].rationale


async def test_length_and_latency_are_labeled_per_agent_reply_with_the_thresholds(run_copy):
    limits = RuleLimits(reply_chars=200, latency_ms=1e9, max_turns=2)
    await label_run(LabelConfig(run_dir=str(run_copy), limits=limits))
    labels = read_labels(run_copy)
    for episode in simulate.iter_episodes(run_copy):
        turns = assistant_turns(episode.messages)
        for criterion in ("reply_chars", "latency_ms"):
            mine = [x for x in labels if x.episode_id == episode.episode_id]
            assert sorted(x.turn_index for x in mine if x.criterion == criterion) == turns
        for label in (x for x in labels if x.episode_id == episode.episode_id):
            if label.criterion == "reply_chars":
                size = len(episode.messages[label.turn_index].content)
                assert label.passed is (size <= 200)
                assert f"{size} characters (limit 200)" == label.rationale
            if label.criterion == "max_turns":
                assert label.passed is (episode.n_turns <= 2)
    assert any(x.criterion == "reply_chars" and x.passed is False for x in labels)
    assert all(x.passed for x in labels if x.criterion == "latency_ms")


async def test_a_rerun_skips_everything_and_another_folder_gets_identical_labels(
    run_copy, demo_run, tmp_path
):
    first = await label_run(LabelConfig(run_dir=str(run_copy)))
    assert first.written > 0 and first.skipped == 0
    again = await label_run(LabelConfig(run_dir=str(run_copy)))
    assert again.written == 0 and again.skipped == first.written
    labels = read_labels(run_copy)
    assert len(labels) == first.written
    assert len({label_key(x) for x in labels}) == len(labels)
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_bytes((run_copy / "manifest.json").read_bytes())
    (other / "episodes").mkdir()
    for shard in (demo_run / "episodes").iterdir():
        (other / "episodes" / shard.name).write_bytes(shard.read_bytes())
    await label_run(LabelConfig(run_dir=str(other)))
    assert comparable(read_labels(other)) == comparable(labels)
    sessions = read_manifest(run_copy)["labeling"]
    assert [s["written"] for s in sessions] == [first.written, 0]


async def test_criterion_filter_labels_only_those_rules(run_copy):
    result = await label_run(LabelConfig(run_dir=str(run_copy), criteria=["goal_reached"]))
    assert {x.criterion for x in read_labels(run_copy)} == {"goal_reached"}
    assert [row.criterion for row in result.summary] == ["goal_reached"]


def test_episodes_that_crashed_get_no_episode_level_rule_labels(demo_run):
    episode = next(simulate.iter_episodes(demo_run))
    crashed = episode.model_copy(update={"outcome": Outcome(status="target_error", reason="boom")})
    labeler = RuleLabeler()
    for criterion in rule_criteria():
        labels = labeler.label_now(crashed, criterion)
        if criterion.applies_to == "episode":
            assert labels == []
        else:
            assert len(labels) == len(assistant_turns(crashed.messages))


def test_checks_the_scenario_does_not_have_get_no_label(demo_run):
    episode = next(simulate.iter_episodes(demo_run))
    scenario = Scenario.model_validate_json(episode.scenario)
    scenario.success.must_not_mention = []
    plain = episode.model_copy(update={"scenario": scenario.model_dump_json()})
    by_id = {c.id: c for c in rule_criteria()}
    assert RuleLabeler().label_now(plain, by_id["must_not_mention"]) == []
    assert len(RuleLabeler().label_now(plain, by_id["goal_reached"])) == 1


def test_cli_rules_only_labels_the_run_and_prints_a_table(run_copy):
    def label(*extra: str) -> subprocess.CompletedProcess[str]:
        return simulate_cli("label", str(run_copy), "--rules-only", *extra, env={"COLUMNS": "200"})

    result = label("--reply-chars", "300")
    assert result.returncode == 0, result.stderr
    assert "must_not_mention" in result.stdout and "pass rate" in result.stdout
    ds = load_labels(run_copy)
    assert ds.num_rows > 0 and set(ds["labeler_kind"]) == {"rule"}
    assert all(
        "(limit 300)" in r
        for c, r in zip(ds["criterion"], ds["rationale"], strict=True)
        if c == "reply_chars"
    )
    again = label()
    assert again.returncode == 0, again.stderr
    assert f"0 written, {ds.num_rows} units already labeled" in again.stdout
    assert load_labels(run_copy).num_rows == ds.num_rows


def test_rules_only_with_a_judge_is_a_usage_error(run_copy):
    result = CliRunner().invoke(cli, ["label", str(run_copy), "--rules-only", "--rubric", "tone"])
    assert result.exit_code == 2 and "--rules-only runs no judge" in result.output
    assert not (run_copy / "labels").exists()
