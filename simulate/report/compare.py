"""Run against run: did the agent get worse? (`simulate compare BEFORE AFTER`).

Episodes are matched by persona × scenario × trial and compared on the pairs that both runs
rated (target and simulator errors say nothing about the agent, so a pair with one is left out).

The primary test is McNemar's exact test on those pairs, not a two-proportion test. Both runs
play the same conversations (same persona, scenario and trial), so outcomes are paired: an easy
task passes in both runs, a hard one fails in both. McNemar's test looks only at the pairs that
changed (pass → fail against fail → pass), so task difficulty, which is shared, drops out: it
has more power than a test for independent samples and stays exact at small counts. The
two-proportion test (z, or Fisher's exact test for small counts: ``stats.compare_proportions``)
is shown beside it, and is the test of each slice (persona, scenario, tag) and label criterion,
with p-values adjusted across the slices (Holm by default). On paired data it is conservative.

``--fail-on-regression`` trips when the overall drop is significant at ``alpha`` or any slice's
drop is, after adjustment. Both are two-sided tests of which only drops count, so the chance
that two runs of an unchanged agent trip the gate is at most about ``alpha``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from statsmodels.stats.contingency_tables import mcnemar

from simulate.errors import ConfigError, RunFolderError, unknown_choice
from simulate.schema import NOT_RATED, Manifest
from simulate.stats import PADJUST_METHODS, adjust_pvalues, compare_proportions
from simulate.store import LABELS, RunFolder

KEY = ["persona_id", "scenario_id", "trial"]
"""What matches an episode of one run with its counterpart in the other."""

SliceKind = Literal["overall", "persona", "scenario", "tag", "criterion"]

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
    """Pairs in the slice."""
    passed_before: int
    passed_after: int
    rate_before: float
    rate_after: float
    difference: float
    """``rate_after - rate_before``."""
    low: float
    """The difference's interval (Newcombe), at confidence ``1 - alpha``."""
    high: float
    p_value: float
    test: str
    """`mcnemar-exact` (overall); `z` or `fisher`: two-proportion (stats.compare_proportions)."""
    p_adjusted: float | None
    """The p-value adjusted across the slices (None for overall, the primary test)."""
    significant: bool
    """``p_adjusted`` (overall: ``p_value``) below alpha, in either direction."""
    pass_to_fail: int
    fail_to_pass: int
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
    """Matched pairs rated in both runs: what every figure below is made of."""
    alpha: float
    correction: str
    overall: SliceChange
    """McNemar's exact test on the pairs (the primary test)."""
    overall_independent: SliceChange
    """The same counts under the two-proportion test, for reference."""
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
        data["primary_test"] = "mcnemar-exact on matched pairs"
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


def _change(
    name: str,
    kind: SliceKind,
    before: np.ndarray,
    after: np.ndarray,
    alpha: float,
    paired: bool = False,
) -> SliceChange:
    """One slice's change from boolean outcome arrays of its pairs (unadjusted)."""
    n = int(before.size)
    s1, s2 = int(before.sum()), int(after.sum())
    down = int((before & ~after).sum())
    up = int((~before & after).sum())
    result = compare_proportions(s1, n, s2, n, confidence=1 - alpha)
    p_value, test = result.p_value, str(result.test)
    if paired:
        p_value, test = _mcnemar_p(down, up), "mcnemar-exact"
    return SliceChange(
        name=name,
        kind=kind,
        n=n,
        passed_before=s1,
        passed_after=s2,
        rate_before=result.rate1,
        rate_after=result.rate2,
        difference=result.difference,
        low=result.low,
        high=result.high,
        p_value=p_value,
        test=test,
        p_adjusted=None,
        significant=p_value < alpha,
        pass_to_fail=down,
        fail_to_pass=up,
    )


def _adjusted(changes: list[SliceChange], alpha: float, correction: str) -> list[SliceChange]:
    """The slices with adjusted p-values and significance, worst change first."""
    adjusted = adjust_pvalues([c.p_value for c in changes], correction)  # type: ignore[arg-type]
    done = [
        SliceChange(**{**asdict(c), "p_adjusted": p, "significant": p < alpha})
        for c, p in zip(changes, adjusted, strict=True)
    ]
    return sorted(done, key=lambda c: (c.difference, c.p_value, c.name))


