"""Golden sets: merge a run's labels, split its episodes, write a `DatasetDict` with a card.

    RUN/golden/README.md                           dataset card (the Hub's YAML metadata + prose)
    RUN/golden/data/<split>-00000-of-00001.parquet one file per split, the Hub's layout

Labels of one unit (episode, criterion, turn, tool call) are merged by labeler kind: the first
kind of the precedence (people > judges > rules by default) that labeled the unit decides, by
majority of its labelers (each labeler's latest label counts once). Without a strict majority
the unit is *disputed*: left out, or kept with `disputed = true` and no value. Splits are drawn
per persona x scenario group, so all trials of a pair land in the same split.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import secrets
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.splits import SplitDict, SplitInfo
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from simulate.card import agreement_lines, persona_sources, size_category
from simulate.errors import ConfigError, RunFolderError
from simulate.schema import Label, LabelerKind, Model
from simulate.store import episode_features, load_run, read_labels, read_manifest

GOLDEN = "golden"
SPLITS = ("train", "validation", "test")
DEFAULT_SPLIT = (0.8, 0.1, 0.1)
DEFAULT_PRECEDENCE: tuple[LabelerKind, ...] = ("human", "judge", "rule")
KIND_NAMES = {"human": "people", "judge": "LLM judges", "rule": "rule checks"}

_str = datasets.Value("string")
LABEL_STRUCT = {
    "criterion": _str,
    "turn_index": datasets.Value("int32"),
    "tool_call_index": datasets.Value("int32"),
    "value": _str,
    "score": datasets.Value("float64"),
    "passed": datasets.Value("bool"),
    "kind": _str,
    "source": datasets.List(_str),
    "disputed": datasets.Value("bool"),
}


class MergedLabel(Model):
    """The label a golden set keeps for one unit, and where it came from."""

    episode_id: str
    criterion: str
    turn_index: int | None = None
    tool_call_index: int | None = None
    value: str | None
    """The majority value of the deciding kind; None when the unit is disputed."""
    score: float | None = None
    passed: bool | None = None
    kind: LabelerKind
    """The labeler kind that decided (the first of the precedence that labeled the unit)."""
    source: list[str]
    """Labelers behind the value (all labelers of the deciding kind when disputed)."""
    disputed: bool = False
    """The deciding kind had no strict majority (two people differ, a tie)."""

    @property
    def unit(self) -> tuple[str, str, int | None, int | None]:
        return (self.episode_id, self.criterion, self.turn_index, self.tool_call_index)


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
    """`"human,judge,rule"` -> labeler kinds, strongest first; kinds left out are ignored."""
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    valid = get_args(LabelerKind)  # rule, judge, human
    bad = [k for k in kinds if k not in valid]
    if not kinds or bad or len(set(kinds)) != len(kinds):
        raise ConfigError(
            f"--precedence {text!r}: give distinct labeler kinds from human, judge, rule, "
            "strongest first, e.g. human,judge,rule"
        )
    return tuple(kinds)  # type: ignore[arg-type]


_LICENSE = re.compile(r"^[a-z0-9][a-z0-9.+\-]*$")


def check_license(license_id: str) -> str:
    """A Hub licence id (`cc-by-4.0`, `apache-2.0`, `mit`, `other`...), or a ConfigError."""
    if not _LICENSE.match(license_id):
        raise ConfigError(
            f"--license {license_id!r} is not a Hub licence id (lowercase, like cc-by-4.0, "
            "apache-2.0, mit or other)"
        )
    return license_id


# --- merging --------------------------------------------------------------------------------


def merge_labels(
    labels: Iterable[Label], precedence: Sequence[LabelerKind] = DEFAULT_PRECEDENCE
) -> list[MergedLabel]:
    """One label per unit: the first kind of ``precedence`` that labeled it decides.

    Within that kind each labeler's latest label counts once and the majority value wins; with
    no strict majority the unit comes back ``disputed`` with no value. Kinds not in
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
    merged = [_decide(unit, by_labeler, rank) for unit, by_labeler in latest.items()]
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
            "labels": datasets.List(LABEL_STRUCT),
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
    target = Path(out) if out is not None else Path(run_dir) / GOLDEN
    _check_target(target)
    manifest = read_manifest(run_dir)
    labels = read_labels(run_dir)
    if not labels:
        raise RunFolderError(
            f"{str(run_dir)!r} has no labels; label it first: simulate label {run_dir} --rules-only"
        )
    episodes = load_run(run_dir)
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
    result.agreement = agreement_lines(run_dir)
    card = render_card(
        result,
        manifest,
        labels,
        kept,
        precedence=precedence,
        fractions=fractions,
        seed=seed,
        license=license,
        features=features,
        episodes=episodes,
    )
    _write_atomically(target, dataset, card)
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


