"""Run folders: the one owner of a run's files — manifest, episode and label shards, writers.

    outputs/<run>/manifest.json          the typed `Manifest` (config, plan, counts, versions)
    outputs/<run>/episodes/*.parquet     one row per episode, each shard written whole, renamed
    outputs/<run>/labels/*.parquet       one row per label, the same way

`RunFolder` is the only door to these files: no other module opens parquet or the manifest.
Every file Simulate writes goes through `write_atomic` (a hidden temporary sibling renamed into
place), so a killed process leaves either the whole file or none; `--resume` skips every
episode id already in a shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import platform
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel

from simulate.errors import OutputError, RunFolderError
from simulate.schema import Episode, Label, LabelingRecord, LabelKey, Manifest, RunCounts

if TYPE_CHECKING:
    import datasets
    import polars as pl

MANIFEST = "manifest.json"
EPISODES = "episodes"
LABELS = "labels"

ShardKind = Literal["episodes", "labels"]

FLUSH_INTERVAL_S = 1.0
"""A writer's rows reach disk at least this often."""
FLUSH_MAX_ROWS = 500
"""...and as soon as this many are waiting."""


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
def arrow_schema(kind: ShardKind = EPISODES) -> pa.Schema:
    """The fixed Arrow schema of episode or label shards, with the features as metadata."""
    return (episode_features() if kind == EPISODES else label_features()).arrow_schema


def now_iso() -> str:
    """The current time, ISO 8601 in UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def environment() -> dict[str, Any]:
    """Versions that explain a run: Python, platform and the libraries that shape the data."""
    packages = {}
    for name in ("simulate", "datasets", "pyarrow", "pydantic", "openai", "polars"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {"python": platform.python_version(), "platform": platform.platform(), **packages}


# --- writing files ------------------------------------------------------------------------------


def write_atomic(
    path: str | Path, content: str | bytes | Callable[[Path], None], *, fsync: bool = False
) -> Path:
    """Write a file whole or not at all: into a hidden temporary sibling, then rename it.

    ``content`` is text, bytes, or a function that writes the temporary path it is given.
    The temporary file is removed when writing fails; an OS failure (full disk, read-only
    folder) is an OutputError naming the file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(3)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(tmp)
        elif isinstance(content, str):
            tmp.write_text(content, encoding="utf-8")
        else:
            tmp.write_bytes(content)
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return path


def write_parquet(path: str | Path, table: pa.Table) -> Path:
    """Write an Arrow table as one parquet file, atomically."""
    return write_atomic(path, lambda tmp: pq.write_table(table, tmp))


def read_parquet(path: str | Path, columns: Sequence[str] | None = None) -> pa.Table:
    """One parquet file as an Arrow table (golden sets and exports read theirs back)."""
    return pq.read_table(path, columns=list(columns) if columns else None)


def parquet_rows(paths: Iterable[str | Path]) -> int:
    """Rows in parquet files, from their footers (nothing else is read)."""
    return sum(pq.read_metadata(p).num_rows for p in paths)


def parquet_bytes(path: str | Path) -> int:
    """Uncompressed bytes of a parquet file's data, from its footer (the Hub's `num_bytes`)."""
    meta = pq.read_metadata(path)
    return sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))


def rows_to_table(rows: Sequence[BaseModel], kind: ShardKind = EPISODES) -> pa.Table:
    """Episodes or labels as an Arrow table with the fixed schema of ``kind``."""
    return pa.Table.from_pylist(
        [r.model_dump(mode="json") for r in rows], schema=arrow_schema(kind)
    )


