"""Read persona and scenario files (YAML or JSON) into models.

Every mistake in a file becomes one `ConfigError` line naming the file, the line, the field and
what was expected. YAML plain scalars are read as text (only `null`/`~`/empty stay null): pydantic
still turns `max_turns: 8` into an int, while `zip: 01234`, `time: 12:30` or `answer: no` keep the
characters the user wrote instead of YAML 1.1's octal, base-60 or boolean readings.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from simulate.errors import ConfigError, did_you_mean
from simulate.schema import Persona, Rubric, Scenario, Traits
from simulate.store import write_atomic

SUFFIXES = (".yaml", ".yml", ".json")
"""File endings read from folders."""

M = TypeVar("M", bound=BaseModel)

_KINDS: dict[type[BaseModel], tuple[str, str]] = {
    Persona: ("persona", "personas"),
    Scenario: ("scenario", "scenarios"),
    Rubric: ("rubric", "rubrics"),
}
_ID_RULE = "letters, digits and '_', '.', ':', '-', starting with a letter or digit"


def load_personas(paths: Sequence[str | Path] | str | Path) -> list[Persona]:
    """Read personas from YAML or JSON files, or folders searched recursively for them, in
    file order (folders sorted by path).

    Raises:
        ConfigError: a path, file or persona is wrong; the message names file, line and field.
    """
    return _load(paths, Persona)


def load_scenarios(paths: Sequence[str | Path] | str | Path) -> list[Scenario]:
    """Read scenarios from files and folders, as `load_personas` reads personas."""
    return _load(paths, Scenario)


def load_rubrics(paths: Sequence[str | Path] | str | Path) -> list[Rubric]:
    """Read rubrics from files and folders, with the same errors as personas and scenarios."""
    return _load(paths, Rubric)


def split_by_kind(paths: Sequence[str | Path]) -> tuple[list[str], list[str]]:
    """Sort files (folders expanded) into persona files and scenario files by their content.

    For `simulate validate`, which takes both kinds mixed. A file whose first item has
    scenario fields (`goal`, `known_info`, `success`...) is a scenario file; else personas.
    """
    personas: list[str] = []
    scenarios: list[str] = []
    for path, shown in _files(paths):
        kind = _guess_kind(path, shown)
        (scenarios if kind is Scenario else personas).append(shown)
    return personas, scenarios


def _guess_kind(path: Path, shown: str) -> type[BaseModel]:
    text = read_text(path, shown)
    is_json = path.suffix.lower() == ".json"
    documents = _json_documents(text, shown) if is_json else _yaml_documents(text, shown)
    scenario_only = set(Scenario.model_fields) - set(Persona.model_fields)
    for data, _ in documents:
        if isinstance(data, dict) and {"personas", "scenarios"} & set(data):
            return Persona if "personas" in data else Scenario
        first = data[0] if isinstance(data, list) and data else data
        if isinstance(first, dict):
            return Scenario if scenario_only & set(first) else Persona
    return Scenario if "scenario" in shown.lower() else Persona


# --- files ------------------------------------------------------------------------------------


@dataclass
class _Item:
    """One mapping read from a file, with its YAML node for line numbers (None when unknown)."""

    data: Any
    node: yaml.Node | None
    file: str
    index: int


def _load(paths: Sequence[str | Path] | str | Path, model: type[M]) -> list[M]:
    """Read every file under ``paths`` as ``model`` items, rejecting duplicate ids."""
    kind, plural = _KINDS[model]
    if isinstance(paths, str | Path):
        paths = [paths]
    loaded: list[M] = []
    first_seen: dict[str, str] = {}
    for path, shown in _files(paths):
        items = _items(path, shown, model)
        if not items:
            raise ConfigError(f"{shown}: no {plural} in file")
        for item in items:
            obj = _validate(item, model)
            where = _where(item.file, _locate(item.node, ("id",))[0])
            item_id = obj.id  # type: ignore[attr-defined]
            if item_id in first_seen:
                raise ConfigError(
                    f"{where}: duplicate {kind} id {item_id!r} "
                    f"(first defined at {first_seen[item_id]})"
                )
            first_seen[item_id] = where
            loaded.append(obj)
    return loaded


def _files(paths: Sequence[str | Path]) -> list[tuple[Path, str]]:
    """Expand folders into their files; return (path, path as the user gave it) pairs."""
    found: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for given in paths:
        path, shown = Path(given), str(given)
        if path.is_dir():
            inside = sorted(
                (
                    p
                    for p in path.rglob("*")
                    if p.suffix.lower() in SUFFIXES
                    and not any(part.startswith(".") for part in p.relative_to(path).parts)
                    and p.is_file()
                ),
                key=lambda p: p.parts,
            )
            if not inside:
                folder = shown if shown.endswith(("/", "\\")) else shown + "/"
                raise ConfigError(f"{folder}: no .yaml, .yml or .json files")
            pairs = [(p, str(p)) for p in inside]
        elif path.exists():
            pairs = [(path, shown)]
        else:
            raise ConfigError(f"no such file or folder: {shown!r}")
        for p, s in pairs:
            if p.resolve() not in seen:  # the same file named twice is read once
                seen.add(p.resolve())
                found.append((p, s))
    return found


def read_text(path: Path, shown: str, *, folder: str = "a folder; give the file") -> str:
    """A file's text, or a one-line ConfigError naming it (``shown``) and the line of a byte
    that is not UTF-8; ``folder`` is what to say when the path is a folder."""
    if not path.exists():
        raise ConfigError(f"no such file: {shown!r}")
    if path.is_dir():
        raise ConfigError(f"{shown}: {folder}")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{shown}: cannot read file: {err.strerror or err}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ConfigError(
            f"{shown}:{line}: not UTF-8 text (byte {raw[err.start]:#04x}); save the file as UTF-8"
        ) from None


def json_lines(
    text: str, shown: str, expected: str, problem: str = "not valid JSON"
) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line of JSON Lines text; a line that is not
    JSON is a ConfigError naming ``shown``, the line, the ``problem`` and what is ``expected``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(
                f"{shown}:{number}: {problem} ({err.msg}, column {err.colno}); {expected}"
            ) from None


def json_shape(value: Any) -> str:
    """What a JSON value is, for an error: `keys 'a', 'b'` of an object, else `a JSON list`."""
    if isinstance(value, dict):
        return f"keys {', '.join(repr(k) for k in list(value)[:5])}"
    return f"a JSON {type(value).__name__}"


def _items(path: Path, shown: str, model: type[BaseModel]) -> list[_Item]:
    """Split a file's documents into items: mappings, lists of them, or a `personas:` list."""
    text = read_text(path, shown)
    if path.suffix.lower() == ".json":
        documents = _json_documents(text, shown)
    else:
        documents = _yaml_documents(text, shown)
    kind, plural = _KINDS[model]
    items: list[_Item] = []
    for data, node in documents:
        if data is None:  # an empty document, e.g. a trailing `---`
            continue
        if isinstance(data, dict):
            data, node = _unwrap(data, node, shown, model)
            if data is None:  # `personas:` with nothing under it
                continue
        if isinstance(data, dict):
            items.append(_Item(data, node, shown, len(items) + 1))
        elif isinstance(data, list):
            nodes = node.value if isinstance(node, yaml.SequenceNode) else []
            for i, element in enumerate(data):
                element_node = nodes[i] if i < len(nodes) else None
                if not isinstance(element, dict):
                    where = _where(shown, _line(element_node))
                    raise ConfigError(
                        f"{where}: {kind} #{len(items) + 1}: expected a mapping of fields, "
                        f"got {_describe(element)}"
                    )
                items.append(_Item(element, element_node, shown, len(items) + 1))
        else:
            raise ConfigError(
                f"{_where(shown, _line(node))}: expected a {kind} (a mapping of fields) or a list "
                f"of {plural}, got {_describe(data)}"
            )
    return items


