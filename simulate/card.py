"""Dataset cards: the `README.md` a run or a golden set carries to the Hugging Face Hub.

A card is the Hub's YAML metadata (configs and their data files, licence, task categories,
language, size category, `synthetic` tag, features per config) followed by prose built from the
run folder: the agent and simulated user, the models, counts and outcome rates, persona sources
and licences, labels and agreement, the limits of synthetic data, and how to load it. Cards are
parsed back with `huggingface_hub.DatasetCard` before they are written, so a bad card fails here,
not on the Hub.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from simulate.errors import SimulateError
from simulate.schema import NOT_AGENT_FAULT
from simulate.store import EPISODES, LABELS, read_labels, read_manifest, shard_paths

#: The licence a card gets when the user names none and no persona source restricts it.
DEFAULT_LICENSE = "cc-by-4.0"

#: Data files of a pushed dataset: config -> split -> glob inside the repository.
DataFiles = Mapping[str, Mapping[str, str]]

_NON_COMMERCIAL = re.compile(r"(?i)(^|[-_ ])nc([-_ ]|$)|non-?commercial")

TAGS = ["synthetic", "simulate", "conversational-agents", "evaluation"]


@dataclass
class RunCard:
    """A rendered card, the licence it carries, and what the user should be warned about."""

    card: Any  # huggingface_hub.DatasetCard (imported lazily: slow)
    license: str
    warnings: list[str] = field(default_factory=list)


# --- shared pieces (golden sets use them too) -------------------------------------------------


def size_category(n: int) -> str:
    """The Hub's `size_categories` bucket for ``n`` rows."""
    bounds = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ]
    return next((name for limit, name in bounds if n < limit), "n>1M")


def persona_sources(personas: Sequence[dict[str, Any]]) -> list[str]:
    """Where personas came from and under which licence, when they say; else hand-written."""
    sources = Counter(
        (p.get("source") or "hand-written personas bundled with the run", p.get("license"))
        for p in personas
    )
    return [
        f"- {source}{f' ({licence})' if licence else ''}: {n} personas"
        for (source, licence), n in sorted(sources.items(), key=str)
    ]


def non_commercial_licences(personas: Sequence[dict[str, Any]]) -> list[str]:
    """Licences of the personas' sources that forbid commercial use (`CC-BY-NC-SA-4.0`...)."""
    return sorted(
        {
            p["license"]
            for p in personas
            if p.get("license") and _NON_COMMERCIAL.search(p["license"])
        }
    )


def agreement_lines(run_dir: str | Path) -> list[str]:
    """Agreement figures as markdown lines, when `simulate.label.agreement` can compute them.

    Optional: a run labeled by one labeler per criterion has none, and the card skips them.
    """
    try:
        from simulate.label.agreement import agreement_report

        report = agreement_report(run_dir)
    except (ImportError, SimulateError):
        return []
    lines = []
    for section in report.get("criteria", []):
        figures = section.get("agreement") or {}
        named = [
            ("Cohen's kappa", figures.get("cohen_kappa")),
            ("Fleiss' kappa", figures.get("fleiss_kappa")),
            *(
                (f"Krippendorff's alpha ({level})", value)
                for level, value in (figures.get("krippendorff_alpha") or {}).items()
            ),
        ]
        parts = [f"{name} {_figure(value)}" for name, value in named if value]
        parts += [
            f"`{row['labeler']}` vs people: accuracy {_figure(row.get('accuracy'))}, "
            f"true-positive rate {_figure(row.get('tpr'))}, "
            f"true-negative rate {_figure(row.get('tnr'))}"
            for row in section.get("vs_people", [])
        ]
        if parts:
            lines.append(f"- `{section['criterion']}`: " + "; ".join(parts))
    return lines