class ShardWriter:
    """Buffers finished episodes (or labels) and writes them as whole parquet shards.

    It owns the flush policy: a shard is written once ``FLUSH_MAX_ROWS`` rows wait, at least
    every ``FLUSH_INTERVAL_S`` while it is open as an async context manager, and on the way
    out of either context manager (cancellation included).
    """

    def __init__(self, run_dir: str | Path, kind: ShardKind = EPISODES) -> None:
        self.kind = kind
        self.folder = Path(run_dir) / kind
        self.buffer: list[BaseModel] = []
        self.written = 0
        self._prefix = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
        self._count = 0
        self._ticker: asyncio.Task[None] | None = None

    def add(self, row: BaseModel) -> None:
        """Queue one finished episode (or label); a full buffer is written at once."""
        self.buffer.append(row)
        if len(self.buffer) >= FLUSH_MAX_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write every queued row as one shard, atomically."""
        if not self.buffer:
            return
        name = f"part-{self._prefix}-{self._count:05d}.parquet"
        table = rows_to_table(self.buffer, self.kind)
        write_atomic(self.folder / name, lambda tmp: pq.write_table(table, tmp), fsync=True)
        self._count += 1
        self.written += len(self.buffer)
        self.buffer = []

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()

    async def __aenter__(self) -> ShardWriter:
        self._ticker = asyncio.create_task(self._flush_every_interval())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self.flush()

    async def _flush_every_interval(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self.flush()


# --- the run folder -------------------------------------------------------------------------------

_LABEL_KEY_COLUMNS = [
    "episode_id",
    "criterion",
    "turn_index",
    "tool_call_index",
    "labeler",
    "rubric",
]


class RunFolder:
    """One run folder on disk: its manifest, its shards, their readers and writers."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # --- opening and creating

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        """An existing run folder; RunFolderError when there is none at ``path``."""
        folder = cls(path)
        folder.read_manifest()
        return folder

    @classmethod
    def create(cls, path: str | Path, manifest: Manifest, *, resume: bool) -> RunFolder:
        """Create the folder for a new run, or reopen it to resume the same plan.

        Refuses to mix two different plans in one folder, to start over a run that has
        episodes unless resuming, and to write into a folder that is not a run folder.
        """
        folder = cls(path)
        has_manifest = folder.manifest_path.is_file()
        where = str(folder.path)
        if folder.path.exists() and not folder.path.is_dir():
            raise RunFolderError(f"--out {where!r} is a file, not a folder")
        if resume and not has_manifest:
            raise RunFolderError(f"--resume: {where!r} holds no run to resume")
        if not resume and has_manifest:
            raise RunFolderError(
                f"--out {where!r} already holds a run; pass --resume to continue it "
                "or choose another --out"
            )
        if not has_manifest and folder.path.is_dir() and any(folder.path.iterdir()):
            raise RunFolderError(f"--out {where!r} is not empty and is not a run folder")
        if resume:
            old = folder.read_manifest()
            if old.plan.fingerprint != manifest.plan.fingerprint:
                raise RunFolderError(
                    f"--resume: {where!r} was planned with other inputs or settings "
                    f"(personas, scenarios, user, target, seed, trials or max turns changed); "
                    "resume with the same ones or choose another --out"
                )
            manifest.created_at = old.created_at or manifest.created_at
            manifest.resumed = old.resumed + 1
            manifest.labeling = old.labeling
        shards = folder.path / EPISODES
        try:
            shards.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {str(shards)!r}: {exc.strerror or exc}") from exc
        for leftover in shards.glob(".*.tmp"):
            leftover.unlink()  # a shard whose writer was killed before the rename
        folder.write_manifest(manifest)
        return folder

    # --- the manifest

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def read_manifest(self) -> Manifest:
        """The manifest as stored now; RunFolderError when this is not a run folder."""
        data = read_manifest(self.path)
        try:
            return Manifest.model_validate(data)
        except ValueError as exc:
            raise RunFolderError(f"{self.manifest_path}: not a Simulate manifest: {exc}") from exc

    @functools.cached_property
    def manifest(self) -> Manifest:
        """The manifest, read once (see `read_manifest` for a fresh copy)."""
        return self.read_manifest()

    def write_manifest(self, manifest: Manifest) -> None:
        """Replace the manifest, atomically."""
        text = manifest.model_dump_json(indent=2) + "\n"
        write_atomic(self.manifest_path, text)
        self.__dict__["manifest"] = manifest

    def record_labeling(self, entry: LabelingRecord) -> None:
        """Append one labeling session's record to the manifest."""
        manifest = self.read_manifest()
        entry.at = entry.at or now_iso()
        manifest.labeling.append(entry)
        self.write_manifest(manifest)

    # --- shards

    def shards(self, kind: ShardKind = EPISODES) -> list[Path]:
        """The shards of ``kind``, in the order they were written.

        The folder is listed, not globbed, so a run folder named `runs/[v1]` works.
        """
        folder = self.path / kind
        if not folder.is_dir():
            return []
        return sorted(
            p for p in folder.iterdir() if p.suffix == ".parquet" and not p.name.startswith(".")
        )

    def has(self, kind: ShardKind = EPISODES) -> bool:
        """Whether any shard of ``kind`` is stored."""
        return bool(self.shards(kind))

    def count(self, kind: ShardKind = EPISODES) -> int:
        """Rows stored in the shards of ``kind`` (read from their footers)."""
        return parquet_rows(self.shards(kind))

    def writer(self, kind: ShardKind = EPISODES) -> ShardWriter:
        """A writer of new shards of ``kind`` into this folder."""
        return ShardWriter(self.path, kind)

    def table(self, kind: ShardKind = EPISODES, columns: Sequence[str] | None = None) -> pa.Table:
        """Every shard of ``kind`` as one Arrow table with the fixed schema."""
        schema = arrow_schema(kind)
        if columns:
            schema = pa.schema([schema.field(c) for c in columns])
        files = self.shards(kind)
        if not files:
            return schema.empty_table()
        return pa.concat_tables(
            pq.read_table(f, columns=list(columns) if columns else None, schema=schema)
            for f in files
        )

    def scan(self, kind: ShardKind = EPISODES) -> pl.LazyFrame:
        """The shards of ``kind`` as one polars lazy frame (the folder must have some)."""
        import polars as pl

        return pl.scan_parquet([str(p) for p in self.shards(kind)], glob=False)

    def scan_episodes(self) -> pl.LazyFrame:
        """Episodes as a lazy frame, with `status`, `reason` and `failed_checks` lifted."""
        import polars as pl

        return self.scan(EPISODES).with_columns(
            pl.col("outcome").struct.field("status").alias("status"),
            pl.col("outcome").struct.field("reason").alias("reason"),
            pl.col("outcome").struct.field("failed_checks").alias("failed_checks"),
        )

    # --- episodes

    def episode_ids(self) -> set[str]:
        """Ids of the episodes stored."""
        return set(self.table(EPISODES, ["episode_id"]).column(0).to_pylist())

    def outcome_counts(self) -> RunCounts:
        """Counts over every stored episode: total, by outcome status, and successes."""
        statuses: Counter[str] = Counter()
        successes = 0
        for path in self.shards(EPISODES):
            table = pq.read_table(path, columns=["outcome", "success"])
            statuses.update(s["status"] for s in table.column("outcome").to_pylist())
            successes += sum(table.column("success").to_pylist())
        return RunCounts(
            stored=sum(statuses.values()),
            by_status=dict(sorted(statuses.items())),
            successes=successes,
        )

    def episodes(
        self, filters: Iterable[tuple[str, Any]] = (), ids: set[str] | None = None
    ) -> Iterator[Episode]:
        """Stored episodes, shard by shard, keeping those whose columns equal the given values.

        ``filters`` are pairs like ``("persona_id", "ana")`` or ``("status", "gave_up")``;
        ``ids`` keeps only those episode ids.
        """
        wanted = list(filters)
        for path in self.shards(EPISODES):
            table = pq.read_table(path)
            if ids is not None:
                wanted_ids = pa.array(sorted(ids), pa.string())
                table = table.filter(pc.is_in(table.column("episode_id"), value_set=wanted_ids))
            for row in table.to_pylist():
                flat = {**row, "status": row["outcome"]["status"]}
                if all(flat.get(key) == value for key, value in wanted):
                    yield Episode.model_validate(row)

    def dataset(self) -> datasets.Dataset:
        """The episodes as a Hugging Face dataset, sorted by persona, scenario and trial."""
        import datasets

        table = self.table(EPISODES).sort_by(
            [("persona_id", "ascending"), ("scenario_id", "ascending"), ("trial", "ascending")]
        )
        return datasets.Dataset(table.replace_schema_metadata(arrow_schema(EPISODES).metadata))

    # --- labels

    def labels(self) -> list[Label]:
        """Every label stored, in the order they were written."""
        return [Label.model_validate(r) for r in self.table(LABELS).to_pylist()]

    def label_dataset(self) -> datasets.Dataset:
        """The labels as a Hugging Face dataset, one row per label."""
        import datasets

        table = self.table(LABELS)
        return datasets.Dataset(table.replace_schema_metadata(arrow_schema(LABELS).metadata))

    def label_keys(self) -> set[LabelKey]:
        """The slots already filled by stored labels (read column by column)."""
        table = self.table(LABELS, _LABEL_KEY_COLUMNS)
        columns = [table.column(c).to_pylist() for c in _LABEL_KEY_COLUMNS]
        return set(zip(*columns, strict=True))


