"""Agents that hang: the run still ends within its timeouts (a watchdog for async agents that
block the loop; daemon threads for sync agents that never return)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulate.runner import RunSettings, play_episode
from simulate.targets import TargetOptions, load_target
from simulate.users.agenda import AgendaUser
from tests.conftest import make_spec

ROOT = Path(__file__).parent.parent
DEMO = ROOT / "simulate" / "demo"


@pytest.mark.parametrize(
    "body", ["time.sleep(600)", "while True:\n        pass"], ids=["sleep", "busy"]
)
async def test_an_async_agent_that_blocks_the_loop_ends_at_the_turn_timeout(
    tmp_path: Path, persona, scenario, body: str
) -> None:
    agent = tmp_path / "blocker.py"
    agent.write_text(f"import time\n\nasync def respond(messages):\n    {body}\n")
    spec = make_spec(persona, scenario)
    target = load_target(f"python:{agent}:respond", TargetOptions(turn_timeout_s=0.5))(
        spec.episode_id
    )
    started = time.perf_counter()
    episode = await play_episode(spec, AgendaUser(spec), target, RunSettings(turn_timeout_s=0.5))
    assert time.perf_counter() - started < 5
    assert episode.outcome.status == "target_error"
    assert "blocked the event loop for more than 0.5s" in episode.outcome.reason
    assert "blocker.py" in episode.error_traceback  # where it blocked


def test_a_sync_agent_that_never_returns_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    agent = tmp_path / "hang.py"
    agent.write_text("import time\n\ndef respond(messages):\n    time.sleep(600)\n")
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "simulate", "run",
        "--personas", str(DEMO / "personas" / "maya_patel.yaml"),
        "--scenarios", str(DEMO / "scenarios"), "--scenario", "baggage*",
        "--target", f"python:{agent}:respond", "--turn-timeout", "0.5",
        "--no-preflight", "--stop-after-errors", "0", "--out", str(out), "-q",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert time.perf_counter() - started < 30
    assert done.returncode == 1, done.stderr  # nothing counted toward the goal rate
    assert "no episode counts toward the goal rate" in done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
