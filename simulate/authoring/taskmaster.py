"""Taskmaster dialogs (Google's self-dialog corpora, CC BY 4.0) as real conversations with the
task each writer was given.

A Taskmaster file is a JSON array of dialogs: `conversation_id`, `instructions` (the writer's
task as a template, or null), `utterances` (`speaker`, `text`, and on user turns the agent's API
calls as `annotations`). Each dialog becomes a conversation whose agent messages carry the API
calls made before them as tool calls. When the dialog has instructions, the values the writer
chose (`var_drink`, `var_milk`, ...) are recovered by matching the template's API calls against
the dialog's, and the task becomes a `Scenario`: the user hints in the first person as the
description, the chosen values as known facts, the later hints as instructions, the template's
API calls as the tools the agent must call.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from simulate.authoring.conversations import TASK_FROM_WRITER, RealConversation
from simulate.errors import ConfigError
from simulate.loader import json_shape, read_text
from simulate.schema import Message, Scenario, ToolCall

_TEMPLATE_CALL = re.compile(r"^(call|response) (\S+) (?:request|response) (.*?)\s*$", re.M)
_USER_HINT = re.compile(r"^hint user \((.*)\)\s*$", re.M)
_VAR = re.compile(r"var_([A-Za-z0-9_]+)")
_ENTER = re.compile(r"\{\{ENTER (\S+) ")
_IDS = re.compile(r"(^|_)(id|ids)\d*$")
#: Sentences of a hint that tell the writer how to write, not what the customer wants.
_META = re.compile(
    r"(?i)sound natural|sound normal|out loud|write it|how would (you|i) (say|order)|"
    r"your own words|quotation marks|no need to use|do not use the word|don't use the word|"
    r"note that there are several ways|just ask it|in a natural way|unless you|make sure to|"
    r"if you don't know"
)
_THIRD_PERSON = {
    "orders": "order",
    "asks": "ask",
    "says": "say",
    "specifies": "specify",
    "confirms": "confirm",
    "answers": "answer",
    "starts": "start",
    "explains": "explain",
    "mentions": "mention",
}
#: Words an agent may use to ask for a chosen value, by the value's base name.
_ALIASES = {
    "drink": ["what can i get", "what would you like", "drink"],
    "name": ["name for the order", "your name", "name"],
    "milk": ["milk"],
    "sweet": ["sweetener", "sweet", "syrup", "flavor"],
    "shots": ["shots", "espresso"],
    "delivery": ["here or to go", "to go", "for here"],
    "note": ["anything else", "special request"],
}


def read_taskmaster(path: str | Path) -> list[RealConversation]:
    """The dialogs of a Taskmaster JSON file, each with its writer's task when it has one.

    Raises:
        ConfigError: not a JSON array of dialogs, or a dialog without `utterances` (naming the
            line where that dialog starts).
    """
    shown = str(path)
    text = read_text(Path(path), shown, folder="a folder; give a Taskmaster JSON file")
    conversations = []
    for line, item in _array_items(text, shown):
        where = f"{shown}:{line}"
        if not isinstance(item, dict) or not isinstance(item.get("utterances"), list):
            raise ConfigError(f"{where}: a dialog with {json_shape(item)}; expected 'utterances'")
        messages = _messages(item["utterances"], where)
        if not any(m.role == "user" for m in messages):
            raise ConfigError(f"{where}: the dialog has no user utterance")
        ident = str(item.get("conversation_id") or f"line-{line}")
        task = writer_task(item, messages, where) if item.get("instructions") else None
        meta = {"scenario": str(item.get("scenario") or ""), "vertical": str(item.get("vertical"))}
        conversations.append(RealConversation(ident, messages, task=task, line=line, meta=meta))
    return conversations


def _array_items(text: str, shown: str) -> list[tuple[int, Any]]:
    """The items of a JSON array with the line each starts on, or a one-line error naming it."""
    decoder = json.JSONDecoder()
    stripped = text.lstrip()
    if not stripped.startswith("["):
        raise ConfigError(f"{shown}:1: expected a JSON array of Taskmaster dialogs")
    index = len(text) - len(stripped) + 1
    items: list[tuple[int, Any]] = []
    while True:
        index = _skip_space(text, index)
        if index < len(text) and text[index] == "]" and not items:
            return items
        line = text.count("\n", 0, index) + 1
        try:
            item, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError as err:
            raise ConfigError(
                f"{shown}:{err.lineno}: not valid JSON ({err.msg}, column {err.colno})"
            ) from None
        items.append((line, item))
        index = _skip_space(text, index)
        if index < len(text) and text[index] == ",":
            index += 1
            continue
        if index < len(text) and text[index] == "]":
            return items
        line = text.count("\n", 0, index) + 1
        raise ConfigError(f"{shown}:{line}: expected ',' or ']' after a dialog")


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def _messages(utterances: list[Any], where: str) -> list[Message]:
    """Utterances as messages; API calls annotated on a turn go on the next agent message."""
    messages: list[Message] = []
    pending: list[ToolCall] = []
    for number, utterance in enumerate(utterances, start=1):
        if not isinstance(utterance, dict) or not isinstance(utterance.get("text"), str):
            raise ConfigError(f"{where}: utterance {number} has no 'text'")
        speaker = str(utterance.get("speaker", "")).lower()
        if speaker not in ("user", "assistant"):
            raise ConfigError(
                f"{where}: utterance {number}: speaker {utterance.get('speaker')!r}; "
                "expected 'user' or 'assistant'"
            )
        pending += _api_calls(utterance.get("annotations") or [])
        if speaker == "user":
            messages.append(Message(role="user", content=utterance["text"]))
        else:
            reply = Message(role="assistant", content=utterance["text"], tool_calls=pending)
            messages.append(reply)
            pending = []
    return messages


def _api_calls(annotations: list[Any]) -> list[ToolCall]:
    """The API calls (with request and response) annotated on one utterance, in order."""
    calls: dict[str, ToolCall] = {}
    for note in annotations:
        if not isinstance(note, dict):
            continue
        context = str(note.get("context", ""))
        number = context.rsplit("_", 1)[-1]
        name, value = note.get("name"), note.get("value")
        if name == "api_call":
            calls[number] = ToolCall(name=str(value), id=f"call_{number}")
        elif name == "request" and number in calls:
            calls[number].arguments = _as_dict(value)
        elif name == "response" and number in calls:
            calls[number].result = _json(value)
    return list(calls.values())


def _json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _as_dict(value: Any) -> dict[str, Any]:
    parsed = _json(value)
    return parsed if isinstance(parsed, dict) else {"value": parsed}


# --- the writer's task ---------------------------------------------------------------------------


def chosen_values(instructions: str, messages: list[Message]) -> dict[str, str]:
    """The values the writer chose for the template's variables, recovered from the API calls.

    The template's `call NAME request {...}` and `response NAME response {...}` lines are
    matched, in order, with the dialog's calls of the same name; where a template string holds
    `var_x`, the dialog's string at the same place gives its value.
    """
    actual: list[tuple[str, str, Any]] = []
    for message in messages:
        for call in message.tool_calls:
            actual += [("call", call.name, call.arguments), ("response", call.name, call.result)]
    values: dict[str, str] = {}
    position = 0
    for kind, name, body in _TEMPLATE_CALL.findall(instructions):
        template = _json(body)
        for i in range(position, len(actual)):
            if actual[i][:2] == (kind, name):
                _walk(template, actual[i][2], values)
                position = i + 1
                break
    return values


def _walk(template: Any, actual: Any, values: dict[str, str]) -> None:
    if isinstance(template, str) and "var_" in template and isinstance(actual, str | int | float):
        names = _VAR.findall(template)
        pattern = "".join(
            re.escape(part) if i % 2 == 0 else "(.+?)"
            for i, part in enumerate(_VAR.split(template))
        )
        match = re.fullmatch(pattern, str(actual).strip(), re.DOTALL | re.IGNORECASE)
        if match:
            for name, value in zip(names, match.groups(), strict=True):
                if value.strip():
                    values.setdefault(name, " ".join(value.split()))
    elif isinstance(template, dict) and isinstance(actual, dict):
        for key, sub in template.items():
            if key in actual:
                _walk(sub, actual[key], values)
    elif isinstance(template, list) and isinstance(actual, list):
        for sub_template, sub_actual in zip(template, actual, strict=False):
            _walk(sub_template, sub_actual, values)


def writer_task(dialog: dict[str, Any], messages: list[Message], where: str) -> Scenario | None:
    """The writer's task as a scenario, or None when the instructions have no user hint."""
    instructions = str(dialog["instructions"])
    hints = _USER_HINT.findall(instructions)
    if not hints:
        return None
    values = chosen_values(instructions, messages)
    facts = {
        name: {"value": value, "aliases": _aliases(name)}
        for name, value in values.items()
        if not _IDS.search(name) and name in _entered(instructions)
    }
    described = [first_person(_fill(h, values)) for h in hints]
    described = [d for d in described if d]
    if not described:
        return None
    tools = list(dict.fromkeys(name for kind, name, _ in _TEMPLATE_CALL.findall(instructions)))
    template = str(dialog.get("scenario") or "taskmaster")
    ident = re.sub(r"[^A-Za-z0-9_.:\-]+", "-", f"tm-{dialog.get('conversation_id', '')}")
    try:
        return Scenario(
            id=ident.strip("-")[:200],
            description=described[0],
            goal=f"The barista serves the request: {described[0]}",
            known_info=facts,
            instructions=[f"Then: {d}" for d in described[1:]],
            success={"must_call_tools": [t for t in tools if t != "get_menu_items"][-2:]},
            tags=["taskmaster", TASK_FROM_WRITER, f"template:{_template_id(template)}"],
        )
    except ValidationError as err:
        error = err.errors(include_url=False)[0]
        raise ConfigError(f"{where}: the writer's task: {error['msg']}") from None


