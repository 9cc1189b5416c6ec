"""Dataset cards of pushed runs: the Hub's YAML metadata, the prose, licences, no secrets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard

from simulate.card import (
    choose_license,
    golden_card_for_hub,
    non_commercial_licences,
    render_run_card,
)
from simulate.errors import ConfigError
from simulate.hub import prepare_upload
from simulate.report.summary import summarize_run
from simulate.store import read_manifest, write_manifest
from tests.test_hub import labeled_demo_run

ALL = {
    "episodes": {"train": "data/episodes/*.parquet"},
    "labels": {"train": "data/labels/*.parquet"},
    "golden": {s: f"data/golden/{s}-*.parquet" for s in ("train", "validation", "test")},
}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return labeled_demo_run(tmp_path_factory.mktemp("demo") / "run")


@pytest.fixture
def run(demo_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(demo_run, tmp_path / "run"))


def set_persona_licence(run: Path, persona_id: str, source: str, licence: str) -> None:
    """Rewrite the run's episodes so ``persona_id`` names a source and its licence."""
    for shard in sorted((run / "episodes").glob("*.parquet")):
        table = pq.read_table(shard)
        personas = []
        for text in table["persona"].to_pylist():
            persona = json.loads(text)
            if persona["id"] == persona_id:
                persona |= {"source": source, "license": licence}
            personas.append(json.dumps(persona))
        index = table.schema.get_field_index("persona")
        pq.write_table(table.set_column(index, "persona", pa.array(personas)), shard)


def test_card_metadata_has_configs_licence_tags_and_size(run: Path) -> None:
    made = render_run_card(run, ALL, repo_id="acme/sim")
    card = DatasetCard(str(made.card))  # parses back
    data = card.data.to_dict()

    assert data["license"] == "cc-by-4.0" == made.license
    assert "synthetic" in data["tags"]
    assert data["size_categories"] == ["n<1K"]
    assert data["language"] == ["en"]
    assert "text-generation" in data["task_categories"]
    configs = {c["config_name"]: c for c in data["configs"]}
    assert configs["episodes"]["default"] is True
    assert configs["episodes"]["data_files"] == [
        {"split": "train", "path": "data/episodes/*.parquet"}
    ]
    assert [f["split"] for f in configs["golden"]["data_files"]] == ["train", "validation", "test"]
    infos = {i["config_name"]: i for i in data["dataset_info"]}
    assert infos["episodes"]["splits"] == [
        {
            "name": "train",
            "num_bytes": infos["episodes"]["splits"][0]["num_bytes"],
            "num_examples": 108,
        }
    ]
    assert sorted(infos) == ["episodes", "golden", "labels"]


def test_card_prose_has_counts_rates_labels_and_loading(run: Path) -> None:
    text = render_run_card(run, ALL, repo_id="acme/sim").card.text
    summary = summarize_run(run).model_dump()
    rate = summary["successes"] / summary["rated"]

    assert f"**{rate:.1%}** ({summary['successes']} of {summary['rated']}" in text
    for status, n in summary["by_status"].items():
        assert f"| {status} | {n} |" in text
    assert "12 personas × 9 scenarios × 1 trial(s) → 108 episodes" in text
    assert "- **Agent under test**: `demo`" in text
    assert "| `must_not_mention` | 108 |" in text
    assert "## Synthetic data and limitations" in text
    assert 'datasets.load_dataset("acme/sim", "episodes", split="train")' in text
    assert 'datasets.load_dataset("acme/sim", "golden")' in text


def test_card_of_an_unlabeled_run_has_only_episodes(run: Path) -> None:
    shutil.rmtree(run / "labels")
    shutil.rmtree(run / "golden")

    upload = prepare_upload(run, repo_id="acme/sim")
    card = DatasetCard(upload.card)

    assert [c["config_name"] for c in card.data.configs] == ["episodes"]
    assert "## Labels" not in card.text and "## Golden set" not in card.text
    assert card.data.annotations_creators == ["no-annotation"]


def test_non_commercial_personas_set_the_licence_and_a_notice(run: Path) -> None:
    set_persona_licence(run, "alex_rowe", "PersonaHub (proj-persona)", "CC-BY-NC-SA-4.0")

    made = render_run_card(run, ALL)

    assert made.license == "cc-by-nc-sa-4.0"
    assert made.card.data.license == "cc-by-nc-sa-4.0"
    assert made.warnings == []
    assert "**Licence notice**" in made.card.text and "CC-BY-NC-SA-4.0" in made.card.text
    assert "- PersonaHub (proj-persona) (CC-BY-NC-SA-4.0): 1 personas" in made.card.text


