"""How far labelers agree, per criterion, and how far a judge can be trusted against people.

Units are ``(episode_id, turn_index, tool_call_index)``; for each criterion the raters are the
labelers that answered it. Inter-rater figures: Cohen's kappa for two raters, Fleiss' kappa
(units every rater answered) for more, and Krippendorff's alpha (missing answers allowed;
nominal, plus ordinal and interval for scale criteria). Judges and rules against people: accuracy,
true-positive and true-negative rates on ``passed`` with Wilson intervals, and the machine's pass
rate corrected for those error rates (Rogan–Gladen) with a percentile-bootstrap interval.

The statistics are statsmodels' and the ``krippendorff`` package's; this module builds their
inputs from the label store and reports every figure with its n.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import model_serializer

from simulate.card import agreement_lines
from simulate.errors import SimulateError, unknown_choice
from simulate.schema import Label, Model
from simulate.stats import Estimate, Rate, ppi_mean, wilson_interval
from simulate.store import RunFolder

UnitKey = tuple[str, int | None, int | None]
"""One judged thing: (episode_id, turn_index, tool_call_index); None = the whole episode/reply."""
Ratings = dict[str, dict[UnitKey, Label]]
"""One criterion's labels: labeler -> unit -> that labeler's latest label of the unit."""
Level = Literal["nominal", "ordinal", "interval"]
"""Krippendorff's levels of measurement we report (ordinal and interval for scales only)."""

ALPHA = 0.05
"""Two-sided error of every interval: they are 95% intervals."""
BOOTSTRAP_REPLICATES = 4000
BOOTSTRAP_SEED = 0
BOOTSTRAP_METHOD = (
    f"Rogan–Gladen; percentile bootstrap interval ({BOOTSTRAP_REPLICATES} replicates, seed "
    f"{BOOTSTRAP_SEED}) resampling the people-labeled passes, failures and the labeler's labels"
)
HOW_TO_ADD_RATERS = (
    "import people's labels with `simulate label RUN --import FILE --annotator NAME`, "
    "or add a judge with `simulate label RUN --rubric FILE --judge MODEL`"
)


class CorrectedRate(Estimate):
    """A machine's pass rate corrected for its error rates against people."""

    n_positives: int
    """Units people passed, among those both rated."""
    n_negatives: int
    replicates: int | None = None
    """Bootstrap replicates the interval rests on."""


class Rater(Model):
    labeler: str
    kind: str
    units: int


class InterRater(Model):
    """Agreement between every labeler of a criterion: Cohen's kappa (two) or Fleiss' (more),
    and Krippendorff's alpha per level."""

    raters: list[str]
    cohen_kappa: Estimate | None = None
    fleiss_kappa: Estimate | None = None
    krippendorff_alpha: dict[str, Estimate]

    @model_serializer(mode="wrap")
    def _only_the_kappa_computed(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None or k not in _KAPPAS}


_KAPPAS = ("cohen_kappa", "fleiss_kappa")


class Coefficients(Model):
    """How far raters agree, with the chance corrections side by side: Cohen's (two raters)
    or Fleiss' (more) kappa, and PABAK and Gwet's AC1, which stay meaningful when one answer
    dominates (kappa falls towards 0 then, however often the raters agree)."""

    raters: list[str]
    n: int
    """Units with two or more answers."""
    observed: Estimate
    """Share of agreeing pairs of answers."""
    kappa: Estimate
    pabak: Estimate
    """Prevalence- and bias-adjusted kappa (Byrt, Bishop & Carlin 1993): (q·po - 1)/(q - 1)."""
    ac1: Estimate
    """Gwet's AC1 (Gwet 2008)."""


class VsPeople(Model):
    """A judge or rule against the people's majority on ``passed``."""

    labeler: str
    kind: str
    people: list[str]
    n: int
    """Units both the labeler and people decided."""
    accuracy: Rate
    tpr: Rate
    tnr: Rate
    pass_rate: Rate
    """The labeler's raw pass rate over every unit it labeled."""
    corrected_pass_rate: CorrectedRate
    """Rogan–Gladen, kept for reference; `ppi_pass_rate` is the one to quote."""
    ties_left_out: int
    agreement: Coefficients | None = None
    """The labeler against the people's majority: kappa, PABAK and AC1."""
    people_pass_rate: Rate | None = None
    """The people's own pass rate on the units both decided: the uncorrected reference."""
    ppi_pass_rate: Estimate | None = None
    """The labeler's pass rate over all its units, corrected by the people's labels (PPI++);
    never wider than `people_pass_rate` when people labeled every unit (it is that rate)."""