def _entered(instructions: str) -> set[str]:
    """Variables the writer typed in (`{{ENTER name ...}}`), not the random ids."""
    return set(_ENTER.findall(instructions))


def _aliases(name: str) -> list[str]:
    base = re.sub(r"\d+$", "", name)
    return [a for a in _ALIASES.get(base, []) if a != name]


def _fill(hint: str, values: dict[str, str]) -> str:
    """A hint with each `var_x` replaced by the writer's value, else by its name ("drink")."""
    return _VAR.sub(
        lambda m: values.get(m.group(1), re.sub(r"\d+$", "", m.group(1)).replace("_", " ")), hint
    )


def first_person(hint: str) -> str:
    """A Taskmaster hint ("Order a Mocha. Make it sound natural.") as what the customer wants,
    in their words ("I'd like to order a Mocha."), with the writing instructions dropped."""
    text = hint.replace("*", "").replace("--", ". ")
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\s*\d\.\s+", text) if s.strip()]
    kept = [_sentence_in_first_person(s, i) for i, s in enumerate(sentences) if not _META.search(s)]
    text = ". ".join(k for k in kept if k)
    return f"{text}." if text else ""


def _sentence_in_first_person(sentence: str, index: int) -> str:
    text = re.sub(r"(?i),? but (?:do not|don't) (?:mention|say) .*$", "", sentence)
    text = re.sub(r"\b[A-Z]{2,}\b", lambda m: m.group(0).lower(), text)
    text = re.sub(r"(?i)^(suppose|imagine) you (were |are )?", "", text)
    text = re.sub(r"(?i)^think about what you'd say when ordering", "order", text)
    text = re.sub(r"(?i)^customer ", "", text)
    first, _, rest = text.partition(" ")
    verb = _THIRD_PERSON.get(first.lower(), first.lower())
    if verb in ("order", "ordering"):
        text = f"I'd like to order {rest}" if index == 0 else f"I want to order {rest}"
    elif verb in _THIRD_PERSON.values():
        text = f"I want to {verb} {rest}"
    else:
        text = text[:1].upper() + text[1:]
    for third, base in _THIRD_PERSON.items():
        text = re.sub(rf"\b(and|then) {third}\b", rf"\1 {base}", text)
    for mention, replacement in (  # the writer's "you" is the customer; "they", the agent
        (r"\byou'd\b", "I'd"),
        (r"\byou're\b", "I'm"),
        (r"\byou\b", "I"),
        (r"\byour\b", "my"),
        (r"\bthey\b", "you"),
        (r"\bthem\b", "me"),
        (r"\bthe (coffee bar )?(attendant|worker|barista)\b", "you"),
    ):
        text = re.sub(mention, replacement, text, flags=re.IGNORECASE)
    text = re.sub(r"^I want to ask you (?=(what|which|whether|if|how)\b)", "I want to know ", text)
    return " ".join(text.split()).rstrip(" .:;,")


def _template_id(name: str) -> str:
    match = re.search(r"(?i)template (\w+)", name)
    return match.group(1).lower() if match else re.sub(r"\W+", "-", name.lower())[:40]
