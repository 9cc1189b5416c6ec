"""Agreement: kappa and alpha against statsmodels, krippendorff and published examples;
judges against people; the Rogan–Gladen correction; `simulate agreement` end to end."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import krippendorff
import numpy as np
import pytest
from statsmodels.stats.inter_rater import aggregate_raters, cohens_kappa, fleiss_kappa
from statsmodels.stats.proportion import proportion_confint
from test_cli import simulate_cli as run_simulate

from simulate.errors import ConfigError, RunFolderError, SimulateError
from simulate.label.agreement import (
    AgreementReport,
    agreement_report,
    corrected_pass_rate,
    rogan_gladen,
)
from simulate.label.agreement import wilson as wilson_rate
from simulate.schema import Label
from simulate.store import ShardWriter, write_manifest

KINDS = {"human": "human", "judge": "judge", "rule": "rule"}


def simulate_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI at a terminal width that keeps its tables whole."""
    return run_simulate(*args, env={"COLUMNS": "160"})


def label(
    episode: int | str,
    labeler: str,
    value: str,
    *,
    criterion: str = "goal",
    passed: bool | None = None,
    turn: int | None = None,
) -> Label:
    """A label; binary answers get their `passed` unless one is given."""
    if passed is None and value in ("yes", "no"):
        passed = value == "yes"
    return Label(
        episode_id=f"ep{episode}",
        criterion=criterion,
        turn_index=turn,
        value=value,
        passed=passed,
        labeler=labeler,
        labeler_kind=KINDS[labeler.split(":")[0]],
        created_at="2024-01-01T00:00:00+00:00",
    )


def make_run(folder: Path, labels: list[Label]) -> Path:
    """A run folder holding a manifest and the given labels, in two shards."""
    folder.mkdir(parents=True)
    write_manifest(folder, {"run_id": "test", "schema_version": 1})
    if labels:
        writer = ShardWriter(folder, kind="labels")
        half = len(labels) // 2
        for batch in (labels[:half], labels[half:]):
            for row in batch:
                writer.add(row)
            writer.flush()
    return folder


def section(report: AgreementReport, criterion: str = "goal") -> dict:
    dumped = report.model_dump(mode="json")
    return next(s for s in dumped["criteria"] if s["criterion"] == criterion)


def as_before(figure: dict) -> dict:
    """A rate in the shape agreement gave before the one `Rate` type: value, interval, n (or
    value, n and the reason when undefined)."""
    keys = (
        ("value", "low", "high", "n") if figure["value"] is not None else ("value", "n", "reason")
    )
    return {key: figure[key] for key in keys}


def binary_labels(labeler: str, answers: list[bool], **kw) -> list[Label]:
    return [label(i, labeler, "yes" if a else "no", **kw) for i, a in enumerate(answers)]


# --- Cohen's kappa ----------------------------------------------------------------------------


def test_cohen_kappa_published_example(tmp_path):
    """Wikipedia's Cohen's kappa example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> 0.4."""
    a = [True] * 25 + [False] * 25
    b = [True] * 20 + [False] * 5 + [True] * 10 + [False] * 15
    run = make_run(tmp_path / "run", binary_labels("human:a", a) + binary_labels("judge:b", b))
    figure = section(agreement_report(run))["agreement"]["cohen_kappa"]
    assert figure["value"] == pytest.approx(0.4)
    assert figure["n"] == 50
    reference = cohens_kappa(np.array([[15, 10], [5, 20]]))
    assert (figure["low"], figure["high"]) == pytest.approx(
        (reference["kappa_low"], reference["kappa_upp"])
    )


def test_cohen_kappa_uses_only_units_both_rated_and_equals_statsmodels(tmp_path):
    rng = np.random.default_rng(1)
    values = ["poor", "fair", "good"]
    a = rng.integers(0, 3, 80)
    b = np.where(rng.random(80) < 0.6, a, rng.integers(0, 3, 80))
    labels = [label(i, "human:a", values[v], criterion="tone") for i, v in enumerate(a)]
    # b skips the first ten units and rates ten units a never saw
    labels += [label(i, "judge:b", values[v], criterion="tone") for i, v in enumerate(b) if i >= 10]
    labels += [label(100 + i, "judge:b", "good", criterion="tone") for i in range(10)]
    run = make_run(tmp_path / "run", labels)
    figure = section(agreement_report(run), "tone")["agreement"]["cohen_kappa"]
    table = np.zeros((3, 3))
    for x, y in zip(a[10:], b[10:], strict=True):
        table[x, y] += 1
    assert figure["n"] == 70
    assert figure["value"] == pytest.approx(cohens_kappa(table)["kappa"])
    observed = np.trace(table) / 70
    chance = (table.sum(0) * table.sum(1)).sum() / 70**2
    assert figure["value"] == pytest.approx((observed - chance) / (1 - chance))