class CriterionAgreement(Model):
    """One criterion: its raters, inter-rater agreement, and each machine against people."""

    criterion: str
    kind: str
    """`binary`, `scale` or `category`."""
    units: int
    raters: list[Rater]
    agreement: InterRater | None
    """Every labeler of the criterion, people, judges and rules together."""
    people: Coefficients | None = None
    """People only: the ceiling a judge can be held to (None: fewer than two people)."""
    people_reason: str | None = None
    """Why there is no people-only figure."""
    vs_people: list[VsPeople]


class AgreementReport(Model):
    """Agreement figures for every criterion of a run (`agreement_report`); `--json` is its
    dump."""

    run_dir: str
    run_id: str | None
    labels: int
    confidence: float
    criteria: list[CriterionAgreement]


def agreement_report(run_dir: str | Path, *, criterion: str | None = None) -> AgreementReport:
    """Agreement figures for every criterion of a run (or one).

    Raises:
        RunFolderError: ``run_dir`` is not a run folder.
        ConfigError: ``criterion`` has no labels in the run.
        SimulateError: the run has no labels, or no criterion was answered by two labelers.
    """
    folder = RunFolder.open(run_dir)
    labels = folder.labels()
    by_criterion = group_ratings(labels)
    if not by_criterion:
        raise SimulateError(
            f"no labels in {str(run_dir)!r}: label it with `simulate label RUN --rules-only` "
            "or `--rubric FILE --judge MODEL`, or import people's labels with "
            "`simulate label RUN --import FILE --annotator NAME`"
        )
    if criterion is not None and criterion not in by_criterion:
        raise unknown_choice("criterion", criterion, by_criterion)
    names = [criterion] if criterion is not None else sorted(by_criterion)
    sections = [criterion_report(name, by_criterion[name]) for name in names]
    if not any(s.agreement for s in sections):
        only = "; ".join(f"{s.criterion}: {s.raters[0].labeler}" for s in sections[:3])
        only += "; ..." if len(sections) > 3 else ""
        scope = f"criterion {criterion!r} has" if criterion else "every criterion has"
        raise SimulateError(
            f"{scope} labels from one labeler only ({only}); agreement needs two or more: "
            f"{HOW_TO_ADD_RATERS}"
        )
    return AgreementReport(
        run_dir=str(run_dir),
        run_id=folder.manifest.run_id,
        labels=len(labels),
        confidence=1 - ALPHA,
        criteria=sections,
    )


def agreement_for_card(run_dir: str | Path) -> list[str]:
    """The run's agreement figures as a card's markdown lines; none when nothing compares."""
    try:
        return agreement_lines(agreement_report(run_dir))
    except SimulateError:
        return []


def group_ratings(labels: list[Label]) -> dict[str, Ratings]:
    """Labels by criterion, labeler and unit; a labeler's later label of a unit wins.

    A label with an empty value withdraws the labeler's answer for the unit. Adjudicators'
    labels are decisions taken after seeing the others' answers, not ratings, and are left out.
    """
    grouped: dict[str, Ratings] = defaultdict(dict)
    for label in labels:
        if label.labeler_kind == "adjudicator":
            continue
        unit = (label.episode_id, label.turn_index, label.tool_call_index)
        by_unit = grouped[label.criterion].setdefault(label.labeler, {})
        if label.value:
            by_unit[unit] = label
        else:
            by_unit.pop(unit, None)
    return {
        criterion: {labeler: by_unit for labeler, by_unit in ratings.items() if by_unit}
        for criterion, ratings in grouped.items()
        if any(ratings.values())
    }


def criterion_report(criterion: str, ratings: Ratings) -> CriterionAgreement:
    """One criterion: its raters, inter-rater agreement, and each machine against people."""
    kind = infer_kind([label.value for by_unit in ratings.values() for label in by_unit.values()])
    units = set().union(*(by_unit.keys() for by_unit in ratings.values()))
    raters = [
        Rater(labeler=labeler, kind=_kind(by_unit), units=len(by_unit))
        for labeler, by_unit in sorted(ratings.items())
    ]
    people = {r: by_unit for r, by_unit in ratings.items() if _kind(by_unit) == "human"}
    ceiling = coefficients(*rating_matrix(people, kind)[::2]) if len(people) >= 2 else None
    return CriterionAgreement(
        criterion=criterion,
        kind=kind,
        units=len(units),
        raters=raters,
        agreement=inter_rater(ratings, kind) if len(ratings) >= 2 else None,
        people=ceiling,
        people_reason=None
        if ceiling
        else f"{len(people)} person labeled this criterion: no people-only ceiling (two needed)"
        if len(people) == 1
        else "no person labeled this criterion",
        vs_people=against_people(ratings),
    )


