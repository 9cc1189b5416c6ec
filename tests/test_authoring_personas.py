"""Persona generation: covering arrays, determinism, locales, traits files, LLM enrichment
against the local OpenAI-compatible server, and the `simulate personas generate` command."""

from __future__ import annotations

import itertools
import re
from math import prod
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes.openai_server import FakeOpenAIServer
from test_cli import simulate_cli

from simulate.authoring.personas import (
    GENERATED_LICENSE,
    EnrichConfig,
    builtin_axes,
    covering_array,
    enrich_personas,
    generate_personas,
    pairwise_rows,
    plan_traits,
    read_traits,
    trait_axes,
)
from simulate.cli import cli
from simulate.errors import ConfigError, LLMError
from simulate.loader import load_personas, load_scenarios, write_yaml
from simulate.plan import build_plan
from simulate.schema import Status
from simulate.store import iter_episodes

DATA = Path(__file__).parent / "data"
TRAITS = DATA / "traits.yaml"
THREE = ["en_US", "de_DE", "ja_JP"]


def uncovered_pairs(rows: list[list[int]], levels: list[int]) -> set[tuple[int, int, int, int]]:
    """Pairs of levels of two columns that no row holds (empty for a covering array)."""
    wanted = {
        (i, a, j, b)
        for i, j in itertools.combinations(range(len(levels)), 2)
        for a in range(levels[i])
        for b in range(levels[j])
    }
    held = {(i, r[i], j, r[j]) for r in rows for i, j in itertools.combinations(range(len(r)), 2)}
    return wanted - held


# --- covering arrays --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("levels", "at_most"),
    [
        ([3] * 7, 20),  # full product 2187; the best known covering array has 15 rows
        ([2] * 10, 12),  # 1024; best known 6
        ([5, 4, 3, 3, 2, 2], 30),  # 1440; at least 20
        ([3, 3, 3, 5, 3, 3, 3, 3], 26),  # the built-in axes with three locales: 10935
        ([4] * 12, 40),  # 16.7 million; best known 21
        ([3, 3], 9),  # two columns: the full product is the only covering array
    ],
)
def test_pairwise_covers_every_pair_with_far_fewer_rows_than_the_product(levels, at_most):
    rows = covering_array(levels, seed=0)
    assert not uncovered_pairs(rows, levels)
    assert all(0 <= row[i] < n for row in rows for i, n in enumerate(levels))
    largest_pair = max(a * b for a, b in itertools.combinations(levels, 2))
    assert largest_pair <= len(rows) <= at_most
    assert len(rows) < prod(levels) or len(levels) == 2


def test_one_axis_gets_each_level_and_constant_axes_are_no_burden():
    assert covering_array([4], seed=1) == [[0], [1], [2], [3]]
    rows = covering_array([3, 1, 3, 1], seed=1)
    assert len(rows) == 9 and not uncovered_pairs(rows, [3, 1, 3, 1])


def test_the_covering_array_is_seeded():
    assert covering_array([3] * 7, seed=4) == covering_array([3] * 7, seed=4)
    assert covering_array([3] * 7, seed=4) != covering_array([3] * 7, seed=5)


def test_too_small_n_names_the_smallest_n_that_works():
    axes = trait_axes(THREE)
    smallest = len(pairwise_rows(axes, seed=3))
    with pytest.raises(ConfigError) as err:
        plan_traits(axes, smallest - 1, seed=3)
    message = str(err.value)
    assert message.startswith(f"--n {smallest - 1} is too small to cover every pair of levels")
    assert f"the smallest --n that works is {smallest} (found by a greedy construction" in message
    assert "\n" not in message
    assert len(plan_traits(axes, smallest, seed=3)) == smallest
    assert len(plan_traits(axes, 5, seed=3, coverage="random")) == 5


def test_the_rest_is_sampled_without_repeating_a_combination_while_any_is_left():
    axes = {"locale": ["en_US"], "a": ["1", "2", "3"], "b": ["x", "y"]}
    rows = plan_traits(axes, 6, seed=0)
    assert len({tuple(r.values()) for r in rows}) == 6  # all six combinations, once each
    assert len(plan_traits(axes, 9, seed=0)) == 9  # more than exist: repeats are allowed
    sampled = plan_traits(axes, 6, seed=0, coverage="random")
    assert len({tuple(r.values()) for r in sampled}) == 6


