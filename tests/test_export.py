"""`simulate export`: each format read back by its loader, the OpenAI chat shape, bad input."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import datasets
import polars as pl
import pytest
from test_cli import simulate_cli

import simulate
from simulate.errors import ConfigError, RunFolderError
from simulate.export import TURN_SCHEMA, export_run, openai_chat
from simulate.schema import Episode, Label, Message, ToolCall
from simulate.store import LABELS, ShardWriter

DEMO = Path(simulate.__file__).parent / "demo"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo run: 2 personas x 3 scenarios x 2 trials, with tool calls, successes, failures."""
    out = tmp_path_factory.mktemp("export") / "run"
    config = simulate.RunConfig(
        personas=[str(DEMO / "personas")],
        scenarios=[str(DEMO / "scenarios")],
        target="demo",
        out=str(out),
        persona_filter=["alex_rowe", "derek_stanton"],
        scenario_filter=["baggage_allowance", "cancel_refundable", "cancel_nonrefundable"],
        trials=2,
        use_cache=False,
    )
    asyncio.run(simulate.run(config))
    return out


@pytest.fixture(scope="module")
def stored(run_dir: Path) -> list[dict[str, Any]]:
    return simulate.load_run(run_dir).to_list()


def test_the_demo_run_has_what_the_tests_need(stored):
    episodes = [Episode.model_validate(row) for row in stored]
    assert len(episodes) == 12
    assert {e.success for e in episodes} == {True, False}
    assert any(m.tool_calls for e in episodes for m in e.messages)
    assert any(e.messages[-1].role == "user" for e in episodes)


# --- episodes: jsonl, parquet, csv ------------------------------------------------------------


def test_jsonl_round_trips_every_episode(run_dir, stored, tmp_path):
    result = export_run(run_dir, "jsonl", tmp_path / "episodes.jsonl")
    assert (result.episodes, result.rows, result.left_out) == (12, 12, 0)
    lines = [json.loads(line) for line in result.path.read_text().splitlines()]
    assert lines == stored
    ds = datasets.load_dataset("json", data_files=str(result.path), split="train")
    assert ds["episode_id"] == [row["episode_id"] for row in stored]
    assert [Episode.model_validate(row) for row in lines] == [
        Episode.model_validate(row) for row in stored
    ]


def test_parquet_keeps_the_run_schema_and_every_row(run_dir, stored, tmp_path):
    result = export_run(run_dir, "parquet", tmp_path / "out.parquet")
    ds = datasets.load_dataset("parquet", data_files=str(result.path), split="train")
    assert ds.features == simulate.load_run(run_dir).features
    assert ds.to_list() == stored


def test_a_folder_out_gets_the_default_file_name(run_dir, tmp_path):
    assert export_run(run_dir, "parquet", tmp_path).path == tmp_path / "episodes.parquet"
    new = f"{tmp_path / 'new'}/"
    assert export_run(run_dir, "csv", new).path == tmp_path / "new" / "episodes.csv"


def test_csv_json_encodes_nested_columns(run_dir, stored, tmp_path):
    result = export_run(run_dir, "csv", tmp_path / "episodes.csv")
    frame = pl.read_csv(result.path)
    assert frame.height == len(stored)
    assert frame["episode_id"].to_list() == [row["episode_id"] for row in stored]
    assert frame["success"].to_list() == [row["success"] for row in stored]
    for row, text in zip(stored, frame["messages"], strict=True):
        assert json.loads(text) == row["messages"]
    assert [json.loads(o) for o in frame["outcome"]] == [row["outcome"] for row in stored]


# --- turns ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["turns.parquet", "turns.jsonl"])
def test_turns_have_one_row_per_message(run_dir, stored, tmp_path, name):
    result = export_run(run_dir, "turns", tmp_path / name)
    kind = "parquet" if name.endswith(".parquet") else "json"
    turns = datasets.load_dataset(kind, data_files=str(result.path), split="train").to_list()
    assert result.rows == len(turns) == sum(len(row["messages"]) for row in stored)
    assert set(turns[0]) == set(TURN_SCHEMA.names)
    for row in stored:
        mine = [t for t in turns if t["episode_id"] == row["episode_id"]]
        assert [t["turn_index"] for t in mine] == list(range(len(row["messages"])))
        assert [t["content"] for t in mine] == [m["content"] for m in row["messages"]]
        assert [t["tool_calls"] for t in mine] == [m["tool_calls"] for m in row["messages"]]
        assert {(t["status"], t["success"]) for t in mine} == {
            (row["outcome"]["status"], row["success"])
        }