def test_a_labelers_later_label_of_a_unit_wins(tmp_path):
    first = binary_labels("human:a", [True, False, True, False])
    again = [label(1, "human:a", "yes")]  # ana changed her mind on ep1
    judge = binary_labels("judge:b", [True, True, True, False])
    run = make_run(tmp_path / "run", first + judge + again)
    report = section(agreement_report(run))
    assert report["agreement"]["cohen_kappa"]["value"] == pytest.approx(1.0)
    assert report["raters"] == [
        {"labeler": "human:a", "kind": "human", "units": 4},
        {"labeler": "judge:b", "kind": "judge", "units": 4},
    ]


# --- Fleiss' kappa ----------------------------------------------------------------------------

# Fleiss (1971), as tabled on Wikipedia: 10 subjects, 14 raters, 5 categories; kappa 0.210.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_published_example(tmp_path):
    categories = ["a", "b", "c", "d", "e"]
    labels = []
    for subject, counts in enumerate(FLEISS_TABLE):
        answers = [c for c, k in zip(categories, counts, strict=True) for _ in range(k)]
        labels += [label(subject, f"human:r{r}", v) for r, v in enumerate(answers)]
    run = make_run(tmp_path / "run", labels)
    agreement = section(agreement_report(run))["agreement"]
    assert "cohen_kappa" not in agreement
    figure = agreement["fleiss_kappa"]
    assert figure["n"] == 10
    assert round(figure["value"], 3) == 0.210
    assert figure["value"] == pytest.approx(fleiss_kappa(np.array(FLEISS_TABLE)))


# --- Krippendorff's alpha ---------------------------------------------------------------------

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 observers, 12 units,
# values 1-5, missing answers; alpha nominal 0.743, ordinal 0.815, interval 0.849.
NAN = math.nan
KRIPPENDORFF_DATA = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]


def krippendorff_run(folder: Path) -> Path:
    labels = [
        label(unit, f"human:o{observer}", str(int(v)), criterion="clarity", turn=1)
        for observer, row in enumerate(KRIPPENDORFF_DATA)
        for unit, v in enumerate(row)
        if not math.isnan(v)
    ]
    return make_run(folder, labels)


def test_krippendorff_alpha_published_example(tmp_path):
    report = section(agreement_report(krippendorff_run(tmp_path / "run")), "clarity")
    assert report["kind"] == "scale"
    alpha = report["agreement"]["krippendorff_alpha"]
    assert {level: round(f["value"], 3) for level, f in alpha.items()} == {
        "nominal": 0.743,
        "ordinal": 0.815,
        "interval": 0.849,
    }
    assert {f["n"] for f in alpha.values()} == {11}  # unit 12 has one answer: not pairable
    for level, figure in alpha.items():
        expected = krippendorff.alpha(KRIPPENDORFF_DATA, level_of_measurement=level)
        assert figure["value"] == pytest.approx(expected)


def test_fleiss_kappa_counts_only_units_every_rater_answered(tmp_path):
    report = section(agreement_report(krippendorff_run(tmp_path / "run")), "clarity")
    figure = report["agreement"]["fleiss_kappa"]
    complete = np.array(KRIPPENDORFF_DATA)[:, 1:9]  # units 2-9 have all four answers
    assert figure["n"] == 8
    assert figure["value"] == pytest.approx(fleiss_kappa(aggregate_raters(complete.T)[0]))


def test_alpha_with_missing_answers_equals_krippendorff_on_random_data(tmp_path):
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 2, 60)
    matrix = np.full((3, 60), np.nan)
    labels = []
    for r in range(3):
        for unit in range(60):
            if rng.random() < 0.2:
                continue  # this rater skipped the unit
            answer = truth[unit] if rng.random() < 0.8 else 1 - truth[unit]
            matrix[r, unit] = answer
            labels.append(label(unit, f"judge:m{r}", "yes" if answer else "no"))
    run = make_run(tmp_path / "run", labels)
    figure = section(agreement_report(run))["agreement"]["krippendorff_alpha"]["nominal"]
    assert figure["value"] == pytest.approx(
        krippendorff.alpha(matrix, level_of_measurement="nominal")
    )
    assert figure["n"] == int(((~np.isnan(matrix)).sum(0) >= 2).sum())


