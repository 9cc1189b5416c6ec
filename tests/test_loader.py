"""Tests for simulate.loader: good files load, and every bad one is one exact, useful line."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from simulate.errors import ConfigError
from simulate.loader import load_personas, load_scenarios

DATA = Path(__file__).parent / "data" / "loader"

Write = Callable[[str, str], str]


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Write:
    """Write a file under a fresh working folder; return its relative name (as a user types it)."""
    monkeypatch.chdir(tmp_path)

    def _write(name: str, text: str) -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).removeprefix("\n"), encoding="utf-8")
        return name

    return _write


def error_of(load: Callable[..., object], *paths: str) -> str:
    """The message of the ConfigError that loading ``paths`` raises; it must be one line."""
    with pytest.raises(ConfigError) as info:
        load(list(paths))
    message = str(info.value)
    assert "\n" not in message
    return message


# --- good files -------------------------------------------------------------------------------


def test_multi_document_yaml_loads_in_order_with_values_kept_as_written() -> None:
    personas = load_personas([DATA / "personas.yaml"])
    assert [p.id for p in personas] == ["ana", "bob", "chen"]
    ana = personas[0]
    assert ana.traits.patience == "low"
    assert ana.traits.typo_rate == 0.05
    # YAML 1.1 would read these as the octal int 5349 and a date.
    assert ana.attributes == {
        "email": "ana@example.com",
        "account_number": "0012345",
        "member_since": "2019-04-01",
    }
    assert personas[1].traits.custom == {"humour": "dry"}
    assert personas[2].tags == ["adversarial"]


def test_scenarios_wrapper_and_shorthands() -> None:
    scenarios = load_scenarios([DATA / "scenarios.yaml"])
    assert [s.id for s in scenarios] == ["refund", "address-change"]
    refund = scenarios[0]
    assert refund.known_info["order_number"].value == "4417"
    assert refund.known_info["purchase_date"].value == "2024-05-01"
    assert refund.known_info["purchase_date"].aliases == ["bought on", "date of purchase"]
    assert refund.instructions == ["Insist on money back; refuse vouchers."]
    assert refund.max_turns == 8
    assert refund.success.must_call_tools == ["issue_refund"]


def test_folder_is_read_recursively_sorted_skipping_other_and_hidden_files(write: Write) -> None:
    write("personas/b.yaml", "id: b\nname: B\n")
    write("personas/a/x.yml", "- id: x\n  name: X\n")
    write("personas/c.json", '{"id": "c", "name": "C"}')
    write("personas/notes.txt", "not: [yaml")
    write("personas/.drafts/z.yaml", "not a persona")
    assert [p.id for p in load_personas(["personas/"])] == ["x", "b", "c"]


def test_json_list_object_and_wrapper(write: Write) -> None:
    write("p/list.json", '[{"id": "a", "name": "A"}, {"id": "b", "name": "B"}]')
    write("p/one.json", '{"id": "c", "name": "C", "attributes": {"pin": 1234}}')
    write("p/wrapped.json", '{"personas": [{"id": "d", "name": "D"}]}')
    personas = load_personas(["p"])
    assert [p.id for p in personas] == ["a", "b", "c", "d"]
    assert personas[2].attributes == {"pin": "1234"}


def test_personas_wrapper_in_yaml_and_empty_documents_skipped(write: Write) -> None:
    write(
        "p.yaml",
        """
        personas:
          - id: ana
            name: Ana
        ---
        ---
        - id: bob
          name: Bob
        """,
    )
    assert [p.id for p in load_personas(["p.yaml"])] == ["ana", "bob"]


def test_single_path_and_path_objects_and_a_file_named_twice(write: Write) -> None:
    write("personas/a.yaml", "id: a\nname: A\n")
    assert [p.id for p in load_personas("personas/a.yaml")] == ["a"]
    assert [p.id for p in load_personas([Path("personas"), "personas/a.yaml"])] == ["a"]
    assert load_personas([]) == []


def test_yaml_date_in_opening_is_kept_as_text(write: Write) -> None:
    write("s.yaml", "id: s\ndescription: d\ngoal: g\nopening: 2024-05-01\n")
    assert load_scenarios(["s.yaml"])[0].opening == "2024-05-01"


# --- bad files: one exact line each -----------------------------------------------------------

PERSONA_OK = "- id: ana\n  name: Ana\n"

CASES = [
    pytest.param(
        "personas",
        {
            "personas/bad.yaml": """
            - id: ana
              name: Ana
            - id: bob
              name: Bob
              traits:
                patience: low
                tone: calm: x
            """
        },
        "personas/bad.yaml:7: YAML syntax error: mapping values are not allowed here",
        id="yaml-syntax",
    ),
    pytest.param(
        "personas",
        {"personas/bad.yaml": "- id: ana\n  name: Ana\n  traits:\n    patience: low\n   tone: x\n"},
        "personas/bad.yaml:5: YAML syntax error: expected <block end>, but found "
        "'<block mapping start>' (while parsing a block mapping started at line 1); "
        "check the indentation",
        id="yaml-indentation",
    ),
    pytest.param(
        "personas",
        {"personas/bad.yaml": '- id: ana\n  description: "unclosed\n  name: Ana\n'},
        "personas/bad.yaml:4: YAML syntax error: found unexpected end of stream "
        "(while scanning a quoted scalar started at line 2)",
        id="yaml-unclosed-quote",
    ),
    pytest.param(
        "personas",
        {"personas/bad.yaml": "id: ana\nname: !fancy Ana\n"},
        "personas/bad.yaml:2: YAML error: could not determine a constructor for the tag '!fancy'",
        id="yaml-unknown-tag",
    ),
    pytest.param(
        "personas",
        {"personas/bad.yaml": "id: ana\nname: Ana\ndescription: bell\x07\n"},
        "personas/bad.yaml:3: YAML syntax error: character U+0007 is not allowed",
        id="yaml-control-character",
    ),
    pytest.param(
        "personas",
        {"personas/bad.yaml": "id: ana\nname: Ana\ntags: [a]\nname: Ana B\n"},
        "personas/bad.yaml:4: duplicate key 'name' (first at line 2)",
        id="duplicate-key",
    ),
    pytest.param(
        "scenarios",
        {
            "scenarios/x.yaml": """
            # Refund scenarios

            - id: refund
              description: Get a refund.
            """
        },
        "scenarios/x.yaml:3: scenario 'refund': missing field 'goal'",
        id="missing-field",
    ),
    pytest.param(
        "personas",
        {"personas/p.yaml": PERSONA_OK + "- name: Bob\n"},
        "personas/p.yaml:3: persona #2: missing field 'id'",
        id="missing-id",
    ),
    pytest.param(
        "personas",
        {"personas/p.yaml": "id: ana\nname: Ana\ntrait:\n  patience: low\n"},
        "personas/p.yaml:3: persona 'ana': unknown field 'trait' (did you mean 'traits'?)",
        id="misspelled-field",
    ),
    pytest.param(
        "scenarios",
        {"s.yaml": "- id: refund\n  description: d\n  goall: g\n"},
        "s.yaml:3: scenario 'refund': unknown field 'goall' (did you mean 'goal'?)",
        id="misspelled-beats-missing",
    ),
    pytest.param(
        "personas",
        {"p.yaml": "id: ana\nname: Ana\ntraits:\n  tone: calm\n  patiance: low\n"},
        "p.yaml:5: persona 'ana': traits: unknown field 'patiance' (did you mean 'patience'?)",
        id="misspelled-trait",
    ),
    pytest.param(
        "scenarios",
        {
            "s.yaml": """
            id: refund
            description: d
            goal: g
            success:
              must_mention: [refund]
              must_call_tool: [issue_refund]
            """
        },
        "s.yaml:6: scenario 'refund': success: unknown field 'must_call_tool' "
        "(did you mean 'must_call_tools'?)",
        id="misspelled-success-check",
    ),
    pytest.param(
        "scenarios",
        {
            "s.yaml": """
            id: refund
            description: d
            goal: g
            known_info:
              order: {value: 1, alias: [order id]}
            """
        },
        "s.yaml:5: scenario 'refund': known_info.order: unknown field 'alias' "
        "(did you mean 'aliases'?)",
        id="misspelled-fact",
    ),
    pytest.param(
        "personas",
        {"p.yaml": "id: ana\nname: Ana\ncolour: red\n"},
        "p.yaml:3: persona 'ana': unknown field 'colour'; valid fields: id, name, description, "
        "traits, attributes, tags, source, license",
        id="unknown-field-lists-fields",
    ),
    pytest.param(
        "personas",
        {"p.yaml": "id: ana\nname: Ana\ntraits:\n  humour: dry\n"},
        "p.yaml:4: persona 'ana': traits: unknown field 'humour'; valid fields: patience, "
        "expertise, tone, verbosity, politeness, typo_rate, language, custom "
        "(put your own axes under 'custom:')",
        id="unknown-trait-axis",
    ),
    pytest.param(
        "personas",
        {
            "personas/p.yaml": """
            - id: bob
              name: Bob
            # Ana is the impatient one.
            - id: ana
              name: Ana
              description: >
                Wants it now.
              attributes:
                email: ana@example.com
              traits:
                tone: angry
                patience: very
            """
        },
        "personas/p.yaml:12: persona 'ana': traits.patience: expected one of 'low', 'medium', "
        "'high', got 'very'",
        id="literal",
    ),
    pytest.param(
        "personas",
        {"p.yaml": "id: ana\nname: Ana\ntraits: {patience: hihg}\n"},
        "p.yaml:3: persona 'ana': traits.patience: expected one of 'low', 'medium', 'high', "
        "got 'hihg' (did you mean 'high'?)",
        id="literal-suggestion",
    ),
    pytest.param(
        "scenarios",
        {
            "s.yaml": """
            id: refund
            description: d
            goal: g
            known_info:
              email: a@b.c
              order:
                aliases: [order id]
            """
        },
        "s.yaml:6: scenario 'refund': known_info.order: missing field 'value'",
        id="missing-nested",
    ),
    pytest.param(
        "scenarios",
        {"s.yaml": "id: r\ndescription: d\ngoal: g\nknown_info:\n  order: [1, 2]\n"},
        "s.yaml:5: scenario 'r': known_info.order: expected text, got a list",
        id="fact-shorthand-wrong-type",
    ),
    pytest.param(
        "scenarios",
        {"s.yaml": "id: r\ndescription: d\ngoal: g\nmax_turns: 0\n"},
        "s.yaml:4: scenario 'r': max_turns: must be at least 1, got 0",
        id="below-minimum",
    ),
    pytest.param(
        "scenarios",
        {"s.yaml": "id: r\ndescription: d\ngoal: g\nmax_turns: ten\n"},
        "s.yaml:4: scenario 'r': max_turns: expected a whole number, got 'ten'",
        id="not-a-number",
    ),
    pytest.param(
        "personas",
        {"p.yaml": "id: ana\nname: Ana\ntraits:\n  typo_rate: 2\n"},
        "p.yaml:4: persona 'ana': traits.typo_rate: must be at most 1.0, got 2",
        id="above-maximum",
    ),
    pytest.param(
        "personas",
        {"p.yaml": "id: ana\nname: Ana\ntraits: high\n"},
        "p.yaml:3: persona 'ana': traits: expected a mapping of fields, got 'high'",
        id="model-not-mapping",
    ),
    pytest.param(
        "personas",
        {"p.yaml": "id: ana\nname: Ana\ntags: adversarial\n"},
        "p.yaml:3: persona 'ana': tags: expected a list, got 'adversarial'",
        id="not-a-list",
    ),
    pytest.param(
        "personas",
        {"p.yaml": "id: ana\nname: Ana\ntags:\n  - a\n  - {b: c}\n"},
        "p.yaml:5: persona 'ana': tags[1]: expected text, got a mapping",
        id="list-item-wrong-type",
    ),
    pytest.param(
        "personas",
        {"p.yaml": "id: ana smith\nname: Ana\n"},
        "p.yaml:1: persona 'ana smith': id: expected letters, digits and '_', '.', ':', '-', "
        "starting with a letter or digit, got 'ana smith'",
        id="bad-id",
    ),
    pytest.param(
        "scenarios",
        {"s.yaml": "id: r\ndescription: ''\ngoal: g\n"},
        "s.yaml:2: scenario 'r': description: must not be empty",
        id="empty-text",
    ),
    pytest.param(
        "scenarios",
        {"s.yaml": "id: r\ndescription: d\ngoal: g\nopening: !!timestamp 2024-05-01\n"},
        "s.yaml:4: scenario 'r': opening: expected text, got a date (2024-05-01)",
        id="explicit-date",
    ),
    pytest.param(
        "personas",
        {"personas/s.yaml": "just a string\n"},
        "personas/s.yaml:1: expected a persona (a mapping of fields) or a list of personas, "
        "got 'just a string'",
        id="document-not-mapping",
    ),
    pytest.param(
        "personas",
        {"personas/s.yaml": "id: ana\nname: Ana\n---\n\n- 42\n"},
        "personas/s.yaml:5: persona #2: expected a mapping of fields, got '42'",
        id="list-item-not-mapping",
    ),
    pytest.param(
        "scenarios",
        {"scenarios/p.yaml": "- id: ana\n  name: Ana\n  traits: {patience: low}\n"},
        "scenarios/p.yaml:1: scenario 'ana' looks like a persona, not a scenario (it has 'name', "
        "'traits'); was a persona file given as scenarios?",
        id="persona-file-as-scenarios",
    ),
    pytest.param(
        "personas",
        {"p.yaml": "scenarios:\n  - id: r\n"},
        "p.yaml:1: this file holds scenarios ('scenarios:'), not personas",
        id="scenarios-wrapper-as-personas",
    ),
    pytest.param(
        "personas",
        {"p.yaml": "version: 1\npersonas:\n  - id: a\n    name: A\n"},
        "p.yaml:1: unknown top-level key 'version' next to 'personas:' "
        "(it should hold only the list of personas)",
        id="wrapper-extra-key",
    ),
    pytest.param(
        "personas",
        {"p.yaml": "personas:\n  id: a\n  name: A\n"},
        "p.yaml:2: 'personas:' should hold a list of personas, got a mapping",
        id="wrapper-not-list",
    ),
    pytest.param(
        "personas",
        {"p.yaml": "ana:\n  name: Ana\nbob:\n  name: Bob\n"},
        "p.yaml:1: persona #1 is a mapping of names ('ana', 'bob') to mappings; write a list of "
        "personas, each with an 'id:' field",
        id="mapping-of-ids",
    ),
    pytest.param(
        "personas",
        {"personas/p.yaml": PERSONA_OK + "- id: bob\n  name: Bob\n- id: ana\n  name: Ana B\n"},
        "personas/p.yaml:5: duplicate persona id 'ana' (first defined at personas/p.yaml:1)",
        id="duplicate-id-in-file",
    ),
    pytest.param(
        "scenarios",
        {
            "scenarios/a.yaml": "# a\n# b\n\n- id: refund\n  description: d\n  goal: g\n",
            "scenarios/b.yaml": "id: refund\ndescription: d2\ngoal: g2\n",
        },
        "scenarios/b.yaml:1: duplicate scenario id 'refund' (first defined at scenarios/a.yaml:4)",
        id="duplicate-id-across-files",
    ),
    pytest.param(
        "personas",
        {"personas/a.yaml": PERSONA_OK, "personas/empty.yaml": "# nothing yet\n"},
        "personas/empty.yaml: no personas in file",
        id="empty-file",
    ),
    pytest.param(
        "scenarios",
        {"scenarios/a.yaml": "scenarios: []\n"},
        "scenarios/a.yaml: no scenarios in file",
        id="empty-wrapper",
    ),
    pytest.param(
        "personas",
        {"personas/notes.txt": "hello"},
        "personas/: no .yaml, .yml or .json files",
        id="folder-without-yaml",
    ),
    pytest.param(
        "personas",
        {"personas/p.yaml": "id: ana\nname: Ana\ndescription: caf\xe9\n"},
        "personas/p.yaml:3: not UTF-8 text (byte 0xe9); save the file as UTF-8",
        id="not-utf8",
    ),
    pytest.param(
        "personas",
        {"personas/p.json": '[\n  {"id": "a",\n   "name": "A",}\n]'},
        "personas/p.json:3: JSON syntax error: Expecting property name enclosed in double quotes",
        id="json-syntax",
    ),
    pytest.param(
        "personas",
        {"personas/p.json": '[\n {"id": "a",\n\t"name": "A",\n\t"traits": {"patience": "x"}}\n]'},
        "personas/p.json:4: persona 'a': traits.patience: expected one of 'low', 'medium', "
        "'high', got 'x'",
        id="json-line-numbers",
    ),
    pytest.param(
        "personas",
        {"personas/p.json": '{"id": "a", "name": "A", "tags": [1]}'},
        "personas/p.json:1: persona 'a': tags[0]: expected text, got 1",
        id="json-types-are-kept",
    ),
]


@pytest.mark.parametrize(("kind", "files", "expected"), CASES)
def test_bad_input_is_one_exact_line(
    write: Write, tmp_path: Path, kind: str, files: dict[str, str], expected: str
) -> None:
    for name, text in files.items():
        if "\xe9" in text:  # the non-UTF-8 case needs raw Latin-1 bytes
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(text.encode("latin-1"))
        else:
            write(name, text)
    top = {name.split("/")[0] + "/" if "/" in name else name for name in files}
    load = load_personas if kind == "personas" else load_scenarios
    assert error_of(load, *sorted(top)) == expected


def test_missing_path(write: Write) -> None:
    assert error_of(load_personas, "personas/") == "no such file or folder: 'personas/'"


def test_empty_folder_without_trailing_slash(write: Write, tmp_path: Path) -> None:
    (tmp_path / "personas").mkdir()
    assert error_of(load_personas, "personas") == "personas/: no .yaml, .yml or .json files"


def test_first_error_wins_across_files(write: Write) -> None:
    write("personas/a.yaml", "id: a\nname: A\ntraits: {tone: grumpy}\n")
    write("personas/b.yaml", "id: b\n")
    assert error_of(load_personas, "personas").startswith("personas/a.yaml:3: persona 'a': ")