def infer_kind(values: list[str]) -> str:
    """`binary` (yes/no), `scale` (numbers) or `category` (anything else), from the answers."""
    if set(values) <= {"yes", "no"}:
        return "binary"
    if all(_number(v) is not None for v in values):
        return "scale"
    return "category"


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _unit_order(unit: UnitKey) -> tuple[str, int, int]:
    return unit[0], -1 if unit[1] is None else unit[1], -1 if unit[2] is None else unit[2]


def rating_matrix(ratings: Ratings, kind: str) -> tuple[list[str], list[UnitKey], np.ndarray]:
    """Raters x units matrix of answers as numbers (NaN = not answered).

    Scale answers keep their numeric value; other answers become codes 0..k-1 in sorted order.
    """
    raters = sorted(ratings)
    units = sorted(set().union(*(r.keys() for r in ratings.values())), key=_unit_order)
    values = {label.value for by_unit in ratings.values() for label in by_unit.values()}
    codes = {v: float(i) for i, v in enumerate(sorted(values))}
    column = {unit: j for j, unit in enumerate(units)}
    matrix = np.full((len(raters), len(units)), np.nan)
    for i, rater in enumerate(raters):
        for unit, label in ratings[rater].items():
            value = _number(label.value) if kind == "scale" else codes[label.value]
            matrix[i, column[unit]] = value
    return raters, units, matrix


def inter_rater(ratings: Ratings, kind: str) -> InterRater:
    """Cohen's kappa (two raters) or Fleiss' kappa (more), and Krippendorff's alpha."""
    raters, _, matrix = rating_matrix(ratings, kind)
    levels: list[Level] = ["nominal", "ordinal", "interval"] if kind == "scale" else ["nominal"]
    return InterRater(
        raters=raters,
        cohen_kappa=cohen_kappa(matrix) if len(raters) == 2 else None,
        fleiss_kappa=fleiss_kappa(matrix) if len(raters) != 2 else None,
        krippendorff_alpha={level: krippendorff_alpha(matrix, level) for level in levels},
    )


def _undefined(n: int, reason: str) -> Estimate:
    return Estimate(value=None, n=n, reason=reason)


def _codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Answers (any numbers) as codes 0..k-1, and k."""
    categories, codes = np.unique(values, return_inverse=True)
    return codes.reshape(values.shape), len(categories)


def cohen_kappa(matrix: np.ndarray) -> Estimate:
    """Cohen's kappa of a 2 x units matrix over the units both raters answered, with its CI."""
    from statsmodels.stats.inter_rater import cohens_kappa

    both = matrix[:, ~np.isnan(matrix).any(axis=0)]
    n = both.shape[1]
    if n == 0:
        return _undefined(0, "no unit was answered by both raters")
    codes, k = _codes(both)
    if k < 2:
        return _undefined(n, "undefined: every shared unit got the same answer")
    table = np.zeros((k, k))
    np.add.at(table, (codes[0], codes[1]), 1)
    with warnings.catch_warnings():  # a constant rater: statsmodels divides by a zero s.e.
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = cohens_kappa(table)  # its interval is the asymptotic 95% one
    low, high = float(fit["kappa_low"]), float(fit["kappa_upp"])
    if not (math.isfinite(low) and math.isfinite(high)):
        return Estimate(
            value=float(fit["kappa"]),
            n=n,
            method="asymptotic",
            reason="no interval: its standard error is undefined (a rater gave one answer)",
        )
    return Estimate(value=float(fit["kappa"]), low=low, high=high, n=n, method="asymptotic")


def fleiss_kappa(matrix: np.ndarray) -> Estimate:
    """Fleiss' kappa of a raters x units matrix over the units every rater answered."""
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss

    everyone = matrix[:, ~np.isnan(matrix).any(axis=0)]
    n = everyone.shape[1]
    if n == 0:
        return _undefined(0, "no unit was answered by every rater")
    codes, k = _codes(everyone)
    if k < 2:
        return _undefined(n, "undefined: every unit got the same answer")
    counts, _ = aggregate_raters(codes.T, n_cat=k)
    return Estimate(value=float(statsmodels_fleiss(counts, method="fleiss")), n=n)


