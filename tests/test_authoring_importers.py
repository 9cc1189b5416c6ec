"""Importers: tau2-bench tasks and PersonaHub personas, on the real shared files and tiny ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import simulate_cli

from simulate.authoring.importers import (
    import_personahub,
    import_tau2,
    parse_known_info,
    split_sentences,
)
from simulate.errors import ConfigError
from simulate.loader import load_personas, load_scenarios, write_yaml
from simulate.plan import render_scenario
from simulate.schema import Persona, Scenario

DATA = Path(__file__).parent / "data" / "importers"
SHARED = Path(__file__).parents[2] / "shared" / "data"
TAU2 = SHARED / "tau2"
HUB = SHARED / "personahub" / "personas_from_tool.jsonl"
TAU2_FILES = sorted(TAU2.glob("*/tasks*.json"))

needs_tau2 = pytest.mark.skipif(
    not TAU2_FILES, reason=f"tau2-bench task files not found under {TAU2} (shared data absent)"
)
needs_hub = pytest.mark.skipif(
    not HUB.is_file(), reason=f"PersonaHub sample not found at {HUB} (shared data absent)"
)


def tau2_task(path: Path, task_id: str) -> Scenario:
    scenarios = import_tau2(path)
    return next(s for s in scenarios if s.id.endswith(f"-{task_id}"))


# --- tau2-bench: the real files -------------------------------------------------------------


@needs_tau2
def test_every_domain_of_the_shared_files_is_present():
    assert {p.parent.name for p in TAU2_FILES} >= {"airline", "retail", "telecom", "mock"}


@needs_tau2
@pytest.mark.parametrize("path", TAU2_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_task_of_every_domain_becomes_a_valid_scenario(path: Path):
    tasks = json.loads(path.read_text())
    scenarios = import_tau2(path)
    domain = path.parent.name
    assert len(scenarios) == len(tasks)
    assert len({s.id for s in scenarios}) == len(scenarios)
    for scenario in scenarios:
        Scenario.model_validate(scenario.model_dump())
        assert scenario.id.startswith(f"tau2-{domain}-")
        assert scenario.tags == ["tau2", domain]
        assert scenario.description.strip() and scenario.goal.strip()


@needs_tau2
def test_an_airline_task_maps_facts_instructions_goal_and_judge():
    scenario = tau2_task(TAU2 / "airline" / "tasks.json", "0")
    assert scenario.id == "tau2-airline-0"
    assert scenario.description.startswith("You want to cancel reservation EHGLP3.")
    assert {k: f.value for k, f in scenario.known_info.items()} == {
        "name": "Emma Kim",
        "user_id": "emma_kim_9957",
    }
    assert "user id" in scenario.known_info["user_id"].aliases
    # A sentence broken over two lines stays one instruction.
    assert scenario.instructions == [
        "If Agent tells you that cancellation is not possible, mention that you were told that "
        "you didn't need to get insurance because your previous trip was booked with the same "
        "agency with insurance.",
        "You don't want to cancel if you don't get a refund.",
    ]
    assert scenario.goal.startswith("Testing that agent refuses to proceed with a cancellation")
    assert scenario.success.judge == "Agent should refuse to proceed with the cancellation."
    assert scenario.success.must_call_tools == []


@needs_tau2
def test_a_retail_task_maps_unknown_info_tools_and_communicate_info():
    tasks = {t["id"]: t for t in json.loads((TAU2 / "retail" / "tasks.json").read_text())}
    scenarios = {s.id: s for s in import_tau2(TAU2 / "retail" / "tasks.json")}
    zero = scenarios["tau2-retail-0"]
    assert {k: f.value for k, f in zero.known_info.items()} == {
        "name": "Yusuf Rossi",
        "zip_code": "19122",
    }
    assert zero.unknown_info == ["You do not remember your email address."]
    assert zero.success.must_call_tools == [
        "find_user_id_by_name_zip",
        "get_order_details",
        "get_product_details",
        "exchange_delivered_order_items",
    ]
    # No purpose and no assertions: the goal says what the reference trajectory does.
    assert "exchange_delivered_order_items" in zero.goal
    with_info = next(t for t in tasks.values() if t["evaluation_criteria"]["communicate_info"])
    scenario = scenarios[f"tau2-retail-{with_info['id']}"]
    assert scenario.success.must_mention == with_info["evaluation_criteria"]["communicate_info"]


@needs_tau2
def test_a_known_info_sentence_with_more_than_facts_is_kept_as_an_instruction():
    scenario = tau2_task(TAU2 / "telecom" / "tasks_small.json", "PERSONA:None")
    assert scenario.known_info["name"].value == "John Smith"
    assert scenario.known_info["phone_number"].value == "555-123-2002"
    assert "You are currently abroad in France." in scenario.instructions


@needs_tau2
def test_telecom_personas_become_instructions_and_user_side_actions_are_not_required():
    tasks = json.loads((TAU2 / "telecom" / "tasks_small.json").read_text())
    scenarios = import_tau2(TAU2 / "telecom" / "tasks_small.json")
    for task, scenario in zip(tasks, scenarios, strict=True):
        persona = task["user_scenario"]["persona"]
        if persona:
            assert scenario.instructions[0] == "Play this persona: " + " ".join(persona.split())
        agent_tools = {
            a["name"]
            for a in task["evaluation_criteria"]["actions"] or []
            if a.get("requestor") != "user"
        }
        assert set(scenario.success.must_call_tools) == agent_tools
    assert any(t["user_scenario"]["persona"] for t in tasks)
    assert any(
        a.get("requestor") == "user" for t in tasks for a in t["evaluation_criteria"]["actions"]
    )
    # `[mobile_data_issue]..[PERSONA:None]` is made safe for ids.
    assert scenarios[0].id == (
        "tau2-telecom-mobile_data_issue-user_abroad_roaming_enabled_off-PERSONA:None"
    )


@needs_tau2
def test_plain_string_instructions_become_the_description():
    tasks = json.loads((TAU2 / "mock" / "tasks.json").read_text())
    scenario = import_tau2(TAU2 / "mock" / "tasks.json")[0]
    assert scenario.description == tasks[0]["user_scenario"]["instructions"]
    assert scenario.goal == tasks[0]["description"]["purpose"]
    assert scenario.tags == ["tau2", "mock"]


@needs_tau2
def test_split_keeps_the_tasks_of_one_split():
    splits = json.loads((TAU2 / "airline" / "split_tasks.json").read_text())
    scenarios = import_tau2(TAU2 / "airline" / "tasks.json", split="test")
    assert [s.id for s in scenarios] == [f"tau2-airline-{i}" for i in splits["test"]]
    with pytest.raises(ConfigError, match=r"unknown split 'tets' \(did you mean 'test'\?\)"):
        import_tau2(TAU2 / "airline" / "tasks.json", split="tets")
    with pytest.raises(ConfigError, match=r"no split_tasks\.json beside"):
        import_tau2(TAU2 / "telecom" / "tasks_small.json", split="test")


@needs_tau2
def test_a_split_file_is_refused_with_what_to_give_instead():
    path = TAU2 / "airline" / "split_tasks.json"
    with pytest.raises(ConfigError) as err:
        import_tau2(path)
    message = str(err.value)
    assert message.startswith(f"{path}: a tau2-bench split file (task ids per split: train, test")
    assert "import the tasks.json beside it" in message
    assert "\n" not in message


@needs_tau2
@needs_hub
def test_personahub_jsonl_given_as_tau2_is_named():
    with pytest.raises(ConfigError, match=r"JSON Lines\) \(PersonaHub personas\? use `simulate"):
        import_tau2(HUB)


# --- tau2-bench: tiny files -----------------------------------------------------------------


def test_the_tiny_task_file_maps_every_part():
    first, plain = import_tau2(DATA / "tasks.json")
    assert first.id == "tau2-shop-refund-broken-kettle"
    assert first.instructions == [
        "Play this persona: A retired teacher who types slowly.",
        "You live in Porto.",
        "Refuse a voucher.",
        "If the agent insists, e.g. twice, ask for a manager.",
    ]
    assert {k: f.value for k, f in first.known_info.items()} == {
        "name": "Ana Silva",
        "order_number": "W123",
    }
    assert first.unknown_info == [
        "You do not know the purchase date.",
        "You do not remember your email.",
    ]
    assert first.success.must_call_tools == ["find_order", "issue_refund"]
    assert first.success.must_mention == ["12.50"]
    assert first.success.judge == (
        "All of these hold:\n- Agent issues a refund.\n- Agent does not offer a voucher"
    )
    assert first.goal == "Agent issues a refund. Agent does not offer a voucher."
    assert plain.id == "tau2-shop-plain" and plain.goal == "Test a plain request."


def test_imported_braces_are_not_read_as_templates(persona):
    scenario = import_tau2(DATA / "tasks.json")[0]
    rendered = render_scenario(scenario, persona)
    assert rendered.description == "You want a refund for the kettle in order {{ order }}."


def test_domain_can_be_given():
    assert import_tau2(DATA / "tasks.json", domain="kettles")[1].id == "tau2-kettles-plain"


@pytest.mark.parametrize(
    ("text", "facts", "rest"),
    [
        ("You are Emma Kim.\nYour user id is emma_kim_9957.", {"name": "Emma Kim"}, []),
        ("Your user id is:  anya_garcia_5901.", {"user_id": "anya_garcia_5901"}, []),
        ("Confirmation number: H8Q05L", {"confirmation_number": "H8Q05L"}, []),
        ("You name is Lei Wilson and your zip code is 32255.", {"zip_code": "32255"}, []),
        (
            "You are Chen Johnson from Houston TX, 77004.",
            {"name": "Chen Johnson", "zip_code": "77004"},
            ["You are Chen Johnson from Houston TX, 77004."],
        ),
        (
            "You name is Sofia Thomas and your emails are a.b@example.com and c.d@example.com.",
            {"email": "a.b@example.com", "email_2": "c.d@example.com"},
            [],
        ),
        ("You are Lucas (lucas_santos_6600).", {"user_id": "lucas_santos_6600"}, None),
        ("Your friends name is Ivan Smith.", {}, ["Your friends name is Ivan Smith."]),
    ],
)
def test_known_info_shapes(text, facts, rest):
    found, remaining = parse_known_info(text)
    assert dict(found).items() >= facts.items()
    if not facts:
        assert found == []
    if rest is not None:
        assert remaining == rest


def test_sentences_split_at_ends_not_inside_lines_or_abbreviations():
    text = "If the agent refuses,\nask why. Ask for Dr. Lee.\n\nRefuel 2.0 GB.\n\n."
    assert split_sentences(text) == [
        "If the agent refuses, ask why.",
        "Ask for Dr. Lee.",
        "Refuel 2.0 GB.",
    ]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.json", None, "no such file: '{path}'"),
        ("object.json", '{"tasks": 1}', "{path}: a JSON object with keys 'tasks'; expected a tau2"),
        ("empty.json", "[]", "{path}: no tasks in file"),
        ("scenario.yaml", "id: x\ngoal: y\n", "{path}:1: not valid JSON (Expecting value)"),
        ("list.json", '[{"id": "1"}]', "{path}: item #1 has keys 'id'; expected a tau2"),
        ("lines.jsonl", '{"persona": "a"}\n{"persona": "b"}\n', "{path}: one JSON object per"),
        (
            "broken.json",
            '[{"id": "1", "user_scenario": {"instructions": {"reason_for_call": ""}}}]',
            "{path}: task '1' (#1): description: String should have at least 1 character",
        ),
    ],
)
def test_wrong_files_for_tau2_are_one_line_errors(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as err:
        import_tau2(path)
    assert str(err.value).startswith(expected.format(path=path))
    assert "\n" not in str(err.value)


# --- PersonaHub ----------------------------------------------------------------------------


@needs_hub
def test_a_personahub_sample_of_the_shared_file():
    rows = [json.loads(line) for line in HUB.read_text().splitlines()]
    personas = import_personahub(HUB, 200, seed=0)
    assert len(personas) == 200
    assert len({p.id for p in personas}) == 200
    for persona in personas:
        line = int(persona.id.removeprefix("hub-"))
        assert persona.description == " ".join(rows[line - 1]["persona"].split())
        assert persona.source == "personahub"
        assert persona.license == "CC-BY-NC-SA-4.0"
        assert persona.tags == ["personahub"]
        assert set(persona.attributes) == {"first_name", "last_name", "email", "phone", "address"}
        assert (
            persona.name == f"{persona.attributes['first_name']} {persona.attributes['last_name']}"
        )
        assert "\n" not in persona.attributes["address"]
        assert persona.traits.language == "en"
        Persona.model_validate(persona.model_dump())
    # Traits are sampled, not all left at their defaults.
    assert len({p.traits.tone for p in personas}) > 2
    assert len({p.name for p in personas}) > 150


@needs_hub
def test_personahub_is_deterministic_per_seed_and_differs_across_seeds():
    a = import_personahub(HUB, 20, seed=1)
    assert a == import_personahub(HUB, 20, seed=1)
    b = import_personahub(HUB, 20, seed=2)
    assert [p.id for p in a] != [p.id for p in b]


def test_the_same_persona_gets_the_same_details_within_a_seed():
    few = {p.id: p for p in import_personahub(DATA / "personas.jsonl", 2, seed=5)}
    every = {p.id: p for p in import_personahub(DATA / "personas.jsonl", 4, seed=5)}
    for persona_id, persona in few.items():
        assert every[persona_id] == persona


def test_ids_are_lines_of_the_file_blank_lines_skipped():
    personas = import_personahub(DATA / "personas.jsonl", 4, seed=0)
    assert [p.id for p in personas] == ["hub-1", "hub-2", "hub-4", "hub-5"]


def test_several_locales_mix_and_set_the_language():
    personas = import_personahub(DATA / "personas.jsonl", 4, seed=0, locale="de_DE,ja_JP")
    assert {p.traits.language for p in personas} <= {"de", "ja"}
    for persona in personas:
        assert persona.attributes["email"].split("@")[1].startswith("example.")


@pytest.mark.parametrize(
    ("path", "kwargs", "expected"),
    [
        (DATA / "personas.jsonl", {"n": 5}, "--n must be between 1 and 4 (the personas in"),
        (DATA / "personas.jsonl", {"n": 0}, "--n must be between 1 and 4"),
        (
            DATA / "personas.jsonl",
            {"n": 1, "locale": "en_UX"},
            "unknown locale 'en_UX' (did you mean 'en_US'?); Faker knows: ",
        ),
        (
            DATA / "personas.jsonl",
            {"n": 1, "locale": "de-DE"},
            "unknown locale 'de-DE' (did you mean 'de_DE'?)",
        ),
        (DATA / "bad_line.jsonl", {"n": 1}, "{path}:3: not valid JSON ("),
        (
            DATA / "no_persona.jsonl",
            {"n": 1},
            "{path}:2: expected an object with a 'persona' text, got keys 'input persona'",
        ),
        (
            DATA / "tasks.json",
            {"n": 1},
            "{path}: a tau2-bench task list (use `simulate import tau2`)",
        ),
        (DATA / "nothing.jsonl", {"n": 1}, "no such file: '{path}'"),
    ],
)
def test_bad_personahub_inputs_are_one_line_errors(path, kwargs, expected):
    with pytest.raises(ConfigError) as err:
        import_personahub(path, **kwargs)
    assert str(err.value).startswith(expected.format(path=path))
    assert "\n" not in str(err.value)


# --- writing --------------------------------------------------------------------------------


@needs_tau2
def test_written_scenarios_load_back_equal(tmp_path):
    scenarios = import_tau2(TAU2 / "retail" / "tasks.json")
    out = write_yaml(scenarios, tmp_path / "s" / "retail.yaml", header="Source: test\nLicence: MIT")
    text = out.read_text()
    assert text.startswith("# Source: test\n# Licence: MIT\n- id: tau2-retail-0\n")
    assert load_scenarios(out) == scenarios


def test_written_personas_load_back_equal_and_are_byte_identical_per_seed(tmp_path):
    personas = import_personahub(DATA / "personas.jsonl", 3, seed=7)
    first = write_yaml(personas, tmp_path / "a.yaml", header="h")
    again = write_yaml(
        import_personahub(DATA / "personas.jsonl", 3, seed=7), tmp_path / "b.yaml", header="h"
    )
    assert load_personas(first) == personas
    assert first.read_bytes() == again.read_bytes()
    # Traits are written in full, sampled values that equal the defaults too.
    assert first.read_text().count("patience:") == 3


def test_an_existing_file_is_kept_unless_forced(tmp_path):
    personas = import_personahub(DATA / "personas.jsonl", 1, seed=0)
    out = tmp_path / "hub.yaml"
    out.write_text("mine\n")
    with pytest.raises(ConfigError, match=r"hub.yaml exists; add --force to overwrite it"):
        write_yaml(personas, out, header="h")
    assert out.read_text() == "mine\n"
    write_yaml(personas, out, header="h", force=True)
    assert load_personas(out) == personas
    assert [p.name for p in tmp_path.iterdir()] == ["hub.yaml"]  # no temporary file left


# --- the command line -----------------------------------------------------------------------


@needs_tau2
def test_cli_import_tau2_writes_a_file_that_validates(tmp_path):
    out = tmp_path / "scenarios" / "tau2-airline.yaml"
    tasks = TAU2 / "airline" / "tasks.json"
    result = simulate_cli("import", "tau2", str(tasks), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert f"wrote 50 scenarios to {out}" in result.stdout
    header = out.read_text().splitlines()[:3]
    assert "tau2-bench" in header[1] and header[2].startswith("# Licence: MIT")
    checked = simulate_cli("validate", str(out))
    assert checked.returncode == 0, checked.stderr
    assert "ok: 50 scenarios" in checked.stdout
    again = simulate_cli("import", "tau2", str(tasks), "-o", str(out))
    assert again.returncode == 1
    assert again.stderr == f"error: {out} exists; add --force to overwrite it\n"
    wrong = simulate_cli("import", "tau2", str(TAU2 / "airline" / "split_tasks.json"), "-o", "x")
    assert wrong.returncode == 1
    assert wrong.stderr.startswith("error: ") and wrong.stderr.count("\n") == 1


@needs_hub
def test_cli_import_personahub_is_byte_identical_per_seed_and_validates(tmp_path):
    def run(name: str, *extra: str) -> Path:
        out = tmp_path / name
        result = simulate_cli(
            "import", "personahub", str(HUB), "--n", "30", "--seed", "0", "-o", str(out), *extra
        )
        assert result.returncode == 0, result.stderr
        return out

    first, second = run("a.yaml"), run("b.yaml")
    assert first.read_bytes() == second.read_bytes()
    assert "CC-BY-NC-SA-4.0" in first.read_text().splitlines()[2]
    checked = simulate_cli("validate", str(first))
    assert checked.returncode == 0, checked.stderr
    assert "ok: 30 personas" in checked.stdout
    bad = simulate_cli(
        "import", "personahub", str(HUB), "--n", "3", "--locale", "en_UX", "-o", "x.yaml"
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: unknown locale 'en_UX' (did you mean 'en_US'?)")
    assert bad.stderr.count("\n") == 1