def _figure(value: dict[str, Any] | None) -> str:
    """`0.72 [0.55, 0.89] (n=40)`, or `n/a (n=0)`."""
    if not value or value.get("value") is None:
        return f"n/a (n={(value or {}).get('n', 0)})"
    interval = f" [{value['low']:.2f}, {value['high']:.2f}]" if value.get("low") is not None else ""
    return f"{value['value']:.2f}{interval} (n={value['n']})"


def choose_license(
    license: str | None, personas: Sequence[dict[str, Any]]
) -> tuple[str, list[str]]:
    """The card's licence and warnings: the user's choice, else the personas' non-commercial
    licence when exactly one restricts them, else `DEFAULT_LICENSE`."""
    from simulate.label.golden import check_license

    restricted = non_commercial_licences(personas)
    if license is None:
        chosen = restricted[0].lower() if len(restricted) == 1 else DEFAULT_LICENSE
    else:
        chosen = check_license(license)
    warnings = []
    if restricted and not any(r.lower() == chosen for r in restricted):
        warnings.append(
            f"personas come from sources under {', '.join(restricted)} (non-commercial), but the "
            f"card says {chosen!r}; the card marks the restriction, check --license"
        )
    return check_license(chosen), warnings


# --- run cards --------------------------------------------------------------------------------


