"""SIGKILL at random points of `run`, `label`, `golden` and `export`: nothing lost or doubled.

Each kill lands on a child (forked from a server that imported Simulate once, so it needs no
interpreter start of its own) after a seeded random delay; after every kill the folder must
read cleanly, hold each episode and each label slot at most once, and every file must be whole
or absent. The last pass of each command runs to its end and must leave exactly what one clean
run leaves.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from simulate.store import LABELS, RunFolder
from tests.test_cli import shop_args

PLANNED = 36  # 3 personas x 2 scenarios x 6 trials
SEED = 20261206


def _forkserver() -> multiprocessing.context.BaseContext:
    """Children forked from a clean, single-threaded server that imported Simulate once: fast
    to start, and safe (forking this test process, with its servers' threads, could deadlock)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["simulate.cli"])
    return context


def _start(args: Sequence[str]) -> multiprocessing.process.BaseProcess:
    """Run `simulate ARGS` in a child process."""
    from simulate.cli import main

    child = _forkserver().Process(target=main, args=(list(args),), daemon=True)
    child.start()
    return child


def _kill_at(child: multiprocessing.process.BaseProcess, delay: float) -> bool:
    """SIGKILL ``child`` after ``delay`` seconds; whether it was still running then."""
    child.join(delay)
    if not child.is_alive():
        return False
    child.kill()
    child.join()
    return True


def _finish(args: Sequence[str]) -> int | None:
    child = _start(args)
    child.join(300)
    return child.exitcode


def _raw_ids(folder: Path, kind: str, columns: Sequence[str]) -> list[tuple]:
    """Every row's key across the shard files, duplicates included (what readers dedupe)."""
    rows: list[tuple] = []
    for shard in sorted((folder / kind).glob("*.parquet")):
        table = pq.read_table(shard, columns=list(columns))
        rows += list(zip(*(table.column(c).to_pylist() for c in columns), strict=True))
    return rows


def _check_run_folder(out: Path) -> None:
    folder = RunFolder(out)
    assert folder.bad_shards() == [] and folder.bad_shards(LABELS) == []
    if (out / "manifest.json").is_file():
        json.loads((out / "manifest.json").read_text())  # whole, never half-written
    ids = _raw_ids(out, "episodes", ["episode_id"])
    assert len(ids) == len(set(ids)), "an episode was stored twice"


@pytest.fixture(scope="module")
def slow_agent_env() -> None:
    old = os.environ.get("SHOP_AGENT_DELAY")
    os.environ["SHOP_AGENT_DELAY"] = "0.01"
    yield
    if old is None:
        os.environ.pop("SHOP_AGENT_DELAY")
    else:
        os.environ["SHOP_AGENT_DELAY"] = old


def test_random_kills_lose_nothing_and_double_nothing(tmp_path, slow_agent_env):
    rng = random.Random(SEED)
    out = tmp_path / "run"
    run = [*shop_args(out), "--trials", "6", "--concurrency", "3"]
    kills = 0

    # run: killed again and again, each time resumed, then finished
    for _ in range(18):
        args = run if not (out / "manifest.json").is_file() else [*run, "--resume"]
        kills += _kill_at(_start(args), rng.uniform(0.05, 1.2))
        _check_run_folder(out)
    assert _finish([*run, "--resume"] if (out / "manifest.json").is_file() else run) == 0
    _check_run_folder(out)
    assert len(_raw_ids(out, "episodes", ["episode_id"])) == PLANNED

    # label: rule labels, killed mid-way; each slot once
    label = ["label", str(out), "--rules-only", "-q"]
    key = ["episode_id", "criterion", "turn_index", "tool_call_index", "labeler", "rubric"]
    for _ in range(16):
        kills += _kill_at(_start(label), rng.uniform(0.05, 0.8))
        _check_run_folder(out)
        slots = _raw_ids(out, "labels", key)
        assert len(slots) == len(set(slots)), "a label slot was filled twice"
    assert _finish(label) == 0
    slots = _raw_ids(out, "labels", key)
    assert slots and len(slots) == len(set(slots))
    assert _finish(label) == 0 and len(_raw_ids(out, "labels", key)) == len(slots)

    # golden: the set is whole or absent, never half-written
    golden = ["golden", str(out)]
    for seed in range(14):
        kills += _kill_at(_start([*golden, "--seed", str(seed)]), rng.uniform(0.05, 2.0))
        if (out / "golden").exists():
            splits = sorted((out / "golden" / "data").glob("*.parquet"))
            assert (out / "golden" / "README.md").is_file() and len(splits) == 3
            assert sum(pq.read_metadata(p).num_rows for p in splits) == PLANNED
    assert _finish(golden) == 0
    assert not [p for p in out.iterdir() if p.name.startswith(".golden")]

    # export: the file is whole or absent, never a prefix
    target = tmp_path / "episodes.jsonl"
    export = ["export", str(out), "--format", "jsonl", "--out", str(target), "--force"]
    for _ in range(14):
        kills += _kill_at(_start(export), rng.uniform(0.05, 0.6))
        if target.exists():
            lines = target.read_text().splitlines()
            assert len(lines) == PLANNED and all(json.loads(line) for line in lines)
    assert _finish(export) == 0 and len(target.read_text().splitlines()) == PLANNED

    assert kills >= 50, f"only {kills} kills landed while the work ran"
