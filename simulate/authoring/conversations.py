"""Real conversations in, as a reference set: read OpenAI chat JSONL, Taskmaster JSON or another
run folder, mask PII-looking strings, and write a folder in the run folder's shape.

A reference folder holds `manifest.json` (`"simulate": "reference"`, the source, its licence and
attribution, whether PII was masked) and `episodes/*.parquet` with the episode schema, so
`simulate.load_run`, `simulate show` and the realism measures read it like a run. Each row is
one real conversation: `persona_id` is `human`, the `persona` JSON names the source and licence
(dataset cards carry them), the `scenario` JSON is the task the person had when one is known (a
Taskmaster writer's instructions, a run's scenario) or one drafted from the conversation
itself (tag `task:from-conversation`), and the outcome is `imported` (nobody measured it).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from simulate.errors import ConfigError, RunFolderError
from simulate.loader import json_lines, json_shape, read_text
from simulate.schema import (
    SCHEMA_VERSION,
    Episode,
    Manifest,
    Message,
    Outcome,
    Persona,
    ReferenceRecord,
    Scenario,
    SourceRecord,
    Status,
    ToolCall,
)
from simulate.store import (
    EPISODES,
    MANIFEST,
    RunFolder,
    ShardWriter,
    environment,
    now_iso,
    write_atomic,
)

ConversationFormat = Literal["openai", "taskmaster", "run"]
FORMATS: tuple[str, ...] = ("auto", "openai", "taskmaster", "run")

HUMAN = "human"
"""The `persona_id` of every real conversation in a reference folder."""
TASK_FROM_CONVERSATION = "task:from-conversation"
"""Scenario tag: the task was drafted from the conversation itself (its opening is in it)."""
TASK_FROM_WRITER = "task:writer"
"""Scenario tag: the task is the one the person was given (Taskmaster instructions)."""

TASKMASTER_SOURCE = (
    "Taskmaster (Google LLC, https://github.com/google-research-datasets/Taskmaster)"
)
TASKMASTER_LICENSE = "CC-BY-4.0"
TASKMASTER_ATTRIBUTION = (
    "Contains dialogs from Taskmaster by Google LLC (Taskmaster-4: Bill Byrne and Saravanan "
    "Ganesh; cite arXiv:2403.10704), licensed under CC BY 4.0 "
    "(https://creativecommons.org/licenses/by/4.0/). Changed: converted to Simulate's "
    "conversation format; the writers' tasks rewritten as scenarios."
)
UNSPECIFIED_LICENSE = "unspecified"

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_ROLES |= {"tool": "tool", "function": "tool"}


@dataclass
class RealConversation:
    """One real conversation as read from a file, before it becomes a reference row."""

    conversation_id: str
    messages: list[Message]
    task: Scenario | None = None
    """What the person was asked to do, when the source says (None: draft one from the talk)."""
    line: int | None = None
    """Where it starts in the file, for error messages."""
    meta: dict[str, str] = field(default_factory=dict)


@dataclass
class ReferenceSource:
    """Where a reference set comes from, recorded in its manifest and card."""

    source: str
    license: str
    attribution: str = ""
    file: str = ""
    format: str = ""


# --- reading -----------------------------------------------------------------------------------


def detect_format(path: str | Path) -> ConversationFormat:
    """The format of ``path``: a folder with a manifest is a run; a JSON array of dialogs with
    `utterances` is Taskmaster; anything else is read as OpenAI chat JSONL."""
    file = Path(path)
    if file.is_dir():
        return "run"
    text = _read(file, str(path))
    if text.lstrip().startswith("["):
        return "taskmaster"
    return "openai"


def read_conversations(
    path: str | Path, fmt: str = "auto"
) -> tuple[list[RealConversation], ConversationFormat]:
    """Read real conversations from ``path`` in ``fmt`` (`auto` detects it).

    Raises:
        ConfigError: a missing or unreadable file, or a bad record (one line naming it).
    """
    if fmt not in FORMATS:
        from simulate.errors import unknown_choice

        raise unknown_choice("--format", fmt, FORMATS)
    chosen: ConversationFormat = detect_format(path) if fmt == "auto" else fmt  # type: ignore[assignment]
    if chosen == "run":
        conversations = read_run_conversations(path)
    elif chosen == "taskmaster":
        from simulate.authoring.taskmaster import read_taskmaster

        conversations = read_taskmaster(path)
    else:
        conversations = read_openai_jsonl(path)
    if not conversations:
        raise ConfigError(f"{path}: no conversations in it")
    return conversations, chosen


def read_openai_jsonl(path: str | Path) -> list[RealConversation]:
    """OpenAI chat JSON Lines: one `{"messages": [{role, content, ...}], ...}` per line.

    Content may be text, a list of text parts or null (an assistant turn that only calls
    tools); assistant `tool_calls` in the OpenAI shape keep their names and arguments; `tool`
    messages keep their `tool_call_id`. An `id` (or `conversation_id`) names the conversation,
    else its line does.
    """
    shown = str(path)
    text = _read(Path(path), shown)
    expected = 'expected one {"messages": [...]} object per line (OpenAI chat JSONL)'
    if text.lstrip().startswith("["):
        expected = "a JSON array? Taskmaster files are read with --format taskmaster; " + expected
    conversations = []
    for number, row in json_lines(text, shown, expected):
        where = f"{shown}:{number}"
        if not isinstance(row, dict) or not isinstance(row.get("messages"), list):
            raise ConfigError(f"{where}: {json_shape(row)}; {expected}")
        messages = [_openai_message(m, i, where) for i, m in enumerate(row["messages"], start=1)]
        if not any(m.role == "user" and m.content.strip() for m in messages):
            raise ConfigError(f"{where}: the conversation has no user message with text")
        ident = row.get("id") or row.get("conversation_id") or f"line-{number}"
        conversations.append(RealConversation(str(ident), messages, line=number))
    return conversations


def _openai_message(raw: Any, index: int, where: str) -> Message:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: message {index} is a {type(raw).__name__}, not an object")
    role = _ROLES.get(str(raw.get("role")))
    if role is None:
        choices = ", ".join(sorted(_ROLES))
        raise ConfigError(
            f"{where}: message {index}: unknown role {raw.get('role')!r}; one of: {choices}"
        )
    content = raw.get("content")
    if isinstance(content, list):
        content = " ".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("text")
        )
    if content is not None and not isinstance(content, str):
        raise ConfigError(f"{where}: message {index}: content must be text, a list or null")
    calls = []
    for call in raw.get("tool_calls") or []:
        function = (call or {}).get("function") or call or {}
        arguments = function.get("arguments") or {}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError:
                arguments = {"raw": arguments}
        if not isinstance(arguments, dict):
            arguments = {"value": arguments}
        calls.append(
            ToolCall(name=str(function.get("name") or "?"), arguments=arguments, id=call.get("id"))
        )
    return Message(
        role=role,  # type: ignore[arg-type]
        content=content or "",
        tool_calls=calls if role == "assistant" else [],
        tool_call_id=raw.get("tool_call_id") if role == "tool" else None,
    )


def read_run_conversations(path: str | Path) -> list[RealConversation]:
    """The conversations of a run (or reference) folder, each with its scenario as the task."""
    try:
        folder = RunFolder.open(path)
    except RunFolderError as err:
        raise ConfigError(str(err)) from None
    conversations = []
    for episode in folder.episodes():
        try:
            task = Scenario.model_validate_json(episode.scenario)
        except ValidationError:
            task = None
        conversations.append(
            RealConversation(episode.episode_id, list(episode.messages), task=task)
        )
    return conversations


# --- PII -----------------------------------------------------------------------------------------

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_PHONE = re.compile(r"(?<![\w+(])(?:\+|00)?\(?\d[\d ().\-]{5,}\d(?![\w])")
MASKS = {"email": "[EMAIL]", "card": "[CARD]", "phone": "[PHONE]"}


def _luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def mask_pii(text: str) -> str:
    """``text`` with e-mail addresses, card numbers (13-19 digits passing the Luhn check) and
    phone numbers (7-15 digits, with +, spaces, dots, dashes or brackets) replaced by
    `[EMAIL]`, `[CARD]` and `[PHONE]`. Shorter numbers (order numbers, prices) stay."""
    text = _EMAIL.sub(MASKS["email"], text)

    def card(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        return MASKS["card"] if _luhn(digits) else match.group(0)

    def phone(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        return MASKS["phone"] if 7 <= len(digits) <= 15 else match.group(0)

    return _PHONE.sub(phone, _CARD.sub(card, text))


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_pii(value)
    if isinstance(value, dict):
        return {k: _mask_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_value(v) for v in value]
    return value


def mask_conversation(conversation: RealConversation) -> RealConversation:
    """The conversation with PII masked in every message, tool call and its task's facts."""
    messages = [
        m.model_copy(
            update={
                "content": mask_pii(m.content),
                "tool_calls": [
                    c.model_copy(
                        update={
                            "arguments": _mask_value(c.arguments),
                            "result": _mask_value(c.result),
                        }
                    )
                    for c in m.tool_calls
                ],
            }
        )
        for m in conversation.messages
    ]
    task = conversation.task
    if task is not None:
        task = Scenario.model_validate(_mask_value(task.model_dump(mode="json")))
    return RealConversation(
        conversation.conversation_id, messages, task, conversation.line, conversation.meta
    )


