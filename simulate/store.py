"""Run folders: the one owner of a run's files — manifest, episode and label shards, writers.

    outputs/<run>/manifest.json          the typed `Manifest` (config, plan, counts, versions)
    outputs/<run>/episodes/*.parquet     one row per episode, each shard written whole, renamed
    outputs/<run>/labels/*.parquet       one row per label, the same way

`RunFolder` is the only door to these files: no other module opens parquet or the manifest.
Every file Simulate writes goes through `write_atomic` (a hidden temporary sibling renamed into
place), so a killed process leaves either the whole file or none; `--resume` skips every
episode id already in a shard.

Writers hold `RunFolder.lock(role)`, an OS file lock that dies with its process (a SIGKILL
never leaves a stale lock), so a second `run --resume` or `label` on the same folder is
refused rather than doubling it. Readers stay safe on folders damaged by older versions or
other tools: an episode stored twice counts once, a label slot filled twice keeps its latest
label, and a shard that cannot be read is left out with a `ShardWarning` naming it
(`simulate repair` moves such shards aside).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import platform
import re
import secrets
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel

from simulate.errors import OutputError, RunFolderError, RunLocked
from simulate.schema import (
    NOT_RATED,
    Episode,
    Label,
    LabelingRecord,
    LabelKey,
    Manifest,
    RunCounts,
)

if TYPE_CHECKING:
    import datasets
    import polars as pl

MANIFEST = "manifest.json"
EPISODES = "episodes"
DISCARDED = "discarded"
"""Attempts of episodes played again for simulator faults (`--resimulate-faults`), kept for
audit: episode rows, the same schema, not part of the run's dataset."""

LABELS = "labels"

ShardKind = Literal["episodes", "labels", "discarded"]

LOCKS = ".locks"
"""The folder of writers' lock files inside a run folder."""
HELPERS_WAIT_S = 30.0
"""How long a new writer waits for the helpers of a dead one (`RunFolder.hold`) to die."""
QUARANTINE = "quarantine"
"""Where `simulate repair` moves shards that cannot be read."""
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    EPISODES: ("episode_id", "persona_id", "scenario_id", "trial", "outcome", "success"),
    DISCARDED: ("episode_id", "persona_id", "scenario_id", "trial", "outcome", "success"),
    LABELS: ("episode_id", "criterion", "labeler", "value", "created_at"),
}
"""Columns a shard must have to be read as episodes or labels."""

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
            "simulator_faults": datasets.List(
                {"kind": _str, "turn": datasets.Value("int32"), "evidence": _str}
            ),
            "error_traceback": _str,
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
    """The fixed Arrow schema of episode (or discarded) or label shards, with the features as
    metadata."""
    return (episode_features() if kind in (EPISODES, DISCARDED) else label_features()).arrow_schema


def rated() -> pl.Expr:
    """The goal rate's denominator as a polars filter: episodes not ended by a target or
    simulator error (`schema.is_rated`), the only ones that count for or against the agent."""
    import polars as pl

    return ~pl.col("status").is_in(NOT_RATED)


# --- redaction ----------------------------------------------------------------------------------

_SECRET_NAME = (
    r"(?:[a-z0-9]+[-_.])*(?:api[-_]?key|apikey|key|token|access[-_]?token|secret|"
    r"client[-_]?secret|password|passwd|pwd|auth|sig|signature|credentials?)"
)
_SECRETS = [
    re.compile(p)
    for p in (
        r"(?<=://)(?P<secret>[^/@\s]+)@",  # URL user:password
        rf"(?i)[?&;]{_SECRET_NAME}=(?P<secret>[^&#\s'\"]+)",  # ?api_key=...
        rf"(?i)(?<![\w-])--?{_SECRET_NAME}(?:=|\s+)(?:(?P<q>['\"])(?P<quoted>[^'\"]*)(?P=q)|"
        r"(?!-)(?P<secret>[^\s'\"]+))",  # --api-key X, --token=X, --password 'X'
        r"(?i)(?<!\S)[a-z0-9_]*(?:key|token|secret|password)=(?P<secret>[^\s'\"]+)",  # K=V
        r"(?i)\b(?:bearer|basic|token)\s+(?P<secret>[A-Za-z0-9._~+/=-]{8,})",
        r"\b(?P<secret>(?:sk|pk|rk|hf|ghp|gho|xox[abp])[-_][A-Za-z0-9_-]{8,})",  # key-shaped
    )
]
REDACTED = "***"