def _unwrap(
    data: dict[Any, Any], node: yaml.Node | None, shown: str, model: type[BaseModel]
) -> tuple[Any, yaml.Node | None]:
    """Open a top-level `personas:` / `scenarios:` wrapper; other mappings pass through."""
    _, plural = _KINDS[model]
    wrappers = {p for _, p in _KINDS.values()} & set(data)
    if not wrappers:
        return data, node
    key = wrappers.pop()
    if key != plural:
        raise ConfigError(
            f"{_where(shown, _locate(node, (key,))[0])}: this file holds {key} "
            f"('{key}:'), not {plural}"
        )
    others = [k for k in data if k != key]
    if others:
        raise ConfigError(
            f"{_where(shown, _locate(node, (others[0],))[0])}: unknown top-level key "
            f"{others[0]!r} next to '{plural}:' (it should hold only the list of {plural})"
        )
    value = data[key]
    value_node = _child(node, key)
    if value is not None and not isinstance(value, list):
        raise ConfigError(
            f"{_where(shown, _line(value_node))}: '{plural}:' should hold a list of {plural}, "
            f"got {_describe(value)}"
        )
    return value, value_node


# --- YAML and JSON ----------------------------------------------------------------------------


class _TextLoader(yaml.SafeLoader):
    """A SafeLoader that reads plain scalars as strings; null and merge keys keep their meaning."""


_TextLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag.endswith((":null", ":merge"))]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


MAX_YAML_NODES = 200_000
"""Nodes a YAML document may hold once its aliases are expanded (a "billion laughs" file is a
few lines that expand to billions)."""


def read_yaml(text: str, shown: str, *, plain_text: bool = False) -> Any:
    """The data of a one-document YAML text, through the one safe reader every YAML file goes
    through: no Python objects, aliases expanded within `MAX_YAML_NODES`, duplicate keys and
    syntax errors as one-line ConfigErrors naming ``shown`` and the line.

    Args:
        plain_text: read plain scalars as strings (`12345` stays text).
    """
    documents = _yaml_documents(text, shown, loader=_TextLoader if plain_text else yaml.SafeLoader)
    return documents[0][0] if documents else None


def _yaml_documents(
    text: str, shown: str, loader: type[yaml.SafeLoader] | None = None
) -> list[tuple[Any, yaml.Node]]:
    """Parse every YAML document of a file into (data, node) pairs."""
    documents: list[tuple[Any, yaml.Node]] = []
    reader = None
    try:
        reader = (loader or _TextLoader)(text)  # checks every character: may raise ReaderError
        while reader.check_node():
            node = reader.get_node()
            _check_duplicate_keys(node, shown)
            _check_expanded_size(node, shown)
            documents.append((reader.construct_document(node), node))
    except RecursionError:
        raise ConfigError(f"{shown}: YAML error: nested too deeply") from None
    except yaml.MarkedYAMLError as err:
        raise ConfigError(_yaml_message(err, shown)) from None
    except yaml.reader.ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        code = err.character if isinstance(err.character, int) else ord(err.character)
        raise ConfigError(
            f"{shown}:{line}: YAML syntax error: character U+{code:04X} is not allowed"
        ) from None
    finally:
        if reader is not None:
            reader.dispose()
    return documents


