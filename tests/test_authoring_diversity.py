"""Persona stats on planted sets with known answers, and `simulate personas stats`."""

from __future__ import annotations

import itertools
import json
import random

import pytest
from click.testing import CliRunner
from test_cli import simulate_cli

from simulate.authoring.diversity import (
    description_stats,
    distinct_n,
    near_duplicates,
    pair_coverage,
    persona_levels,
    persona_stats,
    shingles,
)
from simulate.authoring.personas import generate_personas, trait_axes
from simulate.cli import cli
from simulate.loader import write_yaml
from simulate.schema import Persona

TWENTY = "the customer ordered a blue kettle last week and it arrived broken so now she wants"
TWENTY += " her money back today"


def persona(pid: str, description: str = "", source: str | None = None, **traits) -> Persona:
    custom = traits.pop("custom", {})
    return Persona(
        id=pid,
        name=pid.title(),
        description=description,
        traits={**traits, "custom": custom},
        source=source,
        license="MIT" if source else None,
    )


PLANTED = [
    persona("a", "a b c", source="hand", patience="low", tone="calm", custom={"device": "mobile"}),
    persona("b", "a b d", source="hand", patience="high", tone="calm"),
    persona("c", "", patience="low", tone="angry", custom={"device": "desktop"}),
]


def test_levels_per_axis_are_counted_and_unseen_built_in_levels_show_zero():
    axes = persona_stats(PLANTED).model_dump()["axes"]
    assert axes["patience"] == {"low": 2, "medium": 0, "high": 1}
    assert axes["tone"] == {"calm": 2, "friendly": 0, "frustrated": 0, "angry": 1, "anxious": 0}
    assert axes["language"] == {"en": 3} and axes["typo_rate"] == {"0.0": 3}
    assert axes["device"] == {"mobile": 1, "desktop": 1}
    assert persona_levels(PLANTED[0])["device"] == "mobile"


def test_pair_coverage_counts_pairs_of_levels_seen_over_varied_axes():
    coverage = persona_stats(PLANTED).model_dump()["pair_coverage"]
    # patience {low, high} x tone {calm, angry} x device {mobile, desktop}: 3 axis pairs x 4.
    assert coverage["axes"] == ["patience", "tone", "device"]
    assert coverage["total"] == 12
    held = {
        ("patience=low", "tone=calm"),
        ("patience=high", "tone=calm"),
        ("patience=low", "tone=angry"),
        ("patience=low", "device=mobile"),
        ("patience=low", "device=desktop"),
        ("tone=calm", "device=mobile"),
        ("tone=angry", "device=desktop"),
    }
    assert coverage["covered"] == len(held)
    assert coverage["share"] == pytest.approx(7 / 12)
    assert "patience=high & tone=angry" in coverage["missing"]
    assert "patience=high & device=mobile" in coverage["missing"]  # b has no device
    assert len(coverage["missing"]) == 5


def test_a_constant_set_has_no_pairs_to_cover():
    same = [persona("a"), persona("b")]
    assert pair_coverage([persona_levels(p) for p in same]).share is None


def test_distinct_n_is_unique_over_all_ngrams():
    assert distinct_n(["a b c", "a b d"], 1) == pytest.approx(4 / 6)
    assert distinct_n(["a b c", "A, b! d"], 2) == pytest.approx(3 / 4)
    assert distinct_n(["one"], 2) is None
    texts = persona_stats(PLANTED).model_dump()["descriptions"]
    assert texts["empty"] == 1
    assert texts["distinct_1"] == pytest.approx(4 / 6)


def test_near_duplicates_are_pairs_at_or_above_the_jaccard_threshold():
    words = TWENTY.split()
    assert len(words) == 20
    one_word_changed = " ".join([*words[:-1], "soon"])  # 17 of 19 shingles shared: 0.89
    two_changed = " ".join([*words[:-2], "a", "refund"])  # 16 of 20: 0.8, on the threshold
    middle_changed = " ".join([*words[:10], "green", *words[11:]])  # 15 of 21: 0.71
    texts = [TWENTY, one_word_changed, two_changed, middle_changed, "something else entirely"]
    found = near_duplicates(["t", "one", "two", "mid", "else"], texts)
    assert [(a, b) for a, b, _ in found] == [("t", "one"), ("t", "two"), ("one", "two")]
    assert found[0][2] == pytest.approx(17 / 19, abs=1e-4)
    assert found[1][2] == pytest.approx(0.8)
    assert near_duplicates(["t", "mid"], [TWENTY, middle_changed], threshold=0.7)
    stats = description_stats(["t", "one", "e"], [TWENTY, one_word_changed, ""]).model_dump()
    assert stats["near_duplicates"]["pairs"] == 1 and stats["empty"] == 1


def test_the_shingle_index_finds_what_comparing_every_pair_finds():
    rng = random.Random(0)
    vocabulary = ["calm", "angry", "kettle", "refund"]
    texts = [" ".join(rng.choices(vocabulary, k=rng.randint(2, 7))) for _ in range(80)]
    ids = [str(i) for i in range(80)]
    expected = []
    for i, j in itertools.combinations(range(80), 2):
        a, b = shingles(texts[i]), shingles(texts[j])
        if a and b and len(a & b) / len(a | b) >= 0.5:
            expected.append((ids[i], ids[j]))
    found = [(a, b) for a, b, _ in near_duplicates(ids, texts, threshold=0.5)]
    assert sorted(found) == sorted(expected) and len(expected) >= 10


def test_sources_and_licences_are_counted():
    stats = persona_stats(PLANTED).model_dump()
    assert stats["personas"] == 3
    assert stats["sources"] == {"hand": 2, "(none)": 1}
    assert stats["licenses"] == {"MIT": 2, "(none)": 1}


def test_generated_pairwise_personas_show_full_coverage(tmp_path):
    personas = generate_personas(trait_axes(["en_US", "de_DE"]), 30, seed=0)
    stats = persona_stats(personas).model_dump()
    assert stats["pair_coverage"]["share"] == 1.0
    assert stats["pair_coverage"]["axes"] == [
        "patience",
        "expertise",
        "tone",
        "verbosity",
        "politeness",
        "typo_rate",
        "language",
        "intent",
    ]
    write_yaml(personas, tmp_path / "p" / "generated.yaml", header="h")
    result = CliRunner().invoke(cli, ["personas", "stats", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert "30 personas" in result.output
    assert "level pairs covered: " in result.output and "(100.0%)" in result.output
    assert "near-duplicate pairs (Jaccard of word 3-grams >= 0.8): " in result.output


def test_cli_stats_json_end_to_end(tmp_path):
    write_yaml(PLANTED, tmp_path / "planted.yaml", header="planted")
    done = simulate_cli("personas", "stats", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert stats == persona_stats(PLANTED).model_dump(mode="json")


def test_cli_stats_of_a_missing_folder_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(cli, ["personas", "stats", str(tmp_path / "none")])
    assert str(result.exception).startswith("no such file or folder:")
