"""Where a plan is played: `local` (this process's asyncio runner, the default) or `ray`
(shards of the plan over a Ray cluster, `engines/ray.py`).

Both give the same rows for the same seed. Ray is an optional extra; nothing here imports it
until `--engine ray` is asked for.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence
from typing import Any, Literal, TypeVar

from pydantic import Field

from simulate.errors import ConfigError
from simulate.schema import Model

T = TypeVar("T")

EngineName = Literal["local", "ray"]
INSTALL_HINT = "pip install 'simulate[ray]'"
SHARDS_PER_WORKER = 4
"""Plan shards per worker: small enough that the work balances and a killed worker leaves
little to re-run, few enough that each shard's set-up (clients, the agent) is paid rarely."""


class EngineFlags(Model):
    """The engine flags of `run`, `calibrate` and `label`; not part of what a run is (a run
    resumes on either engine), so recorded per session, not in the run's config."""

    engine: EngineName = "local"
    """`local`: this process; `ray`: shards over a Ray cluster (`--engine`)."""
    ray_address: str | None = None
    """The cluster to join (`auto`, `ray://host:10001`); None starts a local one."""
    workers: int | None = Field(None, ge=1, le=4096)
    """Ray workers (each plays its shards with `--concurrency`); None: the cluster's CPUs."""


ENGINE_FIELDS = frozenset(EngineFlags.model_fields)


def check_engine(flags: EngineFlags) -> None:
    """ConfigError for Ray flags without `--engine ray`, or `--engine ray` without Ray."""
    if flags.engine == "ray":
        import_ray()
        return
    given = [
        f"--{name.replace('_', '-')}" for name in ("ray_address", "workers") if getattr(flags, name)
    ]
    if given:
        verb = "go" if len(given) > 1 else "goes"
        raise ConfigError(f"{' and '.join(given)} {verb} with --engine ray")


@contextlib.contextmanager
def one_cluster(flags: EngineFlags) -> Iterator[None]:
    """With `--engine ray`, one Ray cluster for every run in the block (calibrate's repeats, a
    gate's rounds) instead of one started and stopped for each; nothing on the local engine."""
    if flags.engine != "ray":
        yield
        return
    from simulate.engines.ray import cluster

    with cluster(flags.ray_address):
        yield


def import_ray() -> Any:
    """The `ray` module; ConfigError saying what to install when it is missing."""
    try:
        import ray
    except ImportError:
        missing = f"--engine ray needs Ray, which is not installed: {INSTALL_HINT}"
        raise ConfigError(missing) from None
    return ray


def split(items: Sequence[T], shards: int) -> list[list[T]]:
    """``items`` in at most ``shards`` contiguous slices of nearly equal size, none empty."""
    if not items:
        return []
    size = math.ceil(len(items) / max(1, shards))
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


@functools.cache
def remote(cls: type) -> Any:
    """``cls`` as a Ray actor class (made once; Ray is imported only when it is used)."""
    return import_ray().remote(cls)
