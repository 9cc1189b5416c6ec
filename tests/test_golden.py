"""Golden sets: label merging, stratified group splits, the written DatasetDict and its card."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import pytest
from huggingface_hub import DatasetCard
from test_cli import simulate_cli

from simulate.errors import ConfigError, RunFolderError
from simulate.label.golden import (
    assign_splits,
    build_golden,
    merge_labels,
    parse_precedence,
    parse_split,
)
from simulate.schema import Episode, Label, Message, Outcome
from simulate.store import ShardWriter, write_manifest

T0 = "2026-01-01T00:00:00+00:00"
T1 = "2026-01-02T00:00:00+00:00"


def label(
    value: str,
    labeler: str,
    *,
    episode_id: str = "e1",
    criterion: str = "resolved",
    turn_index: int | None = None,
    created_at: str = T0,
) -> Label:
    kind = labeler.split(":")[0]
    return Label(
        episode_id=episode_id,
        criterion=criterion,
        turn_index=turn_index,
        value=value,
        score=1.0 if value == "yes" else 0.0,
        passed=value == "yes",
        labeler=labeler,
        labeler_kind=kind,
        created_at=created_at,
    )


def only(merged):
    assert len(merged) == 1
    return merged[0]


# --- merging --------------------------------------------------------------------------------


def test_people_outrank_judges_which_outrank_rules():
    rule, judge, person = label("no", "rule:x"), label("yes", "judge:m"), label("no", "human:ana")
    assert only(merge_labels([rule, judge, person])).source == ["human:ana"]
    assert only(merge_labels([rule, judge, person])).value == "no"
    decided = only(merge_labels([rule, judge]))
    assert (decided.value, decided.kind, decided.passed) == ("yes", "judge", True)
    assert only(merge_labels([rule])).kind == "rule"


def test_an_adjudicators_decision_outranks_the_people_who_disagreed():
    people = [label("yes", "human:ana"), label("no", "human:bo")]
    assert only(merge_labels(people)).disputed
    decided = only(merge_labels([*people, label("no", "adjudicator:lead")]))
    assert (decided.value, decided.kind, decided.disputed) == ("no", "adjudicator", False)
    assert decided.source == ["adjudicator:lead"]
    # left out of a precedence, adjudicators are ignored like any kind
    assert only(merge_labels([*people, label("no", "adjudicator:lead")], ("human",))).disputed


def test_a_withdrawn_answer_takes_its_labeler_out_of_the_unit():
    withdrawn = Label(**{**label("", "human:ana", created_at=T1).model_dump(), "passed": None})
    merged = only(merge_labels([label("yes", "judge:m"), label("no", "human:ana"), withdrawn]))
    assert (merged.value, merged.kind) == ("yes", "judge")
    assert merge_labels([label("no", "human:ana"), withdrawn]) == []


def test_precedence_is_configurable_and_unlisted_kinds_are_ignored():
    labels = [label("no", "rule:x"), label("yes", "judge:m"), label("yes", "human:ana")]
    assert only(merge_labels(labels, ("rule", "judge", "human"))).value == "no"
    assert only(merge_labels(labels, ("judge",))).source == ["judge:m"]
    assert merge_labels([label("no", "rule:x")], ("human", "judge")) == []


def test_majority_within_a_kind_records_its_labelers():
    votes = [label("yes", "judge:a"), label("no", "judge:b"), label("yes", "judge:c")]
    merged = only(merge_labels(votes))
    assert (merged.value, merged.disputed) == ("yes", False)
    assert merged.source == ["judge:a", "judge:c"]


def test_two_people_who_differ_or_a_tie_make_a_unit_disputed():
    merged = only(merge_labels([label("yes", "human:ana"), label("no", "human:bo")]))
    assert merged.disputed and merged.value is None and merged.passed is None
    assert merged.source == ["human:ana", "human:bo"]
    tie = [label(v, f"judge:{i}") for i, v in enumerate(["yes", "no", "no", "yes"])]
    assert only(merge_labels(tie)).disputed
    # a dispute below the deciding kind does not matter
    assert not only(merge_labels([*tie, label("yes", "human:ana")])).disputed


def test_a_labelers_latest_label_counts_once():
    changed = [
        label("no", "human:ana", created_at=T1),
        label("yes", "human:ana", created_at=T0),
        label("no", "human:bo"),
    ]
    merged = only(merge_labels(changed))
    assert (merged.value, merged.disputed, merged.source) == (
        "no",
        False,
        ["human:ana", "human:bo"],
    )
    # same timestamp: the one written last wins
    again = [label("yes", "human:ana"), label("no", "human:ana")]
    assert only(merge_labels(again)).value == "no"


def test_units_are_merged_separately():
    labels = [
        label("yes", "rule:x"),
        label("no", "rule:x", turn_index=1),
        label("no", "rule:x", criterion="other"),
        label("yes", "rule:x", episode_id="e2"),
    ]
    units = [(m.episode_id, m.criterion, m.turn_index) for m in merge_labels(labels)]
    assert units == [("e1", "other", None), ("e1", "resolved", None), ("e1", "resolved", 1),
                     ("e2", "resolved", None)]  # fmt: skip


# --- splits ---------------------------------------------------------------------------------

GRID = [(f"p{i:02d}", f"s{j}") for i in range(20) for j in range(10)]


def test_splits_are_seeded_and_cover_every_group_once():
    first = assign_splits(GRID, (0.8, 0.1, 0.1), seed=0)
    assert first == assign_splits(list(reversed(GRID)), (0.8, 0.1, 0.1), seed=0)
    assert first != assign_splits(GRID, (0.8, 0.1, 0.1), seed=1)
    assert set(first) == set(GRID)
    assert Counter(first.values()) == {"train": 160, "validation": 20, "test": 20}


@pytest.mark.parametrize("seed", range(8))
def test_splits_are_stratified_by_persona_and_scenario(seed):
    fractions = {"train": 0.8, "validation": 0.1, "test": 0.1}
    assigned = assign_splits(GRID, tuple(fractions.values()), seed=seed)
    for split, share in fractions.items():
        scenarios = Counter(s for (_, s), where in assigned.items() if where == split)
        personas = Counter(p for (p, _), where in assigned.items() if where == split)
        # every scenario has 20 pairs and every persona 10; a plain shuffle strays by 4 or 5
        assert all(abs(scenarios[f"s{j}"] - share * 20) <= 2 for j in range(10)), scenarios
        assert all(abs(personas[f"p{i:02d}"] - share * 10) <= 2 for i in range(20)), personas


def test_small_runs_give_each_split_asked_for_a_group_when_they_can():
    three = assign_splits(GRID[:3], (0.8, 0.1, 0.1), seed=0)
    assert sorted(three.values()) == ["test", "train", "validation"]
    assert set(assign_splits(GRID[:5], (0.5, 0.5, 0.0), seed=0).values()) == {"train", "validation"}


@pytest.mark.parametrize("text", ["0.8,0.1", "0.8,0.3,0.1", "a,b,c", "1.2,-0.1,-0.1", "nan,0,1"])
def test_bad_split_is_a_config_error_naming_the_flag(text):
    with pytest.raises(ConfigError, match="--split"):
        parse_split(text)


def test_split_and_precedence_parse():
    assert parse_split("0.7,0.15,0.15") == (0.7, 0.15, 0.15)
    assert parse_precedence("judge, human") == ("judge", "human")
    for bad in ("human,robot", "human,human", ""):
        with pytest.raises(ConfigError, match="--precedence"):
            parse_precedence(bad)


# --- the written golden set -----------------------------------------------------------------


def make_run(run: Path, personas: int = 6, scenarios: int = 5, trials: int = 3) -> list[Episode]:
    """A run folder with episodes for every persona x scenario x trial, without labels."""
    write_manifest(
        run.mkdir(parents=True) or run,
        {
            "run_id": run.name,
            "config": {"target": "python:agent.py:respond", "user": "agenda", "trials": trials},
            "environment": {"simulate": "0.1.0"},
        },
    )
    writer = ShardWriter(run)
    episodes = []
    for i in range(personas):
        for j in range(scenarios):
            for trial in range(trials):
                episode = Episode(
                    episode_id=f"p{i}-s{j}-{trial}",
                    run_id=run.name,
                    persona_id=f"p{i}",
                    scenario_id=f"s{j}",
                    trial=trial,
                    seed=trial,
                    persona=json.dumps({"id": f"p{i}", "name": f"P {i}"}),
                    scenario=json.dumps({"id": f"s{j}"}),
                    messages=[Message(role="user", content="hi"), Message(role="assistant")],
                    outcome=Outcome(status="goal_reached"),
                    success=True,
                    n_turns=1,
                    duration_s=0.1,
                    user="agenda",
                    target="python:agent.py:respond",
                    created_at=T0,
                )
                writer.add(episode)
                episodes.append(episode)
    writer.flush()
    return episodes


def add_labels(run: Path, labels: list[Label]) -> None:
    writer = ShardWriter(run, "labels")
    for row in labels:
        writer.add(row)
    writer.flush()


@pytest.fixture
def labeled_run(tmp_path: Path) -> Path:
    """30 pairs x 3 trials; rule labels everywhere, a reply label, one disputed unit."""
    run = tmp_path / "run"
    episodes = make_run(run)
    labels = []
    for e in episodes:
        value = "yes" if e.trial else "no"
        labels.append(label(value, "rule:goal_reached", episode_id=e.episode_id, criterion="goal"))
        labels.append(
            label("yes", "rule:len", episode_id=e.episode_id, criterion="len", turn_index=1)
        )
    labels += [
        label("yes", "human:ana", episode_id="p0-s0-0", criterion="tone"),
        label("no", "human:bo", episode_id="p0-s0-0", criterion="tone"),
        label("yes", "human:ana", episode_id="p1-s1-0", criterion="goal"),
    ]
    add_labels(run, labels)
    return run


def load(path: Path, cache: Path) -> datasets.DatasetDict:
    return datasets.load_dataset(str(path), cache_dir=str(cache))


def test_golden_round_trips_through_load_dataset(labeled_run, tmp_path):
    result = build_golden(labeled_run, seed=0)
    assert result.path == labeled_run / "golden"
    assert sorted(p.name for p in (labeled_run / "golden" / "data").iterdir()) == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
        "validation-00000-of-00001.parquet",
    ]
    golden = load(labeled_run / "golden", tmp_path / "cache")
    assert list(golden) == ["train", "validation", "test"]
    assert {n: golden[n].num_rows for n in golden} == result.splits
    assert sum(result.splits.values()) == 90
    columns = golden["train"].column_names
    for name in ("episode_id", "persona_id", "scenario_id", "trial", "messages", "outcome"):
        assert name in columns
    assert {"labels", "passed_goal"} <= set(columns)
    assert "passed_len" not in columns  # a reply-level criterion lives in `labels` only
    assert "passed_tone" not in columns  # its only unit is disputed, so left out
    assert golden["train"].features == golden["test"].features
    rows = {r["episode_id"]: r for split in golden.values() for r in split}
    person = rows["p1-s1-0"]  # the rule said no, a person said yes
    assert person["passed_goal"] is True
    goal = next(x for x in person["labels"] if x["criterion"] == "goal")
    assert (goal["value"], goal["kind"], goal["source"], goal["disputed"]) == (
        "yes",
        "human",
        ["human:ana"],
        False,
    )
    assert rows["p2-s2-0"]["passed_goal"] is False and rows["p2-s2-1"]["passed_goal"] is True
    # the disputed unit is left out by default
    assert result.disputed == 1
    assert all(x["criterion"] != "tone" for x in rows["p0-s0-0"]["labels"])
    assert result.criteria == ["goal", "len"]


def test_no_episode_and_no_persona_scenario_pair_is_in_two_splits(labeled_run, tmp_path):
    build_golden(labeled_run, split=(0.6, 0.2, 0.2), seed=3)
    golden = load(labeled_run / "golden", tmp_path / "cache")
    where: dict[str, set[str]] = {}
    pairs: dict[tuple[str, str], set[str]] = {}
    for split, ds in golden.items():
        for row in ds:
            where.setdefault(row["episode_id"], set()).add(split)
            pairs.setdefault((row["persona_id"], row["scenario_id"]), set()).add(split)
    assert len(where) == 90 and all(len(s) == 1 for s in where.values())
    assert len(pairs) == 30 and all(len(s) == 1 for s in pairs.values())
    assert {n: ds.num_rows for n, ds in golden.items()} == {
        "train": 54,
        "validation": 18,
        "test": 18,
    }


def test_same_seed_same_golden_set(labeled_run, tmp_path):
    def episode_splits(seed: int) -> dict[str, list[str]]:
        result = build_golden(labeled_run, seed=seed)
        return {n: sorted(ds["episode_id"]) for n, ds in result.dataset.items()}

    assert episode_splits(5) == episode_splits(5)
    assert episode_splits(5) != episode_splits(6)


def test_keep_disputed_keeps_the_unit_marked(labeled_run, tmp_path):
    result = build_golden(labeled_run, keep_disputed=True)
    assert result.criteria == ["goal", "len", "tone"]
    rows = {r["episode_id"]: r for ds in result.dataset.values() for r in ds}
    tone = next(x for x in rows["p0-s0-0"]["labels"] if x["criterion"] == "tone")
    assert tone["disputed"] is True and tone["value"] is None
    assert tone["source"] == ["human:ana", "human:bo"]
    assert rows["p0-s0-0"]["passed_tone"] is None


def test_the_card_parses_and_carries_the_hub_metadata(labeled_run):
    build_golden(labeled_run, license="apache-2.0")
    card = DatasetCard.load(labeled_run / "golden" / "README.md")
    data = card.data
    assert data.license == "apache-2.0"
    assert "text-generation" in data.task_categories
    assert {"synthetic", "simulate"} <= set(data.tags)
    assert data.size_categories == "n<1K"
    assert data.language == ["en"]
    (config,) = data.configs
    assert config["data_files"] == [
        {"split": s, "path": f"data/{s}-*"} for s in ("train", "validation", "test")
    ]
    sizes = {s["name"]: s["num_examples"] for s in data.dataset_info["splits"]}
    assert sum(sizes.values()) == 90
    text = card.text
    assert "python:agent.py:respond" in text and "`agenda`" in text
    assert "6 personas × 5 scenarios" in text
    assert "hand-written personas bundled with the run" in text
    assert "synthetic" in text.lower() and "load_dataset" in text
    assert "| `goal` | episode |" in text and "| `len` | agent reply |" in text


def test_rebuilding_replaces_the_folder_whole(labeled_run, tmp_path):
    build_golden(labeled_run)
    stale = labeled_run / ".golden.tmp-dead01"  # a writer that was killed
    (stale / "data").mkdir(parents=True)
    result = build_golden(labeled_run, split=(1.0, 0.0, 0.0))
    assert result.splits == {"train": 90}
    assert [p.name for p in (labeled_run / "golden" / "data").iterdir()] == [
        "train-00000-of-00001.parquet"
    ]
    assert sorted(p.name for p in labeled_run.iterdir()) == [
        "episodes",
        "golden",
        "labels",
        "manifest.json",
    ]
    assert list(load(labeled_run / "golden", tmp_path / "cache")) == ["train"]


def test_a_crash_while_writing_leaves_the_previous_golden_set(labeled_run, tmp_path):
    build_golden(labeled_run)
    before = (labeled_run / "golden" / "README.md").read_text()
    crash = (
        "import os, simulate.label.golden as g\n"
        "real = g.write_parquet\n"
        "def write_then_die(path, table):\n"
        "    real(path, table)\n"
        "    os._exit(9)\n"
        "g.write_parquet = write_then_die\n"
        f"g.build_golden({str(labeled_run)!r}, seed=1)\n"
    )
    result = subprocess.run([sys.executable, "-c", crash], capture_output=True, timeout=120)
    assert result.returncode == 9
    assert (labeled_run / "golden" / "README.md").read_text() == before
    assert len(list((labeled_run / "golden" / "data").iterdir())) == 3
    build_golden(labeled_run, seed=1)  # and the next build clears what the crash left
    assert not [p for p in labeled_run.iterdir() if p.name.startswith(".golden")]


def test_library_errors(tmp_path, labeled_run):
    with pytest.raises(RunFolderError, match="not a run folder"):
        build_golden(tmp_path)
    bare = tmp_path / "bare"
    make_run(bare, personas=1, scenarios=1, trials=1)
    with pytest.raises(RunFolderError, match=r"label it first: simulate label .* --rules-only"):
        build_golden(bare)
    with pytest.raises(ConfigError, match="--split"):
        build_golden(labeled_run, split=(0.5, 0.5, 0.5))
    with pytest.raises(ConfigError, match="--license"):
        build_golden(labeled_run, license="CC BY")
    with pytest.raises(ConfigError, match="--out"):
        build_golden(labeled_run, out=labeled_run / "episodes")


# --- the command ----------------------------------------------------------------------------


def test_golden_command_prints_splits_disputes_and_criteria(labeled_run):
    result = simulate_cli("golden", str(labeled_run), "--seed", "2", "--keep-disputed")
    assert result.returncode == 0, result.stderr
    assert "train 72, validation 9, test 9" in result.stdout
    assert "disputed units: 1, kept" in result.stdout
    assert "criteria: goal, len, tone" in result.stdout
    assert (labeled_run / "golden" / "README.md").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["golden", "{tmp}"], "is not a run folder"),
        (["golden", "{bare}"], "label it first: simulate label"),
        (["golden", "{run}", "--split", "0.5,0.5,0.5"], "--split '0.5,0.5,0.5' sums to 1.5"),
        (["golden", "{run}", "--precedence", "people"], "--precedence 'people'"),
    ],
)
def test_golden_command_bad_input_is_one_line(tmp_path, args, message):
    run, bare = tmp_path / "run", tmp_path / "bare"
    make_run(run, personas=2, scenarios=2, trials=1)
    add_labels(run, [label("yes", "rule:x", episode_id="p0-s0-0")])
    make_run(bare, personas=1, scenarios=1, trials=1)
    paths = {"tmp": tmp_path, "run": run, "bare": bare}
    result = simulate_cli(*(a.format(**paths) for a in args))
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (run / "golden").exists()


def test_demo_labels_its_run_and_builds_its_golden_set(tmp_path):
    out = tmp_path / "demo"
    result = simulate_cli("demo", "--out", str(out), "-q")
    assert result.returncode == 0, result.stderr
    assert "rule labels added" in result.stdout and f"golden: {out}/golden/" in result.stdout
    assert list((out / "labels").glob("*.parquet"))
    golden = load(out / "golden", tmp_path / "cache")
    assert list(golden) == ["train", "validation", "test"]
    assert sum(ds.num_rows for ds in golden.values()) == 108
    assert "passed_must_not_mention" in golden["test"].column_names
    # resuming adds no duplicate rule labels and rebuilds the same golden set
    again = simulate_cli("demo", "--out", str(out), "-q", "--resume")
    assert again.returncode == 0, again.stderr
    assert "0 rule labels added" in again.stdout
