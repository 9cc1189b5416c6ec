"""Export a run's episodes to local files in the formats other tools read.

    jsonl        one episode per line, the stored row (``tool_calls`` stays a JSON string)
    parquet      the episodes with the run's schema and Hugging Face features
    csv          one episode per row; nested columns (messages, outcome, usage) JSON-encoded
    turns        one row per message, parquet (or JSON Lines when --out ends in .jsonl)
    openai-chat  OpenAI chat fine-tuning JSON Lines: {"messages": [...]} per episode
    deepeval     DeepEval conversational goldens, a JSON array: one per persona x scenario pair
    inspect      Inspect AI samples, JSON Lines: one per persona x scenario pair
    phoenix      Arize Phoenix dataset examples, JSON Lines: {"input", "output", "metadata"}
                 per episode (`Client().datasets.create_dataset(name=..., examples=...)`)

The openai-chat examples start with the agent's system prompt and carry its `tools` when the run
was made with `--target openai:MODEL --system-prompt FILE [--tools FILE]` and those files are
still there unchanged (their hashes are in the manifest); otherwise they start at the first user
message and the result says why.

``--out`` is a file; an existing folder or a path ending in ``/`` gets a default file name
(``episodes.jsonl``, ``turns.parquet``...). Files are written to a hidden temporary sibling and
renamed into place, so a failed export leaves nothing half-written.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from simulate import prompts
from simulate.errors import ConfigError, RunFolderError, unknown_choice
from simulate.schema import Episode, Manifest, Message, ToolCall
from simulate.store import RunFolder, inside_run_data, write_atomic, write_parquet

#: Export formats and the file name an output folder gets for each.
FORMATS = {
    "jsonl": "episodes.jsonl",
    "parquet": "episodes.parquet",
    "csv": "episodes.csv",
    "turns": "turns.parquet",
    "openai-chat": "openai-chat.jsonl",
    "deepeval": "deepeval-goldens.json",
    "inspect": "inspect-samples.jsonl",
    "phoenix": "phoenix-examples.jsonl",
}

#: The criterion `--passed-only` uses when none is named: the episode's own `success` column.
SUCCESS = "success"

TURN_SCHEMA = pa.schema(
    [
        ("episode_id", pa.string()),
        ("run_id", pa.string()),
        ("persona_id", pa.string()),
        ("scenario_id", pa.string()),
        ("trial", pa.int32()),
        ("turn_index", pa.int32()),
        ("role", pa.string()),
        ("content", pa.string()),
        ("tool_calls", pa.string()),
        ("tool_call_id", pa.string()),
        ("context", pa.list_(pa.string())),
        ("latency_ms", pa.float64()),
        ("status", pa.string()),
        ("success", pa.bool_()),
    ]
)


@dataclass
class ExportResult:
    """What `export_run` wrote."""

    path: Path
    format: str
    episodes: int
    """Episodes exported (after `--passed-only`; for openai-chat, those with an agent reply)."""
    rows: int
    """Records written: episodes, messages for `turns`, pairs for `deepeval` and `inspect`."""
    left_out: int
    """Episodes of the run not written (failed the criterion, or had no agent reply)."""
    notes: list[str] = field(default_factory=list)
    """What the user should know about the export (a system prompt left out, and why)."""


def export_run(
    run_dir: str | Path,
    fmt: str,
    out: str | Path,
    *,
    criterion: str | None = None,
    passed_only: bool = False,
    force: bool = False,
) -> ExportResult:
    """Write the run's episodes to ``out`` in format ``fmt``.

    Args:
        run_dir: The run folder.
        fmt: One of `FORMATS`.
        out: The output file; an existing folder or a path ending in `/` gets a default name.
        criterion: Keep only episodes that pass this label criterion (implies ``passed_only``);
            `success` is the episode's own success column.
        passed_only: Keep only episodes that pass ``criterion`` (`success` when none is named).
        force: Overwrite ``out`` if it exists.

    Raises:
        ConfigError: an unknown format or criterion, an existing ``out`` without ``force``,
            no episode left to write.
        RunFolderError: ``run_dir`` is not a run folder, or holds no episodes.
    """
    if fmt not in FORMATS:
        raise unknown_choice("format", fmt, FORMATS)
    folder = RunFolder.open(run_dir)
    if not folder.has():
        raise RunFolderError(f"run {str(run_dir)!r} has no episodes to export")
    path = _target(out, fmt)
    inside = inside_run_data(path)
    if inside is not None:
        raise ConfigError(
            f"--out {str(path)!r} is inside the data of run {str(inside)!r}, where it would be "
            "read back as part of the run; write it elsewhere"
        )
    if path.exists() and not force:
        raise ConfigError(f"--out {str(path)!r} exists; add --force to overwrite it")
    table = folder.dataset().data.table
    total = table.num_rows
    notes: list[str] = []
    if passed_only or criterion is not None:
        wanted = pa.array(sorted(_passing_ids(folder, table, criterion or SUCCESS)), pa.string())
        table = table.filter(pc.is_in(table.column("episode_id"), value_set=wanted))
        if table.num_rows == 0:
            notes.append(
                f"no episode of {str(run_dir)!r} passes {criterion or SUCCESS!r}: "
                "the file holds no records"
            )
    rows = table.to_pylist()
    if fmt == "openai-chat":
        system, tools, setup_notes = agent_setup(folder.manifest)
        notes += setup_notes
        lines = [
            chat
            for row in rows
            if (chat := openai_chat(Episode.model_validate(row), system=system, tools=tools))
        ]
        if rows and not lines:
            raise ConfigError(f"no episode of {str(run_dir)!r} has an agent reply; nothing written")
        write_atomic(path, lambda tmp: _write_jsonl(tmp, lines))
        return ExportResult(path, fmt, len(lines), len(lines), total - len(lines), notes)
    if fmt == "phoenix":
        examples = [phoenix_example(row) for row in rows]
        write_atomic(path, lambda tmp: _write_jsonl(tmp, examples))
        return ExportResult(path, fmt, len(rows), len(rows), total - len(rows), notes)
    if fmt == "turns":
        turns = [t for row in rows for t in turn_rows(row)]
        if path.suffix == ".jsonl":
            write_atomic(path, lambda tmp: _write_jsonl(tmp, turns))
        else:
            write_parquet(path, pa.Table.from_pylist(turns, TURN_SCHEMA))
        return ExportResult(path, fmt, len(rows), len(turns), total - len(rows), notes)
    if fmt in ("deepeval", "inspect"):
        pairs = _first_of_each_pair(rows)
        if fmt == "deepeval":
            goldens = [deepeval_golden(row, n) for row, n in pairs]
            write_atomic(path, lambda tmp: _write_json(tmp, goldens))
        else:
            samples = [inspect_sample(row, n) for row, n in pairs]
            write_atomic(path, lambda tmp: _write_jsonl(tmp, samples))
        return ExportResult(path, fmt, len(rows), len(pairs), total - len(rows), notes)
    writers: dict[str, Callable[[Path], None]] = {
        "jsonl": lambda tmp: _write_jsonl(tmp, rows),
        "parquet": lambda tmp: write_parquet(tmp, table),
        "csv": lambda tmp: _write_csv(tmp, table.column_names, rows),
    }
    write_atomic(path, writers[fmt])
    return ExportResult(path, fmt, len(rows), len(rows), total - len(rows), notes)


def _target(out: str | Path, fmt: str) -> Path:
    """The output file: ``out`` itself, or the format's default name inside a folder."""
    path = Path(out)
    if path.is_dir() or str(out).endswith(("/", os.sep)):
        return path / FORMATS[fmt]
    if fmt == "turns" and path.suffix not in (".parquet", ".jsonl"):
        raise ConfigError(
            f"--out {str(out)!r}: turns are written as .parquet or .jsonl; name the file so"
        )
    return path