# --- the public functions of earlier versions ---------------------------------------------------


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The manifest as plain JSON data (for tools and tests; the library reads `Manifest`).

    Raises RunFolderError when ``run_dir`` is not a run folder.
    """
    folder = Path(run_dir)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise RunFolderError(f"no such run folder: {str(run_dir)!r}")
    if not path.is_file():
        raise RunFolderError(f"{str(run_dir)!r} is not a run folder (no {MANIFEST})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"{path}: unreadable manifest: {exc}") from exc
    except OSError as exc:
        raise RunFolderError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if not isinstance(data, dict):
        raise RunFolderError(f"{path}: not a Simulate manifest (a JSON object is expected)")
    return data


def write_manifest(run_dir: str | Path, manifest: Manifest | Mapping[str, Any]) -> None:
    """Write a manifest (a `Manifest`, or plain data that validates as one), atomically."""
    if not isinstance(manifest, Manifest):
        manifest = Manifest.model_validate(dict(manifest))
    RunFolder(run_dir).write_manifest(manifest)


def shard_paths(run_dir: str | Path, kind: ShardKind = EPISODES) -> list[Path]:
    """The run's shards of ``kind`` (`episodes` or `labels`), in the order they were written."""
    return RunFolder(run_dir).shards(kind)


def iter_episodes(
    run_dir: str | Path, filters: Iterable[tuple[str, Any]] = ()
) -> Iterator[Episode]:
    """Stored episodes of a run folder (see `RunFolder.episodes`)."""
    return RunFolder(run_dir).episodes(filters)


def load_run(run_dir: str | Path) -> datasets.Dataset:
    """The run's episodes as a Hugging Face dataset, one row per episode.

    Rows are sorted by persona, scenario and trial, so two runs of the same plan line up.
    """
    return RunFolder.open(run_dir).dataset()


def read_labels(run_dir: str | Path) -> list[Label]:
    """Every label stored in the run folder, in the order they were written."""
    return RunFolder(run_dir).labels()


def load_labels(run_dir: str | Path) -> datasets.Dataset:
    """The run's labels as a Hugging Face dataset, one row per label."""
    return RunFolder.open(run_dir).label_dataset()