def _check_target(target: Path) -> None:
    """Refuse to replace a folder that is not a golden set (a mistyped `--out`)."""
    if target.exists() and (
        not target.is_dir() or (any(target.iterdir()) and not (target / "README.md").is_file())
    ):
        raise ConfigError(
            f"--out {str(target)!r} exists and is not a golden set; choose an empty or new folder"
        )


def _write_atomically(target: Path, dataset: datasets.DatasetDict, card: DatasetCard) -> None:
    """Write into a hidden sibling folder, then swap it in: never a half-written golden set."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a writer that was killed
    token = secrets.token_hex(3)
    tmp = target.parent / f".{target.name}.tmp-{token}"
    (tmp / "data").mkdir(parents=True)
    try:
        for name, ds in dataset.items():
            pq.write_table(ds.data.table, tmp / "data" / f"{name}-00000-of-00001.parquet")
        card.save(tmp / "README.md")
        old = target.parent / f".{target.name}.old-{token}"
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- the card -------------------------------------------------------------------------------


def render_card(
    result: GoldenResult,
    manifest: dict[str, Any],
    labels: Sequence[Label],
    kept: Sequence[MergedLabel],
    *,
    precedence: Sequence[LabelerKind],
    fractions: Sequence[float],
    seed: int,
    license: str,
    features: datasets.Features,
    episodes: datasets.Dataset,
) -> DatasetCard:
    """The dataset card: the Hub's YAML metadata, then how the set was made and how to load it."""
    run_id = manifest.get("run_id", result.path.parent.name)
    config = manifest.get("config", {})
    n_episodes = sum(result.splits.values())
    by_id = dict(zip(episodes["persona_id"], episodes["persona"], strict=True))
    personas = [json.loads(text) for _, text in sorted(by_id.items())]
    user = config.get("user", "unknown")
    languages = sorted(
        {"en"}
        if user == "agenda"
        else {p.get("traits", {}).get("language", "en").split("-")[0] for p in personas}
    )
    data = DatasetCardData(
        pretty_name=f"Simulate golden set: {run_id}",
        license=license,
        language=languages,
        multilinguality="monolingual" if len(languages) == 1 else "multilingual",
        size_categories=size_category(n_episodes),
        task_categories=["text-generation", "text-classification"],
        task_ids=["dialogue-generation", "conversational"],
        annotations_creators=sorted(
            {"expert-generated" if m.kind == "human" else "machine-generated" for m in kept}
        ),
        language_creators=["machine-generated"],
        source_datasets=["original"],
        tags=["synthetic", "simulate", "conversational-agents", "evaluation"],
    )
    info = DatasetInfo(features=features, splits=SplitDict(), dataset_size=0)
    for name, ds in result.dataset.items():
        info.splits.add(SplitInfo(name=name, num_bytes=ds.data.nbytes, num_examples=ds.num_rows))
        info.dataset_size += ds.data.nbytes
    DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    configs = {"data_files": [{"split": s, "path": f"data/{s}-*"} for s in result.dataset]}
    MetadataConfigs({"default": configs}).to_dataset_card_data(data)
    prose = _card_prose(
        result, manifest, labels, kept, personas, precedence, fractions, seed, license, episodes
    )
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{prose}")  # parses: checks the YAML