def _check_expanded_size(root: yaml.Node, shown: str) -> None:
    """Refuse a document whose aliases expand past `MAX_YAML_NODES` nodes."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if children_done:
            sizes[id(node)] = 1 + sum(sizes.get(id(child), 1) for child in children)
            if sizes[id(node)] > MAX_YAML_NODES:
                raise ConfigError(
                    f"{_where(shown, node.start_mark.line + 1)}: YAML error: this document "
                    f"expands to more than {MAX_YAML_NODES:,} values (aliases repeated?)"
                )
        else:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _yaml_message(err: yaml.MarkedYAMLError, shown: str) -> str:
    """One line for a YAML parse error: the problem, its line, and where the construct began."""
    mark = err.problem_mark or err.context_mark
    where = _where(shown, mark.line + 1 if mark else None)
    syntax = not isinstance(err, yaml.constructor.ConstructorError)
    what = "YAML syntax error" if syntax else "YAML error"
    problem = err.problem or err.context or "invalid YAML"
    message = f"{where}: {what}: {problem}"
    if err.problem and err.context and err.context_mark:
        message += f" ({err.context} started at line {err.context_mark.line + 1})"
    if "<block" in problem:  # PyYAML's words for a key indented differently from its siblings
        message += "; check the indentation"
    return message


def _check_duplicate_keys(node: yaml.Node, shown: str) -> None:
    """Reject a mapping that names a key twice (YAML would silently keep the last one)."""
    stack, visited = [node], set()
    while stack:
        current = stack.pop()
        if id(current) in visited:  # aliases may share or nest nodes
            continue
        visited.add(id(current))
        if isinstance(current, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for key, value in current.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    if key.value in first_line:
                        raise ConfigError(
                            f"{shown}:{line}: duplicate key {key.value!r} "
                            f"(first at line {first_line[key.value]})"
                        )
                    first_line[key.value] = line
                stack.extend((key, value))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)


def _json_documents(text: str, shown: str) -> list[tuple[Any, yaml.Node | None]]:
    """Parse a JSON file; lines come from reading the same text as YAML, when that works."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{shown}:{err.lineno}: JSON syntax error: {err.msg}") from None
    try:
        # Tabs are whitespace to JSON but not to YAML; one character for one keeps the lines.
        node = yaml.compose(text.replace("\t", " "), Loader=_TextLoader)
    except yaml.YAMLError:
        node = None
    return [(data, node)]


# --- validation -------------------------------------------------------------------------------


def _validate(item: _Item, model: type[M]) -> M:
    """Build one model from an item, or raise a one-line ConfigError for its first problem."""
    try:
        return model.model_validate(item.data)
    except ValidationError as err:
        kind, _ = _KINDS[model]
        label = _label(kind, item)
        hint = _shape_hint(item.data, model)
        if hint:
            raise ConfigError(f"{_where(item.file, _line(item.node))}: {label} {hint}") from err
        errors = err.errors(include_url=False)
        # An unknown field often explains a missing one (`goall` for `goal`): report it first.
        error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        raise ConfigError(_error_message(error, item, label, model)) from err


def _label(kind: str, item: _Item) -> str:
    """`persona 'ana'` when the item has a usable id, else `persona #2` (its place in the file)."""
    item_id = item.data.get("id")
    if isinstance(item_id, str) and item_id:
        return f"{kind} {item_id!r}"
    return f"{kind} #{item.index}"


def _shape_hint(data: dict[Any, Any], model: type[BaseModel]) -> str | None:
    """Explain an item that is the other kind of thing, or a mapping of id to items."""
    kind, plural = _KINDS[model]
    keys = {k for k in data if isinstance(k, str)}
    own = set(model.model_fields)
    for other, (other_kind, _) in _KINDS.items():
        if other is model:
            continue
        theirs = set(other.model_fields) - own
        if keys & theirs and not keys & (own - set(other.model_fields)):
            named = ", ".join(repr(k) for k in sorted(keys & theirs))
            return (
                f"looks like a {other_kind}, not a {kind} (it has {named}); "
                f"was a {other_kind} file given as {plural}?"
            )
    if data and not keys & own and all(isinstance(v, dict) for v in data.values()):
        named = ", ".join(repr(k) for k in list(data)[:3])
        return (
            f"is a mapping of names ({named}) to mappings; write a list of {plural}, "
            f"each with an 'id:' field"
        )
    return None


