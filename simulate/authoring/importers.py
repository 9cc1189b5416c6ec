"""Bring existing collections in as Simulate files: tau2-bench tasks and PersonaHub personas.

`import_tau2` maps each tau2-bench task's user scenario to a `Scenario`; `import_personahub`
samples PersonaHub persona descriptions and lets Faker fill the rest; `loader.write_yaml` writes
either as a YAML file that `load_scenarios` / `load_personas` read back, under a header naming the
source and its licence.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from simulate.authoring.personas import check_locales, contact_details
from simulate.errors import ConfigError, did_you_mean
from simulate.loader import json_lines, read_text
from simulate.schema import Persona, Scenario, Traits

TAU2_SOURCE = "tau2-bench (https://github.com/sierra-research/tau2-bench)"
TAU2_LICENSE = "MIT"
PERSONAHUB_SOURCE = "personahub"
PERSONAHUB_LICENSE = "CC-BY-NC-SA-4.0"

#: Other words an agent may use for the facts read out of tau2's `known_info`.
_FACT_ALIASES: dict[str, list[str]] = {
    "name": ["full name", "your name"],
    "user_id": ["user id", "username"],
    "zip_code": ["zip code", "zipcode", "zip", "postal code"],
    "email": ["email address", "e-mail"],
    "phone_number": ["phone", "telephone", "mobile number"],
    "reservation_number": ["reservation id", "booking reference", "confirmation number"],
    "reservation_id": ["reservation number", "booking reference", "confirmation number"],
    "confirmation_number": ["reservation number", "reservation id", "booking reference"],
}

_NAME = r"[A-Z][a-z]+(?: [A-Z][a-z]+)*"
_USER_ID = r"[a-z]+(?:_[a-z]+)*_\d+"
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
#: Whole sentences that are one fact each (checked after the trailing period is dropped).
_WHOLE_FACTS = [
    re.compile(rf"(?:You are|You're|Your name is|You name is) (?P<name>{_NAME})"),
    re.compile(rf"You are (?:user )?(?P<user_id>{_USER_ID})"),
    re.compile(
        r"(?:(?:Your|You|The) )?(?P<key>[A-Za-z]+?(?: [A-Za-z]+){0,2}?)(?: is:?|:) *"
        r"'?(?P<value>[A-Za-z0-9_@.\-]+?)'?"
    ),
]
#: Facts picked out of sentences that say more (the sentence is then kept as an instruction).
_NAME_START = re.compile(
    rf"^(?:You are|You're|Your name is|You name is) (?:an? [a-z ]+ called )?(?P<value>{_NAME})"
    r"(?=,| with| in| from| and| living| residing| but|\.|$)"
)
_USER_ID_ANY = re.compile(rf"\b(?:You are (?:user )?|user id is )\(?(?P<value>{_USER_ID})\b")
_USER_ID_PAREN = re.compile(rf"\((?P<value>{_USER_ID})\)")
_PHONE = re.compile(r"phone number (?P<value>\+?[\d][\d\-() ]{6,}\d)")
_ZIP = re.compile(r"\b\d{5}\b")
_ZIP_CONTEXT = re.compile(r"zip|live|living|resid|from", re.IGNORECASE)
#: Words that only link facts in a known_info sentence ("You are X in zip code Y.").
_FILLER = frozenset(
    {"you", "you're", "are", "your", "name", "is", "in", "and", "with", "zip", "code", "zipcode"}
    | {"postal", "email", "emails", "address", "user", "id", "phone", "number", "living", "live"}
    | {"residing", "the"}
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(`])")
_ABBREVIATIONS = ("e.g.", "i.e.", "Mr.", "Mrs.", "Ms.", "Dr.", "St.", "vs.", "etc.")


# --- tau2-bench -------------------------------------------------------------------------------


def import_tau2(
    path: str | Path, *, domain: str | None = None, split: str | None = None
) -> list[Scenario]:
    """Read a tau2-bench task file (`tasks.json`) as scenarios.

    Mapping: `reason_for_call` (or plain-string instructions) -> `description`; `known_info`
    -> facts where a sentence has a known shape ("Your user id is X.", "You are NAME."), the
    other sentences -> `instructions`; `unknown_info` lines -> `unknown_info`;
    `task_instructions` sentences and the `persona` -> `instructions`; the task's `purpose`
    (else its `nl_assertions`, else its reference actions) -> `goal`; `nl_assertions` ->
    `success.judge`; `communicate_info` -> `success.must_mention`; the agent's reference
    `actions` -> `success.must_call_tools` (their names, once each, user-side actions left out).
    tau2 scores by database state, which Simulate cannot see: the reference trajectory's read
    calls are listed too, so a stricter or looser tool check is an edit of the written file.

    Args:
        path: a tau2-bench task list (a JSON array of tasks).
        domain: the domain in ids and tags; default: the tasks' own `domain`, else the name of
            the file's folder.
        split: keep only the tasks of this split of the `split_tasks.json` beside the file.

    Raises:
        ConfigError: the file is missing, not JSON, not a tau2 task list, or a task is broken.
    """
    file = Path(path)
    shown = str(path)
    text = read_text(file, shown)
    tasks = _tau2_tasks(text, shown)
    if split is not None:
        tasks = _tasks_in_split(tasks, file, shown, split)
    if domain is None:  # one domain for the file: the first the tasks name, else the folder's
        named = (
            t["user_scenario"].get("instructions")
            for t in tasks
            if isinstance(t["user_scenario"], dict)
        )
        domain = next((i["domain"] for i in named if isinstance(i, dict) and i.get("domain")), None)
        domain = str(domain or file.resolve().parent.name or "tau2")
    scenarios: list[Scenario] = []
    seen: set[str] = set()
    for index, task in enumerate(tasks, start=1):
        label = f"{shown}: task {task['id']!r} (#{index})"
        scenario = _tau2_scenario(task, domain, label)
        if scenario.id in seen:  # two task ids that differ only in characters ids cannot hold
            scenario.id = f"{scenario.id}-{index}"
        seen.add(scenario.id)
        scenarios.append(scenario)
    return scenarios


def _tau2_tasks(text: str, shown: str) -> list[dict[str, Any]]:
    """The tasks of a tau2 task file, or a one-line error saying what the file is instead."""
    expected = "expected a tau2-bench task list (a JSON array of tasks with 'user_scenario')"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        first = _first_json_line(text)
        if isinstance(first, dict) and err.msg == "Extra data":
            hint = " (PersonaHub personas? use `simulate import personahub`)"
            hint = hint if "persona" in first else ""
            raise ConfigError(
                f"{shown}: one JSON object per line (JSON Lines){hint}; {expected}"
            ) from None
        raise ConfigError(f"{shown}:{err.lineno}: not valid JSON ({err.msg}); {expected}") from None
    if isinstance(data, dict):
        if data and all(
            isinstance(v, list) and all(isinstance(i, str) for i in v) for v in data.values()
        ):
            splits = ", ".join(map(str, data))
            raise ConfigError(
                f"{shown}: a tau2-bench split file (task ids per split: {splits}), not a task "
                f"list; import the tasks.json beside it, with --split NAME to keep one split"
            )
        keys = ", ".join(repr(k) for k in list(data)[:5])
        raise ConfigError(f"{shown}: a JSON object with keys {keys}; {expected}")
    if not isinstance(data, list):
        raise ConfigError(f"{shown}: a JSON {type(data).__name__}; {expected}")
    if not data:
        raise ConfigError(f"{shown}: no tasks in file")
    for index, task in enumerate(data, start=1):
        if not isinstance(task, dict) or "user_scenario" not in task or "id" not in task:
            got = (
                f"keys {', '.join(repr(k) for k in list(task)[:5])}"
                if isinstance(task, dict)
                else f"a {type(task).__name__}"
            )
            raise ConfigError(f"{shown}: item #{index} has {got}; {expected} and 'id'")
    return data


def _first_json_line(text: str) -> Any:
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _tasks_in_split(
    tasks: list[dict[str, Any]], file: Path, shown: str, split: str
) -> list[dict[str, Any]]:
    split_file = file.parent / "split_tasks.json"
    if not split_file.is_file():
        raise ConfigError(f"--split {split!r}: no split_tasks.json beside {shown}")
    try:
        splits = json.loads(read_text(split_file, str(split_file)))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{split_file}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(splits, dict):
        raise ConfigError(f"{split_file}: expected a mapping of split names to task ids")
    if split not in splits:
        names = ", ".join(map(str, splits))
        raise ConfigError(
            f"unknown split {split!r}{did_you_mean(split, list(splits))}; {split_file} has: {names}"
        )
    wanted = {str(i) for i in splits[split]}
    missing = wanted - {str(t["id"]) for t in tasks}
    if missing:
        raise ConfigError(
            f"{split_file}: split {split!r} names tasks not in {shown}: "
            f"{', '.join(sorted(missing)[:5])}"
        )
    return [t for t in tasks if str(t["id"]) in wanted]


def _tau2_scenario(task: dict[str, Any], domain: str, label: str) -> Scenario:
    try:
        return _build_tau2_scenario(task, domain)
    except ValidationError as err:
        error = err.errors(include_url=False)[0]
        where = ".".join(str(p) for p in error["loc"])
        raise ConfigError(f"{label}: {where}: {error['msg']}") from None
    except (AttributeError, TypeError, KeyError) as err:
        raise ConfigError(f"{label}: not the shape of a tau2-bench task ({err})") from None


def _build_tau2_scenario(task: dict[str, Any], domain: str) -> Scenario:
    user = task["user_scenario"] or {}
    given = user.get("instructions") or {}
    criteria = task.get("evaluation_criteria") or {}
    purpose = _clean((task.get("description") or {}).get("purpose"))
    instructions: list[str] = []
    if user.get("persona"):
        instructions.append(f"Play this persona: {_clean(user['persona'])}")
    known: dict[str, Any] = {}
    unknown: list[str] = []
    if isinstance(given, str):
        description = _clean(given)
    else:
        description = _clean(given.get("reason_for_call"))
        facts, rest = parse_known_info(given.get("known_info") or "")
        known = {k: {"value": _literal(v), "aliases": _FACT_ALIASES.get(k, [])} for k, v in facts}
        instructions += rest
        unknown = [_clean(ln) for ln in (given.get("unknown_info") or "").splitlines()]
        instructions += split_sentences(given.get("task_instructions") or "")
    description = description or _clean(task.get("ticket")) or purpose
    assertions = [_clean(a) for a in criteria.get("nl_assertions") or [] if _clean(a)]
    tools = [
        a["name"]
        for a in criteria.get("actions") or []
        if a.get("requestor", "assistant") == "assistant"
    ]
    tools = list(dict.fromkeys(tools))
    mention = [str(c) for c in criteria.get("communicate_info") or [] if str(c).strip()]
    return Scenario.model_validate(
        {
            "id": _safe_id(f"tau2-{domain}-{task['id']}"),
            "description": _literal(description),
            "goal": _literal(purpose or _derived_goal(assertions, tools, mention)),
            "known_info": known,
            "unknown_info": [_literal(u) for u in unknown if u],
            "instructions": [_literal(i) for i in instructions],
            "success": {
                "must_mention": [_literal(m) for m in mention],
                "must_call_tools": tools,
                "judge": _literal(_judge(assertions) or "") or None,
            },
            "tags": ["tau2", _safe_id(domain)],
        }
    )


def parse_known_info(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """Split tau2's free-text `known_info` into facts and the sentences that are not only facts.

    Returns:
        (name, value) pairs in order of appearance (a name once), and the remaining sentences,
        kept whole as instructions so nothing the task says is lost.
    """
    facts: dict[str, str] = {}
    rest: list[str] = []

    def add(key: str, value: str) -> str:
        if key not in facts:
            facts[key] = value
        elif value not in facts.values():
            n = 2
            while f"{key}_{n}" in facts:
                n += 1
            facts[f"{key}_{n}"] = value
        return value

    for sentence in split_sentences(text):
        whole = sentence.rstrip(".").strip()
        if _whole_fact(whole, add):
            continue
        found: list[str] = []
        if match := _NAME_START.search(sentence):
            found.append(add("name", match["value"]))
        if match := _USER_ID_ANY.search(sentence) or _USER_ID_PAREN.search(sentence):
            found.append(add("user_id", match["value"]))
        for email in _EMAIL.findall(sentence):
            found.append(add("email", email.rstrip(".")))
        if match := _PHONE.search(sentence):
            found.append(add("phone_number", match["value"]))
        zips = _ZIP.findall(sentence)
        if len(zips) == 1 and _ZIP_CONTEXT.search(sentence):
            found.append(add("zip_code", zips[0]))
        if _says_more(sentence, found):
            rest.append(sentence)
    return list(facts.items()), rest


def _says_more(sentence: str, values: list[str]) -> bool:
    """Whether a sentence holds more than the fact values found in it and linking words."""
    for value in values:
        sentence = sentence.replace(value, " ")
    words = set(re.findall(r"[A-Za-z']+", sentence.lower()))
    return bool(words - _FILLER)


def _whole_fact(sentence: str, add: Any) -> bool:
    """Record the fact a whole sentence states, if it states exactly one."""
    for pattern in _WHOLE_FACTS:
        match = pattern.fullmatch(sentence)
        if not match:
            continue
        if "key" in match.groupdict():
            key = re.sub(r"\W+", "_", match["key"].lower()).strip("_")
            if key in {"name", "are", "re"} or not key:
                return False
            add(key.replace("zipcode", "zip_code"), match["value"])
        else:
            name, value = next((k, v) for k, v in match.groupdict().items() if v)
            add(name, value)
        return True
    return False


def split_sentences(text: str) -> list[str]:
    """Paragraphs of ``text`` cut into sentences, whitespace collapsed, empty ones dropped."""
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        flat = _clean(paragraph)
        pieces: list[str] = []
        for piece in _SENTENCE_END.split(flat):
            if pieces and pieces[-1].endswith(_ABBREVIATIONS):
                pieces[-1] += " " + piece
            else:
                pieces.append(piece)
        sentences += [p for p in pieces if re.search(r"\w", p)]
    return sentences


def _judge(assertions: list[str]) -> str | None:
    """tau2's natural-language assertions as one criterion: all of them must hold."""
    if len(assertions) <= 1:
        return assertions[0] if assertions else None
    return "All of these hold:\n" + "\n".join(f"- {a}" for a in assertions)