def _passing_ids(folder: RunFolder, table: pa.Table, criterion: str) -> set[str]:
    """Ids of the episodes that pass ``criterion``.

    `success` is the episode's own column. Any other criterion is read from the run's labels,
    merged as golden sets merge them (people over judges over rules, majority within a kind):
    an episode passes when it has labels for the criterion and every labeled unit passed.
    """
    if criterion == SUCCESS:
        ids = table.column("episode_id").to_pylist()
        return {i for i, ok in zip(ids, table.column("success").to_pylist(), strict=True) if ok}
    from simulate.label.golden import merge_labels

    merged = merge_labels(folder.labels())
    known = {m.criterion for m in merged}
    if criterion not in known:
        if not known:
            raise ConfigError(
                f"--criterion {criterion!r}: run {str(folder.path)!r} has no labels; label it with "
                f"`simulate label`, or use --passed-only alone (the {SUCCESS!r} column)"
            )
        raise unknown_choice("criterion", criterion, known | {SUCCESS})
    verdicts: dict[str, bool] = {}
    for label in merged:
        if label.criterion == criterion:
            ok = label.passed is True and not label.disputed
            verdicts[label.episode_id] = verdicts.get(label.episode_id, True) and ok
    return {episode_id for episode_id, ok in verdicts.items() if ok}