def _secret_span(match: re.Match[str]) -> tuple[int, int]:
    group = "quoted" if match.groupdict().get("quoted") is not None else "secret"
    return match.span(group)


def find_secrets(text: str) -> tuple[str, ...]:
    """The credential values `redact` would hide in ``text`` (a spec's), so they can be
    hidden wherever else they turn up: an agent that echoes its `--api-key` in an error."""
    found = []
    for pattern in _SECRETS:
        for match in pattern.finditer(text):
            start, end = _secret_span(match)
            found.append(text[start:end])
            if pattern is _SECRETS[0]:
                found += match["secret"].split(":")[1:]  # the password alone, too
    return tuple(dict.fromkeys(s for s in found if len(s) >= 4))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with credentials replaced by ***: URL user:password, secret-looking query
    values (`?api_key=`, `&token=`), command-line flags (`--api-key X`, `--token=X`),
    `NAME_KEY=value` settings, bearer tokens and key-shaped strings (`sk-...`), and every
    value in ``secrets`` (header values read from the environment, `find_secrets` of specs).

    The one redaction every spec, outcome reason, traceback and error message that Simulate
    writes or prints goes through.
    """
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, REDACTED)

    def hide(match: re.Match[str]) -> str:
        start, end = _secret_span(match)
        whole = match.group(0)
        return whole[: start - match.start()] + REDACTED + whole[end - match.start() :]

    for pattern in _SECRETS:
        text = pattern.sub(hide, text)
    return text


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


MARKER = ".simulate.json"
"""The file that marks a folder Simulate wrote whole (a golden set), so it may be replaced."""


def check_replaceable(target: str | Path, kind: str, flag: str = "--out") -> None:
    """Refuse to replace ``target`` unless it is new, empty, or a folder Simulate wrote as
    ``kind`` (its marker says so; golden sets of earlier versions are known by their files).

    Raises:
        ConfigError: ``target`` is a file, or a folder Simulate did not write (a mistyped
            ``--out`` must never delete a project).
    """
    from simulate.errors import ConfigError

    path = Path(target)
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir() or path.is_symlink():
        raise ConfigError(f"{flag} {str(path)!r} exists and is not a folder; choose another")
    try:
        names = {p.name for p in path.iterdir()}
    except OSError as exc:
        raise ConfigError(f"{flag} {str(path)!r}: cannot read it ({exc.strerror or exc})") from exc
    if not names or _written_as(path, kind) or (kind == "golden" and _old_golden(path, names)):
        return
    raise ConfigError(
        f"{flag} {str(path)!r} exists and is not a {kind} set Simulate wrote; "
        "choose an empty or new folder"
    )


def _written_as(path: Path, kind: str) -> bool:
    try:
        return json.loads((path / MARKER).read_text(encoding="utf-8")).get("kind") == kind
    except (OSError, ValueError, AttributeError):
        return False


def _old_golden(path: Path, names: set[str]) -> bool:
    """A golden set from before markers: a card and split files, nothing else."""
    if names != {"README.md", "data"} or not (path / "data").is_dir():
        return False
    return all(p.suffix == ".parquet" and "-of-" in p.name for p in (path / "data").iterdir())


def replace_folder(target: str | Path, kind: str, fill: Callable[[Path], None]) -> Path:
    """Write a whole folder: ``fill`` writes a hidden sibling, which then takes its place.

    The folder is marked as Simulate's ``kind``. A writer killed between the two renames of
    the swap leaves the previous folder aside; the next call puts it back first, so a kill
    never leaves no folder at all.
    """
    import shutil

    target = Path(target)
    check_replaceable(target, kind)
    target.parent.mkdir(parents=True, exist_ok=True)
    aside = sorted(target.parent.glob(f".{target.name}.old-*"))
    if aside and not target.exists():
        os.replace(aside.pop(), target)  # a swap cut short: the previous folder comes back
    for stale in [*target.parent.glob(f".{target.name}.tmp-*"), *aside]:
        shutil.rmtree(stale, ignore_errors=True)  # left by a writer that was killed
    token = secrets.token_hex(3)
    tmp = target.parent / f".{target.name}.tmp-{token}"
    old = target.parent / f".{target.name}.old-{token}"
    try:
        tmp.mkdir()
        fill(tmp)
        (tmp / MARKER).write_text(json.dumps({"kind": kind, "written_at": now_iso()}) + "\n")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    return target


def inside_run_data(path: str | Path) -> Path | None:
    """The run folder whose episodes, labels or golden set ``path`` would land in, or None.

    An output written there would be read back as part of the run (an export of a run's own
    episodes in `episodes/` doubles it).
    """
    resolved = Path(path).resolve()
    for folder in resolved.parents:
        if folder.name in (EPISODES, LABELS, "golden") and (folder.parent / MANIFEST).is_file():
            return folder.parent
    return None


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

    def __init__(self, run_dir: str | Path, kind: ShardKind = EPISODES, tag: str = "") -> None:
        self.kind = kind
        self.folder = Path(run_dir) / kind
        self.buffer: list[BaseModel] = []
        self.written = 0
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self._prefix = (
            f"{stamp}-{tag}-{secrets.token_hex(3)}" if tag else f"{stamp}-{secrets.token_hex(3)}"
        )
        self._count = 0
        self._ticker: asyncio.Task[None] | None = None

    def add(self, row: BaseModel) -> None:
        """Queue one finished episode (or label); a full buffer is written at once."""
        self.buffer.append(row)
        if len(self.buffer) >= FLUSH_MAX_ROWS:
            self.flush()

    def flush(self) -> Path | None:
        """Write every queued row as one shard, atomically; the shard's path (None: no rows)."""
        if not self.buffer:
            return None
        name = f"part-{self._prefix}-{self._count:05d}.parquet"
        table = rows_to_table(self.buffer, self.kind)
        write_atomic(self.folder / name, lambda tmp: pq.write_table(table, tmp), fsync=True)
        self._count += 1
        self.written += len(self.buffer)
        self.buffer = []
        return self.folder / name

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