def _error_message(error: Any, item: _Item, label: str, model: type[BaseModel]) -> str:
    """Turn one pydantic error into `file:line: persona 'ana': field.path: what was expected`."""
    loc = tuple(error["loc"])
    kind = error["type"]
    line, depth, stopped_early = _locate(item.node, loc)
    if kind in ("missing", "extra_forbidden"):
        path, name = loc[:-1], str(loc[-1])
        if kind == "missing":
            what = f"missing field {name!r}"
        else:
            fields = _fields_at(model, path)
            suggestion = did_you_mean(name, fields)
            listing = f"; valid fields: {', '.join(fields)}"
            what = f"unknown field {name!r}{suggestion or listing}"
            if not suggestion and _type_at(model, path) is Traits:
                what += " (put your own axes under 'custom:')"
    else:
        # `order: 123` is stored as {value: '123'}: name the field as written, not as stored.
        path = loc[:depth] if stopped_early else loc
        what = _expected(error, _type_at(model, loc))
    prefix = f"{_where(item.file, line)}: {label}: "
    return prefix + (f"{_render(path)}: " if path else "") + what


def _expected(error: Any, annotation: Any) -> str:
    """Say what a field expected and what it got, in words rather than pydantic's."""
    kind, value = error["type"], error.get("input")
    ctx = error.get("ctx") or {}
    got = _describe(value)
    plain = value if isinstance(value, str | int | float) else got  # numbers read better unquoted
    if kind == "literal_error":
        literal = get_origin(annotation) is Literal
        choices = [str(c) for c in get_args(annotation)] if literal else []
        if not choices:
            return f"expected {ctx.get('expected', 'one of the allowed values')}, got {got}"
        suggestion = did_you_mean(value, choices) if isinstance(value, str) else ""
        return f"expected one of {', '.join(map(repr, choices))}, got {got}{suggestion}"
    if kind == "string_pattern_mismatch" and error["loc"][-1] == "id":
        return f"expected {_ID_RULE}, got {got}"
    simple = {
        "string_type": "expected text",
        "int_type": "expected a whole number",
        "int_parsing": "expected a whole number",
        "int_from_float": "expected a whole number",
        "float_type": "expected a number",
        "float_parsing": "expected a number",
        "bool_type": "expected true or false",
        "bool_parsing": "expected true or false",
        "dict_type": "expected a mapping",
        "model_type": "expected a mapping of fields",
        "model_attributes_type": "expected a mapping of fields",
        "list_type": "expected a list",
    }
    if kind in simple:
        return f"{simple[kind]}, got {got}"
    bounds = {
        "greater_than_equal": ("ge", "at least"),
        "less_than_equal": ("le", "at most"),
        "greater_than": ("gt", "greater than"),
        "less_than": ("lt", "less than"),
    }
    if kind in bounds:
        key, words = bounds[kind]
        return f"must be {words} {ctx[key]}, got {plain}"
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return "must not be empty"
        return f"must be at least {ctx['min_length']} characters, got {got}"
    if kind == "string_too_long":
        return f"must be at most {ctx['max_length']} characters, got {len(value)}"
    message = str(error["msg"])
    return f"{message[:1].lower()}{message[1:]}, got {got}"


def _describe(value: Any) -> str:
    """A short, readable account of a value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, date):
        return f"a date ({value.isoformat()})"
    text = repr(value)
    return text if len(text) <= 60 else text[:56] + "...'"


def _render(loc: Sequence[Any]) -> str:
    """`known_info.order.value`, `tags[2]`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --- locations --------------------------------------------------------------------------------


def _where(file: str, line: int | None) -> str:
    return f"{file}:{line}" if line else file