# --- personas ---------------------------------------------------------------------------------


def test_pairwise_personas_cover_every_pair_of_trait_levels():
    axes = trait_axes(THREE)
    personas = generate_personas(axes, 40, seed=3)
    seen = [
        {
            "locale": next(t.removeprefix("locale:") for t in p.tags if t.startswith("locale:")),
            **{a: str(getattr(p.traits, a)) for a in ("patience", "expertise", "tone")},
            **{a: str(getattr(p.traits, a)) for a in ("verbosity", "politeness", "typo_rate")},
            "intent": p.traits.custom["intent"],
        }
        for p in personas
    ]
    for a, b in itertools.combinations(axes, 2):
        held = {(row[a], row[b]) for row in seen}
        assert held == set(itertools.product(axes[a], axes[b])), (a, b)


def test_personas_are_valid_unique_and_record_their_source_and_licence(tmp_path):
    personas = generate_personas(trait_axes(THREE), 60, seed=3)
    assert len({p.id for p in personas}) == 60
    assert len({p.model_dump_json(exclude={"id"}) for p in personas}) == 60
    assert personas[0].id == "gen-3-01" and personas[-1].id == "gen-3-60"
    for persona in personas:
        assert persona.source and "seed 3" in persona.source and "Faker" in persona.source
        assert persona.license == GENERATED_LICENSE
        assert persona.description.startswith(persona.name)
        assert {"first_name", "last_name", "email", "phone", "address"} <= set(persona.attributes)
        assert {"date_of_birth", "account_number", "order_number", "order_date"} <= set(
            persona.attributes
        )
        assert ("adversarial" in persona.tags) == (persona.traits.custom["intent"] == "adversarial")
    path = write_yaml(personas, tmp_path / "p.yaml", header="h")
    assert load_personas(path) == personas


def test_personas_are_spread_over_locales_in_their_language_and_date_format():
    personas = generate_personas(trait_axes(THREE), 30, seed=1)
    by_locale = {locale: [p for p in personas if f"locale:{locale}" in p.tags] for locale in THREE}
    assert all(len(group) >= 6 for group in by_locale.values())
    formats = {
        "en_US": r"[A-Z][a-z]{2} \d{1,2}, \d{4}",  # Mar 4, 1985
        "de_DE": r"\d{2}\.\d{2}\.\d{4}",  # 04.03.1985
        "ja_JP": r"\d{4}/\d{2}/\d{2}",  # 1985/03/04
    }
    for locale, group in by_locale.items():
        for persona in group:
            assert persona.traits.language == locale.split("_")[0]
            assert re.fullmatch(formats[locale], persona.attributes["date_of_birth"])
            assert re.fullmatch(formats[locale], persona.attributes["order_date"])
    japanese = by_locale["ja_JP"][0]
    assert (
        japanese.name == f"{japanese.attributes['last_name']} {japanese.attributes['first_name']}"
    )
    assert by_locale["de_DE"][0].attributes["country"] == "Germany"


def test_right_to_left_locales_write_dates_without_invisible_direction_marks():
    # CLDR's Arabic date format holds U+200F marks (`20\u200f/07\u200f/1972`): a persona's
    # facts are what a person types, so an agent reading them sees plain `20/07/1972`.
    personas = generate_personas(trait_axes(["ar_AA", "ar_SA"]), 8, seed=1, coverage="random")
    for persona in personas:
        for key in ("date_of_birth", "order_date"):
            value = persona.attributes[key]
            assert re.fullmatch(r"\d{2}/\d{2}/\d{4}", value), repr(value)


def test_same_seed_same_personas_and_another_seed_others(tmp_path):
    axes = trait_axes(THREE, read_traits(TRAITS))
    first = generate_personas(axes, 30, seed=7)
    assert generate_personas(axes, 30, seed=7) == first
    other = generate_personas(axes, 30, seed=8)
    assert [p.name for p in other] != [p.name for p in first]
    assert [p.traits for p in other] != [p.traits for p in first]
    a = write_yaml(first, tmp_path / "a.yaml", header="h")
    b = write_yaml(generate_personas(axes, 30, seed=7), tmp_path / "b.yaml", header="h")
    assert a.read_bytes() == b.read_bytes()