def test_identical_answers_everywhere_give_no_figure_with_a_reason(tmp_path):
    labels = binary_labels("human:a", [True] * 5) + binary_labels("judge:b", [True] * 5)
    agreement = section(agreement_report(make_run(tmp_path / "run", labels)))["agreement"]
    assert agreement["cohen_kappa"]["value"] is None
    assert "same answer" in agreement["cohen_kappa"]["reason"]
    assert agreement["krippendorff_alpha"]["nominal"]["value"] is None


# --- judges against people --------------------------------------------------------------------


def wilson(successes: int, n: int) -> dict:
    return as_before(wilson_rate(successes, n).model_dump())


def test_wilson_intervals_are_statsmodels():
    figure = wilson(7, 10)
    low, high = proportion_confint(7, 10, method="wilson")
    assert (figure["value"], figure["low"], figure["high"], figure["n"]) == (0.7, low, high, 10)
    assert wilson(0, 0) == {"value": None, "n": 0, "reason": "no units"}


def test_rogan_gladen_by_hand():
    # observed 60% passes, sensitivity 0.9, specificity 0.8: (0.6 + 0.8 - 1) / (0.9 + 0.8 - 1)
    assert rogan_gladen(0.6, 0.9, 0.8) == pytest.approx(0.4 / 0.7)
    assert rogan_gladen(0.1, 0.9, 0.8) == 0.0  # -0.1 / 0.7, clipped
    assert rogan_gladen(0.95, 0.9, 0.8) == 1.0  # 0.75 / 0.7, clipped
    assert rogan_gladen(0.5, 0.5, 0.5) is None  # no better than chance
    assert rogan_gladen(0.5, 0.3, 0.6) is None


def planted_run(folder: Path) -> Path:
    """People agree on ep0-37 (ep0-19 pass) and tie on ep38-39; the judge is wrong on ep0-3
    (says fail) and ep20-21 (says pass), and also labels ep40-99 alone (ep40-69 pass)."""
    truth = [i < 20 for i in range(40)]
    ana = binary_labels("human:ana", truth)
    bo = binary_labels("human:bo", [*truth[:38], True, True])
    wrong = {0, 1, 2, 3, 20, 21}
    judge = [(i in wrong) != (i < 20) if i < 40 else i < 70 for i in range(100)]
    rule = binary_labels("rule:must_mention", [True] * 40)
    return make_run(folder, ana + bo + binary_labels("judge:gpt", judge) + rule)


def test_judge_against_people_with_a_planted_judge(tmp_path):
    report = section(agreement_report(planted_run(tmp_path / "run")))
    judge = next(r for r in report["vs_people"] if r["labeler"] == "judge:gpt")
    judge.update({name: as_before(judge[name]) for name in ("accuracy", "tpr", "tnr", "pass_rate")})
    assert judge["people"] == ["human:ana", "human:bo"]
    assert judge["ties_left_out"] == 2
    assert judge["n"] == 38
    for name, (hits, n) in {
        "accuracy": (32, 38),
        "tpr": (16, 20),
        "tnr": (16, 18),
        "pass_rate": (48, 100),
    }.items():
        low, high = proportion_confint(hits, n, method="wilson")
        assert judge[name] == {"value": hits / n, "low": low, "high": high, "n": n}, name
    corrected = judge["corrected_pass_rate"]
    sens, spec = 16 / 20, 16 / 18
    assert corrected["value"] == pytest.approx((0.48 + spec - 1) / (sens + spec - 1))
    assert corrected["low"] < corrected["value"] < corrected["high"]
    assert (corrected["n"], corrected["n_positives"], corrected["n_negatives"]) == (100, 20, 18)
    assert "bootstrap" in corrected["method"]


def test_rules_are_measured_against_people_too(tmp_path):
    report = section(agreement_report(planted_run(tmp_path / "run")))
    rule = next(r for r in report["vs_people"] if r["labeler"] == "rule:must_mention")
    assert rule["kind"] == "rule"
    assert (rule["tpr"]["value"], rule["tnr"]["value"]) == (1.0, 0.0)
    assert rule["corrected_pass_rate"]["value"] is None
    assert rule["corrected_pass_rate"]["reason"].startswith("not estimable")