def krippendorff_alpha(matrix: np.ndarray, level: Level) -> Estimate:
    """Krippendorff's alpha at ``level``; n counts the units with two or more answers."""
    import krippendorff

    answered = (~np.isnan(matrix)).sum(axis=0)
    pairable = matrix[:, answered >= 2]
    n = pairable.shape[1]
    if n == 0:
        return _undefined(0, "no unit was answered by two raters")
    if len(np.unique(pairable[~np.isnan(pairable)])) < 2:
        return _undefined(n, "undefined: every unit got the same answer")
    value = krippendorff.alpha(reliability_data=pairable, level_of_measurement=level)
    return Estimate(value=float(value), n=n)


# --- judges and rules against people ----------------------------------------------------------


def people_verdicts(ratings: Ratings) -> tuple[dict[UnitKey, bool], int]:
    """Per unit, the people's majority on ``passed``, and how many units tied (left out)."""
    votes: dict[UnitKey, Counter[bool]] = defaultdict(Counter)
    for by_unit in ratings.values():
        for unit, label in by_unit.items():
            if label.labeler_kind == "human" and label.passed is not None:
                votes[unit][label.passed] += 1
    verdicts = {u: c[True] > c[False] for u, c in votes.items() if c[True] != c[False]}
    return verdicts, len(votes) - len(verdicts)


def against_people(ratings: Ratings) -> list[VsPeople]:
    """Each judge or rule labeler of the criterion against the people's verdicts."""
    people = sorted(r for r, by_unit in ratings.items() if _kind(by_unit) == "human")
    if not people:
        return []
    truth, ties = people_verdicts(ratings)
    rows = []
    for labeler, by_unit in sorted(ratings.items()):
        if _kind(by_unit) == "human":
            continue
        verdicts = {u: label.passed for u, label in by_unit.items() if label.passed is not None}
        if not verdicts:
            continue
        row = judge_vs_people(verdicts, truth)
        rows.append(
            VsPeople(labeler=labeler, kind=_kind(by_unit), people=people, ties_left_out=ties, **row)
        )
    return rows


def _kind(by_unit: dict[UnitKey, Label]) -> str:
    return next(iter(by_unit.values())).labeler_kind


def judge_vs_people(verdicts: dict[UnitKey, bool], truth: dict[UnitKey, bool]) -> dict[str, Any]:
    """Accuracy, TPR, TNR on the shared units; observed and corrected pass rate over all units.

    ``verdicts`` are the machine's ``passed`` per unit; ``truth`` the people's.
    """
    shared = [(verdicts[u], truth[u]) for u in verdicts if u in truth]
    correct = sum(v == t for v, t in shared)
    tp = sum(v and t for v, t in shared)
    tn = sum(not v and not t for v, t in shared)
    positives = sum(t for _, t in shared)
    negatives = len(shared) - positives
    passes = sum(verdicts.values())
    unlabeled = [verdicts[u] for u in verdicts if u not in truth]
    machine = np.array([v for v, _ in shared], dtype=float)
    people = np.array([t for _, t in shared], dtype=float)
    people_rate = wilson(int(people.sum()), len(shared))
    if not unlabeled:
        ppi = Estimate(
            **people_rate.model_dump(include={"value", "low", "high", "n", "reason"}),
            method="people labeled every unit the labeler did: their own rate (Wilson)",
        )
    else:
        ppi = ppi_mean(people, machine, np.array(unlabeled, dtype=float), 1 - ALPHA)
    return {
        "n": len(shared),
        "accuracy": wilson(correct, len(shared)),
        "tpr": wilson(tp, positives),
        "tnr": wilson(tn, negatives),
        "pass_rate": wilson(passes, len(verdicts)),
        "corrected_pass_rate": corrected_pass_rate(
            passes, len(verdicts), tp, positives, tn, negatives
        ),
        "agreement": coefficients(
            ["labeler", "people"], np.array([machine, people]) if shared else np.zeros((2, 0))
        ),
        "people_pass_rate": people_rate,
        "ppi_pass_rate": ppi,
    }


def wilson(successes: int, n: int) -> Rate:
    """A proportion with its Wilson score interval (statsmodels), and its n."""
    return Rate.wilson(successes, n, 1 - ALPHA, empty="no units")