def test_a_traits_file_narrows_built_in_axes_and_adds_custom_ones():
    given = read_traits(TRAITS)
    assert given["typo_rate"] == ["0.0", "0.05"]
    axes = trait_axes(["en_US"], given)
    assert axes["expertise"] == builtin_axes()["expertise"]  # not named: all levels
    personas = generate_personas(axes, 25, seed=0)
    assert {p.traits.patience for p in personas} == {"low", "high"}
    assert {p.traits.tone for p in personas} == {"calm", "angry", "anxious"}
    assert {p.traits.typo_rate for p in personas} == {0.0, 0.05}
    assert {p.traits.custom["device"] for p in personas} == {"mobile", "desktop", "tablet"}
    pairs = {(p.traits.custom["device"], p.traits.custom["plan"]) for p in personas}
    assert len(pairs) == 6
    assert "device: " in personas[0].description and "plan: " in personas[0].description


def _traits(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "traits.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "axes:\n  patience: [low, hi]\n",
            "{path}:2: axis 'patience': unknown level 'hi' (did you mean 'high'?); "
            "choose from: low, medium, high",
        ),
        ("axes:\n  device: []\n", "{path}:2: axis 'device': the list of levels is empty"),
        (
            "axes:\n  device:\n    - mobile\n    - mobile\n",
            "{path}:4: axis 'device': duplicate level 'mobile'",
        ),
        (
            "axes:\n  device: mobile\n",
            "{path}:2: axis 'device': expected a list of levels, e.g. [low, high]",
        ),
        (
            "axes:\n  device: [mobile, {os: ios}]\n",
            "{path}:2: axis 'device': a level must be a word or a number, not a list or map",
        ),
        (
            "axes:\n  typo_rate: [0, 2]\n",
            "{path}:2: axis 'typo_rate': level '2' is not a share between 0 and 1",
        ),
        (
            "axes:\n  language: [en, de]\n",
            "{path}:2: axis 'language': not an axis a traits file can set; it is set by --locale",
        ),
        ("axes:\n  patiance: [low]\n", "{path}:2: axis 'patiance': looks like the built-in axis"),
        ("axis:\n  device: [a, b]\n", "{path}:1: unknown key 'axis' (did you mean 'axes'?)"),
        ("- device\n", "{path}:1: expected `axes:` mapping each trait axis to a list of levels"),
        ("axes: [a, b]\n", "{path}:1: `axes:` is empty or not a mapping"),
        ("axes:\n  device: [a, b\n", "{path}:3: YAML syntax error"),
    ],
)
def test_bad_traits_files_are_one_line_errors(tmp_path, text, expected):
    path = _traits(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        read_traits(path)
    assert str(err.value).startswith(expected.format(path=path))
    assert "\n" not in str(err.value)


def test_an_unknown_locale_is_a_one_line_error_with_the_closest():
    with pytest.raises(ConfigError) as err:
        generate_personas(trait_axes(["en_US", "de-DE"]), 30)
    assert str(err.value).startswith("unknown locale 'de-DE' (did you mean 'de_DE'?); Faker knows:")
    assert "\n" not in str(err.value)


# --- LLM enrichment ---------------------------------------------------------------------------


def story(request: dict) -> dict:
    """A reply that echoes the persona's name and tone from the prompt, so tests can match."""
    prompt = request["messages"][0]["content"]
    name = re.search(r"^Name: (.+)$", prompt, re.M).group(1)
    tone = re.search(r"^- tone: (\w+)", prompt, re.M).group(1)
    return {
        "json": {
            "backstory": f"{name} runs a small bakery and orders supplies online every week.",
            "speaking_style": f"Short {tone} messages, straight to the point.",
        }
    }


@pytest.fixture
def server():
    with FakeOpenAIServer() as fake:
        fake.reply_with(story)
        yield fake


@pytest.fixture
def llm_yaml(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SIMULATE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path = tmp_path / "llm.yaml"
    path.write_text("max_retries: 1\nretry_backoff_s: 0.01\ntimeout_s: 5\n")
    return path


def few_personas(n: int = 4):
    return generate_personas(trait_axes(["en_US"]), n, seed=2, coverage="random")


async def test_each_persona_gets_a_backstory_consistent_with_its_traits(server, llm_yaml):
    personas = few_personas()
    config = EnrichConfig(model="gpt-4o-mini", base_url=server.base_url, llm_config=str(llm_yaml))
    result = await enrich_personas(personas, config)
    assert server.count == len(personas)
    prompts = {r.body["messages"][0]["content"] for r in server.requests}
    for before, after in zip(personas, result.personas, strict=True):
        assert after.id == before.id and after.traits == before.traits
        assert after.attributes == before.attributes
        assert after.description == (
            f"{before.name} runs a small bakery and orders supplies online every week.\n"
            f"Way of speaking: Short {before.traits.tone} messages, straight to the point."
        )
        assert after.source == f"{before.source}; backstory by llm:gpt-4o-mini"
        assert after.license == GENERATED_LICENSE and "enriched" in after.tags
        prompt = next(p for p in prompts if f"Name: {before.name}\n" in p)
        assert f"- patience: {before.traits.patience} " in prompt
        assert f"- intent: {before.traits.custom['intent']}" in prompt
    body = server.requests[0].body
    assert body["model"] == "gpt-4o-mini" and "response_format" in body
    assert result.usage[0].calls == len(personas)
    again = await enrich_personas(personas, config)
    assert server.count == len(personas), "the same requests come from the cache"
    assert again.personas == result.personas


async def test_a_reply_that_fails_validation_is_repaired(server, llm_yaml):
    personas = few_personas(1)
    server.queue({"json": {"backstory": "Too short"}})
    config = EnrichConfig(
        model="gpt-4o-mini", base_url=server.base_url, llm_config=str(llm_yaml), use_cache=False
    )
    result = await enrich_personas(personas, config)
    assert server.count == 2
    assert "does not fit" in server.requests[1].body["messages"][-1]["content"]
    assert result.personas[0].description.startswith(personas[0].name)


async def test_a_reply_that_stays_invalid_names_the_persona(server, llm_yaml):
    personas = few_personas(3)
    server.reply_with(lambda request: {"json": {"backstory": "x", "speaking_style": ""}})
    config = EnrichConfig(
        model="gpt-4o-mini",
        base_url=server.base_url,
        llm_config=str(llm_yaml),
        use_cache=False,
        concurrency=1,
    )
    with pytest.raises(LLMError) as err:
        await enrich_personas(personas, config)
    assert str(err.value).startswith(f"--enrich: persona '{personas[0].id}': reply does not fit")
    assert "\n" not in str(err.value)
    assert server.count == 2, "the first failure stops the rest"


def test_cli_enrich_writes_nothing_when_a_reply_fails(server, llm_yaml, tmp_path):
    server.reply_with(lambda request: "no JSON here")
    out = tmp_path / "p.yaml"
    args = ["personas", "generate", "--n", "2", "--coverage", "random", "-o", str(out)]
    args += ["--enrich", "llm:gpt-4o-mini", "--base-url", server.base_url]
    args += ["--llm-config", str(llm_yaml), "--no-cache"]
    result = CliRunner().invoke(cli, args)
    assert isinstance(result.exception, LLMError)
    assert "--enrich: persona 'gen-0-1'" in str(result.exception)
    assert not out.exists()
    server.reply_with(story)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "model gpt-4o-mini: 2 calls" in result.output
    text = out.read_text()
    assert "--enrich llm:gpt-4o-mini" in text.splitlines()[0]
    assert all(p.description.split("\n")[1].startswith("Way of") for p in load_personas(out))


def test_model_flags_without_enrich_are_a_usage_error(tmp_path):
    out = tmp_path / "p.yaml"
    args = ["personas", "generate", "--n", "30", "-o", str(out), "--base-url", "http://x/v1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "--base-url only applies with --enrich llm:MODEL" in result.output
    assert not out.exists()


# --- the command ------------------------------------------------------------------------------


def test_cli_generate_is_byte_identical_per_seed_validates_and_keeps_existing_files(tmp_path):
    args = ["personas", "generate", "--n", "30", "--locale", "en_US,de_DE,ja_JP", "--seed", "3"]
    args += ["--traits", str(TRAITS)]
    done = simulate_cli(*args, "-o", "personas/generated.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote 30 personas to personas/generated.yaml (" in done.stdout
    first = tmp_path / "personas" / "generated.yaml"
    header = first.read_text().splitlines()[:3]
    assert header[0].startswith("# Generated by `simulate personas generate --n 30")
    assert header[2] == f"# Licence: {GENERATED_LICENSE}."
    assert simulate_cli("validate", str(first)).returncode == 0
    again = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "again.yaml")])
    assert again.exit_code == 0 and (tmp_path / "again.yaml").read_bytes() == first.read_bytes()
    other_args = [*args[:-4], "--seed", "4", "--traits", str(TRAITS)]
    other = CliRunner().invoke(cli, [*other_args, "-o", str(tmp_path / "b.yaml")])
    assert other.exit_code == 0 and (tmp_path / "b.yaml").read_bytes() != first.read_bytes()

    before = first.read_bytes()
    refused = simulate_cli(*args, "-o", "personas/generated.yaml", cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr == "error: personas/generated.yaml exists; add --force to overwrite it\n"
    assert first.read_bytes() == before


def test_cli_output_must_be_a_yaml_file_name(tmp_path):
    # A folder (even with --force) or a .json name: the file is YAML, and `simulate validate`
    # reads a .json file as JSON, so both are refused before any work, writing nothing.
    folder = tmp_path / "personas"
    folder.mkdir()
    for out, expected in (
        (folder, f"-o {folder}: is a folder; give a file name, e.g. {folder / 'gen.yaml'}"),
        (tmp_path / "p.json", f"-o {tmp_path / 'p.json'}: the file is written as YAML"),
    ):
        args = ["personas", "generate", "--n", "30", "-o", str(out), "--force"]
        result = CliRunner().invoke(cli, args)
        assert isinstance(result.exception, ConfigError)
        assert str(result.exception).startswith(expected)
    assert list(tmp_path.rglob("*")) == [folder]
    result = CliRunner().invoke(
        cli, ["personas", "generate", "--n", "30", "-o", str(folder / "a.yml")]
    )
    assert result.exit_code == 0, result.output
    assert len(load_personas(folder / "a.yml")) == 30


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--locale", "xx_YY"], "unknown locale 'xx_YY'"),
        (["--n", "5"], "--n 5 is too small to cover every pair of levels of 7 varied axes"),
        (["--traits", str(DATA / "nothing.yaml")], "--traits: no such file:"),
        (["--locale", "en_US", "--enrich", "llm:"], "--enrich 'llm:': name a model"),
        (["--enrich", "openia:gpt-4o"], "unknown model backend 'openia' (did you mean 'openai'?)"),
    ],
)
def test_cli_bad_inputs_are_one_line_errors(tmp_path, extra, expected):
    out = tmp_path / "p.yaml"
    result = CliRunner().invoke(cli, ["personas", "generate", "--n", "30", *extra, "-o", str(out)])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception).startswith(expected) and "\n" not in str(result.exception)
    assert not out.exists()