# --- formats ----------------------------------------------------------------------------------


def turn_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    """One stored episode row as one row per message (the `turns` format)."""
    return [
        {
            "episode_id": row["episode_id"],
            "run_id": row["run_id"],
            "persona_id": row["persona_id"],
            "scenario_id": row["scenario_id"],
            "trial": row["trial"],
            "turn_index": index,
            "role": message["role"],
            "content": message["content"],
            "tool_calls": message["tool_calls"],
            "tool_call_id": message["tool_call_id"],
            "context": message["context"],
            "latency_ms": message["latency_ms"],
            "status": row["outcome"]["status"],
            "success": row["success"],
        }
        for index, message in enumerate(row["messages"])
    ]


def agent_setup(
    manifest: Manifest,
) -> tuple[str | None, list[dict[str, Any]] | None, list[str]]:
    """The agent's system prompt and tools (OpenAI `tools` entries) the run was made with.

    Read from the `--system-prompt` and `--tools` files the manifest names, and only when their
    text still hashes to what the manifest recorded (a prompt edited since the run would teach
    the wrong thing). Returns (system prompt, tools, notes on what was left out and why).
    """
    config = manifest.config.model_dump()
    hashes = manifest.llm.prompt_hashes if manifest.llm else {}
    found: dict[str, str] = {}
    notes = []
    for name, flag in (("system_prompt", "--system-prompt"), ("tools", "--tools")):
        path = config.get(name)
        if not path:
            continue
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError:
            notes.append(f"{flag} file {path!r} of the run is gone; examples leave it out")
            continue
        recorded = hashes.get(name)
        if recorded and prompts.digest(text) != recorded:
            notes.append(f"{flag} file {path!r} changed since the run; examples leave it out")
            continue
        found[name] = text
    tools = None
    if "tools" in found:
        from simulate.targets.openai import load_tools

        tools = [
            {"type": "function", "function": tool.as_function()}
            for tool in load_tools(config["tools"])
        ]
    return found.get("system_prompt"), tools, notes


def openai_chat(
    episode: Episode,
    *,
    system: str | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """One episode as an OpenAI chat fine-tuning example, or None when the agent never replied.

    ``system`` (the agent's system prompt) opens the messages; ``tools`` (OpenAI `tools`
    entries) go beside them, as the fine-tuning format takes them.

    The agent is the assistant. A reply that called tools becomes the assistant's tool calls,
    one `tool` message per call (its result, JSON-encoded unless text; `null` when the agent did
    not report it) and then the reply's text, the order in which the model saw them. Messages
    after the agent's last reply (the user's closing words) are dropped, so every example ends
    with an assistant message.
    """
    from simulate.llm.openai import to_openai_message

    messages: list[dict[str, Any]] = []
    for index, message in enumerate(episode.messages):
        if message.role != "assistant" or not message.tool_calls:
            messages.append(to_openai_message(message))
            continue
        calls = [
            call.model_copy(update={"id": call.id or f"call_{index}_{i}"})
            for i, call in enumerate(message.tool_calls)
        ]
        following = episode.messages[index + 1 : index + 2]
        if following and following[0].role == "tool":  # the transcript has its tool messages
            messages.append(to_openai_message(message.model_copy(update={"tool_calls": calls})))
            continue
        messages.append(to_openai_message(Message(role="assistant", tool_calls=calls)))
        messages += [
            {"role": "tool", "tool_call_id": call.id, "content": _result_text(call)}
            for call in calls
        ]
        messages.append({"role": "assistant", "content": message.content})
    while messages and (messages[-1]["role"] != "assistant" or messages[-1].get("tool_calls")):
        messages.pop()
    if not messages:
        return None
    if system is not None and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system})
    return {"messages": messages, "tools": tools} if tools else {"messages": messages}


def _result_text(call: ToolCall) -> str:
    return call.result if isinstance(call.result, str) else json.dumps(call.result, default=str)