def _derived_goal(assertions: list[str], tools: list[str], mention: list[str]) -> str:
    """A goal for tasks without a `purpose`: their assertions, else what the reference does."""
    if assertions:
        return " ".join(a if a.endswith((".", "!", "?")) else a + "." for a in assertions)
    parts = []
    if tools:
        parts.append(f"The agent completes the request as the reference does ({', '.join(tools)})")
    if mention:
        said = ", ".join(repr(m) for m in mention)
        parts.append(("and tells" if parts else "The agent tells") + f" the user {said}")
    if not parts:
        return "The agent handles the request as its policy requires, changing nothing."
    return " ".join(parts) + "."


def _safe_id(text: str) -> str:
    """``text`` with characters ids cannot hold replaced by '-', cut to the id length limit."""
    safe = re.sub(r"[^A-Za-z0-9_.:\-]+", "-", text)
    safe = re.sub(r"-{2,}", "-", safe).strip("-._:")
    return safe[:200] or "x"


def _clean(text: Any) -> str:
    """Text with runs of whitespace collapsed to one space; '' for None."""
    return " ".join(str(text).split()) if text is not None else ""


def _literal(text: str) -> str:
    """Keep Jinja2 markup in imported text from being read as a template over the persona."""
    if "{{" in text or "{%" in text:
        return "{% raw %}" + text + "{% endraw %}"
    return text