def test_turns_refuse_an_unknown_extension(run_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"\.parquet or \.jsonl"):
        export_run(run_dir, "turns", tmp_path / "turns.csv")


# --- openai-chat ------------------------------------------------------------------------------

NEXT = {"system": {"user"}, "user": {"assistant"}, "plain": {"user"}, "calls": {"tool"}}


def check_chat_example(example: dict[str, Any]) -> None:
    """The OpenAI chat fine-tuning shape: roles in order, tool calls answered, ends with a reply.

    {"messages": [{"role": "system"|"user", "content": str}, {"role": "assistant", "content":
    str} | {"role": "assistant", "content": null, "tool_calls": [{"id", "type": "function",
    "function": {"name", "arguments": JSON text}}]}, {"role": "tool", "tool_call_id", "content"}]}
    """
    assert set(example) in ({"messages"}, {"messages", "tools"})
    for tool in example.get("tools", []):
        assert tool["type"] == "function" and set(tool) == {"type", "function"}
        assert {"name", "parameters"} <= set(tool["function"])
    messages = example["messages"]
    assert messages[0]["role"] in {"system", "user"}
    state, pending = "start", set()
    for message in messages:
        role = message["role"]
        if state != "start":
            allowed = NEXT.get(state, {"tool", "assistant"} if not pending else {"tool"})
            assert role in allowed, f"{role} after {state}"
        if role == "tool":
            assert set(message) == {"role", "tool_call_id", "content"}
            assert isinstance(message["content"], str)
            pending.remove(message["tool_call_id"])
            state = "tool"
        elif role == "assistant" and message.get("tool_calls"):
            assert set(message) == {"role", "content", "tool_calls"}
            for call in message["tool_calls"]:
                assert set(call) == {"id", "type", "function"} and call["type"] == "function"
                assert set(call["function"]) == {"name", "arguments"}
                assert isinstance(json.loads(call["function"]["arguments"]), dict)
            pending = {call["id"] for call in message["tool_calls"]}
            assert len(pending) == len(message["tool_calls"])
            state = "calls"
        else:
            assert set(message) == {"role", "content"} and isinstance(message["content"], str)
            state = "plain" if role == "assistant" else role
    assert state == "plain" and not pending


def test_openai_chat_lines_have_the_documented_shape(run_dir, stored, tmp_path):
    result = export_run(run_dir, "openai-chat", tmp_path / "ft.jsonl")
    examples = [json.loads(line) for line in result.path.read_text().splitlines()]
    assert len(examples) == result.episodes == len(stored)
    for example, row in zip(examples, stored, strict=True):
        check_chat_example(example)
        episode = Episode.model_validate(row)
        replies = [m.content for m in episode.messages if m.role == "assistant"]
        said = [
            m["content"]
            for m in example["messages"]
            if m["role"] == "assistant" and not m.get("tool_calls")
        ]
        assert said == replies  # every agent reply kept, in order
        users = [m.content for m in episode.messages if m.role == "user"]
        asked = [m["content"] for m in example["messages"] if m["role"] == "user"]
        assert asked == users[: len(asked)]
        assert len(users) - len(asked) == (episode.messages[-1].role == "user")
    calls = [m for e in examples for m in e["messages"] if m.get("tool_calls")]
    assert calls, "the demo run has tool calls"


def test_openai_chat_turns_tool_results_into_tool_messages(stored):
    episode = next(
        Episode.model_validate(r)
        for r in stored
        if any(json.loads(m["tool_calls"]) for m in r["messages"])
    )
    index, reply = next((i, m) for i, m in enumerate(episode.messages) if m.tool_calls)
    example = openai_chat(episode)
    assert example is not None
    at = [m.get("tool_calls") is not None for m in example["messages"]].index(True)
    call_message, *rest = example["messages"][at:]
    assert call_message["content"] is None
    first = call_message["tool_calls"][0]
    assert first["id"] == f"call_{index}_0"
    assert first["function"]["name"] == reply.tool_calls[0].name
    assert json.loads(first["function"]["arguments"]) == reply.tool_calls[0].arguments
    tools = rest[: len(reply.tool_calls)]
    assert [t["tool_call_id"] for t in tools] == [c["id"] for c in call_message["tool_calls"]]
    assert json.loads(tools[0]["content"]) == reply.tool_calls[0].result
    assert rest[len(reply.tool_calls)] == {"role": "assistant", "content": reply.content}