# --- writing -------------------------------------------------------------------------------------


def reference_persona(source: ReferenceSource) -> Persona:
    """The persona every row of a reference set names: a person, with the source's licence."""
    return Persona(
        id=HUMAN,
        name="human",
        description="A person: this conversation was written by people, not simulated.",
        source=source.source,
        license=source.license,
    )


def write_reference(
    conversations: Sequence[RealConversation],
    out: str | Path,
    source: ReferenceSource,
    *,
    masked: bool = False,
    force: bool = False,
) -> Path:
    """Write ``conversations`` as a reference folder at ``out`` (run folder shape).

    Every conversation without a task gets one drafted from it (`draft_task`).

    Raises:
        ConfigError: ``out`` exists and is not empty, unless ``force`` and it is a reference
            folder (then its episodes are replaced).
    """
    path = Path(out)
    _prepare_folder(path, force)
    folder = RunFolder(path)
    persona = reference_persona(source).model_dump_json()
    run_id = path.resolve().name
    created = now_iso()
    drafted = 0
    with folder.writer(EPISODES) as writer:
        for index, conversation in enumerate(conversations):
            drafted += _add_row(
                writer,
                conversation,
                index,
                run_id=run_id,
                persona=persona,
                source=source,
                created=created,
            )
    folder.write_manifest(
        Manifest(
            simulate="reference",
            schema_version=SCHEMA_VERSION,
            run_id=run_id,
            created_at=created,
            status="complete",
            source=SourceRecord(**vars(source)),
            reference=ReferenceRecord(
                conversations=len(conversations),
                user_messages=sum(1 for c in conversations for m in c.messages if m.role == "user"),
                tasks_drafted_from_conversations=drafted,
                pii_masked=masked,
            ),
            counts=folder.outcome_counts(),
            environment=environment(),
        )
    )
    from simulate.card import render_reference_card

    write_atomic(path / "README.md", render_reference_card(path))
    return path