# --- PersonaHub -------------------------------------------------------------------------------


def import_personahub(
    path: str | Path, n: int, seed: int = 0, locale: str | Sequence[str] = "en_US"
) -> list[Persona]:
    """Sample ``n`` PersonaHub personas and give each a Faker name, contact details and traits.

    Each persona is one JSONL row's `persona` text as its `description`, with the id
    `hub-<line>` (its line in the file, so a persona keeps its id across samples). Faker is
    seeded per persona from ``seed`` and that line; traits (patience, expertise, tone,
    verbosity, politeness) are drawn uniformly from the same seed, `typo_rate` stays 0 and
    `language` is the locale's language. Same inputs, same personas.

    Args:
        path: JSON Lines, one `{"persona": str, ...}` object per line.
        n: how many personas to sample, 1 to the number of rows.
        seed: the sampling and Faker seed.
        locale: a Faker locale, or several (comma-separated or a list) to draw one per persona.

    Raises:
        ConfigError: missing file, a line that is not a persona object, bad n or locale.
    """
    shown = str(path)
    locales = check_locales(locale)
    rows = _personahub_rows(read_text(Path(path), shown), shown)
    if not 1 <= n <= len(rows):
        raise ConfigError(
            f"--n must be between 1 and {len(rows)} (the personas in {shown}), got {n}"
        )
    chosen = sorted(random.Random(seed).sample(range(len(rows)), n))
    from faker import Faker

    fakers: dict[str, Any] = {}
    personas = []
    for i in chosen:
        line, text = rows[i]
        persona_seed = int.from_bytes(hashlib.sha256(f"{seed}:{line}".encode()).digest()[:8], "big")
        rng = random.Random(persona_seed)
        chosen_locale = rng.choice(locales)
        fake = fakers.setdefault(chosen_locale, Faker(chosen_locale))
        fake.seed_instance(persona_seed)
        personas.append(_hub_persona(line, text, fake, rng, chosen_locale))
    return personas