@dataclass(frozen=True)
class QuarantinedShard:
    """A shard `repair` moved aside: where it is now, what is wrong, the rows it held."""

    kind: ShardKind
    path: Path
    problem: str
    rows: int | None
    """Rows its footer names, when it has one (None: unknown, lost with the file)."""


def _footer_rows(path: Path) -> int | None:
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowException):
        return None


class ShardWarning(UserWarning):
    """A shard that cannot be read was left out; the message names it."""


def shard_problem(path: Path, kind: ShardKind) -> str | None:
    """Why ``path`` cannot be read as a shard of ``kind``, or None when it can."""
    try:
        names = pq.read_schema(path).names
    except (OSError, pa.ArrowException) as exc:
        return (
            f"unreadable parquet ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        )
    missing = [c for c in KEY_COLUMNS[kind] if c not in names]
    if missing:
        return f"not a Simulate {kind} shard (no {missing[0]!r} column)"
    return None


def _first_of_each(ids: Sequence[str], keep_last: bool = False) -> list[int]:
    """Row indexes of the first (or last) occurrence of each id, in row order."""
    chosen: dict[str, int] = {}
    for index, ident in enumerate(ids):
        if keep_last or ident not in chosen:
            chosen[ident] = index
    return sorted(chosen.values())


_LABEL_KEY_COLUMNS = [
    "episode_id",
    "criterion",
    "turn_index",
    "tool_call_index",
    "labeler",
    "rubric",
]


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:/")
"""A URL's scheme (`s3://`; `s3:/` once pathlib has collapsed it), not a drive letter (`C:/`)."""


class RunFolder:
    """One run folder on disk: its manifest, its shards, their readers and writers."""

    def __init__(self, path: str | Path) -> None:
        if _URL.match(str(path)):
            raise RunFolderError(
                f"{str(path)!r}: run folders at URLs (s3://, gs://, ...) are not supported; give"
                " a local path (for a Ray cluster of several machines, one on a file system"
                " every node mounts)"
            )
        self.path = Path(path)
        self._checked: dict[tuple[str, int, int], str | None] = {}
        """Shard problems found so far, by (name, size, mtime): each shard is checked once."""

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
        if not has_manifest and folder.path.is_dir() and folder._has_foreign_files():
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

    def _has_foreign_files(self) -> bool:
        return any(p.name != LOCKS for p in self.path.iterdir())

    # --- writers' locks

    @contextlib.contextmanager
    def lock(self, role: str, command: str) -> Iterator[None]:
        """Hold the folder's writer lock for ``role`` (`episodes`, `labels`, `golden`...).

        An OS lock on a file under `.locks/`, released when the block ends or the process
        dies, SIGKILL included. Creates the folder when it does not exist yet.

        Raises:
            RunLocked: another process holds it; the message names its command and pid.
            OutputError: the folder cannot be created.
        """
        from filelock import FileLock, Timeout

        folder = self.path / LOCKS
        try:
            if self.path.exists() and not self.path.is_dir():
                raise RunFolderError(f"{str(self.path)!r} is a file, not a run folder")
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {str(folder)!r}: {exc.strerror or exc}") from exc
        holder = folder / f"{role}.json"
        lock = FileLock(folder / f"{role}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise RunLocked(
                f"{str(self.path)!r} is being written by {_holder(holder)}; wait for it to "
                "finish (or stop it) and try again"
            ) from None
        except OSError as exc:
            raise OutputError(f"cannot lock {str(self.path)!r}: {exc.strerror or exc}") from exc
        try:
            self._wait_for_helpers(role)
            info = {"command": command, "pid": os.getpid(), "since": now_iso()}
            with contextlib.suppress(OSError):
                holder.write_text(json.dumps(info), encoding="utf-8")
            yield
        finally:
            with contextlib.suppress(OSError):
                holder.unlink(missing_ok=True)
            lock.release()

    def hold(self, role: str, helper: str) -> Callable[[], None]:
        """Take a helper's lock for ``role`` and return its release: held for its whole life
        by a process that writes for the holder of the writer lock (a Ray worker of `simulate
        run --engine ray`), so that after that holder dies `lock(role)` waits for its helpers
        too, and no writer of a dead session adds shards once a new one has read the folder.
        Keep what it returns: the lock goes when it is collected.

        Raises:
            OutputError: the lock file cannot be created.
        """
        from filelock import FileLock

        name = f"{role}-{helper}-{secrets.token_hex(3)}"
        lock = FileLock(self.path / LOCKS / f"{name}.lock")
        try:
            lock.acquire(timeout=0)  # a fresh name: nobody else holds it
        except OSError as exc:
            raise OutputError(f"cannot lock {str(self.path)!r}: {exc.strerror or exc}") from exc
        info = {"command": f"{helper} (a helper)", "pid": os.getpid(), "since": now_iso()}
        with contextlib.suppress(OSError):
            (self.path / LOCKS / f"{name}.json").write_text(json.dumps(info), encoding="utf-8")
        return lock.release

    def _wait_for_helpers(self, role: str) -> None:
        """Wait up to `HELPERS_WAIT_S` for the helpers of an earlier writer of ``role`` (Ray
        workers outlive a SIGKILLed driver by a second or so) to die, then clear their files.

        Raises:
            RunLocked: one is still alive; the message names it.
        """
        from filelock import FileLock, Timeout

        deadline = time.monotonic() + HELPERS_WAIT_S
        helpers = sorted(
            path
            for path in (self.path / LOCKS).iterdir()
            if path.name.startswith(f"{role}-") and path.suffix == ".lock"
        )
        for path in helpers:
            helper = FileLock(path)
            try:
                helper.acquire(timeout=max(0.0, deadline - time.monotonic()))
            except Timeout:
                raise RunLocked(
                    f"{str(self.path)!r} is still being written by "
                    f"{_holder(path.with_suffix('.json'))} of an earlier session; wait for it "
                    "to stop (or stop it) and try again"
                ) from None
            with contextlib.suppress(OSError):
                path.with_suffix(".json").unlink(missing_ok=True)
                path.unlink()
            helper.release()

    def repair(self) -> list[QuarantinedShard]:
        """Move the shards that cannot be read into `quarantine/`, with the writers' locks
        held; what each held, as far as its footer tells."""
        moved: list[QuarantinedShard] = []
        with self.lock("episodes", "simulate repair"), self.lock("labels", "simulate repair"):
            for kind in (EPISODES, LABELS):
                for path, problem in self.bad_shards(kind):
                    target = self.path / QUARANTINE / kind / path.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, target)
                    moved.append(QuarantinedShard(kind, target, problem, _footer_rows(target)))
        return moved

    def writing(self, role: str = "episodes") -> bool:
        """Whether a live process holds the folder's ``role`` writer lock right now."""
        from filelock import FileLock, Timeout

        path = self.path / LOCKS / f"{role}.lock"
        if not path.is_file():
            return False
        probe = FileLock(path)
        try:
            probe.acquire(timeout=0)
        except Timeout:
            return True
        except OSError:
            return False
        probe.release()
        return False

    def state(self) -> str | None:
        """The run's state: the manifest's, except that a run whose writer died before it
        could say so (a SIGKILL, a full disk) reads `interrupted`, not `running`."""
        status = self.manifest.status
        if status == "running" and not self.writing():
            return "interrupted"
        return status

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

    def update_manifest(self, change: Callable[[Manifest], None]) -> Manifest:
        """Read the manifest, apply ``change`` to it and write it back, with no other writer's
        update in between (a short lock: a run and a labeling may finish at once)."""
        from filelock import FileLock

        folder = self.path / LOCKS
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(folder / "manifest.lock", timeout=60):
            manifest = self.read_manifest()
            change(manifest)
            self.write_manifest(manifest)
        return manifest

    def record_labeling(self, entry: LabelingRecord) -> None:
        """Append one labeling session's record to the manifest."""
        entry.at = entry.at or now_iso()
        self.update_manifest(lambda manifest: manifest.labeling.append(entry))

    # --- shards

    def shards(self, kind: ShardKind = EPISODES, tag: str = "") -> list[Path]:
        """The readable shards of ``kind`` (those whose writer had ``tag``, when given), in the
        order they were written.

        A shard that cannot be read is left out with a `ShardWarning` naming it. The folder is
        listed, not globbed, so a run folder named `runs/[v1]` works.
        """
        good = []
        for path in self._shard_files(kind):
            if tag and f"-{tag}-" not in path.name:
                continue
            problem = self._problem(path, kind)
            if problem is None:
                good.append(path)
        return good

    def bad_shards(self, kind: ShardKind = EPISODES) -> list[tuple[Path, str]]:
        """Shards of ``kind`` that cannot be read, each with what is wrong."""
        found = ((path, self._problem(path, kind, warn=False)) for path in self._shard_files(kind))
        return [(path, problem) for path, problem in found if problem is not None]

    def _shard_files(self, kind: ShardKind) -> list[Path]:
        folder = self.path / kind
        if not folder.is_dir():
            return []
        return sorted(
            p for p in folder.iterdir() if p.suffix == ".parquet" and not p.name.startswith(".")
        )

    def _problem(self, path: Path, kind: ShardKind, *, warn: bool = True) -> str | None:
        try:
            stat = path.stat()
        except OSError as exc:
            return f"cannot be read ({exc.strerror or exc})"
        key = (f"{kind}/{path.name}", stat.st_size, stat.st_mtime_ns)
        if key not in self._checked:
            self._checked[key] = problem = shard_problem(path, kind)
            if problem is not None and warn:
                warnings.warn(
                    f"{path}: {problem}; left out (`simulate repair {self.path}` moves it aside)",
                    ShardWarning,
                    stacklevel=3,
                )
        return self._checked[key]

    def has(self, kind: ShardKind = EPISODES) -> bool:
        """Whether any shard of ``kind`` is stored."""
        return bool(self.shards(kind))

    def count(self, kind: ShardKind = EPISODES) -> int:
        """Rows in the readable shard files of ``kind`` (from their footers; what a dataset
        loaded from the files holds)."""
        return parquet_rows(self.shards(kind))

    def writer(self, kind: ShardKind = EPISODES, tag: str = "") -> ShardWriter:
        """A writer of new shards of ``kind`` into this folder; ``tag`` goes into their names
        (`part-<time>-<tag>-<random>-<n>.parquet`), so writers in other processes, such as the
        Ray engine's workers, never write the same file and their shards can be told apart."""
        return ShardWriter(self.path, kind, tag)

    def write_shard(self, kind: ShardKind, rows: Sequence[BaseModel]) -> Path:
        """Write ``rows`` as one new shard of ``kind``, durably, whatever their number."""
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
        name = f"part-{stamp}-{int(now % 1 * 1e6):06d}-{secrets.token_hex(3)}"  # in write order
        table = rows_to_table(rows, kind)
        path = self.path / kind / f"{name}.parquet"
        return write_atomic(path, lambda tmp: pq.write_table(table, tmp), fsync=True)

    def episodes_in(self, shard: Path, kind: ShardKind = EPISODES) -> list[Episode]:
        """Every episode (or discarded attempt) of one shard, as written.

        Raises:
            FileNotFoundError: the shard is gone.
        """
        table = pq.read_table(shard, schema=arrow_schema(kind))
        return [Episode.model_validate(row) for row in table.to_pylist()]

    def labels_in(self, shard: Path) -> list[Label]:
        """Every label of one shard, as written (history included).

        Raises:
            FileNotFoundError: the shard is gone (merged away by its writer).
        """
        table = pq.read_table(shard, schema=arrow_schema(LABELS))
        return [Label.model_validate(row) for row in table.to_pylist()]

    def table(self, kind: ShardKind = EPISODES, columns: Sequence[str] | None = None) -> pa.Table:
        """Every shard of ``kind`` as one Arrow table with the fixed schema, each episode (or
        label slot) once: an episode stored twice keeps its first row, a slot its latest."""
        full = arrow_schema(kind)
        wanted = list(columns) if columns else full.names
        keys = {EPISODES: ["episode_id"], LABELS: [*_LABEL_KEY_COLUMNS, "created_at"]}.get(kind, [])
        read = [*wanted, *(k for k in keys if k not in wanted)]
        schema = pa.schema([full.field(c) for c in read])
        tables = []
        for path in self.shards(kind):
            try:
                tables.append(pq.read_table(path, columns=read, schema=schema))
            except (OSError, pa.ArrowException) as exc:
                warnings.warn(f"{path}: unreadable ({exc}); left out", ShardWarning, stacklevel=2)
        if not tables:
            return pa.schema([full.field(c) for c in wanted]).empty_table()
        table = pa.concat_tables(tables)
        if kind == DISCARDED:  # every attempt set aside is kept, several per episode
            return table.select(wanted)
        if kind == EPISODES:
            keep = _first_of_each(table.column("episode_id").to_pylist())
        else:  # labels in the order they were given; a slot keeps its latest
            order = pc.sort_indices(table, [("created_at", "ascending")])
            table = table.take(order)
            slots = zip(*(table.column(c).to_pylist() for c in _LABEL_KEY_COLUMNS), strict=True)
            keep = _first_of_each([json.dumps(s) for s in slots], keep_last=True)
        if len(keep) < table.num_rows:
            table = table.take(pa.array(keep, pa.int64()))
        return table.select(wanted)

    def scan(self, kind: ShardKind = EPISODES) -> pl.LazyFrame:
        """The shards of ``kind`` as one polars lazy frame (the folder must have some), each
        episode once and each label slot with its latest label, as `table()` reads them."""
        import polars as pl

        schema = pl.from_arrow(arrow_schema(kind).empty_table()).schema  # type: ignore[union-attr]
        frame = pl.scan_parquet(
            [str(p) for p in self.shards(kind)],
            glob=False,
            schema=schema,
            missing_columns="insert",  # shards written before a column was added
        )
        if kind == DISCARDED:
            return frame
        if kind == EPISODES:
            return frame.unique(subset=["episode_id"], keep="first", maintain_order=True)
        return frame.sort("created_at", maintain_order=True).unique(
            subset=_LABEL_KEY_COLUMNS, keep="last", maintain_order=True
        )

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
        table = self.table(EPISODES, ["outcome", "success"])
        statuses = Counter(s["status"] for s in table.column("outcome").to_pylist())
        successes = sum(table.column("success").to_pylist())
        return RunCounts(
            stored=sum(statuses.values()),
            by_status=dict(sorted(statuses.items())),
            successes=successes,
        )

    def episodes(
        self,
        filters: Iterable[tuple[str, Any]] = (),
        ids: set[str] | None = None,
        kind: ShardKind = EPISODES,
    ) -> Iterator[Episode]:
        """Stored episodes, shard by shard, keeping those whose columns equal the given values.

        ``filters`` are pairs like ``("persona_id", "ana")`` or ``("status", "gave_up")``;
        ``ids`` keeps only those episode ids; ``kind`` `discarded` reads the attempts
        `--resimulate-faults` set aside (every one of them).
        """
        wanted = list(filters)
        seen: set[str] = set()
        for path in self.shards(kind):
            try:
                table = pq.read_table(path, schema=arrow_schema(kind))
            except (OSError, pa.ArrowException) as exc:
                warnings.warn(f"{path}: unreadable ({exc}); left out", ShardWarning, stacklevel=2)
                continue
            if ids is not None:
                wanted_ids = pa.array(sorted(ids), pa.string())
                table = table.filter(pc.is_in(table.column("episode_id"), value_set=wanted_ids))
            for row in table.to_pylist():
                if kind == EPISODES and row["episode_id"] in seen:
                    continue  # stored twice (two writers, before locks): the first counts
                seen.add(row["episode_id"])
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
        """The latest label of every slot, in the order they were given (`created_at`)."""
        return [Label.model_validate(r) for r in self.table(LABELS).to_pylist()]

    def label_history(self) -> list[Label]:
        """Every label ever stored, a slot's replaced ones included, in the order given."""
        labels = [label for path in self.shards(LABELS) for label in self.labels_in(path)]
        return sorted(labels, key=lambda label: label.created_at)

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


def _holder(path: Path) -> str:
    """`simulate run (pid 4242, since ...)` from a lock's holder file, or `another process`."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"`{info['command']}` (pid {info['pid']}, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def shard_paths(run_dir: str | Path, kind: ShardKind = EPISODES) -> list[Path]:
    """The run's shards of ``kind`` (`episodes` or `labels`), in the order they were written."""
    return RunFolder(run_dir).shards(kind)


def iter_episodes(
    run_dir: str | Path, filters: Iterable[tuple[str, Any]] = (), kind: str = EPISODES
) -> Iterator[Episode]:
    """Stored episodes of a run folder (see `RunFolder.episodes`); ``kind`` `discarded` reads
    the attempts `--resimulate-faults` set aside instead."""
    return RunFolder(run_dir).episodes(filters, kind=kind)


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