def test_generated_personas_play_scenarios_offline(tmp_path):
    out = tmp_path / "gen.yaml"
    result = CliRunner().invoke(
        cli, ["personas", "generate", "--n", "3", "--coverage", "random", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    personas = load_personas(out)
    scenarios = load_scenarios(DATA / "shop" / "scenarios.yaml")
    specs = build_plan(personas, scenarios, run_id="gen", seed=0, max_turns=6, trials=1)
    refund = next(s for s in specs if s.scenario.id == "refund")
    assert (
        refund.scenario.known_info["order_number"].value
        == refund.persona.attributes["order_number"]
    )
    ran = simulate_cli(
        "run",
        "--personas",
        str(out),
        "--scenarios",
        str(DATA / "shop" / "scenarios.yaml"),
        "--target",
        f"python:{DATA / 'shop_agent.py'}:respond",
        "--out",
        str(tmp_path / "run"),
        "-q",
    )
    assert ran.returncode == 0, ran.stderr
    episodes = list(iter_episodes(tmp_path / "run"))
    assert {e.persona_id for e in episodes} == {p.id for p in personas}
    assert len(episodes) == len(personas) * len(scenarios)
    assert all(e.outcome.status != Status.SIMULATOR_ERROR for e in episodes)
    assert all(e.n_turns >= 2 for e in episodes)


def test_enrich_stopped_by_its_budget_exits_3_and_writes_nothing(server, llm_yaml, tmp_path):
    out = tmp_path / "p.yaml"
    done = simulate_cli(
        *("personas", "generate", "--n", "3", "--coverage", "random", "-o", str(out)),
        *("--enrich", "llm:gpt-4o-mini", "--base-url", server.base_url, "--max-calls", "1"),
        *("--llm-config", str(llm_yaml), "--no-cache", "--concurrency", "1"),
    )
    assert done.returncode == 3, done.stderr  # a budget stop, as for `simulate run`
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert not out.exists()