def _first_of_each_pair(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """The first episode of each persona x scenario pair, with the pair's episode count."""
    pairs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        pairs.setdefault((row["persona_id"], row["scenario_id"]), []).append(row)
    return [(group[0], len(group)) for group in pairs.values()]


def _pair_metadata(row: dict[str, Any], episodes: int) -> dict[str, Any]:
    scenario = json.loads(row["scenario"])
    return {
        "persona_id": row["persona_id"],
        "scenario_id": row["scenario_id"],
        "run_id": row["run_id"],
        "episodes": episodes,
        "known_info": {k: fact["value"] for k, fact in scenario["known_info"].items()},
        "unknown_info": scenario["unknown_info"],
        "success_checks": scenario["success"],
    }


def deepeval_golden(row: dict[str, Any], episodes: int = 1) -> dict[str, Any]:
    """A persona x scenario pair as a DeepEval `ConversationalGolden` record.

    The keys `EvaluationDataset.add_goldens_from_json_file` reads: `scenario` (what the user
    wants, and how they behave), `expected_outcome` (the goal), `user_description` (the
    persona), `name` and `additional_metadata`. No `turns`: a golden is what to simulate, not a
    recorded conversation.
    """
    persona, scenario = json.loads(row["persona"]), json.loads(row["scenario"])
    return {
        "scenario": " ".join([scenario["description"], *scenario["instructions"]]),
        "expected_outcome": scenario["goal"],
        "user_description": _user_description(persona),
        "name": f"{row['persona_id']} x {row['scenario_id']}",
        "additional_metadata": _pair_metadata(row, episodes),
    }


def _user_description(persona: dict[str, Any]) -> str:
    traits = ", ".join(
        f"{name} {value}"
        for name, value in persona["traits"].items()
        if name in ("patience", "expertise", "tone", "verbosity", "politeness")
    )
    return " ".join(filter(None, [f"{persona['name']}.", persona["description"], f"({traits})"]))


def inspect_sample(row: dict[str, Any], episodes: int = 1) -> dict[str, Any]:
    """A persona x scenario pair as an Inspect AI sample record (`json_dataset` reads it).

    `input` is the user's opening message as recorded, `target` the scenario's goal (for a
    model-graded scorer), `metadata` the persona, the scenario and its success checks.
    """
    persona, scenario = json.loads(row["persona"]), json.loads(row["scenario"])
    opening = next((m["content"] for m in row["messages"] if m["role"] == "user"), None)
    return {
        "id": f"{row['persona_id']}__{row['scenario_id']}",
        "input": opening or scenario["opening"] or scenario["description"],
        "target": scenario["goal"],
        "metadata": {
            **_pair_metadata(row, episodes),
            "user_description": _user_description(persona),
            "scenario": scenario["description"],
        },
    }


def phoenix_example(row: dict[str, Any]) -> dict[str, Any]:
    """One episode as an Arize Phoenix dataset example: `input`, `output`, `metadata` mappings.

    `input` is what to simulate (persona, scenario, goal, the user's opening message), `output`
    the recorded conversation and how it ended (the reference an experiment compares against),
    `metadata` the ids to join back to the run.
    """
    persona, scenario = json.loads(row["persona"]), json.loads(row["scenario"])
    opening = next((m["content"] for m in row["messages"] if m["role"] == "user"), None)
    messages = []
    for message in row["messages"]:
        entry: dict[str, Any] = {"role": message["role"], "content": message["content"]}
        calls = json.loads(message["tool_calls"]) if message["tool_calls"] else None
        if calls:
            entry["tool_calls"] = calls
        messages.append(entry)
    return {
        "input": {
            "persona_id": row["persona_id"],
            "scenario_id": row["scenario_id"],
            "user_description": _user_description(persona),
            "scenario": scenario["description"],
            "goal": scenario["goal"],
            "opening": opening or scenario["opening"] or scenario["description"],
        },
        "output": {
            "messages": messages,
            "status": row["outcome"]["status"],
            "success": row["success"],
            "failed_checks": row["outcome"]["failed_checks"],
        },
        "metadata": {
            "episode_id": row["episode_id"],
            "run_id": row["run_id"],
            "trial": row["trial"],
            "n_turns": row["n_turns"],
            "reason": row["outcome"]["reason"],
        },
    }


# --- writing ----------------------------------------------------------------------------------


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2, default=str) + "\n", "utf-8")


def _write_csv(path: Path, columns: list[str], rows: Iterable[dict[str, Any]]) -> None:
    """Episodes as CSV: nested values JSON-encoded, booleans as `true`/`false`, None empty."""

    def cell(value: Any) -> Any:
        if isinstance(value, dict | list):
            return json.dumps(value, ensure_ascii=False, default=str)
        if isinstance(value, bool):
            return "true" if value else "false"
        return value

    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: cell(value) for key, value in row.items()})
