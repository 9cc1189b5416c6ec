"""Rubrics: the shipped ones load and agree with each other; bad files and names are one line."""

from __future__ import annotations

import pytest
from label_runs import write_run
from test_cli import simulate_cli

from simulate.errors import ConfigError
from simulate.label import normalize_value
from simulate.label.rubrics import load_rubric_specs, shipped_rubrics
from simulate.schema import Criterion

SHIPPED = ["context_relevance", "faithfulness", "goal_completion", "safety", "support", "tone",
           "tool_use"]  # fmt: skip


def test_every_shipped_rubric_loads_with_a_passing_and_a_failing_example():
    assert shipped_rubrics() == SHIPPED
    for rubric in load_rubric_specs([n for n in SHIPPED if n != "support"]):
        for criterion in rubric.criteria:
            values = [e.value for e in criterion.examples]
            assert all(v in criterion.allowed_values() for v in values), criterion.id
            passes = {criterion.judge_value(v)[1] for v in values}
            assert passes == {True, False}, f"{criterion.id}: a good and a bad example"
    kinds = {c.id: c.applies_to for r in load_rubric_specs(["support"]) for c in r.criteria}
    assert kinds["faithfulness"] == "assistant_turn" and kinds["tool_use"] == "tool_call"


def test_support_repeats_the_other_rubrics_criteria_word_for_word():
    (support,) = load_rubric_specs(["support"])
    others = {
        c.id: c
        for r in load_rubric_specs([n for n in SHIPPED if n != "support"])
        for c in r.criteria
    }
    for criterion in support.criteria:
        assert criterion == others[criterion.id]


def test_unknown_names_and_criteria_given_twice_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"'safty'.*did you mean 'safety'.*shipped: context"):
        load_rubric_specs(["safty"])
    with pytest.raises(ConfigError, match=r"criterion 'faithfulness' is in two .*faithfulness@1"):
        load_rubric_specs(["support", "faithfulness"])
    with pytest.raises(ConfigError, match=r"rubric 'tone' is given twice"):
        load_rubric_specs(["tone", "tone"])


def test_values_are_forgiven_their_case_and_form_but_not_their_meaning():
    binary = Criterion(id="b", question="?")
    scale = Criterion(id="s", question="?", kind="scale", scale_min=1, scale_max=5)
    category = Criterion(id="c", question="?", kind="category", options=["partly_relevant", "no"])
    assert [normalize_value(binary, v) for v in ("Yes", " no. ", True, "maybe")] == [
        "yes",
        "no",
        "yes",
        None,
    ]
    assert [normalize_value(scale, v) for v in (4, "4.0", "4/5", "6", 2.5)] == [
        "4",
        "4",
        "4",
        None,
        None,
    ]
    assert normalize_value(category, "Partly relevant") == "partly_relevant"


def test_a_rubric_with_a_bad_field_is_a_one_line_error_naming_file_and_line(tmp_path):
    run = write_run(tmp_path / "run")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "id: bad\ncriteria:\n  - id: tone\n    question: How is the tone?\n    kind: scael\n"
    )
    result = simulate_cli("label", str(run), "--rubric", str(bad))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {bad}:5: rubric 'bad': criteria[0].kind: expected one of 'binary', 'scale', "
        "'category', got 'scael' (did you mean 'scale'?)"
    ]
    assert not (run / "labels").exists()
