"""`cmd:` agents live no longer than their episode, nor than the runner (Linux)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulate.schema import Message
from simulate.targets import TargetOptions
from simulate.targets.command import CommandTargetFactory

DATA = Path(__file__).parent / "data"
AGENT = DATA / "jsonl_agent.py"
ROOT = Path(__file__).parent.parent
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def read_pids(path: Path) -> tuple[int, int]:
    assert wait_until(lambda: path.exists() and path.read_text().endswith("\n"))
    agent, child = path.read_text().split()
    return int(agent), int(child)


@linux_only
async def test_the_whole_process_group_goes_when_the_episode_ends(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    factory = CommandTargetFactory(
        f"{sys.executable} {AGENT} --spawn {pids}", TargetOptions(turn_timeout_s=10), grace_s=1
    )
    target = factory("s1")
    await target.respond([Message(role="user", content="hi")])
    agent, child = read_pids(pids)
    assert alive(agent) and alive(child)
    await factory.aclose()
    assert wait_until(lambda: not alive(agent) and not alive(child), 5)


@linux_only
def test_an_agent_dies_with_a_sigkilled_runner(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    command = [
        sys.executable, "-m", "simulate", "run",
        "--personas", str(DATA / "shop" / "personas.yaml"),
        "--scenarios", str(DATA / "shop" / "scenarios.yaml"),
        "--target", f"cmd:{sys.executable} {AGENT} --spawn {pids} --sleep 60",
        "--no-preflight", "--concurrency", "1", "--out", str(tmp_path / "run"), "-q",
    ]  # fmt: skip
    runner = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    child = None
    try:
        agent, child = read_pids(pids)
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait(10)
        assert wait_until(lambda: not alive(agent), 5), "the agent outlived the runner"
    finally:
        runner.kill()
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)  # the agent's own child is the agent's to stop