def _add_row(
    writer: ShardWriter,
    conversation: RealConversation,
    index: int,
    *,
    run_id: str,
    persona: str,
    source: ReferenceSource,
    created: str,
) -> int:
    """Queue one conversation as a reference row; 1 when its task had to be drafted."""
    task = conversation.task
    drafted = task is None
    if task is None:
        from simulate.authoring.drafts import draft_task

        task = draft_task(conversation.messages, conversation.conversation_id)
    writer.add(
        Episode(
            episode_id=_row_id(run_id, conversation.conversation_id, index),
            run_id=run_id,
            persona_id=HUMAN,
            scenario_id=task.id,
            trial=0,
            seed=0,
            persona=persona,
            scenario=task.model_dump_json(),
            messages=conversation.messages,
            outcome=Outcome(status=Status.IMPORTED, reason=f"imported from {source.file}"),
            success=False,
            n_turns=sum(1 for m in conversation.messages if m.role == "assistant"),
            duration_s=0.0,
            user=HUMAN,
            target=source.format or "recorded",
            created_at=created,
        )
    )
    return int(drafted)


def _prepare_folder(folder: Path, force: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"-o {str(folder)!r} is a file; give a folder for the reference set")
    if folder.is_dir() and any(folder.iterdir()):
        try:
            is_reference = RunFolder.open(folder).manifest.simulate == "reference"
        except RunFolderError:
            is_reference = False
        if not (force and is_reference):
            hint = "; add --force to replace it" if is_reference else ""
            raise ConfigError(f"-o {str(folder)!r} is not empty{hint}")
        for shard in (folder / EPISODES).glob("*.parquet"):
            shard.unlink()
    (folder / EPISODES).mkdir(parents=True, exist_ok=True)


def _row_id(run_id: str, conversation_id: str, index: int) -> str:
    return hashlib.sha256(f"{run_id}\0{conversation_id}\0{index}".encode()).hexdigest()[:16]


def reference_source(
    fmt: ConversationFormat,
    path: str | Path,
    *,
    source: str | None,
    license: str | None,
    masked: bool,
) -> ReferenceSource:
    """Source, licence and attribution of a reference set: the flags, else what the format
    implies (Taskmaster is CC BY 4.0 with its attribution; a run keeps its own)."""
    file = Path(path).name
    attribution = ""
    default_source, default_license = f"{file} ({fmt})", UNSPECIFIED_LICENSE
    if fmt == "taskmaster":
        default_source, default_license = TASKMASTER_SOURCE, TASKMASTER_LICENSE
        attribution = TASKMASTER_ATTRIBUTION
    elif fmt == "run":
        manifest = RunFolder.open(path).manifest
        own = manifest.source or SourceRecord()
        default_source = own.source or f"simulate run {manifest.run_id or file}"
        default_license = own.license or UNSPECIFIED_LICENSE
        attribution = own.attribution
    if masked and attribution:
        attribution += " PII-looking strings masked."
    return ReferenceSource(
        source=source or default_source,
        license=license or default_license,
        attribution=attribution,
        file=file,
        format=fmt,
    )


def user_texts(messages: Iterable[Message]) -> list[str]:
    """The user's messages' texts, in order."""
    return [m.content for m in messages if m.role == "user"]


def _read(path: Path, shown: str) -> str:
    """A conversations file's text; a folder must be a run folder (it has a manifest)."""
    return read_text(
        path, shown, folder=f"a folder without {MANIFEST}; give a file or a run folder"
    )
