"""Dataset cards: the `README.md` a run or a golden set carries to the Hugging Face Hub.

A card is the Hub's YAML metadata (configs and their data files, licence, task categories,
language, size category, `synthetic` tag, features per config) followed by prose built from the
run folder: the agent and simulated user, the models, counts and outcome rates, persona sources
and licences, labels and agreement, the limits of synthetic data, and how to load it. Cards are
parsed back with `huggingface_hub.DatasetCard` before they are written, so a bad card fails here,
not on the Hub.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from simulate.errors import ConfigError
from simulate.schema import (
    NOT_AGENT_FAULT,
    Label,
    LabelerKind,
    Manifest,
    MergedLabel,
    RecordedConfig,
    ReferenceRecord,
    SourceRecord,
)
from simulate.store import (
    EPISODES,
    LABELS,
    RunFolder,
    episode_features,
    label_features,
    parquet_bytes,
    read_parquet,
)

if TYPE_CHECKING:
    import datasets
    from huggingface_hub import DatasetCard

    from simulate.label.agreement import AgreementReport
    from simulate.report.summary import RunSummary

#: The licence a card gets when the user names none and no persona source restricts it.
DEFAULT_LICENSE = "cc-by-4.0"

#: Data files of a pushed dataset: config -> split -> glob inside the repository.
DataFiles = Mapping[str, Mapping[str, str]]

_NON_COMMERCIAL = re.compile(r"(?i)(^|[-_ ])nc([-_ ]|$)|non-?commercial")

TAGS = ["synthetic", "simulate", "conversational-agents", "evaluation"]


def _md(text: object) -> str:
    """User text (a run name, a persona source) for a card's prose: one line, with HTML and
    Markdown syntax escaped, so it can add no heading, list, front matter, link or tag."""
    one_line = html.escape(" ".join(str(text).split()), quote=False)
    inline = re.sub(r"([\\`*_\[\]|])", r"\\\1", one_line)
    return re.sub(r"^([#>+\-=]|\d+[.)])", r"\\\1", inline)


def _title(text: str) -> str:
    """A card's `pretty_name`: one line of plain text (no markup for the Hub to render)."""
    return re.sub(r"[<>]", "", " ".join(text.split()))


def _code(text: object) -> str:
    """User text as an inline code span: one line, without a backtick to close it early."""
    return "`" + " ".join(str(text).split()).replace("`", "'") + "`"


KIND_NAMES = {
    "adjudicator": "adjudicators",
    "human": "people",
    "judge": "LLM judges",
    "rule": "rule checks",
}


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
        f"- {_md(source)}{f' ({_md(licence)})' if licence else ''}: {n} personas"
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


def agreement_lines(report: AgreementReport) -> list[str]:
    """An agreement report (`simulate.label.agreement`) as markdown lines for a card."""
    lines = []
    for section in report.criteria:
        named: list[tuple[str, Any]] = []
        if section.agreement:
            figures = section.agreement
            named = [
                ("Cohen's kappa", figures.cohen_kappa),
                ("Fleiss' kappa", figures.fleiss_kappa),
                *(
                    (f"Krippendorff's alpha ({level})", value)
                    for level, value in figures.krippendorff_alpha.items()
                ),
            ]
        parts = [f"{name} {_figure(value)}" for name, value in named if value]
        if section.people is not None:
            people = section.people
            parts.append(
                f"people only (the ceiling): kappa {_figure(people.kappa)}, "
                f"AC1 {_figure(people.ac1)}"
            )
        parts += [
            f"`{row.labeler}` vs people: accuracy {_figure(row.accuracy)}, "
            f"true-positive rate {_figure(row.tpr)}, "
            f"true-negative rate {_figure(row.tnr)}"
            + (
                f", kappa {_figure(row.agreement.kappa)}, AC1 {_figure(row.agreement.ac1)}"
                if row.agreement
                else ""
            )
            + (
                f"; its pass rate {_figure(row.pass_rate)} raw, "
                f"{_figure(row.ppi_pass_rate)} corrected by people's labels (PPI++)"
                if row.ppi_pass_rate is not None
                else ""
            )
            for row in section.vs_people
        ]
        if parts:
            lines.append(f"- `{section.criterion}`: " + "; ".join(parts))
    return lines