def test_a_licence_that_drops_the_restriction_is_warned_about(run: Path) -> None:
    set_persona_licence(run, "alex_rowe", "PersonaHub", "CC-BY-NC-SA-4.0")

    made = render_run_card(run, ALL, license="mit")

    assert made.license == "mit"
    assert len(made.warnings) == 1 and "non-commercial" in made.warnings[0]
    assert "**Licence notice**" in made.card.text


def test_licence_choice() -> None:
    assert choose_license(None, []) == ("cc-by-4.0", [])
    assert choose_license("apache-2.0", [{"license": "CC-BY-4.0"}]) == ("apache-2.0", [])
    assert non_commercial_licences([{"license": "CC-BY-NC-4.0"}, {"license": "MIT"}]) == [
        "CC-BY-NC-4.0"
    ]
    with pytest.raises(ConfigError, match="--license 'CC BY' is not a Hub licence id"):
        choose_license("CC BY", [])


def test_card_never_carries_secrets(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_CardMustNotShowThis")
    manifest = read_manifest(run)
    manifest["config"]["target"] = "http://bob:hunter2@agent.local/chat?api_key=sk-live-123"
    manifest["config"]["user"] = "llm:openai:gpt-4o-mini"
    write_manifest(run, manifest)

    text = str(render_run_card(run, ALL, repo_id="acme/sim").card)

    for secret in ("hunter2", "sk-live-123", "hf_CardMustNotShowThis"):
        assert secret not in text
    assert "http://***@agent.local/chat?api_key=***" in text


def test_golden_card_for_hub_renames_the_config(run: Path) -> None:
    data_files = {"golden": ALL["golden"]}

    card = golden_card_for_hub(run / "golden", data_files, "acme/golden")

    assert card.data.configs == [
        {
            "config_name": "golden",
            "data_files": [
                {"split": s, "path": f"data/golden/{s}-*.parquet"}
                for s in ("train", "validation", "test")
            ],
            "default": True,
        }
    ]
    assert card.data.dataset_info[0]["config_name"] == "golden"
    assert "synthetic" in card.data.tags
    assert 'datasets.load_dataset("acme/golden", "golden")' in card.text


def test_persona_sources_and_run_names_cannot_inject_markdown_or_front_matter(run: Path) -> None:
    hostile = "<script>alert(1)</script>\n---\nlicense: mit\n---\n# Pwned [x](javascript:y)"
    set_persona_licence(run, "alex_rowe", hostile, "CC-BY-4.0\n## injected")
    manifest = read_manifest(run)
    manifest["run_id"] = "# run\n---\n<img src=x onerror=alert(1)>"
    write_manifest(run, manifest)

    text = str(render_run_card(run, ALL).card)

    assert text.count("\n---\n") == 1  # the card's own front matter closes once, nothing more
    assert "<script>" not in text and "<img" not in text
    assert "\n# Pwned" not in text and "\n## injected" not in text
    assert "&lt;script&gt;" in text and "\\[x\\](javascript:y)" in text
    assert DatasetCard(text).data.license == "cc-by-4.0"


def test_the_run_card_gives_both_intervals_and_says_which_question_each_answers(tmp_path):
    from test_report_figures import make_episode, write_planted_run

    from simulate.card import render_run_card
    from simulate.report.figures import build_report

    episodes = [
        make_episode(p, s, t, status="goal_reached" if (t + len(p + s)) % 3 else "gave_up")
        for p in ("ana", "bob", "cy")
        for s in ("refund", "bags")
        for t in range(3)
    ]
    run = write_planted_run(tmp_path / "run", episodes)
    text = render_run_card(run, {"episodes": {"train": "episodes/*.parquet"}}).card.text
    overall = build_report(run).overall
    suite, population = overall.goal_rate_suite, overall.goal_rate_population
    assert "The same personas and scenarios, played again" in text
    assert f"{suite.low:.1%}–{suite.high:.1%}" in text
    assert "Similar users and tasks" in text
    assert f"{population.low:.1%}–{population.high:.1%}" in text
