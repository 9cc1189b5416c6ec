"""A content-addressed store of completions: one sqlite file, keyed by a hash of the request.

The key covers what decides the answer (model, messages, tools, output schema, sampling
parameters) and nothing about where it was sent: not the endpoint, not the key. WAL mode and a
busy timeout let many coroutines of one process and several processes share the file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from simulate.errors import ConfigError, LLMError, RunStopped

FILE_NAME = "llm-cache.sqlite"
KEY_VERSION = 1
"""Part of every key: bump it when the request shape or the stored record changes."""


def request_key(request: Mapping[str, Any]) -> str:
    """The sha256 of a request's canonical JSON (sorted keys, no spaces), as hex."""
    canonical = json.dumps(
        {"v": KEY_VERSION, **request},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class CacheMiss(LLMError, RunStopped):
    """A request not in the cache while replaying only: the replay has diverged; the run stops."""


class CompletionCache:
    """Completion records (JSON objects) by request key, in `<folder>/llm-cache.sqlite`.

    The file is opened on first use. Calls are short and synchronous; run them in the loop.
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / FILE_NAME
        self._db: sqlite3.Connection | None = None
        self.used: set[str] = set()
        """Keys read or written through this object: the calls a run made or replayed."""

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self._db = self._open()
            except (OSError, sqlite3.Error) as exc:
                raise ConfigError(
                    f"cannot use the LLM cache {self.path}: {exc}; set SIMULATE_CACHE_DIR to"
                    " another folder, or turn the cache off (--no-cache)"
                ) from exc
        return self._db

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        # Switching a new file to WAL can fail at once with "locked" while another process
        # creates it (sqlite's busy timeout does not cover it): wait for the other, briefly.
        for attempt in range(400):
            try:
                db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError:
                if attempt == 399:
                    raise
                time.sleep(0.005)
        db.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; a crash may lose the
        db.execute(_TABLE)  # last writes, which only costs a request again
        return db

    def get(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key``, or None."""
        row = (
            self._connect()
            .execute("SELECT record FROM completions WHERE key = ?", (key,))
            .fetchone()
        )
        if row is None:
            return None
        self.used.add(key)
        return json.loads(row[0])

    def put(self, key: str, record: Mapping[str, Any]) -> None:
        """Store ``record`` under ``key``, replacing what was there."""
        self.used.add(key)
        self.put_many([(key, json.dumps(record, ensure_ascii=False), time.time())])

    def put_many(self, rows: Iterable[tuple[str, str, float]]) -> int:
        """Store (key, stored text, time) rows copied from another cache, in one transaction;
        returns how many."""
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            count = 0
            for row in rows:
                db.execute(
                    "INSERT OR REPLACE INTO completions (key, record, created_at) VALUES (?, ?, ?)",
                    row,
                )
                count += 1
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return count

    def get_raw(self, key: str) -> tuple[str, float] | None:
        """The stored text and time of ``key``'s record, or None."""
        row = (
            self._connect()
            .execute("SELECT record, created_at FROM completions WHERE key = ?", (key,))
            .fetchone()
        )
        return (row[0], row[1]) if row else None

    def __len__(self) -> int:
        return int(self._connect().execute("SELECT count(*) FROM completions").fetchone()[0])

    def close(self) -> None:
        """Close the file; the next call opens it again."""
        if self._db is not None:
            self._db.close()
            self._db = None


_TABLE = (
    "CREATE TABLE IF NOT EXISTS completions"
    " (key TEXT PRIMARY KEY, record TEXT NOT NULL, created_at REAL NOT NULL)"
)


def write_records(path: Path, rows: Iterable[tuple[str, str, float]]) -> None:
    """A new sqlite file of the cache's shape holding ``rows`` (a cassette): one plain file,
    no write-ahead log, so it can be checked in and read where nothing may be written."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute(_TABLE)
        db.execute("BEGIN")
        db.executemany(
            "INSERT OR REPLACE INTO completions (key, record, created_at) VALUES (?, ?, ?)", rows
        )
        db.execute("COMMIT")
    finally:
        db.close()


def read_records(path: Path) -> list[tuple[str, str, float]]:
    """Every (key, stored text, time) of a cache or cassette file, opened read-only.

    Raises:
        ConfigError: the file is not a sqlite file of the cache's shape.
    """
    try:
        db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        try:
            return list(db.execute("SELECT key, record, created_at FROM completions ORDER BY key"))
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise ConfigError(f"{path}: not a Simulate cache or cassette ({exc})") from None
