"""Faults from the machine and from people: full disks, read-only and odd paths, two writers.

Each is one clear line and a non-zero exit, never a traceback, and nothing already written is
lost or doubled.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import simulate
from simulate.store import RunFolder
from tests.test_cli import run_shop, shop_args, simulate_cli


def _small_disk(limit: int):
    """A child process whose files cannot grow past ``limit`` bytes (a full disk, in effect)."""

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_files


def test_a_full_disk_is_one_error_line_and_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "run"
    root = str(Path(__file__).parents[1])
    result = subprocess.run(
        [sys.executable, "-m", "simulate", *shop_args(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": root},
        preexec_fn=_small_disk(6000),  # the manifest fits; an episode shard does not
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: cannot write") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert RunFolder(out).state() in ("interrupted", "stopped", "complete")  # not "running"


def test_a_path_under_proc_is_one_error_line():
    proc = run_shop(Path("/proc/self/simulate-run"))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_read_only_folder_is_one_error_line(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        result = run_shop(locked / "run")
        assert result.returncode == 1 and result.stderr.startswith("error: cannot create")
        assert "Traceback" not in result.stderr
    finally:
        locked.chmod(0o700)


SLOW_AGENT = "import time\n\ndef respond(messages):\n    time.sleep(0.2)\n    return 'ok'\n"


def test_two_writers_on_one_folder_store_each_episode_once(tmp_path):
    """Two `run` at once on one folder: the second is refused naming the first; nothing
    is stored twice."""
    agent = tmp_path / "slow.py"
    agent.write_text(SLOW_AGENT)
    out = tmp_path / "run"
    args = [*shop_args(out, f"python:{agent}:respond"), "--trials", "3", "--concurrency", "1"]
    root = str(Path(__file__).parents[1])
    first = subprocess.Popen(
        [sys.executable, "-m", "simulate", *args],
        env={**os.environ, "PYTHONPATH": root},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not RunFolder(out).writing():
            assert time.monotonic() < deadline, "the first writer never started"
            time.sleep(0.05)
        second = simulate_cli(*args, "--resume")
        assert second.returncode == 1
        assert "is being written by `simulate run` (pid" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    ids = simulate.load_run(out)["episode_id"]
    assert (
        len(ids)
        == len(set(ids))
        == json.loads((out / "manifest.json").read_text())["counts"]["stored"]
    )


def test_every_reader_works_around_a_truncated_shard_with_one_warning_line(tmp_path):
    out = tmp_path / "run"
    assert run_shop(out).returncode == 0
    shard = sorted((out / "episodes").glob("*.parquet"))[0]
    shard.with_name("part-zz-truncated.parquet").write_bytes(shard.read_bytes()[:200])
    for args in (
        ["report", str(out), "--no-html"],
        ["show", str(out), "--limit", "1"],
        ["export", str(out), "--format", "jsonl", "--out", str(tmp_path / "e.jsonl")],
        ["label", str(out), "--rules-only"],
        ["golden", str(out)],
        ["compare", str(out), str(out)],
    ):
        result = simulate_cli(*args)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr
        warned = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
        assert warned and "part-zz-truncated.parquet" in warned[0], (args, result.stderr)
    resumed = run_shop(out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
