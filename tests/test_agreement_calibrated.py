"""Judges calibrated against people: the people-only ceiling, kappa beside PABAK and Gwet's AC1
(published examples), intervals from resampling units that do not collapse at the edges, no NaN
in the JSON, and the judge's pass rate corrected by prediction-powered inference (PPI++)
against the reference implementation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from statsmodels.stats.inter_rater import cohens_kappa
from test_agreement import KRIPPENDORFF_DATA, binary_labels, make_run, planted_run
from test_agreement import section as agreement_section
from test_cli import simulate_cli
from test_report_figures import label as report_label
from test_report_figures import make_episode, write_planted_run

from simulate.card import agreement_lines
from simulate.label.agreement import agreement_report, coefficients
from simulate.report.figures import build_report
from simulate.stats import ppi_mean, wilson_interval


def strict_json(text: str) -> object:
    """json.loads that refuses NaN and Infinity, which JSON does not have."""

    def refuse(constant: str) -> object:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


# --- PABAK and Gwet's AC1 against published examples ------------------------------------------


def test_ac1_of_two_raters_is_gwets_published_example():
    # Gwet (2014), 100 pregnancies by two abstractors (irrCAC's `table_cont3x3abstractors`):
    # AC1 0.84933, observed agreement 0.89, chance 0.26992.
    table = np.array([[13, 0, 0], [0, 20, 7], [0, 4, 56]])
    first = [i for i in range(3) for j in range(3) for _ in range(table[i, j])]
    second = [j for i in range(3) for j in range(3) for _ in range(table[i, j])]
    figures = coefficients(["a", "b"], np.array([first, second], dtype=float))
    assert round(figures.ac1.value, 5) == 0.84933
    assert figures.observed.value == pytest.approx(0.89)
    assert figures.pabak.value == pytest.approx((3 * 0.89 - 1) / 2)
    assert figures.kappa.value == pytest.approx(cohens_kappa(table)["kappa"])
    assert figures.ac1.low < figures.ac1.value < figures.ac1.high


def test_ac1_of_four_raters_with_missing_answers_is_gwets_published_example():
    # The same 4 raters x 12 units as Krippendorff's example; irrCAC (Gwet) gives AC1 0.77544
    # with observed agreement 0.81818 over the 11 units with two or more answers.
    figures = coefficients(["1", "2", "3", "4"], np.array(KRIPPENDORFF_DATA))
    assert round(figures.ac1.value, 5) == 0.77544
    assert figures.observed.value == pytest.approx(0.81818, abs=1e-5)
    assert figures.n == 11 and figures.kappa.n == 8  # Fleiss' kappa: complete units only


def test_intervals_do_not_collapse_at_the_edges():
    everyone_agrees = np.array([[1.0] * 15 + [0.0] * 5] * 2)
    figures = coefficients(["a", "b"], everyone_agrees)
    for figure in (figures.kappa, figures.pabak, figures.ac1):
        assert figure.value == pytest.approx(1.0)
        assert figure.low < 0.95 and figure.high == pytest.approx(1.0)
    one_rater_constant = np.array([[1.0] * 20, [1.0] * 16 + [0.0] * 4])
    kappa = coefficients(["a", "b"], one_rater_constant).kappa
    assert kappa.value == pytest.approx(0.0) and kappa.low < 0 < kappa.high


# --- people first -------------------------------------------------------------------------------


def test_the_people_only_ceiling_leaves_judges_and_rules_out(tmp_path):
    report = agreement_report(planted_run(tmp_path / "run"))
    goal = next(s for s in report.criteria if s.criterion == "goal")
    assert goal.people is not None
    assert goal.people.raters == ["human:ana", "human:bo"]
    truth = [i < 20 for i in range(40)]
    bo = [*truth[:38], True, True]
    table = np.zeros((2, 2))
    for x, y in zip(truth, bo, strict=True):
        table[int(x), int(y)] += 1
    assert goal.people.kappa.value == pytest.approx(cohens_kappa(table)["kappa"])
    judge = next(r for r in goal.vs_people if r.labeler == "judge:gpt")
    assert judge.agreement is not None and judge.agreement.n == 38


def test_one_person_gives_no_ceiling_and_says_why(tmp_path):
    labels = binary_labels("human:a", [True, False, True]) + binary_labels(
        "judge:b", [True, False, False]
    )
    section = agreement_report(make_run(tmp_path / "run", labels)).criteria[0]
    assert section.people is None and "two needed" in section.people_reason


def test_agreement_json_is_strict_json_even_with_a_constant_rater(tmp_path):
    # A judge that always says yes: kappa's standard error is undefined (it was NaN before).
    labels = binary_labels("human:a", [True, False, True, True, False]) + binary_labels(
        "judge:b", [True] * 5
    )
    run = make_run(tmp_path / "run", labels)
    done = simulate_cli("agreement", str(run), "--json")
    assert done.returncode == 0, done.stderr
    data = strict_json(done.stdout)
    figure = data["criteria"][0]["agreement"]["cohen_kappa"]
    assert figure["value"] == pytest.approx(0.0)
    assert figure["low"] is None or math.isfinite(figure["low"])
    assert data == agreement_report(run).model_dump(mode="json")


# --- PPI++ --------------------------------------------------------------------------------------


def reference_ppi_mean_ci(y, yhat, yhat_unlabeled, alpha=0.05):
    """ppi_py 0.2.3 `ppi_mean_ci` for a 1-D mean with lam=None (MIT licence), its code paths
    transcribed with the weights at 1: the point estimate at lam = 1, `_calc_lam_glm` with
    clip=True, then the rectified estimate and its normal interval."""
    from scipy.stats import norm

    n, big_n = len(y), len(yhat_unlabeled)
    point = yhat_unlabeled.mean() + (y - yhat).mean()
    grads, grads_hat = (y - point)[:, None], (yhat - point)[:, None]
    grads_hat_unlabeled = (yhat_unlabeled - point)[:, None]
    centred, centred_hat = grads - grads.mean(0), grads_hat - grads_hat.mean(0)
    cov_grads = (1 / n) * (centred.T @ centred_hat + centred_hat.T @ centred)
    var_hat = np.cov(np.concatenate([grads_hat, grads_hat_unlabeled], axis=0).T).reshape(1, 1)
    lam = np.clip((np.trace(cov_grads) / (2 * (1 + n / big_n) * np.trace(var_hat))), 0, 1)
    estimate = (lam * yhat_unlabeled).mean() + (y - lam * yhat).mean()
    se = np.sqrt((lam * yhat_unlabeled).std() ** 2 / big_n + (y - lam * yhat).std() ** 2 / n)
    z = norm.isf(alpha / 2)
    return estimate, (estimate - z * se, estimate + z * se)


def test_ppi_reproduces_the_reference_implementations_published_example():
    # ppi_py's tests/test_mean.py `test_ppi_mean_pointestimate`: predictions off by exactly 2
    # everywhere, so the rectifier removes the whole bias and the estimate is 0.
    rng = np.random.default_rng(0)
    y = rng.normal(0, 1, 100)
    figure = ppi_mean(y, y + 2, np.ones(10000) * 2)
    assert figure.value == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_ppi_equals_the_reference_on_judge_and_people_labels(seed):
    rng = np.random.default_rng(seed)
    truth = rng.random(400) < 0.7
    judge = np.where(rng.random(400) < 0.85, truth, ~truth).astype(float)
    people = rng.choice(400, 60, replace=False)
    labeled = np.zeros(400, dtype=bool)
    labeled[people] = True
    y, f, rest = truth[labeled].astype(float), judge[labeled], judge[~labeled]
    estimate, (low, high) = reference_ppi_mean_ci(y, f, rest)
    figure = ppi_mean(y, f, rest)
    assert figure.value == pytest.approx(estimate)
    assert (figure.low, figure.high) == pytest.approx((max(0, low), min(1, high)))


def test_ppi_covers_the_true_pass_rate_and_beats_people_alone():
    # 2,000 simulated calibrations: a judge right 85% of the time on 500 units, people on 50.
    rng = np.random.default_rng(11)
    covered, narrower = 0, 0
    for _ in range(2000):
        truth = rng.random(500) < 0.6
        judge = np.where(rng.random(500) < 0.85, truth, ~truth).astype(float)
        y, f, rest = truth[:50].astype(float), judge[:50], judge[50:]
        figure = ppi_mean(y, f, rest)
        covered += figure.low <= truth.mean() <= figure.high
        classical = 2 * 1.96 * y.std() / np.sqrt(50)
        narrower += (figure.high - figure.low) <= classical + 1e-12
    assert 0.92 <= covered / 2000 <= 0.98
    assert narrower / 2000 >= 0.95


def test_when_people_labeled_every_unit_the_corrected_rate_is_theirs(tmp_path):
    # People labeled all 40 units the judge labeled: the corrected rate is the people's own,
    # never wider; the same seed gives the same figures.
    labels = binary_labels("human:ana", [i < 25 for i in range(40)])
    labels += binary_labels("judge:gpt", [i < 30 for i in range(40)])
    run = make_run(tmp_path / "run", labels)
    judge = agreement_report(run).criteria[0].vs_people[0]
    assert judge.ppi_pass_rate is not None and judge.people_pass_rate is not None
    assert judge.ppi_pass_rate.interval == judge.people_pass_rate.interval
    assert judge.ppi_pass_rate.value == pytest.approx(25 / 40)
    assert agreement_report(run) == agreement_report(run)


def test_planted_judge_corrected_rate_is_ppi_of_its_labels(tmp_path):
    section = agreement_section(agreement_report(planted_run(tmp_path / "run")))
    judge = next(r for r in section["vs_people"] if r["labeler"] == "judge:gpt")
    truth = np.array([i < 20 for i in range(38)], dtype=float)
    wrong = {0, 1, 2, 3, 20, 21}
    verdict = np.array([(i in wrong) != (i < 20) for i in range(38)], dtype=float)
    rest = np.array([(i in wrong) != (i < 20) if i < 40 else i < 70 for i in range(38, 100)])
    expected = ppi_mean(truth, verdict, rest.astype(float))
    assert judge["ppi_pass_rate"]["value"] == pytest.approx(expected.value)
    assert judge["pass_rate"]["value"] == pytest.approx(0.48)


def test_the_report_and_the_card_show_the_corrected_rate_beside_the_raw_one(tmp_path):
    episodes = [make_episode("ana", "s", t) for t in range(30)]
    ids = [e.episode_id for e in episodes]
    judged = [report_label(i, "polite", n % 3 != 0) for n, i in enumerate(ids)]
    people = [report_label(i, "polite", n % 4 != 0, kind="human") for n, i in enumerate(ids[:12])]
    run = write_planted_run(tmp_path / "run", episodes, judged + people)
    report = build_report(run)
    judge = next(r for r in report.labels if r.labeler_kind == "judge")
    assert judge.pass_rate.value == pytest.approx(20 / 30)
    assert judge.corrected_pass_rate is not None and "PPI++" in judge.corrected_pass_rate.method
    lines = " ".join(agreement_lines(agreement_report(run)))
    assert "raw" in lines and "corrected by people's labels (PPI++)" in lines


def test_when_every_person_answered_alike_the_corrected_rate_keeps_their_uncertainty():
    # Six units labeled by people, all yes; the rule says no on 15 of 108: the normal interval
    # has no spread (λ = 0, every y alike), so the people's own Wilson interval stands.
    y = np.ones(6)
    f = np.ones(6)
    rest = (np.arange(102) >= 15).astype(float)
    figure = ppi_mean(y, f, rest)
    low, high = wilson_interval(6, 6)
    assert (figure.low, figure.high) == pytest.approx((low, high))
    assert figure.low < 0.7 and figure.high == pytest.approx(1.0)


def test_the_reports_people_pass_rate_counts_units_not_labels(tmp_path):
    # Two people labeled the same 20 episodes (they disagree on 4); the people's rate is over
    # the 16 episodes with a majority, not over 40 labels.
    episodes = [make_episode("p", f"s{i}", 0) for i in range(20)]
    ana = [i < 12 for i in range(20)]
    bo = [i < 12 if i >= 4 else not (i < 12) for i in range(20)]
    labels = [
        binary_labels(name, answers)[i].model_copy(update={"episode_id": e.episode_id})
        for name, answers in (("human:ana", ana), ("human:bo", bo))
        for i, e in enumerate(episodes)
    ]
    run = write_planted_run(tmp_path / "run", episodes, labels)
    people = next(c for c in build_report(run).labels if c.labeler_kind == "human")
    assert people.labels == 40 and people.pass_rate.n == 16
    assert people.pass_rate.count == 8  # episodes 4..11 pass for both
