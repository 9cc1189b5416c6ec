"""Cassettes: a run's recorded model calls, carried from one cache to another.

    simulate cassette export outputs/run -o calls.sqlite     # the run's calls, from the cache
    simulate cassette import calls.sqlite                    # into this machine's cache

Every run and labeling notes the cache key of each model call it made or replayed in
`RUN/llm-calls.txt` (one key a line). A cassette is a sqlite file of the cache's own shape
holding those calls' records, so a `--replay-only` run on another machine (CI, with the file
checked in) answers every call, the agent's through the model proxy included, with no key and
no network.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from simulate.errors import ConfigError
from simulate.llm.cache import CompletionCache, read_records, write_records
from simulate.store import write_atomic

CALLS_FILE = "llm-calls.txt"
"""In a run folder: the cache keys of the calls its sessions and labelings made or replayed."""


def record_calls(run_dir: str | Path, keys: Iterable[str]) -> None:
    """Note ``keys`` as calls of the run (appended; a run and a labeling may both write)."""
    path = Path(run_dir) / CALLS_FILE
    new = sorted(set(keys) - set(call_keys(run_dir)))
    if new:
        with path.open("a", encoding="utf-8") as file:
            file.write("".join(f"{key}\n" for key in new))


def call_keys(run_dir: str | Path) -> list[str]:
    """The cache keys of a run's calls, each once, in the order first noted."""
    path = Path(run_dir) / CALLS_FILE
    if not path.is_file():
        return []
    lines = path.read_text("utf-8").split()
    return list(dict.fromkeys(line for line in lines if line))


@dataclass
class Exported:
    """What `export_calls` wrote."""

    path: Path
    calls: int
    """Records written to the cassette."""
    missing: int
    """Calls of the run that the cache no longer holds (left out)."""


def export_calls(run_dir: str | Path, out: str | Path, cache_dir: str | Path) -> Exported:
    """Write the records of a run's calls from the cache in ``cache_dir`` to the file ``out``.

    Raises:
        ConfigError: the run noted no calls, or the cache holds none of them.
    """
    keys = call_keys(run_dir)
    if not keys:
        raise ConfigError(
            f"{run_dir}: no recorded model calls ({CALLS_FILE} is missing or empty): the run"
            " made none, or was made before Simulate noted them"
        )
    cache = CompletionCache(Path(cache_dir))
    try:
        rows = [(key, *found) for key in keys if (found := cache.get_raw(key)) is not None]
    finally:
        cache.close()
    if not rows:
        raise ConfigError(
            f"none of the run's {len(keys)} model calls is in the cache {cache.path}; set"
            " SIMULATE_CACHE_DIR (or --cache-dir) to the cache the run used"
        )

    path = write_atomic(out, lambda tmp: write_records(tmp, rows))
    return Exported(path=path, calls=len(rows), missing=len(keys) - len(rows))


def import_calls(cassette: str | Path, cache_dir: str | Path) -> int:
    """Copy every record of a cassette into the cache in ``cache_dir``; returns how many.

    Raises:
        ConfigError: the file is missing or is not a cassette.
    """
    path = Path(cassette)
    if not path.is_file():
        raise ConfigError(f"{cassette}: no such cassette file")
    rows = read_records(path)
    target = CompletionCache(Path(cache_dir))
    try:
        return target.put_many(rows)
    finally:
        target.close()