def render_run_card(
    run_dir: str | Path,
    data_files: DataFiles,
    *,
    repo_id: str | None = None,
    license: str | None = None,
) -> RunCard:
    """The card of a run pushed with the configs in ``data_files`` (`episodes`, `labels`, `golden`).

    Args:
        run_dir: The run folder.
        data_files: Config -> split -> glob of its files in the repository.
        repo_id: `owner/name` on the Hub, for the loading example (a local path when None).
        license: A Hub licence id; None picks one (see `choose_license`).
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    manifest = read_manifest(run_dir)
    table = _episode_columns(run_dir)
    personas = _personas(table)
    chosen, warnings = choose_license(license, personas)
    labels = read_labels(run_dir) if LABELS in data_files else []
    n_episodes = table.num_rows
    config = manifest.get("config", {})
    languages = _languages(config, personas)
    data = DatasetCardData(
        pretty_name=f"Simulate run: {manifest.get('run_id', Path(run_dir).name)}",
        license=chosen,
        language=languages,
        multilinguality="monolingual" if len(languages) == 1 else "multilingual",
        size_categories=[size_category(n_episodes)],
        task_categories=["text-generation", "text-classification"],
        task_ids=["dialogue-generation", "conversational"],
        annotations_creators=_annotation_creators(labels),
        language_creators=["machine-generated"],
        source_datasets=["original"],
        tags=TAGS,
    )
    _add_configs(data, data_files, run_dir)
    prose = _run_prose(
        run_dir, manifest, table, personas, labels, data_files, repo_id, chosen, warnings
    )
    card = DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{prose}")  # parses: checks the YAML
    return RunCard(card=card, license=chosen, warnings=warnings)


def golden_card_for_hub(
    golden_dir: str | Path, data_files: DataFiles, repo_id: str | None = None
) -> Any:
    """A golden set's own card with its splits renamed to the `golden` config's data files.

    The set's single `default` config becomes `golden` (the default config of the repository),
    so `load_dataset("owner/name")` and `load_dataset("owner/name", "golden")` both work; the
    loading example names ``repo_id``.
    """
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(Path(golden_dir) / "README.md")
    infos = card.data.get("dataset_info")
    if isinstance(infos, dict):
        infos["config_name"] = "golden"
        card.data["dataset_info"] = [infos]
    elif isinstance(infos, list):
        card.data["dataset_info"] = [{**info, "config_name": "golden"} for info in infos[:1]]
    card.data["configs"] = [_config_entry("golden", data_files["golden"], default=True)]
    text = card.text
    if repo_id is not None:
        text = text.replace(
            'datasets.load_dataset("path/to/golden")   # this folder, or its Hub repo id',
            f'datasets.load_dataset("{repo_id}", "golden")',
        )
    return DatasetCard(f"---\n{card.data.to_yaml()}\n---\n{text}")


def _config_entry(name: str, splits: Mapping[str, str], default: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "config_name": name,
        "data_files": [{"split": split, "path": glob} for split, glob in splits.items()],
    }
    if default:
        entry["default"] = True
    return entry


def _add_configs(data: Any, data_files: DataFiles, run_dir: str | Path) -> None:
    """`configs` and `dataset_info` (features and split sizes) for each pushed config."""
    from datasets.info import DatasetInfo
    from datasets.splits import SplitDict, SplitInfo

    from simulate.store import episode_features, label_features

    data.configs = [
        _config_entry(name, splits, default=name == EPISODES) for name, splits in data_files.items()
    ]
    infos = []
    for name in data_files:
        if name == "golden":
            golden = _golden_info(Path(run_dir) / "golden")
            if golden:
                infos.append(
                    {
                        "config_name": "golden",
                        **{k: v for k, v in golden.items() if k != "config_name"},
                    }
                )
            continue
        kind = EPISODES if name == EPISODES else LABELS
        rows = sum(pq.read_metadata(p).num_rows for p in shard_paths(run_dir, kind))
        size = sum(_uncompressed_bytes(p) for p in shard_paths(run_dir, kind))
        features = episode_features() if kind == EPISODES else label_features()
        info = DatasetInfo(features=features, splits=SplitDict(), dataset_size=size)
        info.splits.add(SplitInfo(name="train", num_bytes=size, num_examples=rows))
        infos.append({"config_name": name, **info._to_yaml_dict()})
    data.dataset_info = infos


def _uncompressed_bytes(path: Path) -> int:
    """The data size of a parquet file before compression (what `num_bytes` counts)."""
    meta = pq.read_metadata(path)
    return sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))


def _golden_info(golden_dir: Path) -> dict[str, Any] | None:
    from huggingface_hub import DatasetCard

    readme = golden_dir / "README.md"
    if not readme.is_file():
        return None
    infos = DatasetCard.load(readme).data.get("dataset_info")
    return (infos[0] if isinstance(infos, list) and infos else infos) or None


def _episode_columns(run_dir: str | Path) -> pa.Table:
    columns = ["persona_id", "scenario_id", "persona", "usage", "trial"]
    return pa.concat_tables(pq.read_table(p, columns=columns) for p in shard_paths(run_dir))


def _personas(table: pa.Table) -> list[dict[str, Any]]:
    by_id = dict(zip(table["persona_id"].to_pylist(), table["persona"].to_pylist(), strict=True))
    return [json.loads(text) for _, text in sorted(by_id.items())]


def _languages(config: dict[str, Any], personas: Sequence[dict[str, Any]]) -> list[str]:
    if config.get("user") == "agenda":  # the offline user speaks English only
        return ["en"]
    return sorted({p.get("traits", {}).get("language", "en").split("-")[0] for p in personas})


def _annotation_creators(labels: Sequence[Any]) -> list[str]:
    kinds = {label.labeler_kind for label in labels}
    creators = {"expert-generated" if k == "human" else "machine-generated" for k in kinds}
    return sorted(creators) or ["no-annotation"]


def _run_prose(
    run_dir: str | Path,
    manifest: dict[str, Any],
    table: pa.Table,
    personas: Sequence[dict[str, Any]],
    labels: Sequence[Any],
    data_files: DataFiles,
    repo_id: str | None,
    license: str,
    warnings: Sequence[str],
) -> str:
    from simulate.report.summary import summarize_run
    from simulate.simulation import redact
    from simulate.stats import wilson_interval

    config = manifest.get("config", {})
    run_id = manifest.get("run_id", Path(run_dir).name)
    target = redact(str(config.get("target", "unknown")))
    user = redact(str(config.get("user", "unknown")))
    summary = summarize_run(run_dir)
    models = sorted(
        {f"{u['role']} `{u['model']}`" for usage in table["usage"].to_pylist() for u in usage}
        | {
            f"judge `{label.labeler.removeprefix('judge:')}`"
            for label in labels
            if label.labeler_kind == "judge"
        }
    )
    n_personas = len(set(table["persona_id"].to_pylist()))
    n_scenarios = len(set(table["scenario_id"].to_pylist()))
    where = repo_id or str(Path(run_dir).resolve())
    restricted = non_commercial_licences(personas)
    lines = [f"# Simulate run: {run_id}", ""]
    if restricted:
        lines += [
            f"> **Licence notice**: some personas come from sources under "
            f"{', '.join(restricted)}, which forbids commercial use; that restriction carries "
            f"over to the conversations built from them. This card's licence: `{license}`.",
            "",
        ]
    lines += [
        f"Synthetic conversations between simulated users and the agent under test `{target}`, "
        "recorded with Simulate. One row per conversation (episode) in the `episodes` config"
        + (", one row per label in `labels`" if LABELS in data_files else "")
        + (", the labeled golden set with its splits in `golden`" if "golden" in data_files else "")
        + ".",
        "",
        "## How it was made",
        "",
        f"- **Agent under test**: `{target}`",
        f"- **Simulated user**: `{user}`"
        + (" (offline, scripted from the scenario's agenda)" if user == "agenda" else ""),
        f"- **Models**: {', '.join(models) if models else 'none (offline user, agent and checks)'}",
        f"- **Personas × scenarios**: {n_personas} personas × {n_scenarios} scenarios × "
        f"{config.get('trials', 1)} trial(s) → {table.num_rows} episodes "
        f"(seed {config.get('seed', 0)}, at most {config.get('max_turns', '?')} agent turns)",
        f"- **Software**: simulate {manifest.get('environment', {}).get('simulate', '?')}",
        "",
        "Each persona is a written character (traits such as patience, expertise and tone); each "
        "scenario says what the user wants, what they know and what counts as success. The "
        "simulated user plays one persona through one scenario per episode; the episode ends when "
        "the goal is reached, the user gives up, or the turn limit is hit, and the scenario's "
        "checks decide `success`.",
        "",
        "## Outcomes",
        "",
        *_outcome_lines(summary, wilson_interval),
        "",
    ]
    if labels:
        lines += ["## Labels", "", *_label_lines(labels), ""]
        agreement = agreement_lines(run_dir)
        if agreement:
            lines += ["## Agreement", "", *agreement, ""]
    if "golden" in data_files:
        lines += ["## Golden set", "", *_golden_lines(Path(run_dir) / "golden"), ""]
    lines += [
        "## Persona sources and licences",
        "",
        *persona_sources(personas),
        "",
        "## Configs and fields",
        "",
        "- `episodes`: `episode_id`, `persona_id`, `scenario_id`, `trial`, `seed`, `persona` and "
        "`scenario` (JSON), `messages` (role, content, tool calls as JSON, latency), `outcome` "
        "(status, reason, failed checks), `success`, `n_turns`, `usage` (model calls, tokens, "
        "cost), `duration_s`, `user`, `target`, `created_at`, `simulator_faults` (kind, turn, "
        "evidence: where the simulated user, not the agent, went wrong).",
    ]
    if LABELS in data_files:
        lines.append(
            "- `labels`: one row per label: `episode_id`, `criterion`, `turn_index`, "
            "`tool_call_index`, `value`, `score`, `passed`, `rationale`, `labeler`, "
            "`labeler_kind` (rule, judge or human), `rubric`, `created_at`."
        )
    if "golden" in data_files:
        lines.append(
            "- `golden`: the episode columns plus the merged `labels` and a `passed_<criterion>` "
            "column per episode-level criterion, in train / validation / test splits."
        )
    lines += [
        "",
        "## Synthetic data and limitations",
        "",
        "Every conversation is synthetic: the user is a simulator playing a written persona, not "
        "a person. Simulated users are more regular, more patient with the format and less "
        "surprising than real ones; rates measured here say how the agent handles these personas "
        "and scenarios, not how it will do on real traffic. Rule labels check phrases, tools and "
        "outcomes, not meaning; judge labels are only as good as their measured agreement with "
        "people. Small groups give wide confidence intervals.",
        "",
        "## How to load",
        "",
        "```python",
        "import datasets",
        f'episodes = datasets.load_dataset("{where}", "episodes", split="train")',
        *(
            [f'labels = datasets.load_dataset("{where}", "labels", split="train")']
            if LABELS in data_files
            else []
        ),
        *(
            [f'golden = datasets.load_dataset("{where}", "golden")']
            if "golden" in data_files
            else []
        ),
        "```",
        "",
        f"Licence: `{license}`.",
        "",
    ]
    return "\n".join(lines)


def _outcome_lines(summary: dict[str, Any], wilson: Any) -> list[str]:
    rated, successes = summary["rated"], summary["successes"]
    lines = ["| outcome | episodes |", "|---|---|"]
    lines += [f"| {status} | {n} |" for status, n in summary["by_status"].items()]
    lines.append("")
    if rated:
        low, high = wilson(successes, rated)
        excluded = ", ".join(s.value for s in NOT_AGENT_FAULT)
        lines.append(
            f"Success rate: **{successes / rated:.1%}** ({successes} of {rated}; 95% Wilson "
            f"interval {low:.1%}–{high:.1%}), leaving out episodes that ended in {excluded} "
            "(not the agent's fault)."
        )
    if summary["per_persona"]:
        lines += ["", "| persona | episodes | success rate |", "|---|---|---|"]
        lines += [
            f"| `{row['persona_id']}` | {row['n']} | {row['goal_rate']:.0%} |"
            for row in summary["per_persona"]
        ]
    return lines


def _label_lines(labels: Sequence[Any]) -> list[str]:
    by_criterion: dict[str, list[Any]] = defaultdict(list)
    for label in labels:
        by_criterion[label.criterion].append(label)
    rubrics = sorted({label.rubric for label in labels if label.rubric})
    lines = [
        f"{len(labels)} labels on {len(by_criterion)} criteria. Rubrics: "
        f"{', '.join(f'`{r}`' for r in rubrics) or 'none (rule checks only)'}.",
        "",
        "| criterion | labels | passed | labelers |",
        "|---|---|---|---|",
    ]
    for criterion, rows in sorted(by_criterion.items()):
        judged = [r.passed for r in rows if r.passed is not None]
        passed = f"{sum(judged) / len(judged):.0%} of {len(judged)}" if judged else "n/a"
        kinds = Counter(r.labeler_kind for r in rows)
        who = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        lines.append(f"| `{criterion}` | {len(rows)} | {passed} | {who} |")
    return lines


def _golden_lines(golden_dir: Path) -> list[str]:
    order = {"train": 0, "validation": 1, "test": 2}
    files = sorted(
        (golden_dir / "data").glob("*.parquet"),
        key=lambda p: (order.get(p.name.split("-")[0], 3), p.name),
    )
    lines = ["| split | episodes |", "|---|---|"]
    passed: dict[str, list[bool]] = defaultdict(list)
    for path in files:
        table = pq.read_table(path)
        lines.append(f"| {path.name.split('-')[0]} | {table.num_rows} |")
        for name in table.column_names:
            if name.startswith("passed_"):
                passed[name] += [v for v in table[name].to_pylist() if v is not None]
    if passed:
        lines += ["", "Episodes passing each criterion in the golden set:", ""]
        lines += [
            f"- `{name.removeprefix('passed_')}`: {sum(v) / len(v):.0%} of {len(v)}"
            for name, v in sorted(passed.items())
            if v
        ]
    return lines
