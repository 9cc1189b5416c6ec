"""Golden sets: merge a run's labels, split its episodes, write a `DatasetDict` with a card.

    RUN/golden/README.md                           dataset card (the Hub's YAML metadata + prose)
    RUN/golden/data/<split>-00000-of-00001.parquet one file per split, the Hub's layout

Labels of one unit (episode, criterion, turn, tool call) are merged by labeler kind: the first
kind of the precedence (adjudicators > people > judges > rules by default) that labeled the unit
decides, by majority of its labelers (each labeler's latest label counts once; a latest label
with an empty value is an answer withdrawn, and that labeler drops out of the unit). Without a
strict majority the unit is *disputed*: left out, or kept with `disputed = true` and no value.
An adjudicator (`simulate annotate --adjudicate`) decides units people disagreed on, so their
label outranks every single annotator's.

Splits are drawn per persona x scenario group, so all trials of a pair land in the same split.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import datasets
import pyarrow as pa

from simulate.card import GoldenFacts, check_license, golden_card
from simulate.errors import ConfigError, RunFolderError
from simulate.label.agreement import agreement_for_card
from simulate.schema import Label, LabelerKind, MergedLabel
from simulate.store import (
    RunFolder,
    check_replaceable,
    episode_features,
    label_features,
    replace_folder,
    write_parquet,
)

GOLDEN = "golden"
SPLITS = ("train", "validation", "test")
DEFAULT_SPLIT = (0.8, 0.1, 0.1)
DEFAULT_PRECEDENCE: tuple[LabelerKind, ...] = ("adjudicator", "human", "judge", "rule")

_str = datasets.Value("string")


def label_struct() -> dict[str, Any]:
    """The features of one merged label in a golden row: the label's own, and where it came
    from (`MergedLabel`)."""
    own = label_features()
    shared = ["criterion", "turn_index", "tool_call_index", "value", "score", "passed"]
    return {
        **{name: own[name] for name in shared},
        "kind": _str,
        "source": datasets.List(_str),
        "disputed": datasets.Value("bool"),
    }


@dataclass
class GoldenResult:
    """What `build_golden` wrote."""

    path: Path
    dataset: datasets.DatasetDict
    splits: dict[str, int]
    """Episodes per split written (splits left empty are not written)."""
    disputed: int
    """Disputed units, whether kept or left out."""
    kept_disputed: bool
    criteria: list[str]
    unlabeled: int
    """Episodes of the run with no label kept, left out of the golden set."""
    agreement: list[str] = field(default_factory=list)


# --- flags ----------------------------------------------------------------------------------


def parse_split(text: str) -> tuple[float, float, float]:
    """`"0.8,0.1,0.1"` -> train, validation and test fractions, which must sum to 1."""
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        parts = []
    return check_split(parts, text)


def check_split(fractions: Sequence[float], text: str | None = None) -> tuple[float, float, float]:
    """The fractions as a triple, or a ConfigError naming `--split` (``text``: as typed)."""
    shown = text if text is not None else ",".join(f"{f:g}" for f in fractions)
    problem = "is not three fractions between 0 and 1"
    if len(fractions) == 3 and all(0 <= f <= 1 for f in fractions):  # NaN fails both
        if math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
            return (fractions[0], fractions[1], fractions[2])
        problem = f"sums to {sum(fractions):g}"
    raise ConfigError(
        f"--split {shown!r} {problem}; give train,validation,test fractions that sum to 1, "
        "e.g. 0.8,0.1,0.1"
    )


def parse_precedence(text: str) -> tuple[LabelerKind, ...]:
    """`"adjudicator,human,judge,rule"` -> labeler kinds, strongest first; kinds left out are
    ignored."""
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    valid = get_args(LabelerKind)  # rule, judge, human, adjudicator
    bad = [k for k in kinds if k not in valid]
    if not kinds or bad or len(set(kinds)) != len(kinds):
        raise ConfigError(
            f"--precedence {text!r}: give distinct labeler kinds from adjudicator, human, "
            "judge, rule, strongest first, e.g. adjudicator,human,judge,rule"
        )
    return tuple(kinds)  # type: ignore[arg-type]


# --- merging --------------------------------------------------------------------------------


def merge_labels(
    labels: Iterable[Label], precedence: Sequence[LabelerKind] = DEFAULT_PRECEDENCE
) -> list[MergedLabel]:
    """One label per unit: the first kind of ``precedence`` that labeled it decides.

    Within that kind each labeler's latest label counts once and the majority value wins; with
    no strict majority the unit comes back ``disputed`` with no value. A labeler whose latest
    label has an empty value withdrew their answer and is left out. Kinds not in
    ``precedence`` are ignored. The result is sorted by unit.
    """
    rank = {kind: i for i, kind in enumerate(precedence)}
    latest: dict[tuple[Any, ...], dict[str, tuple[tuple[str, int], Label]]] = defaultdict(dict)
    for order, label in enumerate(labels):
        if label.labeler_kind not in rank:
            continue
        unit = (label.episode_id, label.criterion, label.turn_index, label.tool_call_index)
        key = (label.created_at, order)  # a labeler who changed their mind: the newest counts
        seen = latest[unit].get(label.labeler)
        if seen is None or seen[0] <= key:
            latest[unit][label.labeler] = (key, label)
    answered = {
        unit: {who: seen for who, seen in by_labeler.items() if seen[1].value}
        for unit, by_labeler in latest.items()
    }
    merged = [_decide(unit, voters, rank) for unit, voters in answered.items() if voters]
    return sorted(merged, key=lambda m: _unit_key(m.unit))


def _decide(
    unit: tuple[Any, ...],
    by_labeler: dict[str, tuple[tuple[str, int], Label]],
    rank: dict[LabelerKind, int],
) -> MergedLabel:
    kind = min((label.labeler_kind for _, label in by_labeler.values()), key=rank.__getitem__)
    votes = sorted((key, label) for key, label in by_labeler.values() if label.labeler_kind == kind)
    counts = Counter(label.value for _, label in votes)
    (top, n), *rest = counts.most_common()
    episode_id, criterion, turn_index, tool_call_index = unit
    base = {
        "episode_id": episode_id,
        "criterion": criterion,
        "turn_index": turn_index,
        "tool_call_index": tool_call_index,
        "kind": kind,
    }
    if rest and rest[0][1] == n:
        return MergedLabel(
            **base, value=None, source=sorted(label.labeler for _, label in votes), disputed=True
        )
    winners = [label for _, label in votes if label.value == top]
    return MergedLabel(
        **base,
        value=top,
        score=winners[-1].score,
        passed=winners[-1].passed,
        source=sorted(label.labeler for label in winners),
    )


def _unit_key(unit: tuple[str, str, int | None, int | None]) -> tuple[Any, ...]:
    episode_id, criterion, turn, call = unit
    return (episode_id, criterion, -1 if turn is None else turn, -1 if call is None else call)


# --- splits ---------------------------------------------------------------------------------


def assign_splits(
    groups: Iterable[tuple[str, str]], fractions: Sequence[float], seed: int = 0
) -> dict[tuple[str, str], str]:
    """Each (persona_id, scenario_id) group -> `train`, `validation` or `test`.

    Group counts per split follow ``fractions`` (largest remainder; a split asked for gets at
    least one group when there are enough). Groups are dealt in a seeded order, each to the
    split whose share of its persona and of its scenario lags most behind the target, so every
    scenario and every persona is spread over the splits in proportion.
    """
    order = sorted(set(groups))
    random.Random(seed).shuffle(order)
    left = dict(zip(SPLITS, _quotas(len(order), fractions), strict=True))
    share = dict(zip(SPLITS, fractions, strict=True))
    size = Counter[tuple[str, str]]()
    for persona, scenario in order:
        size["persona", persona] += 1
        size["scenario", scenario] += 1
    have = {split: Counter[tuple[str, str]]() for split in SPLITS}
    assigned: dict[tuple[str, str], str] = {}
    for group in order:
        strata = (("persona", group[0]), ("scenario", group[1]))

        def lag(split: str, strata: tuple[tuple[str, str], ...] = strata) -> tuple[float, int]:
            behind = sum(share[split] * size[s] - have[split][s] for s in strata)
            return (behind, left[split])

        split = max((s for s in SPLITS if left[s] > 0), key=lag)
        assigned[group] = split
        left[split] -= 1
        for stratum in strata:
            have[split][stratum] += 1
    return assigned


def _quotas(n: int, fractions: Sequence[float]) -> list[int]:
    exact = [f * n for f in fractions]
    quotas = [math.floor(x + 1e-9) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (quotas[i] - exact[i], i))
    for i in by_remainder[: n - sum(quotas)]:
        quotas[i] += 1
    wanted = [i for i, f in enumerate(fractions) if f > 0]
    if n >= len(wanted):
        for i in wanted:
            if quotas[i] == 0:
                quotas[quotas.index(max(quotas))] -= 1
                quotas[i] += 1
    return quotas


# --- the dataset ----------------------------------------------------------------------------


def golden_features(episode_criteria: Iterable[str]) -> datasets.Features:
    """The episode columns, `labels`, and `passed_<criterion>` per episode-level criterion."""
    return datasets.Features(
        {
            **episode_features(),
            "labels": datasets.List(label_struct()),
            **{f"passed_{c}": datasets.Value("bool") for c in sorted(episode_criteria)},
        }
    )


def build_golden(
    run_dir: str | Path,
    *,
    split: Sequence[float] = DEFAULT_SPLIT,
    seed: int = 0,
    precedence: Sequence[LabelerKind] = DEFAULT_PRECEDENCE,
    keep_disputed: bool = False,
    license: str = "cc-by-4.0",
    out: str | Path | None = None,
) -> GoldenResult:
    """Merge the run's labels and write its golden set (default ``RUN/golden``), atomically.

    Raises RunFolderError when ``run_dir`` is not a run or has no labels, ConfigError for a bad
    split, precedence or licence.
    """
    fractions = check_split(split)
    precedence = parse_precedence(",".join(precedence))
    check_license(license)
    folder = RunFolder.open(run_dir)
    target = Path(out) if out is not None else folder.path / GOLDEN
    check_replaceable(target, GOLDEN)
    labels = folder.labels()
    if not labels:
        raise RunFolderError(
            f"{str(run_dir)!r} has no labels; label it first: simulate label {run_dir} --rules-only"
        )
    episodes = folder.dataset()
    known = set(episodes["episode_id"])
    merged = [m for m in merge_labels(labels, precedence) if m.episode_id in known]
    if not merged:
        raise RunFolderError(
            f"{str(run_dir)!r} has no labels by {', '.join(precedence)} on its episodes; "
            f"label it first: simulate label {run_dir} --rules-only"
        )
    disputed = sum(m.disputed for m in merged)
    kept = [m for m in merged if keep_disputed or not m.disputed]
    if not kept:
        raise RunFolderError(
            f"all {disputed} labeled units of {str(run_dir)!r} are disputed; "
            "pass --keep-disputed to keep them marked"
        )
    by_episode: dict[str, list[MergedLabel]] = defaultdict(list)
    for m in kept:
        by_episode[m.episode_id].append(m)
    episode_criteria = sorted({m.criterion for m in kept if m.turn_index is None})
    features = golden_features(episode_criteria)
    assigned = assign_splits(
        zip(episodes["persona_id"], episodes["scenario_id"], strict=True), fractions, seed
    )
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for row in episodes:
        own = by_episode.get(row["episode_id"])
        if own:
            rows[assigned[row["persona_id"], row["scenario_id"]]].append(
                _golden_row(row, own, episode_criteria)
            )
    dataset = datasets.DatasetDict(
        {
            name: datasets.Dataset(pa.Table.from_pylist(split_rows, schema=features.arrow_schema))
            for name, split_rows in rows.items()
            if split_rows
        }
    )
    result = GoldenResult(
        path=target,
        dataset=dataset,
        splits={name: ds.num_rows for name, ds in dataset.items()},
        disputed=disputed,
        kept_disputed=keep_disputed,
        criteria=sorted({m.criterion for m in kept}),
        unlabeled=len(known - by_episode.keys()),
    )
    result.agreement = agreement_for_card(folder.path)
    facts = GoldenFacts(
        dataset=dataset,
        disputed=disputed,
        kept_disputed=keep_disputed,
        unlabeled=result.unlabeled,
        agreement=result.agreement,
    )
    card = golden_card(
        facts,
        folder.manifest,
        labels,
        kept,
        precedence=precedence,
        fractions=fractions,
        seed=seed,
        license=license,
        features=features,
        episodes=episodes,
    )
    _write_golden(target, dataset, card)
    return result


def _golden_row(
    row: dict[str, Any], labels: list[MergedLabel], episode_criteria: Sequence[str]
) -> dict[str, Any]:
    structs = [m.model_dump(exclude={"episode_id"}) for m in labels]
    passed = {m.criterion: m.passed for m in labels if m.turn_index is None}
    return {
        **row,
        "labels": structs,
        **{f"passed_{c}": passed.get(c) for c in episode_criteria},
    }


def _write_golden(target: Path, dataset: datasets.DatasetDict, card: Any) -> None:
    """Write the set whole, replacing the previous one only once it is complete."""

    def fill(folder: Path) -> None:
        for name, ds in dataset.items():
            write_parquet(folder / "data" / f"{name}-00000-of-00001.parquet", ds.data.table)
        card.save(folder / "README.md")

    replace_folder(target, GOLDEN, fill)
