"""Run against run: did the agent get worse? (`simulate compare BEFORE AFTER`).

Every figure is stratified by persona × scenario cell, so a change in which cells were played
or how often never passes for a change of the agent, and episodes that ended in a target or
simulator error are left out (they say nothing about the agent).

- **Paired** (both runs played the same conversations: the same persona, scenario, trial and
  episode seed throughout, e.g. two targets on one `--seed`): trial t of a cell is the same
  simulated user in both runs, so each matched pair is its own stratum. The test is McNemar's
  exact test, which is the exact Cochran–Mantel–Haenszel test over those pair strata: task
  difficulty and the user's behaviour, shared by the pair, drop out.
- **Stratified** (anything else: other seeds, other trial counts): the strata are the cells and
  every rated episode of both runs counts, whatever the trials per cell. The test is
  Cochran–Mantel–Haenszel (`stats.cmh_compare`), exact when the counts are small.

The change is the Mantel–Haenszel risk difference (in the paired design, the plain difference
of rates), and its interval is built from the test's p-value (Miettinen's test-based limits,
`stats.miettinen_interval`), so an interval leaves out 0 exactly when its test is significant.
Slices (persona, scenario, tag) and label criteria get the same test; their p-values are
adjusted across slices (Holm by default) and their intervals are built from the adjusted
p-values, so a slice's interval and its verdict never disagree. A two-proportion test on the
pooled counts (z, or Fisher's exact test for small counts) is shown for reference.

``--fail-on-regression`` trips when the overall drop is significant at ``alpha`` or any slice's
drop is, after adjustment.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from statsmodels.stats.contingency_tables import mcnemar

from simulate.errors import ConfigError, RunFolderError, unknown_choice
from simulate.schema import NOT_RATED, Manifest
from simulate.stats import (
    PADJUST_METHODS,
    adjust_pvalues,
    cmh_compare,
    compare_proportions,
    miettinen_interval,
)
from simulate.store import LABELS, RunFolder

KEY = ["persona_id", "scenario_id", "trial"]
"""What matches an episode of one run with its counterpart in the other."""

CELL = ["persona_id", "scenario_id"]
"""The strata of the stratified design."""

SliceKind = Literal["overall", "persona", "scenario", "tag", "criterion"]
Design = Literal["paired", "stratified"]

_TAGS = pl.Struct({"tags": pl.List(pl.String)})


@dataclass(frozen=True)
class RunSide:
    """One of the two runs: where it is, what it holds, what was left out."""

    path: str
    run_id: str
    target: str | None
    seed: int | None
    episodes: int
    not_rated: int
    """Episodes that ended in a target or simulator error (left out of every rate)."""
    unmatched: int
    """Episodes with no counterpart (same persona, scenario and trial) in the other run."""


@dataclass(frozen=True)
class SliceChange:
    """The goal rate (or a criterion's pass rate) of one slice, before and after."""

    name: str
    """`overall`, `persona:ID`, `scenario:ID`, `tag:TAG`, or `CRITERION (LABELER)`."""
    kind: SliceKind
    n: int
    """Pairs in the slice (paired design), or rated episodes of both runs (stratified)."""
    passed_before: int
    passed_after: int
    rate_before: float
    rate_after: float
    difference: float
    """The change: ``rate_after - rate_before`` in the paired design, the Mantel–Haenszel risk
    difference over cells in the stratified one (it weighs cells alike in both runs)."""
    low: float
    """The difference's interval at confidence ``1 - alpha``, built from the test's p-value
    (adjusted, for slices): it leaves out 0 exactly when the change is significant."""
    high: float
    p_value: float
    test: str
    """`mcnemar-exact` (paired), `cmh` or `cmh-exact` (stratified); `z` or `fisher` for the
    two-proportion reference (`overall_independent`)."""
    p_adjusted: float | None
    """The p-value adjusted across the slices (None for overall, the primary test)."""
    significant: bool
    """``p_adjusted`` (overall: ``p_value``) below alpha, in either direction."""
    pass_to_fail: int
    """Matched pairs (same persona, scenario and trial) that passed before and failed after."""
    fail_to_pass: int
    n_before: int = 0
    """Rated episodes of the slice in the run before."""
    n_after: int = 0
    null_se: float | None = None
    """The difference's standard error under no change, for the interval when it is 0."""
    same_as: list[str] = field(default_factory=list)
    """Other slices holding exactly the same pairs (tested once, under this name)."""

    @property
    def dropped(self) -> bool:
        """A significant drop: what `--fail-on-regression` looks for."""
        return self.significant and self.difference < 0


@dataclass(frozen=True)
class Flip:
    """A conversation that passed in one run and failed in the other."""

    persona_id: str
    scenario_id: str
    trial: int
    episode_before: str
    episode_after: str
    status_before: str
    status_after: str
    reason_after: str
    failed_checks_after: list[str]


@dataclass
class Comparison:
    """Everything `simulate compare` reports; ``to_dict()`` is its JSON form."""

    before: RunSide
    after: RunSide
    matched: int
    """Pairs found in both runs."""
    compared: int
    """Matched pairs (same persona, scenario and trial) rated in both runs: every figure is
    made of them in the paired design; in the stratified one the figures use every rated
    episode of the shared cells (`overall.n_before`, `overall.n_after`) and the pairs give the
    pass → fail list."""
    alpha: float
    correction: str
    design: Design
    """`paired` (the same conversations in both runs) or `stratified` (by cell)."""
    overall: SliceChange
    """The primary test: McNemar exact (paired) or Cochran–Mantel–Haenszel (stratified)."""
    overall_independent: SliceChange
    """The pooled counts under the two-proportion test, for reference."""
    slices: list[SliceChange]
    """Personas, scenarios and tags, worst change first."""
    criteria: list[SliceChange]
    """Label criteria both runs have (episode passes when every labeled unit of it passed)."""
    pass_to_fail: list[Flip]
    fail_to_pass: list[Flip]
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[SliceChange]:
        """Significant drops that trip `--fail-on-regression`: overall and slices."""
        return [s for s in [self.overall, *self.slices] if s.dropped]

    @property
    def changes(self) -> list[SliceChange]:
        """Significant changes in either direction, overall and slices."""
        return [s for s in [self.overall, *self.slices] if s.significant]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for `--json`."""
        data = asdict(self)
        data["primary_test"] = (
            "mcnemar-exact on matched pairs (the exact CMH test over pair strata)"
            if self.design == "paired"
            else f"{self.overall.test} over persona × scenario cells"
        )
        data["regressions"] = [s.name for s in self.regressions]
        data["regressed"] = bool(self.regressions)
        return data


def check_options(alpha: float, correction: str) -> None:
    """ConfigError for an alpha outside (0, 1) or an unknown p-value correction."""
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise ConfigError(f"--alpha must be between 0 and 1 (exclusive), got {alpha!r}")
    if correction not in PADJUST_METHODS:
        raise unknown_choice("--correction", correction, PADJUST_METHODS)


def load_outcomes(run_dir: str | Path) -> tuple[Manifest, pl.DataFrame]:
    """A run's manifest and one row per episode: key, id, status, success and tags."""
    folder = RunFolder.open(run_dir)
    if not folder.has():
        raise RunFolderError(f"{str(run_dir)!r} holds no episodes yet")
    frame = (
        folder.scan_episodes()
        .select(
            *KEY,
            "episode_id",
            "seed",
            "status",
            pl.col("reason").fill_null(""),
            pl.col("failed_checks").fill_null([]),
            "success",
            pl.concat_list(
                pl.col("persona").str.json_decode(_TAGS).struct.field("tags").fill_null([]),
                pl.col("scenario").str.json_decode(_TAGS).struct.field("tags").fill_null([]),
            ).alias("tags"),
        )
        .collect()
    )
    duplicated = frame.select(pl.struct(KEY).is_duplicated().sum()).item()
    if duplicated:
        raise RunFolderError(
            f"{str(run_dir)!r} holds {duplicated} episodes with the same persona, scenario "
            "and trial as another: not one run"
        )
    return folder.manifest, frame


def _criteria_outcomes(run_dir: str | Path) -> pl.DataFrame | None:
    """Per episode, criterion and labeler: passed when every labeled unit passed."""
    folder = RunFolder(run_dir)
    if not folder.has(LABELS):
        return None
    return (
        folder.scan(LABELS)
        .filter(pl.col("passed").is_not_null())
        .group_by("episode_id", "criterion", "labeler")
        .agg(pl.col("passed").all())
        .collect()
    )


def _side(run_dir: str | Path, manifest: Manifest, frame: pl.DataFrame, unmatched: int) -> RunSide:
    return RunSide(
        path=str(run_dir),
        run_id=manifest.run_id or Path(run_dir).name,
        target=manifest.config.target,
        seed=manifest.config.seed,
        episodes=frame.height,
        not_rated=int(frame["status"].is_in(NOT_RATED).sum()),
        unmatched=unmatched,
    )


def _mcnemar_p(pass_to_fail: int, fail_to_pass: int) -> float:
    """McNemar's exact (binomial) two-sided p-value from the discordant pairs."""
    if pass_to_fail + fail_to_pass == 0:
        return 1.0
    table = [[0, pass_to_fail], [fail_to_pass, 0]]
    return float(mcnemar(table, exact=True).pvalue)


def _units(before: pl.DataFrame, after: pl.DataFrame, value: str, design: Design) -> pl.DataFrame:
    """The strata of a comparison, one row each: matched pairs (paired) or cells (stratified),
    with each run's passes and episodes (`passed_b`, `n_b`, `passed_a`, `n_a`), the matched
    pairs' flips (`down`, `up`) and the tags of the stratum.

    ``before`` and ``after`` hold one row per rated episode: the key, ``value`` (passed) and
    `tags`.
    """
    pairs = before.join(after, on=KEY, how="inner", suffix="_a").select(
        *KEY,
        (pl.col(value) & ~pl.col(f"{value}_a")).alias("down"),
        (~pl.col(value) & pl.col(f"{value}_a")).alias("up"),
    )
    if design == "paired":
        return before.join(after, on=KEY, how="inner", suffix="_a").select(
            *KEY,
            pl.col(value).cast(pl.Int64).alias("passed_b"),
            pl.lit(1).alias("n_b"),
            pl.col(f"{value}_a").cast(pl.Int64).alias("passed_a"),
            pl.lit(1).alias("n_a"),
            (pl.col(value) & ~pl.col(f"{value}_a")).cast(pl.Int64).alias("down"),
            (~pl.col(value) & pl.col(f"{value}_a")).cast(pl.Int64).alias("up"),
            pl.concat_list("tags", "tags_a").list.unique().alias("tags"),
        )

    def cells(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.group_by(CELL).agg(
            pl.col(value).cast(pl.Int64).sum().alias("passed"),
            pl.len().alias("n"),
            pl.col("tags")
            .list.explode(keep_nulls=False, empty_as_null=False)
            .unique()
            .alias("tags"),
        )

    flips = pairs.group_by(CELL).agg(
        pl.col("down").cast(pl.Int64).sum(), pl.col("up").cast(pl.Int64).sum()
    )
    return (
        cells(before)
        .join(cells(after), on=CELL, how="inner", suffix="_a")
        .join(flips, on=CELL, how="left")
        .select(
            *CELL,
            pl.col("passed").alias("passed_b"),
            pl.col("n").alias("n_b"),
            pl.col("passed_a"),
            pl.col("n_a"),
            pl.col("down").fill_null(0),
            pl.col("up").fill_null(0),
            pl.concat_list("tags", "tags_a").list.unique().alias("tags"),
        )
        .sort(CELL)
    )


def _change(
    name: str, kind: SliceKind, units: pl.DataFrame, design: Design, alpha: float
) -> SliceChange:
    """One slice's change from its strata (unadjusted): McNemar exact (paired) or CMH."""
    counts = {c: units[c].to_numpy() for c in ("passed_b", "n_b", "passed_a", "n_a", "down", "up")}
    s1, n1 = int(counts["passed_b"].sum()), int(counts["n_b"].sum())
    s2, n2 = int(counts["passed_a"].sum()), int(counts["n_a"].sum())
    down, up = int(counts["down"].sum()), int(counts["up"].sum())
    if design == "paired":
        p_value, test = _mcnemar_p(down, up), "mcnemar-exact"
        difference = (up - down) / n1
        null_se = math.sqrt(down + up) / n1 if down + up else 0.0
    else:
        stratified = cmh_compare(
            counts["passed_b"], counts["n_b"], counts["passed_a"], counts["n_a"]
        )
        p_value, test = stratified.p_value, stratified.test
        difference, null_se = stratified.difference, stratified.null_se
    low, high = miettinen_interval(difference, p_value, null_se, 1 - alpha, no_change_n=min(n1, n2))
    return SliceChange(
        name=name,
        kind=kind,
        n=n1 if design == "paired" else n1 + n2,
        passed_before=s1,
        passed_after=s2,
        rate_before=s1 / n1,
        rate_after=s2 / n2,
        difference=difference,
        low=low,
        high=high,
        p_value=p_value,
        test=test,
        p_adjusted=None,
        significant=p_value < alpha,
        pass_to_fail=down,
        fail_to_pass=up,
        n_before=n1,
        n_after=n2,
        null_se=null_se if math.isfinite(null_se) else None,
    )


def _independent(units: pl.DataFrame, alpha: float) -> SliceChange:
    """The pooled counts under the two-proportion test (Newcombe's interval), for reference."""
    s1, n1 = int(units["passed_b"].sum()), int(units["n_b"].sum())
    s2, n2 = int(units["passed_a"].sum()), int(units["n_a"].sum())
    result = compare_proportions(s1, n1, s2, n2, confidence=1 - alpha)
    return SliceChange(
        name="overall",
        kind="overall",
        n=n1 + n2,
        passed_before=s1,
        passed_after=s2,
        rate_before=result.rate1,
        rate_after=result.rate2,
        difference=result.difference,
        low=result.low,
        high=result.high,
        p_value=result.p_value,
        test=str(result.test),
        p_adjusted=None,
        significant=result.p_value < alpha,
        pass_to_fail=int(units["down"].sum()),
        fail_to_pass=int(units["up"].sum()),
        n_before=n1,
        n_after=n2,
    )


def _adjusted(changes: list[SliceChange], alpha: float, correction: str) -> list[SliceChange]:
    """The slices with adjusted p-values, significance and intervals, worst change first."""
    adjusted = adjust_pvalues([c.p_value for c in changes], correction)  # type: ignore[arg-type]
    done = []
    for change, p in zip(changes, adjusted, strict=True):
        low, high = miettinen_interval(
            change.difference,
            p,
            change.null_se or 0.0,
            1 - alpha,
            no_change_n=min(change.n_before, change.n_after),
        )
        update = {"p_adjusted": p, "significant": p < alpha, "low": low, "high": high}
        done.append(SliceChange(**{**asdict(change), **update}))
    return sorted(done, key=lambda c: (c.difference, c.p_value, c.name))


def _slice_masks(units: pl.DataFrame) -> list[tuple[str, SliceKind, np.ndarray]]:
    """Persona, scenario and tag slices as boolean masks over the strata."""
    masks: list[tuple[str, SliceKind, np.ndarray]] = []
    for column, kind in (("persona_id", "persona"), ("scenario_id", "scenario")):
        values = units[column].to_numpy()
        for value in sorted(set(values)):
            masks.append((f"{kind}:{value}", kind, values == value))  # type: ignore[arg-type]
    tags = units["tags"].to_list()
    for tag in sorted({t for row in tags for t in row}):
        masks.append((f"tag:{tag}", "tag", np.array([tag in row for row in tags])))
    return masks


def _slices(
    units: pl.DataFrame, design: Design, alpha: float, correction: str
) -> list[SliceChange]:
    """Every slice that is neither the whole set nor a copy of an earlier one, adjusted."""
    seen: dict[bytes, int] = {}
    changes: list[SliceChange] = []
    for name, kind, mask in _slice_masks(units):
        if mask.all() or not mask.any():
            continue  # the same strata as overall: its test already stands
        signature = np.packbits(mask).tobytes()
        if signature in seen:
            changes[seen[signature]].same_as.append(name)
            continue
        seen[signature] = len(changes)
        changes.append(_change(name, kind, units.filter(pl.Series(mask)), design, alpha))
    return _adjusted(changes, alpha, correction) if changes else []


def _criteria(
    before: pl.DataFrame,
    after: pl.DataFrame,
    labels_before: pl.DataFrame | None,
    labels_after: pl.DataFrame | None,
    design: Design,
    alpha: float,
    correction: str,
) -> list[SliceChange]:
    """Label criteria both runs have, compared on the rated episodes labeled in each."""
    if labels_before is None or labels_after is None:
        return []
    labeled_b = before.join(labels_before, on="episode_id").sort("criterion", "labeler")
    labeled_a = after.join(labels_after, on="episode_id")
    changes = []
    for (criterion, labeler), group in labeled_b.group_by(
        "criterion", "labeler", maintain_order=True
    ):
        other = labeled_a.filter(
            (pl.col("criterion") == criterion) & (pl.col("labeler") == labeler)
        )
        units = _units(group, other, "passed", design)
        if units.is_empty():
            continue
        changes.append(_change(f"{criterion} ({labeler})", "criterion", units, design, alpha))
    return _adjusted(changes, alpha, correction) if changes else []


def _flips(pairs: pl.DataFrame, down: bool) -> list[Flip]:
    chosen = pairs.filter(
        pl.col("success_before") & ~pl.col("success_after")
        if down
        else ~pl.col("success_before") & pl.col("success_after")
    ).sort(KEY)
    return [
        Flip(
            persona_id=row["persona_id"],
            scenario_id=row["scenario_id"],
            trial=row["trial"],
            episode_before=row["episode_id_before"],
            episode_after=row["episode_id_after"],
            status_before=row["status_before"],
            status_after=row["status_after"],
            reason_after=row["reason_after"],
            failed_checks_after=list(row["failed_checks_after"]),
        )
        for row in chosen.iter_rows(named=True)
    ]


def compare_runs(
    before: str | Path,
    after: str | Path,
    *,
    alpha: float = 0.05,
    correction: str = "holm",
    criteria: bool = True,
) -> Comparison:
    """Compare run ``after`` with run ``before`` on the episodes they share.

    Args:
        alpha: significance level of every test; intervals are at ``1 - alpha``.
        correction: how slice p-values are adjusted (`holm`, `bonferroni`, `fdr_bh`, ...).
        criteria: also compare label criteria pass rates when both runs have labels.

    Raises:
        RunFolderError: a path is not a run, holds no episodes, or shares none with the other.
        ConfigError: a bad ``alpha`` or ``correction``.
    """
    check_options(alpha, correction)
    manifest_b, frame_b = load_outcomes(before)
    manifest_a, frame_a = load_outcomes(after)
    pairs = frame_b.join(frame_a, on=KEY, how="inner", suffix="_after").rename(
        {c: f"{c}_before" for c in frame_b.columns if c not in KEY and c != "tags"}
    )
    side_b = _side(before, manifest_b, frame_b, frame_b.height - pairs.height)
    side_a = _side(after, manifest_a, frame_a, frame_a.height - pairs.height)
    if pairs.is_empty():
        raise RunFolderError(
            f"{str(before)!r} and {str(after)!r} share no episode (same persona, scenario and "
            "trial): compare two runs of the same personas and scenarios"
        )
    notes = []
    for side in (side_b, side_a):
        if side.unmatched > side.episodes / 2:
            notes.append(
                f"{side.unmatched} of {side.episodes} episodes of {side.path} have no "
                "counterpart: the runs' plans differ; figures are for the shared cells only"
            )
    same_plan = pairs.height == frame_b.height == frame_a.height
    same_users = bool((pairs["seed_before"] == pairs["seed_after"]).all())
    design: Design = "paired" if same_plan and same_users else "stratified"
    if design == "stratified" and same_plan:
        notes.append(
            "the runs played other seeds: trial numbers do not match conversations, so every "
            "rated episode is compared within its persona × scenario cell (CMH)"
        )
    rated_b = frame_b.filter(~pl.col("status").is_in(NOT_RATED))
    rated_a = frame_a.filter(~pl.col("status").is_in(NOT_RATED))
    units = _units(rated_b, rated_a, "success", design)
    if units.is_empty():
        raise RunFolderError(
            f"no shared episode of {str(before)!r} and {str(after)!r} was rated in both runs: "
            "every one ended in a target or simulator error in one of them"
        )
    matched = pairs.filter(
        ~pl.col("status_before").is_in(NOT_RATED) & ~pl.col("status_after").is_in(NOT_RATED)
    )
    labels_b = _criteria_outcomes(before) if criteria else None
    labels_a = _criteria_outcomes(after) if criteria else None
    if (labels_b is None) != (labels_a is None):
        labeled = before if labels_a is None else after
        notes.append(f"only {labeled} has labels: label criteria not compared")
    overall = _change("overall", "overall", units, design, alpha)
    return Comparison(
        before=side_b,
        after=side_a,
        matched=pairs.height,
        compared=matched.height,
        alpha=alpha,
        correction=correction,
        design=design,
        overall=overall,
        overall_independent=_independent(units, alpha),
        slices=_slices(units, design, alpha, correction),
        criteria=_criteria(rated_b, rated_a, labels_b, labels_a, design, alpha, correction),
        pass_to_fail=_flips(matched, down=True),
        fail_to_pass=_flips(matched, down=False),
        notes=notes,
    )


# --- terminal output --------------------------------------------------------------------------


def regression_message(comparison: Comparison) -> str:
    """One line for `--fail-on-regression`: what dropped."""
    names = ", ".join(s.name for s in comparison.regressions)
    return f"regression: significant drop at alpha {comparison.alpha:g} in {names}"
