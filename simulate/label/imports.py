"""Labels people gave elsewhere, imported from CSV or JSONL as `human:<annotator>` labels.

Each row names `episode_id`, `criterion`, `turn_index` (empty or null: the whole episode) and
`value`, and may add `tool_call_index` (for tool-call criteria) and `rationale`. Every row is
checked against the run (the episode exists, the turn is an agent reply) and the criteria (the
rubrics given, and the rules), and the first bad row is one error line naming the file and
line; nothing is written unless every row is good.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulate.errors import ConfigError, did_you_mean
from simulate.label import Unit, make_label, normalize_value
from simulate.label.rubrics import load_rubric_specs
from simulate.label.rules import rule_criteria
from simulate.loader import json_lines
from simulate.schema import Criterion, Label, LabelingRecord
from simulate.store import LABELS, RunFolder

REQUIRED = ("episode_id", "criterion", "value")
COLUMNS = ("episode_id", "criterion", "turn_index", "tool_call_index", "value", "rationale")
_ANNOTATOR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass
class ImportResult:
    """What an import did."""

    rows: int
    written: int
    skipped: int
    """Rows this annotator had already given (same unit, criterion and rubric)."""


def import_labels(
    run_dir: str | Path, path: str | Path, annotator: str, rubrics: Sequence[str] = ()
) -> ImportResult:
    """Check every row of ``path`` against the run and the criteria, then write them all.

    Args:
        run_dir: the run folder the labels are about.
        path: a `.csv` file with a header row, or a `.jsonl` file of objects.
        annotator: who gave the labels; they are stored as `human:<annotator>`.
        rubrics: rubric files or shipped names whose criteria the rows may use (the rules'
            criteria are always allowed).

    Raises:
        ConfigError: the first bad row, as `FILE:LINE: what is wrong`; nothing is written.
    """
    folder = RunFolder.open(run_dir)
    check_annotator(annotator)
    criteria: dict[str, tuple[Criterion, str | None]] = {c.id: (c, None) for c in rule_criteria()}
    for rubric in load_rubric_specs(rubrics):
        criteria.update({c.id: (c, rubric.ref) for c in rubric.criteria})
    rows = read_rows(Path(path))
    checks = _Checks(
        criteria=criteria,
        replies=_replies(folder),
        labeler=f"human:{annotator}",
        hint="" if rubrics else " (rules only: give --rubric FILE_OR_NAME for its criteria)",
    )
    labels: list[Label] = []
    seen: dict[tuple[Any, ...], int] = {}
    for line, row in rows:
        label = _to_label(row, checks, f"{path}:{line}")
        unit = (label.episode_id, label.criterion, label.turn_index, label.tool_call_index)
        if unit in seen:
            raise ConfigError(f"{path}:{line}: the same unit and criterion as line {seen[unit]}")
        seen[unit] = line
        labels.append(label)
    with folder.lock("labels", "simulate label --import"):
        done = folder.label_keys()
        new = [label for label in labels if label.key not in done]
        with folder.writer(LABELS) as writer:
            for label in new:
                writer.add(label)
    result = ImportResult(rows=len(rows), written=len(new), skipped=len(labels) - len(new))
    folder.record_labeling(
        LabelingRecord.model_validate(
            {
                "imported": str(path),
                "annotator": annotator,
                "rows": result.rows,
                "written": result.written,
                "skipped": result.skipped,
            }
        )
    )
    return result


def check_annotator(annotator: str) -> None:
    """A ConfigError unless ``annotator`` is a usable name (letters, digits, `_`, `.`, `-`)."""
    if not _ANNOTATOR.match(annotator):
        raise ConfigError(
            f"--annotator {annotator!r}: use letters, digits, '_', '.' or '-' (e.g. ana)"
        )


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) pairs of a CSV or JSONL file, with the columns checked."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        raise ConfigError(f"{path}: import a .csv or .jsonl file, not {suffix or 'no suffix'!r}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the file as UTF-8") from None
    rows = _csv_rows(path, text) if suffix == ".csv" else _jsonl_rows(path, text)
    if not rows:
        raise ConfigError(f"{path}: no rows")
    return rows


def _csv_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ConfigError(f"{path}: empty file; the first row names the columns") from None
    _check_columns(header, f"{path}:1")
    rows = []
    start = reader.line_num + 1
    try:
        for values in reader:
            if any(v.strip() for v in values):
                if len(values) != len(header):
                    raise ConfigError(
                        f"{path}:{start}: {len(values)} values for {len(header)} columns"
                    )
                rows.append((start, dict(zip(header, values, strict=True))))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise ConfigError(f"{path}:{reader.line_num}: CSV error: {exc}") from None
    return rows


def _jsonl_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, row in json_lines(text, str(path), "one JSON object per line", "not JSON"):
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{number}: expected a JSON object, one per line")
        _check_columns(list(row), f"{path}:{number}")
        rows.append((number, row))
    return rows


def _check_columns(names: list[str], where: str) -> None:
    for name in names:
        if name not in COLUMNS:
            raise ConfigError(
                f"{where}: unknown column {name!r}{did_you_mean(name, COLUMNS)}; "
                f"columns: {', '.join(COLUMNS)}"
            )
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise ConfigError(
            f"{where}: missing column {missing[0]!r}; needed: {', '.join(REQUIRED)} "
            "(and turn_index for agent replies)"
        )


def _replies(folder: RunFolder) -> dict[str, dict[int, int]]:
    """Per episode id: agent reply index -> how many tool calls it made."""
    return {
        episode.episode_id: {
            i: len(m.tool_calls) for i, m in enumerate(episode.messages) if m.role == "assistant"
        }
        for episode in folder.episodes()
    }


def _index(row: dict[str, Any], column: str, where: str) -> int | None:
    """An optional whole-number column: empty or null is None."""
    value = row.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"{where}: {column} must be a whole number or empty, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(
            f"{where}: {column} must be a whole number or empty, got {value!r}"
        ) from None
    if number < 0:
        raise ConfigError(f"{where}: {column} must not be negative, got {number}")
    return number


def _text(row: dict[str, Any], column: str, where: str) -> str:
    value = row.get(column)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {column} must be non-empty text, got {value!r}")
    return value.strip()


@dataclass
class _Checks:
    """What rows are checked against."""

    criteria: dict[str, tuple[Criterion, str | None]]
    """Criterion id -> (criterion, ref of its rubric, None for rules)."""
    replies: dict[str, dict[int, int]]
    """Episode id -> agent reply index -> tool calls in it."""
    labeler: str
    hint: str
    """Said after an unknown criterion."""


def _to_label(row: dict[str, Any], checks: _Checks, where: str) -> Label:
    """One row as a label, or a ConfigError saying what is wrong with it."""
    criteria, replies = checks.criteria, checks.replies
    episode_id = _text(row, "episode_id", where)
    if episode_id not in replies:
        raise ConfigError(
            f"{where}: unknown episode_id {episode_id!r}{did_you_mean(episode_id, replies)}"
        )
    criterion_id = _text(row, "criterion", where)
    if criterion_id not in criteria:
        known = sorted(criteria)
        hint = did_you_mean(criterion_id, known)
        raise ConfigError(
            f"{where}: unknown criterion {criterion_id!r}{hint}; known: {', '.join(known)}"
            f"{checks.hint}"
        )
    criterion, rubric = criteria[criterion_id]
    unit = _unit(row, criterion, replies[episode_id], episode_id, where)
    raw = row.get("value")
    value = normalize_value(criterion, raw)
    if value is None:
        raise ConfigError(
            f"{where}: value {raw!r} is not allowed for {criterion_id!r}; "
            f"allowed: {', '.join(criterion.allowed_values())}"
        )
    rationale = row.get("rationale")
    return make_label(
        episode_id,
        criterion,
        unit,
        value,
        labeler=checks.labeler,
        kind="human",
        rationale=rationale.strip() if isinstance(rationale, str) else "",
        rubric=rubric,
    )


def _unit(
    row: dict[str, Any],
    criterion: Criterion,
    replies: dict[int, int],
    episode_id: str,
    where: str,
) -> Unit:
    """The unit a row labels, checked against the criterion's `applies_to` and the episode."""
    turn = _index(row, "turn_index", where)
    call = _index(row, "tool_call_index", where)
    if criterion.applies_to == "episode":
        if turn is not None or call is not None:
            raise ConfigError(
                f"{where}: {criterion.id!r} judges the whole episode; leave turn_index empty"
            )
        return Unit()
    if turn is None:
        raise ConfigError(
            f"{where}: {criterion.id!r} judges each agent reply; give its turn_index "
            f"(agent replies in this episode: {', '.join(map(str, replies)) or 'none'})"
        )
    if turn not in replies:
        raise ConfigError(
            f"{where}: turn_index {turn} is not an agent reply in episode {episode_id!r} "
            f"(agent replies: {', '.join(map(str, replies)) or 'none'})"
        )
    if criterion.applies_to == "assistant_turn":
        if call is not None:
            raise ConfigError(
                f"{where}: {criterion.id!r} judges whole replies; leave tool_call_index empty"
            )
        return Unit(turn)
    if call is None:
        raise ConfigError(f"{where}: {criterion.id!r} judges tool calls; give tool_call_index")
    if call >= replies[turn]:
        raise ConfigError(
            f"{where}: reply {turn} of episode {episode_id!r} made {replies[turn]} tool "
            f"call(s); tool_call_index {call} is out of range"
        )
    return Unit(turn, call)