def _figure(value: Any) -> str:
    """A figure with `value`, `low`, `high` and `n`: `0.72 [0.55, 0.89] (n=40)`, or
    `n/a (n=0)`."""
    if value is None or value.value is None:
        return f"n/a (n={value.n if value is not None else 0})"
    interval = f" [{value.low:.2f}, {value.high:.2f}]" if value.low is not None else ""
    return f"{value.value:.2f}{interval} (n={value.n})"


def realism_lines(run_dir: str | Path) -> list[str]:
    """The realism figures of `RUN/realism.json` as markdown lines; none when it is absent."""
    from simulate.report.realism import load_realism

    report = load_realism(run_dir)
    if report is None:
        return []
    auc = report.discriminator.auc
    reference = report.reference
    origin = (
        f", {reference.source} (licence `{reference.license or 'unspecified'}`)"
        if reference.source
        else ""
    )
    lines = [
        f"Measured with `simulate realism` ({report.mode}) against {reference.conversations} "
        f"human conversations{origin}. A classifier trained to tell the simulated users' turns "
        f"from people's (TF-IDF n-grams, logistic regression, folds grouped by conversation) "
        f"reaches ROC AUC **{_figure(auc)}** on {auc.n} user turns "
        "(0.5: indistinguishable; 1.0: always told apart).",
        "",
        "| measure | simulated | people | distance |",
        "|---|---|---|---|",
    ]
    for m in report.measures:
        sides = [_figure(f) if f else "" for f in (m.simulated, m.human)]
        distance = (
            f"{(m.distance_kind or '').replace('_', ' ')} {_figure(m.distance)}"
            if m.distance
            else ""
        )
        lines.append(f"| {m.name} | {sides[0]} | {sides[1]} | {distance} |")
    words = [g.feature for g in report.discriminator.giveaways if g.kind == "word"][:8]
    if words:
        lines += [
            "",
            "What gives the simulated users away most: " + ", ".join(f"`{w}`" for w in words) + ".",
        ]
    return lines


def choose_license(
    license: str | None, personas: Sequence[dict[str, Any]]
) -> tuple[str, list[str]]:
    """The card's licence and warnings: the user's choice, else the personas' non-commercial
    licence when exactly one restricts them, else `DEFAULT_LICENSE`."""
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


_LICENSE = re.compile(r"^[a-z0-9][a-z0-9.+\-]*$")


def check_license(license_id: str) -> str:
    """A Hub licence id (`cc-by-4.0`, `apache-2.0`, `mit`, `other`...), or a ConfigError."""
    if not _LICENSE.match(license_id):
        raise ConfigError(
            f"--license {license_id!r} is not a Hub licence id (lowercase, like cc-by-4.0, "
            "apache-2.0, mit or other)"
        )
    return license_id


# --- run cards --------------------------------------------------------------------------------