def test_bootstrap_interval_matches_resampling_the_labels():
    """The binomial draws are the same bootstrap as resampling yes/no labels with replacement."""
    ours = corrected_pass_rate(48, 100, 16, 20, 16, 18, replicates=4000, seed=3).model_dump()
    rng = np.random.default_rng(11)
    judge = np.array([1] * 48 + [0] * 52)
    positives = np.array([1] * 16 + [0] * 4)
    negatives = np.array([1] * 16 + [0] * 2)
    estimates = []
    for _ in range(4000):
        p = rng.choice(judge, judge.size).mean()
        sens = rng.choice(positives, positives.size).mean()
        spec = rng.choice(negatives, negatives.size).mean()
        estimates.append(rogan_gladen(p, sens, spec))
    low, high = np.percentile([e for e in estimates if e is not None], [2.5, 97.5])
    assert (ours["low"], ours["high"]) == pytest.approx((low, high), abs=0.02)
    again = corrected_pass_rate(48, 100, 16, 20, 16, 18, replicates=4000, seed=3).model_dump()
    assert ours == again


def test_corrected_rate_needs_both_passes_and_failures_from_people():
    figure = corrected_pass_rate(5, 10, 4, 5, 0, 0).model_dump()
    assert figure["value"] is None
    assert figure["reason"] == "not estimable: people gave no failures"


# --- bad inputs -------------------------------------------------------------------------------


def test_not_a_run_folder(tmp_path):
    with pytest.raises(RunFolderError, match="no such run folder"):
        agreement_report(tmp_path / "missing")


def test_no_labels(tmp_path):
    with pytest.raises(SimulateError, match="no labels in"):
        agreement_report(make_run(tmp_path / "run", []))


def test_one_rater_per_criterion_says_what_is_needed(tmp_path):
    run = make_run(tmp_path / "run", binary_labels("rule:goal_reached", [True, False]))
    with pytest.raises(SimulateError, match="one labeler only") as raised:
        agreement_report(run)
    assert "simulate label RUN --import FILE --annotator NAME" in str(raised.value)


def test_unknown_criterion_suggests_the_closest(tmp_path):
    run = make_run(tmp_path / "run", binary_labels("human:a", [True]))
    with pytest.raises(ConfigError, match="did you mean 'goal'"):
        agreement_report(run, criterion="gaol")


# --- the command ------------------------------------------------------------------------------


def test_cli_prints_figures_with_their_n(tmp_path):
    run = planted_run(tmp_path / "run")
    result = simulate_cli("agreement", str(run))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for expected in (
        "Fleiss' kappa",
        "Krippendorff's alpha (nominal)",
        "judge:gpt against people (human:ana, human:bo; 2 tied units left out)",
        "true-positive rate",
        "80%",
        "pass rate, corrected",
        "not estimable",
    ):
        assert expected in text, expected
    rows = [
        tuple(cell.strip() for cell in line.split("│")[1:-1])
        for line in text.splitlines()
        if line.count("│") == 5
    ]
    assert ("accuracy", "84%", "70% – 93%", "38") in rows  # 32 of 38, Wilson interval
    assert ("true-negative rate", "89%", "67% – 97%", "18") in rows
    assert ("pass rate, observed", "48%", "38% – 58%", "100") in rows
    assert ("Fleiss' kappa", "0.324", "—", "40") in rows


def test_cli_json_is_the_report_and_criterion_filters(tmp_path):
    labels = binary_labels("human:a", [True, False, True]) + binary_labels(
        "judge:b", [True, False, False]
    )
    labels += binary_labels("judge:b", [True], criterion="tone")
    run = make_run(tmp_path / "run", labels)
    result = simulate_cli("agreement", str(run), "--json", "--criterion", "goal")
    assert result.returncode == 0, result.stderr
    expected = agreement_report(run, criterion="goal").model_dump(mode="json")
    assert json.loads(result.stdout) == expected
    assert [s["criterion"] for s in json.loads(result.stdout)["criteria"]] == ["goal"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "no such run folder"),
        ("empty", "no labels in"),
        ("one rater", "simulate label RUN --import FILE --annotator NAME"),
    ],
)
def test_cli_bad_inputs_are_one_line_errors(tmp_path, setup, message):
    run = tmp_path / "run"
    if setup == "empty":
        make_run(run, [])
    elif setup == "one rater":
        make_run(run, binary_labels("judge:b", [True, False]))
    result = simulate_cli("agreement", str(run))
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