def rogan_gladen(observed: float, sensitivity: float, specificity: float) -> float | None:
    """The true pass rate behind an ``observed`` one, given the labeler's error rates.

    ``(observed + specificity - 1) / (sensitivity + specificity - 1)``, clipped to [0, 1];
    None when ``sensitivity + specificity <= 1`` (the labeler is no better than chance).
    """
    youden = sensitivity + specificity - 1
    if youden <= 0:
        return None
    return min(1.0, max(0.0, (observed + specificity - 1) / youden))


def corrected_pass_rate(
    passes: int,
    n: int,
    tp: int,
    positives: int,
    tn: int,
    negatives: int,
    *,
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = BOOTSTRAP_SEED,
) -> CorrectedRate:
    """The Rogan–Gladen pass rate with a percentile-bootstrap interval.

    Resampling n yes/no answers with replacement draws their count from Binomial(n, k/n), so
    each replicate draws the labeler's passes over its ``n`` units, its true positives over the
    people's ``positives`` and its true negatives over their ``negatives``. Replicates where the
    labeler is no better than chance are left out; with more than 5% of them, no interval.
    """
    figure: dict[str, Any] = {
        "n": n,
        "n_positives": positives,
        "n_negatives": negatives,
        "method": BOOTSTRAP_METHOD,
    }
    if positives == 0 or negatives == 0:
        missing = "passes" if positives == 0 else "failures"
        return CorrectedRate(
            **figure, value=None, reason=f"not estimable: people gave no {missing}"
        )
    value = rogan_gladen(passes / n, tp / positives, tn / negatives)
    if value is None:
        return CorrectedRate(
            **figure, value=None, reason="not estimable: sensitivity + specificity - 1 <= 0"
        )
    rng = np.random.default_rng(seed)
    observed = rng.binomial(n, passes / n, replicates) / n
    sensitivity = rng.binomial(positives, tp / positives, replicates) / positives
    specificity = rng.binomial(negatives, tn / negatives, replicates) / negatives
    youden = sensitivity + specificity - 1
    usable = youden > 0
    estimates = np.clip((observed[usable] + specificity[usable] - 1) / youden[usable], 0, 1)
    figure.update(value=value, replicates=int(usable.sum()))
    if usable.mean() < 0.95:
        chance = f"{1 - usable.mean():.0%}"
        reason = f"interval not estimable: no better than chance in {chance} of replicates"
        return CorrectedRate(**figure, reason=reason)
    tail = ALPHA / 2 * 100
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return CorrectedRate(**figure, low=float(low), high=float(high))


# --- kappa, PABAK and AC1 with intervals from resampling units ----------------------------------

COEFFICIENT_REPLICATES = 2000
COEFFICIENT_METHOD = (
    f"percentile bootstrap over units ({COEFFICIENT_REPLICATES} resamples, seed "
    f"{BOOTSTRAP_SEED}); where every resample agrees as much (all units agree), the Wilson "
    "interval of the agreeing share mapped through the coefficient"
)


def coefficients(raters: list[str], matrix: np.ndarray) -> Coefficients:
    """Kappa (Cohen's for two raters, Fleiss' for more, over the units all answered), PABAK
    and Gwet's AC1 (over the units with two or more answers, as Gwet 2014) of a raters x
    units matrix of answer codes (NaN = not answered), each with a bootstrap interval over
    units. Never NaN: an undefined figure is None with a reason."""
    answered = (~np.isnan(matrix)).sum(axis=0)
    n = int((answered >= 2).sum())
    if n == 0:
        missing = _undefined(0, "no unit was answered by two raters")
        return Coefficients(
            raters=raters, n=0, observed=missing, kappa=missing, pabak=missing, ac1=missing
        )
    rated = matrix[:, answered >= 1]  # one answer counts towards AC1's chance (Gwet 2014)
    categories = np.unique(rated[~np.isnan(rated)])
    q = max(2, categories.size)
    codes = np.searchsorted(categories, np.nan_to_num(rated, nan=categories[0]))
    counts = np.stack([((codes == k) & ~np.isnan(rated)).sum(axis=0) for k in range(q)], -1)
    complete = rated[:, ~np.isnan(rated).any(axis=0)]
    complete_codes = np.searchsorted(categories, complete) if complete.size else complete
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    draws = rng.integers(0, len(counts), (COEFFICIENT_REPLICATES, len(counts)))
    observed_share, pabak, ac1 = _gwet(counts, q)
    share_n = n
    pe_pabak, pe_ac1 = 1 / q, _gwet_chance(counts, q)
    boot_share, boot_pabak, boot_ac1 = _gwet(counts[draws], q)
    figures = {
        "observed": _figure(observed_share, boot_share, share_n, observed_share, 0.0),
        "pabak": _figure(pabak, boot_pabak, share_n, observed_share, pe_pabak),
        "ac1": _figure(ac1, boot_ac1, share_n, observed_share, pe_ac1),
    }
    m = complete_codes.shape[1] if complete.size else 0
    if m == 0:
        figures["kappa"] = _undefined(0, "no unit was answered by every rater")
    else:
        kappa, chance = _kappa(complete_codes, q)
        complete_draws = rng.integers(0, m, (COEFFICIENT_REPLICATES, m))
        boot_kappa, _ = _kappa(complete_codes[:, complete_draws], q)
        agree = float(_agreeing(complete_codes, q))
        figures["kappa"] = _figure(kappa, boot_kappa, m, agree, chance)
    return Coefficients(raters=raters, n=n, **figures)


