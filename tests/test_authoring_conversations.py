"""`simulate import conversations`: OpenAI chat JSONL, Taskmaster JSON and run folders become
reference sets in the run folder's shape; bad files are one-line errors naming the line; PII
masking; scenarios and personas drafted from the conversations (offline, and by a model
through the local OpenAI-compatible server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from fakes.openai_server import FakeOpenAIServer

import simulate
from simulate.authoring.conversations import (
    HUMAN,
    TASK_FROM_CONVERSATION,
    TASK_FROM_WRITER,
    mask_pii,
    read_conversations,
)
from simulate.authoring.drafts import draft_task, facts_given
from simulate.authoring.taskmaster import first_person
from simulate.cli import cli
from simulate.errors import ConfigError
from simulate.loader import load_personas, load_scenarios
from simulate.schema import Message, Status
from simulate.store import iter_episodes, read_manifest

SAMPLE = Path(__file__).parent / "data" / "taskmaster" / "sample.json"
SHARED = Path(__file__).parents[2] / "shared" / "data" / "taskmaster4"

CHATS = [
    {
        "id": "c1",
        "messages": [
            {"role": "system", "content": "You are a shop assistant."},
            {"role": "user", "content": "Hi, where is my order?"},
            {"role": "assistant", "content": "What is your order number?"},
            {"role": "user", "content": "A-10442"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {
                            "name": "lookup_order",
                            "arguments": '{"order_number": "A-10442"}',
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "shipped"}'},
            {"role": "assistant", "content": [{"type": "text", "text": "It has shipped."}]},
            {"role": "user", "content": "Thanks! Mail me at ana.ruiz@example.com"},
        ],
    },
    {"messages": [{"role": "user", "content": "Call me on +44 20 7946 0958 please"}]},
]


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=True)
    return result


def error_of(result) -> str:
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError | SystemExit), result.output
    return str(result.exception)


@pytest.fixture
def chats(tmp_path: Path) -> Path:
    path = tmp_path / "logs.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in CHATS) + "\n", encoding="utf-8")
    return path


def test_openai_jsonl_becomes_a_reference_set_the_run_readers_read(chats, tmp_path):
    ref = tmp_path / "ref"
    result = invoke("import", "conversations", str(chats), "-o", str(ref), "--license", "MIT")
    assert result.exit_code == 0, result.output
    assert "wrote 2 conversations (4 user messages, openai)" in result.output
    ds = simulate.load_run(ref)  # the same reader as a run
    assert ds.num_rows == 2
    first = next(e for e in iter_episodes(ref) if len(e.messages) > 1)
    assert [m.role for m in first.messages] == [
        "system", "user", "assistant", "user", "assistant", "tool", "assistant", "user",
    ]  # fmt: skip
    assert first.messages[4].tool_calls[0].name == "lookup_order"
    assert first.messages[4].tool_calls[0].arguments == {"order_number": "A-10442"}
    assert first.messages[5].tool_call_id == "call_1"
    assert first.messages[6].content == "It has shipped."
    assert first.persona_id == HUMAN and first.outcome.status == Status.IMPORTED
    persona = json.loads(first.persona)
    assert persona["license"] == "MIT" and persona["source"] == "logs.jsonl (openai)"
    task = json.loads(first.scenario)
    assert TASK_FROM_CONVERSATION in task["tags"]
    assert task["opening"] == "Hi, where is my order?"
    assert task["known_info"]["order_number"]["value"] == "A-10442"
    assert task["success"]["must_call_tools"] == ["lookup_order"]
    manifest = read_manifest(ref)
    assert manifest["simulate"] == "reference"
    assert manifest["source"]["license"] == "MIT" and manifest["reference"]["pii_masked"] is False
    assert "ana.ruiz@example.com" in first.messages[-1].content  # not masked unless asked


def test_mask_pii_masks_emails_phones_and_cards_but_not_order_numbers():
    text = (
        "Mail ana.ruiz@example.com or call +44 20 7946 0958 / (555) 123-4567; card "
        "4111 1111 1111 1111, not 4111 1111 1111 1112; order 28740, 2 lattes for $4.50"
    )
    assert mask_pii(text) == (
        "Mail [EMAIL] or call [PHONE] / [PHONE]; card [CARD], not 4111 1111 1111 1112; "
        "order 28740, 2 lattes for $4.50"
    )


def test_mask_pii_flag_masks_messages_tool_calls_and_task_facts(chats, tmp_path):
    ref = tmp_path / "ref"
    result = invoke("import", "conversations", str(chats), "-o", str(ref), "--mask-pii")
    assert result.exit_code == 0, result.output
    texts = [m.content for e in iter_episodes(ref) for m in e.messages]
    assert "Thanks! Mail me at [EMAIL]" in texts
    assert "Call me on [PHONE] please" in texts
    stored = "".join(p.read_bytes().decode("latin-1") for p in (ref / "episodes").glob("*"))
    assert "example.com" not in stored and "7946" not in stored
    assert read_manifest(ref)["reference"]["pii_masked"] is True


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"messages": [{"role": "user", "content": "hi"}]}', "not json"], "logs.jsonl:2: not"),
        (['{"prompt": "hi"}'], "logs.jsonl:1: keys 'prompt'; expected one {\"messages\""),
        (['{"messages": [{"role": "bot", "content": "x"}]}'], "logs.jsonl:1: message 1: unknown"),
        (
            ['{"messages": [{"role": "assistant", "content": "Hi"}]}'],
            "logs.jsonl:1: the conversation has no user message",
        ),
        (['{"messages": [{"role": "user", "content": 3}]}'], "logs.jsonl:1: message 1: content"),
        ([""], "no conversations in it"),
    ],
)
def test_bad_jsonl_is_a_one_line_error_naming_the_line(tmp_path, lines, message):
    path = tmp_path / "logs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = invoke("import", "conversations", str(path), "-o", str(tmp_path / "ref"))
    text = error_of(result)
    assert message in text and "\n" not in text
    assert not (tmp_path / "ref").exists()


def test_taskmaster_json_keeps_the_api_calls_and_the_writers_task(tmp_path):
    conversations, fmt = read_conversations(SAMPLE)
    assert fmt == "taskmaster" and len(conversations) == 100
    tasked = [c for c in conversations if c.task is not None]
    assert len(tasked) >= 80
    mocha = next(c for c in conversations if c.conversation_id.startswith("dlg-eca31a60"))
    assert mocha.task is None  # an open-ended dialog: its task is drafted on writing
    assert [m.content for m in mocha.messages] == [
        "I would like a mocha with the name Laura.",
        "Is this the correct order.",
        "No, I actually want it decaf.",
        "OK, how is the order now?",
        "Correct, thanks.",
        "Good, your order will be at the coffee bar in a couple minutes.",
    ]
    assert [c.name for c in mocha.messages[1].tool_calls] == [
        "get_menu_items", "add_order_item", "get_order_details",
    ]  # fmt: skip
    assert mocha.messages[1].tool_calls[0].arguments == {"query": "Mocha"}
    assert mocha.messages[5].tool_calls[0].name == "finish_order"
    cortado = next(c for c in conversations if c.conversation_id.startswith("dlg-4f174ca0"))
    task = cortado.task
    assert TASK_FROM_WRITER in task.tags
    assert task.description == (
        'I\'d like to order a Cortado with Non-Fat milk and include the instruction of "Lungo".'
    )
    assert {k: f.value for k, f in task.known_info.items()} == {
        "drink": "Cortado", "milk": "Non-Fat", "note": "Lungo", "name": "patience",
    }  # fmt: skip
    assert task.success.must_call_tools == ["get_order_details", "finish_order"]


def test_the_writers_hints_read_in_the_first_person():
    assert first_person("Order a Latte. Make it sound natural.") == "I'd like to order a Latte."
    assert (
        first_person("Asks the coffee bar attendant what kinds of teas they have")
        == "I want to know what kinds of teas you have."
    )
    assert first_person("answers yes") == "I want to answer yes."
    assert (
        first_person(
            "1. Orders a Double Cortado. 2. Specifies it is a 'To go' order. Say it out loud"
        )
        == "I'd like to order a Double Cortado. I want to specify it is a 'To go' order."
    )


def test_taskmaster_import_records_the_licence_and_attribution(tmp_path):
    ref = tmp_path / "ref"
    result = invoke("import", "conversations", str(SAMPLE), "-o", str(ref))
    assert result.exit_code == 0, result.output
    source = read_manifest(ref)["source"]
    assert source["license"] == "CC-BY-4.0" and source["format"] == "taskmaster"
    card = (ref / "README.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in card and "Google LLC" in card and "Bill Byrne" in card
    persona = json.loads(next(iter_episodes(ref)).persona)
    assert persona["license"] == "CC-BY-4.0" and "Taskmaster" in persona["source"]
    again = invoke("import", "conversations", str(SAMPLE), "-o", str(ref))
    assert "is not empty; add --force to replace it" in error_of(again)
    replaced = invoke("import", "conversations", str(SAMPLE), "-o", str(ref), "--force")
    assert replaced.exit_code == 0 and simulate.load_run(ref).num_rows == 100


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[\n{"utterances": [{"speaker": "user", "text": "x"}]},\n{"id": 1}\n]',
            "dialogs.json:3: a dialog with keys 'id'",
        ),
        (
            '[\n{"utterances": [{"speaker": "USER"}]}\n]',
            "dialogs.json:2: utterance 1 has no 'text'",
        ),
        (
            '[\n{"utterances": [{"speaker": "bot", "text": "x"}]}\n]',
            "dialogs.json:2: utterance 1: speaker 'bot'",
        ),
        ('[\n{"utterances": [\n{"speaker": "user", "text": "x"}\n]},\n{"utt', "dialogs.json:5:"),
        ('[\n{"utterances": [{"speaker": "assistant", "text": "x"}]}\n]', "dialogs.json:2: the"),
    ],
)
def test_bad_taskmaster_files_name_the_line_of_the_dialog(tmp_path, text, message):
    path = tmp_path / "dialogs.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_conversations(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_run_folder_is_read_with_its_scenarios_as_tasks(tmp_path):
    run = tmp_path / "run"
    assert invoke("demo", "--out", str(run), "-q").exit_code == 0
    ref = tmp_path / "ref"
    result = invoke("import", "conversations", str(run), "-o", str(ref), "--source", "our demo")
    assert result.exit_code == 0, result.output
    original = {(e.scenario, e.messages[0].content) for e in iter_episodes(run)}
    copied = list(iter_episodes(ref))
    assert len(copied) == 108 and read_manifest(ref)["source"]["source"] == "our demo"
    assert {(e.scenario, e.messages[0].content) for e in copied} == original
    assert not any(TASK_FROM_CONVERSATION in json.loads(e.scenario)["tags"] for e in copied)


def test_missing_files_and_unknown_formats_are_one_line_errors(tmp_path):
    assert "no such file" in error_of(
        invoke("import", "conversations", str(tmp_path / "x.jsonl"), "-o", str(tmp_path / "r"))
    )
    folder = tmp_path / "folder"
    folder.mkdir()
    assert "is not a run folder" in error_of(
        invoke("import", "conversations", str(folder), "-o", str(tmp_path / "r"))
    )


def test_facts_given_are_short_answers_to_what_the_agent_asked():
    messages = [
        Message(role="user", content="Hi, I want to change my booking"),
        Message(role="assistant", content="Sure. What is your booking reference?"),
        Message(role="user", content="NW8BKW"),
        Message(role="assistant", content="And may I have your last name, please?"),
        Message(role="user", content="Weber."),
        Message(role="assistant", content="Done. Anything else?"),
        Message(role="user", content="No that is all, you can reach me at k.weber@example.de"),
    ]
    assert facts_given(messages) == {
        "booking_reference": "NW8BKW",
        "last_name": "Weber",
        "email": "k.weber@example.de",
    }
    task = draft_task(messages, "x 1")
    assert task.id == "conv-x-1" and task.opening == "Hi, I want to change my booking"


def test_draft_scenarios_offline_write_files_the_loaders_read(tmp_path):
    out = tmp_path / "drafts.yaml"
    result = invoke(
        "import", "conversations", str(SAMPLE), "-o", str(tmp_path / "ref"),
        "--draft-scenarios", str(out), "--drafts", "12", "--seed", "3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    scenarios = load_scenarios(out)
    personas = load_personas(tmp_path / "drafts.personas.yaml")
    assert len(scenarios) == 12 and len({s.id for s in scenarios}) == 12
    assert all(s.opening for s in scenarios)  # the person's own first message
    assert len({s.tags[-1] for s in scenarios if TASK_FROM_WRITER in s.tags}) >= 8  # spread
    assert personas and all(p.license == "CC-BY-4.0" for p in personas)
    assert sum(int(p.description.split()[2]) for p in personas) == 100  # every writer counted
    header = out.read_text(encoding="utf-8").splitlines()[0:4]
    assert any("Attribution" in line and "CC BY 4.0" in line for line in header)


def test_model_flags_need_draft_scenarios(tmp_path):
    result = invoke(
        "import", "conversations", str(SAMPLE), "-o", str(tmp_path / "r"), "--llm", "gpt-x"
    )
    assert result.exit_code != 0 and "--llm only applies with --draft-scenarios" in result.output
    assert not (tmp_path / "r").exists()


def _draft_reply(request: dict) -> dict:
    transcript = request["messages"][-1]["content"]
    first = transcript.splitlines()[0].removeprefix("customer: ")
    return {
        "json": {
            "title": f"Order: {first[:40]}",
            "description": f"I want this: {first}",
            "goal": "The barista takes the order.",
            "opening": first.lower(),
            "known_info": [{"name": "drink", "value": "latte"}],
            "unknown_info": [],
            "instructions": ["Confirm when asked, in one word."],
            "persona": {
                "description": "A regular in a hurry.",
                "verbosity": "terse",
                "politeness": "neutral",
                "tone": "calm",
                "patience": "low",
                "expertise": "expert",
            },
        }
    }


def test_draft_scenarios_with_a_model_use_structured_output(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMULATE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    out = tmp_path / "drafts.yaml"
    with FakeOpenAIServer() as server:
        server.reply_with(_draft_reply)
        result = invoke(
            "import", "conversations", str(SAMPLE), "-o", str(tmp_path / "ref"),
            "--draft-scenarios", str(out), "--drafts", "3", "--llm", "gpt-4o-mini",
            "--base-url", server.base_url,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert server.count == 3
        body = server.requests[0].body
        assert body["response_format"]["type"] == "json_schema"
        assert "customer: " in body["messages"][-1]["content"]
    scenarios = load_scenarios(out)
    personas = load_personas(tmp_path / "drafts.personas.yaml")
    assert len(scenarios) == 3 and len(personas) == 3
    assert scenarios[0].known_info["drink"].value == "latte"
    assert personas[0].traits.verbosity == "terse" and personas[0].traits.patience == "low"
    assert f"persona:{personas[0].id}" in scenarios[0].tags
    assert "drafted by openai:gpt-4o-mini" in out.read_text(encoding="utf-8")


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared Taskmaster files are absent")
def test_every_shared_taskmaster_file_imports(tmp_path):
    for path in sorted(SHARED.glob("data_*.json")):
        conversations, fmt = read_conversations(path)
        assert fmt == "taskmaster" and len(conversations) == 500
        with_tasks = sum(1 for c in conversations if c.task is not None)
        given = sum(1 for d in json.loads(path.read_text("utf-8")) if d.get("instructions"))
        assert given >= 410 and with_tasks >= 0.9 * given, path  # README: 410-437 instructed


def test_scenario_yaml_of_a_reference_row_round_trips():
    conversations, _ = read_conversations(SAMPLE)
    task = next(c.task for c in conversations if c.task is not None)
    assert yaml.safe_load(yaml.safe_dump(task.model_dump(mode="json")))["id"] == task.id