def _slice_masks(pairs: pl.DataFrame) -> list[tuple[str, SliceKind, np.ndarray]]:
    """Persona, scenario and tag slices as boolean masks over the pairs."""
    masks: list[tuple[str, SliceKind, np.ndarray]] = []
    for column, kind in (("persona_id", "persona"), ("scenario_id", "scenario")):
        values = pairs[column].to_numpy()
        for value in sorted(set(values)):
            masks.append((f"{kind}:{value}", kind, values == value))  # type: ignore[arg-type]
    tags = pairs["tags"].to_list()
    for tag in sorted({t for row in tags for t in row}):
        masks.append((f"tag:{tag}", "tag", np.array([tag in row for row in tags])))
    return masks


def _slices(pairs: pl.DataFrame, alpha: float, correction: str) -> list[SliceChange]:
    """Every slice that is neither the whole set nor a copy of an earlier one, adjusted."""
    before = pairs["success_before"].to_numpy()
    after = pairs["success_after"].to_numpy()
    seen: dict[bytes, int] = {}
    changes: list[SliceChange] = []
    for name, kind, mask in _slice_masks(pairs):
        if mask.all() or not mask.any():
            continue  # the same pairs as overall: its test already stands
        signature = np.packbits(mask).tobytes()
        if signature in seen:
            changes[seen[signature]].same_as.append(name)
            continue
        seen[signature] = len(changes)
        changes.append(_change(name, kind, before[mask], after[mask], alpha))
    return _adjusted(changes, alpha, correction) if changes else []


def _criteria(
    pairs: pl.DataFrame,
    labels_before: pl.DataFrame | None,
    labels_after: pl.DataFrame | None,
    alpha: float,
    correction: str,
) -> list[SliceChange]:
    """Label criteria both runs have, compared on pairs labeled in both."""
    if labels_before is None or labels_after is None:
        return []
    ids = pairs.select("episode_id_before", "episode_id_after")
    joined = (
        ids.join(
            labels_before.rename({"episode_id": "episode_id_before", "passed": "before"}),
            on="episode_id_before",
        )
        .join(
            labels_after.rename({"episode_id": "episode_id_after", "passed": "after"}),
            on=["episode_id_after", "criterion", "labeler"],
        )
        .sort("criterion", "labeler")
    )
    changes = [
        _change(
            f"{criterion} ({labeler})",
            "criterion",
            group["before"].to_numpy(),
            group["after"].to_numpy(),
            alpha,
        )
        for (criterion, labeler), group in joined.group_by(
            "criterion", "labeler", maintain_order=True
        )
    ]
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
                "counterpart: the runs' plans differ; figures are for the shared episodes only"
            )
    rated = pairs.filter(
        ~pl.col("status_before").is_in(NOT_RATED) & ~pl.col("status_after").is_in(NOT_RATED)
    ).with_columns(pl.concat_list("tags", "tags_after").list.unique().alias("tags"))
    if rated.is_empty():
        raise RunFolderError(
            f"no shared episode of {str(before)!r} and {str(after)!r} was rated in both runs: "
            "every one ended in a target or simulator error in one of them"
        )
    labels_b = _criteria_outcomes(before) if criteria else None
    labels_a = _criteria_outcomes(after) if criteria else None
    if (labels_b is None) != (labels_a is None):
        labeled = before if labels_a is None else after
        notes.append(f"only {labeled} has labels: label criteria not compared")
    success_b = rated["success_before"].to_numpy()
    success_a = rated["success_after"].to_numpy()
    overall = _change("overall", "overall", success_b, success_a, alpha, paired=True)
    independent = _change("overall", "overall", success_b, success_a, alpha)
    return Comparison(
        before=side_b,
        after=side_a,
        matched=pairs.height,
        compared=rated.height,
        alpha=alpha,
        correction=correction,
        overall=overall,
        overall_independent=independent,
        slices=_slices(rated, alpha, correction),
        criteria=_criteria(rated, labels_b, labels_a, alpha, correction),
        pass_to_fail=_flips(rated, down=True),
        fail_to_pass=_flips(rated, down=False),
        notes=notes,
    )


# --- terminal output --------------------------------------------------------------------------


def regression_message(comparison: Comparison) -> str:
    """One line for `--fail-on-regression`: what dropped."""
    names = ", ".join(s.name for s in comparison.regressions)
    return f"regression: significant drop at alpha {comparison.alpha:g} in {names}"
