"""SIGKILL at random points of `run`, `label`, `golden` and `export`: nothing lost or doubled.

Each kill lands on a child forked from this process (so it needs no interpreter start of its
own) after a seeded random delay; after every kill the folder must read cleanly, hold each
episode and each label slot at most once, and every file must be whole or absent. The last
pass of each command runs to its end and must leave exactly what one clean run leaves.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from simulate.store import LABELS, RunFolder
from tests.test_cli import shop_args

PLANNED = 36  # 3 personas x 2 scenarios x 6 trials
SEED = 20261206


def _fork_cli(args: Sequence[str]) -> int:
    """Run `simulate ARGS` in a forked child (its output to /dev/null); its pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            from simulate.cli import main

            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            code = 99
        os._exit(code)
    return pid


def _kill_at(pid: int, delay: float) -> bool:
    """SIGKILL ``pid`` after ``delay`` seconds; whether it was still running then."""
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return True


def _finish(args: Sequence[str]) -> int:
    pid = _fork_cli(args)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


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
        kills += _kill_at(_fork_cli(args), rng.uniform(0.05, 1.2))
        _check_run_folder(out)
    assert _finish([*run, "--resume"] if (out / "manifest.json").is_file() else run) == 0
    _check_run_folder(out)
    assert len(_raw_ids(out, "episodes", ["episode_id"])) == PLANNED

    # label: rule labels, killed mid-way; each slot once
    label = ["label", str(out), "--rules-only", "-q"]
    key = ["episode_id", "criterion", "turn_index", "tool_call_index", "labeler", "rubric"]
    for _ in range(16):
        kills += _kill_at(_fork_cli(label), rng.uniform(0.05, 0.8))
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
        kills += _kill_at(_fork_cli([*golden, "--seed", str(seed)]), rng.uniform(0.05, 2.0))
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
        kills += _kill_at(_fork_cli(export), rng.uniform(0.05, 0.6))
        if target.exists():
            lines = target.read_text().splitlines()
            assert len(lines) == PLANNED and all(json.loads(line) for line in lines)
    assert _finish(export) == 0 and len(target.read_text().splitlines()) == PLANNED

    assert kills >= 50, f"only {kills} kills landed while the work ran"
