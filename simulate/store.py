"""Run folders: the manifest, append-only parquet shards of episodes, resume, and loading.

    outputs/<run>/manifest.json          config, plan fingerprint, counts, versions (no secrets)
    outputs/<run>/episodes/*.parquet     one row per episode, each shard written whole, renamed

A shard is written to a hidden temporary file and renamed into place, so a killed process
leaves either a whole shard or none; `--resume` skips every episode id already in a shard.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import secrets
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from simulate.errors import RunFolderError
from simulate.schema import Episode, Label

if TYPE_CHECKING:
    import datasets

MANIFEST = "manifest.json"
EPISODES = "episodes"
DISCARDED = "discarded"
"""Attempts of episodes played again for simulator faults (`--resimulate-faults`), kept for
audit: episode rows, the same schema, not part of the run's dataset."""

LABELS = "labels"


@functools.cache
def episode_features() -> datasets.Features:
    """The episode row's Hugging Face features (built on first use: `datasets` is slow to
    import, and commands like `validate` never need it)."""
    import datasets

    _str = datasets.Value("string")
    return datasets.Features(
        {
            "episode_id": _str,
            "run_id": _str,
            "persona_id": _str,
            "scenario_id": _str,
            "trial": datasets.Value("int32"),
            "seed": datasets.Value("int64"),
            "persona": _str,
            "scenario": _str,
            "messages": datasets.List(
                {
                    "role": _str,
                    "content": _str,
                    "tool_calls": _str,
                    "tool_call_id": _str,
                    "context": datasets.List(_str),
                    "latency_ms": datasets.Value("float64"),
                }
            ),
            "outcome": {"status": _str, "reason": _str, "failed_checks": datasets.List(_str)},
            "success": datasets.Value("bool"),
            "n_turns": datasets.Value("int32"),
            "usage": datasets.List(
                {
                    "role": _str,
                    "model": _str,
                    "calls": datasets.Value("int64"),
                    "prompt_tokens": datasets.Value("int64"),
                    "completion_tokens": datasets.Value("int64"),
                    "cost_usd": datasets.Value("float64"),
                }
            ),
            "duration_s": datasets.Value("float64"),
            "user": _str,
            "target": _str,
            "created_at": _str,
            "simulator_faults": datasets.List(
                {"kind": _str, "turn": datasets.Value("int32"), "evidence": _str}
            ),
        }
    )


@functools.cache
def label_features() -> datasets.Features:
    """The label row's Hugging Face features."""
    import datasets

    _str = datasets.Value("string")
    return datasets.Features(
        {
            "episode_id": _str,
            "criterion": _str,
            "turn_index": datasets.Value("int32"),
            "tool_call_index": datasets.Value("int32"),
            "value": _str,
            "score": datasets.Value("float64"),
            "passed": datasets.Value("bool"),
            "rationale": _str,
            "labeler": _str,
            "labeler_kind": _str,
            "rubric": _str,
            "samples": datasets.Value("int32"),
            "spread": datasets.Value("float64"),
            "created_at": _str,
        }
    )


@functools.cache
def arrow_schema(kind: str = EPISODES) -> pa.Schema:
    """The fixed Arrow schema of episode (or discarded) or label shards, with the features as
    metadata."""
    return (episode_features() if kind in (EPISODES, DISCARDED) else label_features()).arrow_schema


@functools.cache
def polars_schema(kind: str = EPISODES) -> Any:
    """The shards' schema as polars sees it, so scans of run folders written before a column
    existed (`simulator_faults`) read it as null."""
    import polars as pl

    return pl.from_arrow(arrow_schema(kind).empty_table()).schema


def now_iso() -> str:
    """The current time, ISO 8601 in UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def shard_paths(run_dir: str | Path, kind: str = EPISODES) -> list[Path]:
    """The run's shards of ``kind`` (`episodes` or `labels`), in the order they were written."""
    return sorted((Path(run_dir) / kind).glob("*.parquet"))


def stored_episode_ids(run_dir: str | Path) -> set[str]:
    """Ids of the episodes already stored in the run folder."""
    ids: set[str] = set()
    for path in shard_paths(run_dir):
        ids.update(pq.read_table(path, columns=["episode_id"]).column(0).to_pylist())
    return ids


