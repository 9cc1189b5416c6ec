"""`simulate label RUN --import FILE --annotator NAME`: people's labels from CSV and JSONL,
checked against the run and the rubric, one error line per bad input, nothing written on error."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from label_runs import write_rubric, write_run
from test_cli import simulate_cli

from simulate.errors import ConfigError
from simulate.label.imports import import_labels
from simulate.store import read_labels, read_manifest

GOOD_CSV = """\
episode_id,criterion,turn_index,tool_call_index,value,rationale
ep-a,resolved,,,Yes,answered the weight
ep-a,grounded,1,,no,"8 kg, but ""cabin"" is not in the passage"
ep-b,polite,3,,4,
ep-b,right_tool,1,0,yes,
ep-b,must_mention,,,no,
"""


@pytest.fixture
def run(tmp_path) -> Path:
    write_rubric(tmp_path)
    return write_run(tmp_path / "run")


def rubric(run: Path) -> list[str]:
    return [str(run.parent / "rubric.yaml")]


def write(run: Path, name: str, text: str) -> Path:
    path = run.parent / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_csv_becomes_human_labels_with_scores(run):
    result = import_labels(run, write(run, "ana.csv", GOOD_CSV), "ana", rubric(run))
    assert (result.rows, result.written, result.skipped) == (5, 5, 0)
    labels = {(x.criterion, x.turn_index, x.tool_call_index): x for x in read_labels(run)}
    assert set(labels) == {
        ("resolved", None, None),
        ("grounded", 1, None),
        ("polite", 3, None),
        ("right_tool", 1, 0),
        ("must_mention", None, None),
    }
    resolved = labels[("resolved", None, None)]
    assert (resolved.value, resolved.passed, resolved.score) == ("yes", True, 1.0)
    assert resolved.labeler == "human:ana" and resolved.labeler_kind == "human"
    assert resolved.rubric == "test@1" and resolved.rationale == "answered the weight"
    assert labels[("grounded", 1, None)].rationale == '8 kg, but "cabin" is not in the passage'
    assert (labels[("polite", 3, None)].score, labels[("polite", 3, None)].passed) == (4.0, True)
    assert labels[("must_mention", None, None)].rubric is None, "a rule's criterion"
    assert read_manifest(run)["labeling"][-1]["annotator"] == "ana"

    again = import_labels(run, write(run, "ana.csv", GOOD_CSV), "ana", rubric(run))
    assert (again.written, again.skipped) == (0, 5)
    other = import_labels(run, write(run, "ana.csv", GOOD_CSV), "bo", rubric(run))
    assert other.written == 5 and len(read_labels(run)) == 10


def test_a_good_jsonl_with_null_and_missing_turn_index(run):
    rows = [
        {"episode_id": "ep-a", "criterion": "resolved", "turn_index": None, "value": "no"},
        {"episode_id": "ep-b", "criterion": "resolved", "value": False},
        {"episode_id": "ep-b", "criterion": "polite", "turn_index": 1, "value": 5},
        {
            "episode_id": "ep-a",
            "criterion": "right_tool",
            "turn_index": 1,
            "tool_call_index": 0,
            "value": "yes",
            "rationale": "right reference",
        },
    ]
    text = (
        "\n".join(json.dumps(r) for r in rows[:2])
        + "\n\n"
        + "\n".join(json.dumps(r) for r in rows[2:])
    )
    result = import_labels(run, write(run, "bo.jsonl", text), "bo", rubric(run))
    assert result.written == 4
    labels = {(x.episode_id, x.criterion): x for x in read_labels(run)}
    assert labels[("ep-b", "resolved")].value == "no"
    assert labels[("ep-b", "polite")].value == "5"
    assert labels[("ep-a", "right_tool")].rationale == "right reference"


BAD_CSV = [
    ("ep-x,resolved,,yes", r"bad\.csv:3: unknown episode_id 'ep-x'"),
    ("ep-a,resolvd,,yes", r"bad\.csv:3: unknown criterion 'resolvd' \(did you mean 'resolved'\?\)"),
    (
        "ep-a,resolved,,maybe",
        r"bad\.csv:3: value 'maybe' is not allowed for 'resolved'; "
        r"allowed: yes, no",
    ),
    ("ep-a,polite,1,9", r"bad\.csv:3: value '9' is not allowed for 'polite'; allowed: 1, 2, 3"),
    (
        "ep-a,grounded,2,yes",
        r"bad\.csv:3: turn_index 2 is not an agent reply in episode 'ep-a' "
        r"\(agent replies: 1, 3\)",
    ),
    ("ep-a,grounded,,yes", r"bad\.csv:3: 'grounded' judges each agent reply; give its turn_index"),
    ("ep-a,resolved,1,yes", r"bad\.csv:3: 'resolved' judges the whole episode"),
    (
        "ep-a,grounded,one,yes",
        r"bad\.csv:3: turn_index must be a whole number or empty, "
        r"got 'one'",
    ),
    ("ep-a,right_tool,1,yes", r"bad\.csv:3: 'right_tool' judges tool calls; give tool_call_index"),
    ("ep-a,resolved,,yes", r"bad\.csv:3: the same unit and criterion as line 2"),
    ("ep-a,resolved,yes", r"bad\.csv:3: 3 values for 4 columns"),
]


@pytest.mark.parametrize(("row", "error"), BAD_CSV)
def test_a_bad_csv_row_is_one_error_line_and_nothing_is_written(run, row, error):
    text = f"episode_id,criterion,turn_index,value\nep-a,resolved,,yes\n{row}\n"
    with pytest.raises(ConfigError, match=error) as caught:
        import_labels(run, write(run, "bad.csv", text), "ana", rubric(run))
    assert "\n" not in str(caught.value)
    assert read_labels(run) == [], "nothing written when one row is bad"


BAD_FILES = [
    (
        "x.csv",
        "episode_id,criterion,turn,value\n",
        r"x\.csv:1: unknown column 'turn'; columns: episode_id, criterion, turn_index",
    ),
    ("x.csv", "episode_id,criterion\nep-a,resolved\n", r"x\.csv:1: missing column 'value'"),
    ("x.csv", "", r"x\.csv: empty file"),
    ("x.csv", "episode_id,criterion,value\n", r"x\.csv: no rows"),
    (
        "x.jsonl",
        '{"episode_id": "ep-a", "criterion": "resolved", "value": "yes"}\n{oops\n',
        r"x\.jsonl:2: not JSON",
    ),
    ("x.jsonl", '["ep-a", "resolved"]\n', r"x\.jsonl:1: expected a JSON object"),
    (
        "x.jsonl",
        '{"episode_id": "ep-a", "criterion": "resolved", "value": "yes", "turn_index": 1.5}\n',
        r"x\.jsonl:1: turn_index must be a whole number",
    ),
    ("x.txt", "episode_id,criterion,value\n", r"x\.txt: import a \.csv or \.jsonl file"),
]


@pytest.mark.parametrize(("name", "text", "error"), BAD_FILES)
def test_a_bad_file_is_one_error_line(run, name, text, error):
    with pytest.raises(ConfigError, match=error) as caught:
        import_labels(run, write(run, name, text), "ana", rubric(run))
    assert "\n" not in str(caught.value)
    assert read_labels(run) == []


def test_without_a_rubric_only_the_rules_criteria_are_known(run):
    text = "episode_id,criterion,turn_index,value\nep-a,resolved,,yes\n"
    with pytest.raises(ConfigError, match=r"unknown criterion 'resolved'.*give --rubric"):
        import_labels(run, write(run, "x.csv", text), "ana")


def test_cli_import_reports_and_a_bad_row_exits_1_with_one_line(run):
    def label(*args: str) -> subprocess.CompletedProcess[str]:
        return simulate_cli("label", str(run), *args, env={"COLUMNS": "200"})

    good = write(run, "ana.csv", GOOD_CSV)
    bad = write(run, "bad.csv", GOOD_CSV + "ep-a,polite,1,,7,\n")
    failed = label("--import", str(bad), "--annotator", "ana", "--rubric", *rubric(run))
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        f"error: {bad}:7: value '7' is not allowed for 'polite'; allowed: 1, 2, 3, 4, 5"
    ]
    assert not (run / "labels").exists()
    result = label("--import", str(good), "--annotator", "ana", "--rubric", *rubric(run))
    assert result.returncode == 0, result.stderr
    assert "imported 5 labels as human:ana" in result.stdout and "human:ana" in result.stdout
    alone = label("--import", str(good))
    assert alone.returncode == 2 and "--annotator" in alone.stderr