def _gwet(counts: np.ndarray, q: int) -> tuple[Any, Any, Any]:
    """Observed agreement, PABAK and AC1 of units x categories answer counts (the last two
    axes; leading axes are bootstrap replicates)."""
    per_unit = counts.sum(axis=-1)
    two = per_unit >= 2
    with np.errstate(divide="ignore", invalid="ignore"):
        pairs = (counts * (counts - 1)).sum(axis=-1) / (per_unit * (per_unit - 1))
        share = np.where(two, pairs, 0).sum(axis=-1) / two.sum(axis=-1)
        chance = _gwet_chance(counts, q)
        return share, (q * share - 1) / (q - 1), (share - chance) / (1 - chance)


def _gwet_chance(counts: np.ndarray, q: int) -> Any:
    """Gwet's chance agreement: Σ π_k (1 - π_k) / (q - 1), π_k the mean share of answers k."""
    per_unit = counts.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.where(per_unit > 0, counts / per_unit, 0).mean(axis=-2)
    return (shares * (1 - shares)).sum(axis=-1) / (q - 1)


def _agreeing(codes: np.ndarray, q: int) -> Any:
    """Share of agreeing pairs of answers on complete units (raters x units codes)."""
    counts = np.stack([(codes == k).sum(axis=-2) for k in range(q)], -1)
    raters = codes.shape[-2]
    return ((counts * (counts - 1)).sum(axis=-1) / (raters * (raters - 1))).mean(axis=-1)


def _kappa(codes: np.ndarray, q: int) -> tuple[Any, Any]:
    """Cohen's kappa (two raters) or Fleiss' kappa (more) of raters x units codes, and its
    chance agreement; a leading axis of codes is carried through (bootstrap replicates)."""
    codes = np.moveaxis(codes, 1, 0) if codes.ndim == 3 else codes
    agree = _agreeing(codes, q)
    if codes.shape[-2] == 2:
        first = np.stack([(codes[..., 0, :] == k).mean(axis=-1) for k in range(q)], -1)
        second = np.stack([(codes[..., 1, :] == k).mean(axis=-1) for k in range(q)], -1)
        chance = (first * second).sum(axis=-1)
    else:
        shares = np.stack([(codes == k).mean(axis=(-2, -1)) for k in range(q)], -1)
        chance = (shares**2).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (agree - chance) / (1 - chance), chance


def _figure(value: Any, replicates: np.ndarray, n: int, share: float, chance: Any) -> Estimate:
    """A coefficient with its percentile bootstrap interval, or, when every resample gives the
    same value, the Wilson interval of the agreeing share mapped through the coefficient."""
    value = float(value)
    if not math.isfinite(value):
        return _undefined(n, "undefined: every unit got the same answer")
    finite = replicates[np.isfinite(replicates)]
    if finite.size < replicates.size / 2:
        return Estimate(value=value, n=n, reason="no interval: most resamples are undefined")
    low, high = np.percentile(finite, [ALPHA / 2 * 100, 100 - ALPHA / 2 * 100])
    if low == high:
        chance = float(chance)
        wilson_low, wilson_high = wilson_interval(round(share * n), n, 1 - ALPHA)
        low, high = ((w - chance) / (1 - chance) for w in (wilson_low, wilson_high))
    return Estimate(value=value, low=float(low), high=float(high), n=n, method=COEFFICIENT_METHOD)