def _line(node: yaml.Node | None) -> int | None:
    return node.start_mark.line + 1 if node is not None else None


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    """The value node of ``key`` in a mapping node, if there is one."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                return value_node
    return None


def _locate(node: yaml.Node | None, loc: Sequence[Any]) -> tuple[int | None, int, bool]:
    """Follow a pydantic location through the YAML nodes.

    Returns:
        The 1-based line of the deepest key (or list item) found, how many parts of ``loc`` were
        found, and whether the walk stopped at a scalar or list that ``loc`` reaches into.
    """
    if node is None:
        return None, 0, False
    line = _line(node)
    depth = 0
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            value = _child(node, str(part))
            if value is None:
                return line, depth, False
            line = next(k.start_mark.line + 1 for k, v in node.value if v is value)
            node = value
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return line, depth, False
            node = node.value[part]
            line = _line(node)
        else:
            return line, depth, True
        depth += 1
    return line, depth, False


def _type_at(model: type[BaseModel], loc: Sequence[Any]) -> Any:
    """The annotation a pydantic location points at (None when it cannot be followed)."""
    annotation: Any = model
    for part in loc:
        annotation = _step(annotation, part)
        if annotation is None:
            return None
    return annotation


def _step(annotation: Any, part: Any) -> Any:
    """One step of `_type_at`: a model's field, a dict's value or a list's item."""
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        options = [a for a in get_args(annotation) if a is not type(None)]
        return next((s for s in (_step(a, part) for a in options) if s is not None), None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(str(part))
        return field.annotation if field else None
    if origin is dict and isinstance(part, str):
        return get_args(annotation)[1]
    if origin is list and isinstance(part, int):
        return get_args(annotation)[0]
    return None


def _fields_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """The field names of the model at a location, for unknown-field suggestions."""
    annotation = _type_at(model, loc)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


# --- writing ----------------------------------------------------------------------------------


def write_yaml(
    items: Sequence[Persona | Scenario], path: str | Path, *, header: str, force: bool = False
) -> Path:
    """Write personas or scenarios as a YAML list under a `#` comment header.

    Fields at their defaults are left out; a fact without aliases is written as its value.
    The file is written whole and renamed into place.

    Raises:
        ConfigError: the file exists and ``force`` is false.
    """
    out = Path(path)
    if out.exists() and not force:
        raise ConfigError(f"{path} exists; add --force to overwrite it")
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    body = yaml.dump(
        [_plain(item) for item in items],
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
    return write_atomic(out, comment + body)


def _plain(item: BaseModel) -> dict[str, Any]:
    data = item.model_dump(mode="json", exclude_defaults=True)
    if isinstance(item, Persona):  # every axis written out: sampled values that equal defaults too
        data["traits"] = item.traits.model_dump(
            mode="json", exclude={"custom"} if not item.traits.custom else set()
        )
    if "known_info" in data:
        data["known_info"] = {
            k: v["value"] if set(v) == {"value"} else v for k, v in data["known_info"].items()
        }
    return data


class _Dumper(yaml.SafeDumper):
    """Writes multi-line text as `|` blocks and lists of short words on one line."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
    short = all(isinstance(v, str) and len(v) <= 40 and "\n" not in v for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=short)


_Dumper.add_representer(str, _text)
_Dumper.add_representer(list, _list)


def refuse_overwrite(path: str | Path, force: bool) -> None:
    """Fail before any work when the output is not a YAML file name, or the file exists and
    ``force`` is not given.

    Raises:
        ConfigError: ``path`` is a folder, does not end in .yaml or .yml (the file is YAML, and
            a .json name would be read back as JSON), or exists without ``force``.
    """
    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"-o {path}: is a folder; give a file name, e.g. {out / 'gen.yaml'}")
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise ConfigError(f"-o {path}: the file is written as YAML; name it .yaml or .yml")
    if out.exists() and not force:
        raise ConfigError(f"{path} exists; add --force to overwrite it")


def write_schemas(folder: str | Path) -> list[Path]:
    """Write `persona.schema.json` and `scenario.schema.json` into ``folder``, for editors."""
    written = []
    for name, model in (("persona", Persona), ("scenario", Scenario)):
        path = Path(folder) / f"{name}.schema.json"
        text = json.dumps(model.model_json_schema(), indent=2) + "\n"
        written.append(write_atomic(path, text))
    return written