def render_run_card(
    run_dir: str | Path,
    data_files: DataFiles,
    *,
    repo_id: str | None = None,
    license: str | None = None,
    agreement: Sequence[str] = (),
) -> RunCard:
    """The card of a run pushed with the configs in ``data_files`` (`episodes`, `labels`, `golden`).

    Args:
        run_dir: The run folder.
        data_files: Config -> split -> glob of its files in the repository.
        repo_id: `owner/name` on the Hub, for the loading example (a local path when None).
        license: A Hub licence id; None picks one (see `choose_license`).
        agreement: Agreement figures as markdown lines (`agreement_lines`), when measured.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    folder = RunFolder.open(run_dir)
    manifest = folder.manifest
    table = folder.table(EPISODES, ["persona_id", "scenario_id", "persona", "usage", "trial"])
    personas = _personas(table)
    chosen, warnings = choose_license(license, personas)
    labels = folder.labels() if LABELS in data_files else []
    n_episodes = table.num_rows
    languages = _languages(manifest.config, personas)
    data = DatasetCardData(
        pretty_name=_title(f"Simulate run: {manifest.run_id or folder.path.name}"),
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
    _add_configs(data, data_files, folder)
    prose = _run_prose(
        folder, table, personas, labels, data_files, repo_id, chosen, warnings, agreement
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
    text = _replace_section(card.text, "How to load", _golden_loading(repo_id))
    return DatasetCard(f"---\n{card.data.to_yaml()}\n---\n{text}")


def _replace_section(text: str, heading: str, body: Sequence[str]) -> str:
    """``text`` with the code block of its `## heading` section replaced by ``body``."""
    lines = text.split("\n")
    start = lines.index(f"## {heading}")
    opened = lines.index("```python", start)
    closed = lines.index("```", opened + 1)
    return "\n".join([*lines[:opened], *body, *lines[closed + 1 :]])


def _config_entry(name: str, splits: Mapping[str, str], default: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "config_name": name,
        "data_files": [{"split": split, "path": glob} for split, glob in splits.items()],
    }
    if default:
        entry["default"] = True
    return entry


def _add_configs(data: Any, data_files: DataFiles, folder: RunFolder) -> None:
    """`configs` and `dataset_info` (features and split sizes) for each pushed config."""
    from datasets.info import DatasetInfo
    from datasets.splits import SplitDict, SplitInfo

    data.configs = [
        _config_entry(name, splits, default=name == EPISODES) for name, splits in data_files.items()
    ]
    infos = []
    for name in data_files:
        if name == "golden":
            golden = _golden_info(folder.path / "golden")
            if golden:
                infos.append(
                    {
                        "config_name": "golden",
                        **{k: v for k, v in golden.items() if k != "config_name"},
                    }
                )
            continue
        kind = EPISODES if name == EPISODES else LABELS
        rows = folder.count(kind)
        size = sum(parquet_bytes(p) for p in folder.shards(kind))
        features = episode_features() if kind == EPISODES else label_features()
        info = DatasetInfo(features=features, splits=SplitDict(), dataset_size=size)
        info.splits.add(SplitInfo(name="train", num_bytes=size, num_examples=rows))
        infos.append({"config_name": name, **info._to_yaml_dict()})
    data.dataset_info = infos


def _golden_info(golden_dir: Path) -> dict[str, Any] | None:
    from huggingface_hub import DatasetCard

    readme = golden_dir / "README.md"
    if not readme.is_file():
        return None
    infos = DatasetCard.load(readme).data.get("dataset_info")
    return (infos[0] if isinstance(infos, list) and infos else infos) or None


def _personas(table: pa.Table) -> list[dict[str, Any]]:
    by_id = dict(zip(table["persona_id"].to_pylist(), table["persona"].to_pylist(), strict=True))
    return [json.loads(text) for _, text in sorted(by_id.items())]


def _languages(config: RecordedConfig, personas: Sequence[dict[str, Any]]) -> list[str]:
    if config.user == "agenda":  # the offline user speaks English only
        return ["en"]
    return sorted({p.get("traits", {}).get("language", "en").split("-")[0] for p in personas})


def _annotation_creators(labels: Sequence[Any]) -> list[str]:
    kinds = {label.labeler_kind for label in labels}
    creators = {
        "expert-generated" if k in ("human", "adjudicator") else "machine-generated" for k in kinds
    }
    return sorted(creators) or ["no-annotation"]


def _usage_lines(summary: RunSummary) -> list[str]:
    """The card's line on model calls, tokens and cost per role (the agent's share included)."""
    if not summary.usage_by_role:
        return []
    parts = []
    for row in summary.usage_by_role:
        cost = "cost unknown" if row.cost_usd is None else f"${row.cost_usd:.4f}"
        parts.append(
            f"{row.role}: {row.calls} calls, {row.prompt_tokens} prompt + "
            f"{row.completion_tokens} completion tokens, {cost}"
        )
    line = f"- **Model usage** (summed over the episodes, at list prices): {'; '.join(parts)}"
    run_wide = summary.agent_calls_run_wide
    if run_wide:
        line += f"; plus {run_wide} agent calls not attributed to an episode"
    return [line]


def _run_prose(
    folder: RunFolder,
    table: pa.Table,
    personas: Sequence[dict[str, Any]],
    labels: Sequence[Any],
    data_files: DataFiles,
    repo_id: str | None,
    license: str,
    warnings: Sequence[str],
    agreement: Sequence[str],
) -> str:
    from simulate.report.summary import summarize_run
    from simulate.store import redact

    manifest = folder.manifest
    config = manifest.config
    run_id = manifest.run_id or folder.path.name
    target = redact(config.target or "unknown")
    user = redact(config.user or "unknown")
    summary = summarize_run(folder.path)
    models = sorted(
        {f"{u['role']} {_code(u['model'])}" for usage in table["usage"].to_pylist() for u in usage}
        | {
            f"judge {_code(label.labeler.removeprefix('judge:'))}"
            for label in labels
            if label.labeler_kind == "judge"
        }
    )
    n_personas = len(set(table["persona_id"].to_pylist()))
    n_scenarios = len(set(table["scenario_id"].to_pylist()))
    where = repo_id or str(folder.path.resolve())
    restricted = non_commercial_licences(personas)
    lines = [f"# Simulate run: {_md(run_id)}", ""]
    if restricted:
        lines += [
            f"> **Licence notice**: some personas come from sources under "
            f"{', '.join(restricted)}, which forbids commercial use; that restriction carries "
            f"over to the conversations built from them. This card's licence: `{license}`.",
            "",
        ]
    lines += [
        "Synthetic conversations between simulated users and the agent under test "
        f"{_code(target)}, "
        "recorded with Simulate. One row per conversation (episode) in the `episodes` config"
        + (", one row per label in `labels`" if LABELS in data_files else "")
        + (", the labeled golden set with its splits in `golden`" if "golden" in data_files else "")
        + ".",
        "",
        "## How it was made",
        "",
        f"- **Agent under test**: {_code(target)}",
        f"- **Simulated user**: {_code(user)}"
        + (" (offline, scripted from the scenario's agenda)" if user == "agenda" else ""),
        f"- **Models**: {', '.join(models) if models else 'none (offline user, agent and checks)'}",
        *_usage_lines(summary),
        f"- **Personas × scenarios**: {n_personas} personas × {n_scenarios} scenarios × "
        f"{config.trials or 1} trial(s) → {table.num_rows} episodes "
        f"(seed {config.seed or 0}, at most {config.max_turns or '?'} agent turns)",
        f"- **Software**: simulate {manifest.environment.get('simulate', '?')}",
        "",
        "Each persona is a written character (traits such as patience, expertise and tone); each "
        "scenario says what the user wants, what they know and what counts as success. The "
        "simulated user plays one persona through one scenario per episode; the episode ends when "
        "the goal is reached, the user gives up, or the turn limit is hit, and the scenario's "
        "checks decide `success`.",
        "",
        "## Outcomes",
        "",
        *_outcome_lines(summary),
        "",
    ]
    realism = realism_lines(folder.path)
    if realism:
        lines += ["## Realism against people", "", *realism, ""]
    if labels:
        lines += ["## Labels", "", *_label_lines(labels), ""]
        if agreement:
            lines += ["## Agreement", "", *agreement, ""]
    if "golden" in data_files:
        lines += ["## Golden set", "", *_golden_lines(folder.path / "golden"), ""]
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
            "`labeler_kind` (rule, judge, human or adjudicator), `rubric`, `created_at`."
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


def _outcome_lines(summary: RunSummary) -> list[str]:
    rate = summary.rate
    lines = ["| outcome | episodes |", "|---|---|"]
    lines += [f"| {status} | {n} |" for status, n in summary.by_status.items()]
    lines.append("")
    if rate.value is not None and rate.interval:
        low, high = rate.interval
        excluded = ", ".join(s.value for s in NOT_AGENT_FAULT)
        lines.append(
            f"Success rate: **{rate.value:.1%}** ({rate.count} of {rate.n}; 95% Wilson "
            f"interval {low:.1%}–{high:.1%}), leaving out episodes that ended in {excluded} "
            "(not the agent's fault)."
        )
        lines += [
            "",
            "Which question an interval answers (95%):",
            "",
            f"- **The same personas and scenarios, played again** (suite: trial-to-trial "
            f"variation within each persona × scenario cell): {_interval(summary.rate_suite)}",
            f"- **Similar users and tasks** (population: personas and scenarios as samples, a "
            f"two-way cluster-robust interval): {_interval(summary.rate_population)}",
            "- The Wilson interval above treats every episode as independent: too wide for the "
            "first question and too narrow for the second when cells differ.",
        ]
    if summary.per_persona:
        lines += ["", "| persona | episodes | success rate |", "|---|---|---|"]
        lines += [
            f"| `{row.persona_id}` | {row.n} | {row.goal_rate:.0%} |" for row in summary.per_persona
        ]
    return lines


def _interval(rate: Any) -> str:
    """`71.3%–89.8%`, or why there is none."""
    if rate.interval is None:
        return f"n/a ({rate.reason})"
    return f"{rate.interval[0]:.1%}–{rate.interval[1]:.1%}"


def _label_lines(labels: Sequence[Any]) -> list[str]:
    by_criterion: dict[str, list[Any]] = defaultdict(list)
    for label in labels:
        by_criterion[label.criterion].append(label)
    rubrics = sorted({label.rubric for label in labels if label.rubric})
    lines = [
        f"{len(labels)} labels on {len(by_criterion)} criteria. Rubrics: "
        f"{', '.join(_code(r) for r in rubrics) or 'none (rule checks only)'}.",
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
        table = read_parquet(path)
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


# --- golden cards ------------------------------------------------------------------------------


@dataclass
class GoldenFacts:
    """What a golden card tells of its set beyond the labels: splits, disputes, agreement."""

    dataset: datasets.DatasetDict
    """The set's splits."""
    disputed: int
    kept_disputed: bool
    unlabeled: int
    """Episodes of the run with no label kept."""
    agreement: list[str] = field(default_factory=list)
    """Agreement figures as markdown lines (`agreement_lines`)."""

    @property
    def splits(self) -> dict[str, int]:
        return {name: ds.num_rows for name, ds in self.dataset.items()}