def _personahub_rows(text: str, shown: str) -> list[tuple[int, str]]:
    """(line number, persona text) for every non-blank line, or a one-line error."""
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, list):
            tau2 = data and isinstance(data[0], dict) and "user_scenario" in data[0]
            what = "a tau2-bench task list (use `simulate import tau2`)" if tau2 else "a JSON array"
            raise ConfigError(
                f'{shown}: {what}; expected JSON Lines, one {{"persona": text}} object per line'
            )
    rows = []
    for number, row in json_lines(text, shown, 'expected one {"persona": text} object per line'):
        persona = row.get("persona") if isinstance(row, dict) else None
        if not isinstance(persona, str) or not persona.strip():
            got = (
                f"keys {', '.join(repr(k) for k in list(row)[:5])}"
                if isinstance(row, dict)
                else f"a JSON {type(row).__name__}"
            )
            if isinstance(row, dict) and "persona" in row:
                got = "an empty or non-text 'persona'"
            raise ConfigError(
                f"{shown}:{number}: expected an object with a 'persona' text, got {got}"
            )
        rows.append((number, " ".join(persona.split())))
    if not rows:
        raise ConfigError(f"{shown}: no personas in file")
    return rows


def _hub_persona(line: int, text: str, fake: Any, rng: random.Random, locale: str) -> Persona:
    language = locale.split("_")[0]
    name, attributes = contact_details(fake, language)
    traits = {
        axis: rng.choice(get_args(Traits.model_fields[axis].annotation))
        for axis in ("patience", "expertise", "tone", "verbosity", "politeness")
    }
    return Persona(
        id=f"hub-{line}",
        name=name,
        description=text,
        traits=Traits(**traits, language=language),
        attributes=attributes,
        tags=["personahub"],
        source=PERSONAHUB_SOURCE,
        license=PERSONAHUB_LICENSE,
    )