def _card_prose(
    result: GoldenResult,
    manifest: dict[str, Any],
    labels: Sequence[Label],
    kept: Sequence[MergedLabel],
    personas: Sequence[dict[str, Any]],
    precedence: Sequence[LabelerKind],
    fractions: Sequence[float],
    seed: int,
    license: str,
    episodes: datasets.Dataset,
) -> str:
    """The card's markdown: how the set was made, its labels, splits, fields, limits, loading."""
    config = manifest.get("config", {})
    run_id = manifest.get("run_id", "run")
    models = sorted(
        {f"{u['role']} `{u['model']}`" for usage in episodes["usage"] for u in usage}
        | {
            f"judge `{label.labeler.removeprefix('judge:')}`"
            for label in labels
            if label.labeler_kind == "judge"
        }
    )
    n_personas = len(set(episodes["persona_id"]))
    n_scenarios = len(set(episodes["scenario_id"]))
    order = " > ".join(KIND_NAMES[k] for k in precedence)
    rubrics = sorted({label.rubric for label in labels if label.rubric})
    lines = [
        f"# Simulate golden set: {run_id}",
        "",
        f"Synthetic conversations between simulated users and the agent under test "
        f"`{config.get('target', 'unknown')}`, recorded and labeled with "
        "Simulate and merged into a golden set for evaluations and "
        "regression tests. One row per conversation (episode).",
        "",
        "## How it was made",
        "",
        f"- **Agent under test**: `{config.get('target', 'unknown')}`",
        f"- **Simulated user**: `{config.get('user', 'unknown')}`",
        f"- **Models**: {', '.join(models) if models else 'none (offline user, agent and checks)'}",
        f"- **Personas × scenarios**: {n_personas} personas × {n_scenarios} scenarios × "
        f"{config.get('trials', 1)} trial(s) → {len(episodes)} episodes in run `{run_id}` "
        f"(seed {config.get('seed', 0)}, at most {config.get('max_turns', '?')} agent turns)",
        f"- **Software**: simulate {manifest.get('environment', {}).get('simulate', '?')}, "
        f"datasets {datasets.__version__}",
        "",
        "## Labels",
        "",
        f"Labels come from {_sources(labels)}. Each unit (an episode, an agent reply or a tool "
        f"call, on one criterion) keeps one label: the first kind in the order {order} that "
        "labeled it decides, by majority of its labelers (each labeler's latest label counts "
        "once). A unit whose deciding kind has no strict majority is disputed: "
        + (
            "kept here with `disputed: true` and no value"
            if result.kept_disputed
            else "left out of this set"
        )
        + f" ({result.disputed} disputed units in the run).",
        "",
        f"Rubrics: {', '.join(f'`{r}`' for r in rubrics) or 'none'}.",
        "",
        *_labeling_lines(manifest),
        "| criterion | unit | labeled | passed | decided by |",
        "|---|---|---|---|---|",
        *_criterion_rows(kept),
        "",
    ]
    if result.agreement:
        lines += ["## Agreement", "", *result.agreement, ""]
    lines += [
        "## Splits",
        "",
        f"Fractions {', '.join(f'{f:g}' for f in fractions)} (train, validation, test) of the "
        f"persona × scenario pairs, seed {seed}, stratified so each persona and each scenario is "
        "spread over the splits in proportion; all trials of a pair are in the same split, so "
        "no conversation and no persona × scenario pair is in two splits. "
        + (
            f"{result.unlabeled} episodes of the run had no label kept and are left out. "
            if result.unlabeled
            else ""
        ),
        "",
        "| split | episodes |",
        "|---|---|",
        *(f"| {name} | {n} |" for name, n in result.splits.items()),
        "",
        "## Fields",
        "",
        "The run's episode columns (`episode_id`, `persona_id`, `scenario_id`, `trial`, `seed`, "
        "`persona` and `scenario` as JSON, `messages`, `outcome`, `success`, `n_turns`, `usage`, "
        "`duration_s`, `user`, `target`, `created_at`, `simulator_faults`), plus:",
        "",
        "- `labels`: one struct per labeled unit: `criterion`, `turn_index` (index in `messages`; "
        "null for the whole episode), `tool_call_index`, `value`, `score`, `passed`, `kind` "
        "(human, judge or rule: who decided), `source` (the labelers behind the value), "
        "`disputed`.",
        "- `passed_<criterion>`: for each episode-level criterion, whether the episode passed it "
        "(null when not labeled, disputed, or without pass/fail): "
        + (
            ", ".join(
                f"`passed_{c}`" for c in sorted({m.criterion for m in kept if m.turn_index is None})
            )
            or "none"
        )
        + ".",
        "",
        "## Persona sources and licences",
        "",
        *persona_sources(personas),
        "",
        "## Synthetic data and limitations",
        "",
        "Every conversation is synthetic: the user is a simulator playing a written persona, "
        "not a person. Simulated users are more regular than real "
        "ones; rates measured here say how the agent handles these personas and scenarios, not "
        "how it will do on real traffic. Rule labels check phrases, tools and outcomes, not "
        "meaning; judge labels are only as good as their measured agreement with people. "
        "Small splits give wide confidence intervals.",
        "",
        "## How to load",
        "",
        "```python",
        "import datasets",
        'golden = datasets.load_dataset("path/to/golden")   # this folder, or its Hub repo id',
        'test = golden["test"] if "test" in golden else golden["train"]',
        'failed = test.filter(lambda row: not row["success"])',
        "```",
        "",
        f"Licence: `{license}`.",
        "",
    ]
    return "\n".join(lines)