def test_openai_chat_keeps_tool_messages_the_transcript_already_has(stored):
    episode = Episode.model_validate(stored[0]).model_copy(
        update={
            "messages": [
                Message(role="system", content="You are an airline agent."),
                Message(role="user", content="Where is my bag?"),
                Message(role="assistant", tool_calls=[ToolCall(name="find_bag", id="c1")]),
                Message(role="tool", tool_call_id="c1", content="in Lisbon"),
                Message(role="assistant", content="It is in Lisbon."),
                Message(role="user", content="Thanks, bye."),
            ]
        }
    )
    example = openai_chat(episode)
    assert example is not None
    check_chat_example(example)
    assert [m["role"] for m in example["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    assert example["messages"][3] == {"role": "tool", "tool_call_id": "c1", "content": "in Lisbon"}


def test_openai_chat_leaves_out_episodes_the_agent_never_answered(stored):
    episode = Episode.model_validate(stored[0]).model_copy(
        update={"messages": [Message(role="user", content="Hello?")]}
    )
    assert openai_chat(episode) is None


# --- evaluation datasets: deepeval, inspect ---------------------------------------------------


def _pairs(stored: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    pairs: dict[str, list[dict[str, Any]]] = {}
    for row in stored:
        pairs.setdefault(f"{row['persona_id']} x {row['scenario_id']}", []).append(row)
    return pairs


def test_deepeval_goldens_have_the_keys_its_json_loader_reads(run_dir, stored, tmp_path):
    result = export_run(run_dir, "deepeval", tmp_path / "goldens.json")
    goldens = json.loads(result.path.read_text())
    pairs = _pairs(stored)
    assert isinstance(goldens, list) and len(goldens) == result.rows == len(pairs) == 6
    keys = {"scenario", "expected_outcome", "user_description", "name", "additional_metadata"}
    for golden in goldens:
        # add_goldens_from_json_file makes a ConversationalGolden only when `scenario` is truthy
        assert set(golden) == keys and golden["scenario"]
        assert all(isinstance(golden[k], str) for k in keys - {"additional_metadata"})
        first = pairs[golden["name"]][0]
        scenario = json.loads(first["scenario"])
        assert golden["expected_outcome"] == scenario["goal"]
        assert golden["scenario"].startswith(scenario["description"])
        assert json.loads(first["persona"])["name"] in golden["user_description"]
        assert golden["additional_metadata"]["episodes"] == 2


def test_inspect_samples_have_the_fields_json_dataset_reads(run_dir, stored, tmp_path):
    result = export_run(run_dir, "inspect", tmp_path)
    assert result.path == tmp_path / "inspect-samples.jsonl"
    samples = [json.loads(line) for line in result.path.read_text().splitlines()]
    pairs = _pairs(stored)
    assert len(samples) == len(pairs) == len({s["id"] for s in samples})
    for sample in samples:
        assert set(sample) == {"id", "input", "target", "metadata"}
        assert isinstance(sample["input"], str) and sample["input"]  # Inspect refuses no input
        assert isinstance(sample["target"], str) and isinstance(sample["metadata"], dict)
        meta = sample["metadata"]
        first = pairs[f"{meta['persona_id']} x {meta['scenario_id']}"][0]
        assert sample["input"] == first["messages"][0]["content"]
        assert sample["target"] == json.loads(first["scenario"])["goal"]


# --- Arize Phoenix -----------------------------------------------------------------------------


def test_phoenix_examples_have_the_shape_create_dataset_takes(run_dir, stored, tmp_path):
    """`phoenix.client.Client().datasets.create_dataset(name=..., examples=[...])` takes dicts
    with required `input` and `output` mappings and an optional `metadata` mapping."""
    result = export_run(run_dir, "phoenix", tmp_path)
    assert result.path == tmp_path / "phoenix-examples.jsonl"
    examples = [json.loads(line) for line in result.path.read_text().splitlines()]
    assert len(examples) == result.rows == len(stored)
    by_id = {row["episode_id"]: row for row in stored}
    for example in examples:
        assert set(example) == {"input", "output", "metadata"}
        assert all(isinstance(example[k], dict) for k in example)
        row = by_id[example["metadata"]["episode_id"]]
        scenario = json.loads(row["scenario"])
        assert example["input"]["goal"] == scenario["goal"]
        assert example["input"]["opening"] == row["messages"][0]["content"]
        assert example["output"]["success"] is row["success"]
        assert example["output"]["status"] == row["outcome"]["status"]
        assert [m["content"] for m in example["output"]["messages"]] == [
            m["content"] for m in row["messages"]
        ]
    called = [m for e in examples for m in e["output"]["messages"] if "tool_calls" in m]
    assert called and all(isinstance(m["tool_calls"], list) and m["tool_calls"] for m in called)
    frame = pl.read_ndjson(result.path)  # a table with the three columns Phoenix reads
    assert frame.columns == ["input", "output", "metadata"] and frame.height == len(stored)


# --- the agent's system prompt and tools in openai-chat -------------------------------------------


def _with_agent_files(run_dir: Path, tmp_path: Path, edit_after: bool = False) -> Path:
    """A copy of the run whose manifest names a system prompt and tools file, as an
    `openai:MODEL` run records them (paths in `config`, hashes in `llm.prompt_hashes`)."""
    import hashlib
    import shutil

    copy = Path(shutil.copytree(run_dir, tmp_path / "agent-run"))
    prompt = tmp_path / "system.md"
    prompt.write_text("You are the airline's support agent. Be brief.\n")
    tools = tmp_path / "tools.yaml"
    tools.write_text(
        "tools:\n"
        "  - name: lookup_booking\n"
        "    description: Find a booking by its reference.\n"
        "    parameters: {type: object, properties: {ref: {type: string}}, required: [ref]}\n"
        "    result: {status: confirmed}\n"
    )
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["config"] |= {"system_prompt": str(prompt), "tools": str(tools)}
    manifest["llm"] = {
        "prompt_hashes": {
            name: hashlib.sha256(path.read_text().encode()).hexdigest()[:16]
            for name, path in (("system_prompt", prompt), ("tools", tools))
        }
    }
    (copy / "manifest.json").write_text(json.dumps(manifest))
    if edit_after:
        prompt.write_text("A different prompt, written after the run.\n")
    return copy


def test_openai_chat_starts_with_the_agents_system_prompt_and_carries_its_tools(run_dir, tmp_path):
    run = _with_agent_files(run_dir, tmp_path)
    result = export_run(run, "openai-chat", tmp_path / "ft.jsonl")
    examples = [json.loads(line) for line in result.path.read_text().splitlines()]
    assert result.notes == [] and examples
    for example in examples:
        check_chat_example(example)
        assert example["messages"][0] == {
            "role": "system",
            "content": "You are the airline's support agent. Be brief.\n",
        }
        assert example["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "lookup_booking",
                    "description": "Find a booking by its reference.",
                    "parameters": {
                        "type": "object",
                        "properties": {"ref": {"type": "string"}},
                        "required": ["ref"],
                    },
                },
            }
        ]


def test_openai_chat_leaves_out_a_system_prompt_edited_since_the_run(run_dir, tmp_path):
    run = _with_agent_files(run_dir, tmp_path, edit_after=True)
    result = export_run(run, "openai-chat", tmp_path / "ft.jsonl")
    examples = [json.loads(line) for line in result.path.read_text().splitlines()]
    assert len(result.notes) == 1 and "changed since the run" in result.notes[0]
    assert all(e["messages"][0]["role"] == "user" for e in examples)
    assert all("tools" in e for e in examples)  # the tools file did not change


# --- --passed-only and --criterion ------------------------------------------------------------


def test_passed_only_keeps_successful_episodes(run_dir, stored, tmp_path):
    result = export_run(run_dir, "openai-chat", tmp_path / "ft.jsonl", passed_only=True)
    good = [row["episode_id"] for row in stored if row["success"]]
    assert (result.episodes, result.left_out) == (len(good), len(stored) - len(good))
    jsonl = export_run(run_dir, "jsonl", tmp_path / "ok.jsonl", passed_only=True)
    ids = [json.loads(line)["episode_id"] for line in jsonl.path.read_text().splitlines()]
    assert ids == good


def _label(episode_id: str, passed: bool, labeler: str, kind: str = "human") -> Label:
    return Label(
        episode_id=episode_id,
        criterion="polite",
        value="yes" if passed else "no",
        score=1.0 if passed else 0.0,
        passed=passed,
        labeler=labeler,
        labeler_kind=kind,
        created_at="2026-01-01T00:00:00+00:00",
    )


def test_criterion_keeps_episodes_whose_merged_labels_pass(stored, tmp_path):
    copy = tmp_path / "run"
    export_run_dir = _copy_run(stored, copy)
    ids = [row["episode_id"] for row in stored]
    writer = ShardWriter(export_run_dir, LABELS)
    for label in [
        _label(ids[0], True, "human:ana"),
        _label(ids[0], False, "rule:x", "rule"),  # people outrank rules
        _label(ids[1], False, "human:ana"),
        _label(ids[2], True, "judge:m", "judge"),
    ]:
        writer.add(label)
    writer.flush()
    result = export_run(copy, "jsonl", tmp_path / "polite.jsonl", criterion="polite")
    kept = [json.loads(line)["episode_id"] for line in result.path.read_text().splitlines()]
    assert sorted(kept) == sorted([ids[0], ids[2]])
    with pytest.raises(ConfigError, match=r"unknown criterion 'polit' \(did you mean 'polite'"):
        export_run(copy, "jsonl", tmp_path / "x.jsonl", criterion="polit")


def test_a_criterion_needs_labels(run_dir, tmp_path):
    with pytest.raises(ConfigError, match="has no labels"):
        export_run(run_dir, "jsonl", tmp_path / "x.jsonl", criterion="polite")
    assert not (tmp_path / "x.jsonl").exists()


def _copy_run(stored: list[dict[str, Any]], folder: Path) -> Path:
    """A run folder holding ``stored``, so labels can be added without touching the fixture."""
    folder.mkdir()
    (folder / "manifest.json").write_text('{"simulate": "run"}')
    writer = ShardWriter(folder)
    for row in stored:
        writer.add(Episode.model_validate(row))
    writer.flush()
    return folder


# --- bad input --------------------------------------------------------------------------------


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(RunFolderError, match="no such run folder"):
        export_run(tmp_path / "missing", "jsonl", tmp_path / "x.jsonl")
    with pytest.raises(RunFolderError, match="is not a run folder"):
        export_run(tmp_path, "jsonl", tmp_path / "x.jsonl")


def test_an_empty_run_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text('{"simulate": "run"}')
    with pytest.raises(RunFolderError, match="has no episodes"):
        export_run(tmp_path / "run", "jsonl", tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()


def test_an_unknown_format_suggests_the_closest(run_dir, tmp_path):
    with pytest.raises(
        ConfigError, match=r"unknown format 'opnai-chat' \(did you mean 'openai-chat'"
    ):
        export_run(run_dir, "opnai-chat", tmp_path / "x.jsonl")


def test_an_existing_file_needs_force(run_dir, stored, tmp_path):
    path = tmp_path / "episodes.jsonl"
    path.write_text("keep me\n")
    with pytest.raises(ConfigError, match="exists; add --force"):
        export_run(run_dir, "jsonl", path)
    assert path.read_text() == "keep me\n"
    export_run(run_dir, "jsonl", path, force=True)
    assert len(path.read_text().splitlines()) == len(stored)


def test_cli_exports_and_reports_bad_input_in_one_line(run_dir, tmp_path):
    out = tmp_path / "ft.jsonl"
    done = simulate_cli("export", str(run_dir), "--format", "openai-chat", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"to {out}" in done.stdout
    for line in out.read_text().splitlines():
        check_chat_example(json.loads(line))
    for args, message in [
        (["--format", "openai-chat", "--out", str(out)], "exists; add --force"),
        (["--format", "parket", "--out", str(tmp_path / "x")], "did you mean 'parquet'"),
    ]:
        failed = simulate_cli("export", str(run_dir), *args)
        assert failed.returncode == 1
        assert failed.stderr.startswith("error: ") and message in failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1
    missing = simulate_cli("export", str(tmp_path / "nope"), "--format", "csv", "--out", "x.csv")
    assert missing.returncode == 1 and "no such run folder" in missing.stderr


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "csv", "turns", "openai-chat", "phoenix"])
def test_an_export_with_no_passing_episode_is_an_empty_valid_file_with_a_note(
    stored, tmp_path, fmt
):
    failed = _copy_run([{**row, "success": False} for row in stored], tmp_path / "failed")
    suffix = {"parquet": "parquet", "turns": "parquet", "csv": "csv"}.get(fmt, "jsonl")
    out = tmp_path / f"none.{suffix}"
    result = export_run(failed, fmt, out, passed_only=True)
    assert result.rows == 0 and result.left_out == len(stored)
    assert any("no episode" in note for note in result.notes)
    if suffix == "parquet":
        import pyarrow.parquet as pq

        assert pq.read_table(out).num_rows == 0
    elif suffix == "jsonl":
        assert out.read_text() == ""
    else:
        assert out.read_text().count("\n") == 1  # the header only


def test_an_export_into_a_run_folders_data_is_refused(run_dir, stored):
    for inside in (run_dir / "episodes" / "x.parquet", run_dir / "labels" / "y.jsonl"):
        with pytest.raises(ConfigError, match="inside the data of run"):
            export_run(run_dir, "parquet" if inside.suffix == ".parquet" else "jsonl", inside)
    assert len(simulate.load_run(run_dir)) == len(stored)