def stored_outcomes(run_dir: str | Path) -> dict[str, Any]:
    """Counts over every stored episode: total, by outcome status, and successes."""
    statuses: Counter[str] = Counter()
    successes = 0
    for path in shard_paths(run_dir):
        table = pq.read_table(path, columns=["outcome", "success"])
        statuses.update(s["status"] for s in table.column("outcome").to_pylist())
        successes += sum(table.column("success").to_pylist())
    return {
        "stored": sum(statuses.values()),
        "by_status": dict(sorted(statuses.items())),
        "successes": successes,
    }


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The run's manifest, or RunFolderError when the folder is not a run folder."""
    path = Path(run_dir) / MANIFEST
    if not Path(run_dir).is_dir():
        raise RunFolderError(f"no such run folder: {str(run_dir)!r}")
    if not path.is_file():
        raise RunFolderError(f"{str(run_dir)!r} is not a run folder (no {MANIFEST})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"{path}: unreadable manifest: {exc}") from exc


def write_manifest(run_dir: str | Path, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically (temporary file, then rename)."""
    path = Path(run_dir) / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def environment() -> dict[str, Any]:
    """Versions that explain a run: Python, platform and the libraries that shape the data."""
    packages = {}
    for name in ("simulate", "datasets", "pyarrow", "pydantic", "openai", "polars"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {"python": platform.python_version(), "platform": platform.platform(), **packages}


def prepare_run_folder(run_dir: str | Path, manifest: dict[str, Any], *, resume: bool) -> set[str]:
    """Create or reopen a run folder for the plan described by ``manifest``.

    Returns the ids of episodes already stored (empty for a new run). Refuses to mix two
    different plans in one folder, and to start over a run that has episodes unless resuming.
    """
    run_dir = Path(run_dir)
    has_manifest = (run_dir / MANIFEST).is_file()
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"--out {str(run_dir)!r} is a file, not a folder")
    if resume and not has_manifest:
        raise RunFolderError(f"--resume: {str(run_dir)!r} holds no run to resume")
    if not resume and has_manifest:
        raise RunFolderError(
            f"--out {str(run_dir)!r} already holds a run; pass --resume to continue it "
            "or choose another --out"
        )
    if not has_manifest and run_dir.is_dir() and any(run_dir.iterdir()):
        raise RunFolderError(f"--out {str(run_dir)!r} is not empty and is not a run folder")
    done: set[str] = set()
    if resume:
        old = read_manifest(run_dir)
        if old.get("plan", {}).get("fingerprint") != manifest["plan"]["fingerprint"]:
            raise RunFolderError(
                f"--resume: {str(run_dir)!r} was planned with other inputs or settings "
                f"(personas, scenarios, user, target, seed, trials or max turns changed); "
                "resume with the same ones or choose another --out"
            )
        done = stored_episode_ids(run_dir)
        manifest["created_at"] = old.get("created_at", manifest["created_at"])
        manifest["resumed"] = old.get("resumed", 0) + 1
    (run_dir / EPISODES).mkdir(parents=True, exist_ok=True)
    for leftover in (run_dir / EPISODES).glob(".*.tmp"):
        leftover.unlink()  # a shard whose writer was killed before the rename
    write_manifest(run_dir, manifest)
    return done


def rows_to_table(rows: Sequence[BaseModel], kind: str = EPISODES) -> pa.Table:
    """Episodes or labels as an Arrow table with the fixed schema of ``kind``."""
    return pa.Table.from_pylist(
        [r.model_dump(mode="json") for r in rows], schema=arrow_schema(kind)
    )


class ShardWriter:
    """Buffers finished episodes (or labels) and writes them as whole parquet shards.

    ``flush()`` is called at least once a second and at the end; each call that has rows
    writes one new shard, to a hidden temporary file renamed into place.
    """

    def __init__(self, run_dir: str | Path, kind: str = EPISODES) -> None:
        self.kind = kind
        self.folder = Path(run_dir) / kind
        self.folder.mkdir(parents=True, exist_ok=True)
        self.buffer: list[BaseModel] = []
        self.written = 0
        self._prefix = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
        self._count = 0

    def add(self, row: BaseModel) -> None:
        """Queue one finished episode (or label) for the next shard."""
        self.buffer.append(row)

    def flush(self) -> None:
        """Write every queued row as one shard, atomically."""
        if not self.buffer:
            return
        name = f"part-{self._prefix}-{self._count:05d}.parquet"
        tmp = self.folder / f".{name}.tmp"
        pq.write_table(rows_to_table(self.buffer, self.kind), tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.folder / name)
        self._count += 1
        self.written += len(self.buffer)
        self.buffer = []


def iter_episodes(
    run_dir: str | Path, filters: Iterable[tuple[str, Any]] = (), kind: str = EPISODES
) -> Iterator[Episode]:
    """Stored episodes, shard by shard, keeping those whose columns equal the given values.

    ``filters`` are pairs like ``("persona_id", "ana")`` or ``("status", "gave_up")``;
    ``kind`` DISCARDED reads the attempts `--resimulate-faults` set aside instead.
    """
    wanted = list(filters)
    for path in shard_paths(run_dir, kind):
        for row in pq.read_table(path).to_pylist():
            flat = {**row, "status": row["outcome"]["status"]}
            if all(flat.get(key) == value for key, value in wanted):
                yield Episode.model_validate(row)


def load_run(run_dir: str | Path) -> datasets.Dataset:
    """The run's episodes as a Hugging Face dataset, one row per episode.

    Rows are sorted by persona, scenario and trial, so two runs of the same plan line up.
    """
    import datasets

    read_manifest(run_dir)
    files = [str(p) for p in shard_paths(run_dir)]
    if not files:
        return datasets.Dataset(arrow_schema().empty_table())
    table = pa.concat_tables(pq.read_table(f, schema=arrow_schema()) for f in files)
    table = table.sort_by(
        [("persona_id", "ascending"), ("scenario_id", "ascending"), ("trial", "ascending")]
    )
    return datasets.Dataset(table.replace_schema_metadata(arrow_schema().metadata))


def read_labels(run_dir: str | Path) -> list[Label]:
    """Every label stored in the run folder, in the order they were written."""
    rows: list[Label] = []
    for path in shard_paths(run_dir, LABELS):
        rows += [Label.model_validate(r) for r in pq.read_table(path).to_pylist()]
    return rows


def load_labels(run_dir: str | Path) -> datasets.Dataset:
    """The run's labels as a Hugging Face dataset, one row per label."""
    import datasets

    read_manifest(run_dir)
    files = shard_paths(run_dir, LABELS)
    if not files:
        return datasets.Dataset(arrow_schema(LABELS).empty_table())
    table = pa.concat_tables(pq.read_table(f, schema=arrow_schema(LABELS)) for f in files)
    return datasets.Dataset(table.replace_schema_metadata(arrow_schema(LABELS).metadata))