def _sources(labels: Sequence[Label]) -> str:
    """`rule checks (1202 labels by `rule:x`, ...); people (...)`, for the card."""
    kinds = Counter(label.labeler_kind for label in labels)
    labelers: dict[str, set[str]] = defaultdict(set)
    for label in labels:
        labelers[label.labeler_kind].add(label.labeler)
    return "; ".join(
        f"{KIND_NAMES[k]} ({n} labels by {', '.join(f'`{x}`' for x in sorted(labelers[k]))})"
        for k, n in sorted(kinds.items())
    )


def _labeling_lines(manifest: dict[str, Any]) -> list[str]:
    """Judges and rule limits from the manifest's record of labeling sessions, when present."""
    sessions = manifest.get("labeling", [])
    judges = sorted(
        {
            f"`{s['judge']}` ({s.get('samples') or 1} sample(s) per unit)"
            for s in sessions
            if s.get("judge")
        }
    )
    limits = next((s["limits"] for s in reversed(sessions) if s.get("limits")), None)
    lines = []
    if judges:
        lines += [f"Judges: {', '.join(judges)}.", ""]
    if limits:
        lines += ["Rule limits: " + ", ".join(f"{k} {v:g}" for k, v in limits.items()) + ".", ""]
    return lines


def _criterion_rows(kept: Sequence[MergedLabel]) -> list[str]:
    by_criterion: dict[str, list[MergedLabel]] = defaultdict(list)
    for m in kept:
        by_criterion[m.criterion].append(m)
    rows = []
    for criterion, merged in sorted(by_criterion.items()):
        first = merged[0]
        unit = (
            "episode"
            if first.turn_index is None
            else "tool call"
            if first.tool_call_index is not None
            else "agent reply"
        )
        judged = [m.passed for m in merged if m.passed is not None]
        passed = f"{sum(judged) / len(judged):.0%} of {len(judged)}" if judged else "n/a"
        kinds = Counter(m.kind for m in merged)
        decided = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        rows.append(f"| `{criterion}` | {unit} | {len(merged)} | {passed} | {decided} |")
    return rows