def golden_card(
    facts: GoldenFacts,
    manifest: Manifest,
    labels: Sequence[Label],
    kept: Sequence[MergedLabel],
    *,
    precedence: Sequence[LabelerKind],
    fractions: Sequence[float],
    seed: int,
    license: str,
    features: datasets.Features,
    episodes: datasets.Dataset,
    repo_id: str | None = None,
) -> DatasetCard:
    """A golden set's card: the Hub's YAML metadata, then how the set was made and how to
    load it (from ``repo_id`` on the Hub, else from the folder)."""
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    result = facts
    run_id = manifest.run_id or "run"
    config = manifest.config
    n_episodes = sum(result.splits.values())
    by_id = dict(zip(episodes["persona_id"], episodes["persona"], strict=True))
    personas = [json.loads(text) for _, text in sorted(by_id.items())]
    languages = _languages(config, personas)
    data = DatasetCardData(
        pretty_name=_title(f"Simulate golden set: {run_id}"),
        license=license,
        language=languages,
        multilinguality="monolingual" if len(languages) == 1 else "multilingual",
        size_categories=size_category(n_episodes),
        task_categories=["text-generation", "text-classification"],
        task_ids=["dialogue-generation", "conversational"],
        annotations_creators=sorted(
            {
                "expert-generated" if m.kind in ("human", "adjudicator") else "machine-generated"
                for m in kept
            }
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
    prose = _golden_prose(
        result,
        manifest,
        labels,
        kept,
        personas,
        precedence,
        fractions,
        seed,
        license,
        episodes,
        repo_id,
    )
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{prose}")  # parses: checks the YAML


def _golden_prose(
    result: GoldenFacts,
    manifest: Manifest,
    labels: Sequence[Label],
    kept: Sequence[MergedLabel],
    personas: Sequence[dict[str, Any]],
    precedence: Sequence[LabelerKind],
    fractions: Sequence[float],
    seed: int,
    license: str,
    episodes: datasets.Dataset,
    repo_id: str | None,
) -> str:
    """The card's markdown: how the set was made, its labels, splits, fields, limits, loading."""
    import datasets

    config = manifest.config
    run_id = manifest.run_id or "run"
    models = sorted(
        {f"{u['role']} {_code(u['model'])}" for usage in episodes["usage"] for u in usage}
        | {
            f"judge {_code(label.labeler.removeprefix('judge:'))}"
            for label in labels
            if label.labeler_kind == "judge"
        }
    )
    n_personas = len(set(episodes["persona_id"]))
    n_scenarios = len(set(episodes["scenario_id"]))
    order = " > ".join(KIND_NAMES[k] for k in precedence)
    rubrics = sorted({label.rubric for label in labels if label.rubric})
    lines = [
        f"# Simulate golden set: {_md(run_id)}",
        "",
        f"Synthetic conversations between simulated users and the agent under test "
        f"`{config.target or 'unknown'}`, recorded and labeled with "
        "Simulate and merged into a golden set for evaluations and "
        "regression tests. One row per conversation (episode).",
        "",
        "## How it was made",
        "",
        f"- **Agent under test**: `{config.target or 'unknown'}`",
        f"- **Simulated user**: `{config.user or 'unknown'}`",
        f"- **Models**: {', '.join(models) if models else 'none (offline user, agent and checks)'}",
        f"- **Personas × scenarios**: {n_personas} personas × {n_scenarios} scenarios × "
        f"{config.trials or 1} trial(s) → {len(episodes)} episodes in run {_code(run_id)} "
        f"(seed {config.seed or 0}, at most {config.max_turns or '?'} agent turns)",
        f"- **Software**: simulate {manifest.environment.get('simulate', '?')}, "
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
        f"Rubrics: {', '.join(_code(r) for r in rubrics) or 'none'}.",
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
        "(adjudicator, human, judge or rule: who decided), `source` (the labelers behind the "
        "value), `disputed`.",
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
        *_golden_loading(repo_id),
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


def _golden_loading(repo_id: str | None) -> list[str]:
    """The card's loading example: from the Hub repository, else from this folder."""
    load = (
        f'datasets.load_dataset("{repo_id}", "golden")'
        if repo_id
        else 'datasets.load_dataset("path/to/golden")   # this folder, or its Hub repo id'
    )
    return [
        "```python",
        "import datasets",
        f"golden = {load}",
        'test = golden["test"] if "test" in golden else golden["train"]',
        'failed = test.filter(lambda row: not row["success"])',
        "```",
    ]


def _labeling_lines(manifest: Manifest) -> list[str]:
    """Judges and rule limits from the manifest's record of labeling sessions, when present."""
    sessions = manifest.labeling
    judges = sorted(
        {f"{_code(s.judge)} ({s.samples or 1} sample(s) per unit)" for s in sessions if s.judge}
    )
    limits = next((s.limits for s in reversed(sessions) if s.limits), None)
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


# --- reference sets -----------------------------------------------------------------------------


def render_reference_card(reference_dir: str | Path) -> str:
    """The card of a reference set (`simulate import conversations`): where the conversations
    come from, their licence and the attribution the licence asks for, how they were changed."""
    manifest = RunFolder.open(reference_dir).manifest
    source = manifest.source or SourceRecord()
    counts = manifest.reference or ReferenceRecord()
    licence = source.license or "unspecified"
    lines = [
        f"# Reference conversations: {_md(manifest.run_id or Path(reference_dir).name)}",
        "",
        f"Real conversations imported by `simulate import conversations` from "
        f"{_code(source.file or '?')} ({_md(source.format or '?')}), to measure how close "
        "simulated users come to people (`simulate realism`).",
        "",
        f"- **Source**: {_md(source.source or '?')}",
        f"- **Licence**: `{licence}`",
        f"- **Conversations**: {counts.conversations} ({counts.user_messages} user messages)",
        f"- **PII-looking strings masked**: {'yes' if counts.pii_masked else 'no'}",
        f"- **Tasks drafted from the conversations themselves**: "
        f"{counts.tasks_drafted_from_conversations}",
        "",
    ]
    if source.attribution:
        lines += ["## Attribution", "", _md(source.attribution), ""]
    lines += [
        "Rows have the episode schema of a Simulate run: `messages` holds the conversation, "
        "`scenario` the task the person had (or one drafted from the conversation), `persona` "
        "the source and licence; the outcome is `imported`.",
        "",
        f"Licence: `{licence}`; keep this card with the data and anything derived from it.",
        "",
    ]
    return "\n".join(lines)
