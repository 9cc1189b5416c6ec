"""Honest exits: a preflight turn, an early stop, exit 1 when nothing was measured, the
`--fail-under` gate; and one event loop for repeats and several runs in one process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import simulate
from simulate.cli import main
from tests.fakes.openai_server import FakeOpenAIServer

DATA = Path(__file__).parent / "data"
SHOP = DATA / "shop"  # 3 personas x 2 scenarios


def simulate_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run the console entry point in this process: its exit status and what it printed."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def run_args(out: Path, target: str, *extra: str) -> list[str]:
    return [
        "run", "--personas", str(SHOP / "personas.yaml"), "--scenarios",
        str(SHOP / "scenarios.yaml"), "--target", target, "--out", str(out), "-q", *extra,
    ]  # fmt: skip


def agent_file(tmp_path: Path, body: str) -> str:
    path = tmp_path / "agent.py"
    path.write_text(body)
    return f"python:{path}:respond"


CRASHING = """
from pathlib import Path

def respond(messages):
    with Path(__file__).with_name("calls").open("a") as calls:  # one byte a call: no race
        calls.write("x")
    raise ConnectionError("the agent's database is down")
"""


def calls(tmp_path: Path) -> int:
    return len((tmp_path / "calls").read_text())


def test_a_run_where_every_episode_is_a_target_error_exits_1(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = run_args(out, agent_file(tmp_path, CRASHING), "--no-preflight")
    code, printed = simulate_main(capsys, *args, "--stop-after-errors", "0")
    assert code == 1
    assert (
        "error: no episode counts toward the goal rate: all 6 ended in target_error or "
        "simulator_error (first: target_error: ConnectionError: the agent's database is down)"
    ) in printed
    assert simulate.load_run(out).num_rows == 6


def test_a_failed_preflight_exits_1_before_any_episode(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code, printed = simulate_main(capsys, *run_args(out, agent_file(tmp_path, CRASHING)))
    assert code == 1
    assert printed.strip().splitlines()[-1] == (
        "error: preflight: the target failed its first turn, so no episode was played: "
        "ConnectionError: the agent's database is down (--no-preflight skips this check)"
    )
    assert calls(tmp_path) == 1  # the one opening turn
    assert not (out / "manifest.json").exists() and not (out / "episodes").exists()


def test_the_run_stops_when_the_first_episodes_all_fail(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = run_args(out, agent_file(tmp_path, CRASHING), "--no-preflight", "--concurrency", "1")
    code, printed = simulate_main(capsys, *args, "--stop-after-errors", "2")
    assert code == 1
    assert "error: the first 2 episodes all ended in errors, so the run stopped" in printed
    assert simulate.load_run(out).num_rows == 2  # the other 4 were never started
    assert json.loads((out / "manifest.json").read_text())["status"] == "stopped"


UNHELPFUL = "def respond(messages):\n    return 'I cannot help with that.'\n"


@pytest.mark.parametrize(("bar", "expected"), [("0.3", 0), ("0.5", 1)])
def test_fail_under_gates_on_the_upper_bound(tmp_path, capsys, bar: str, expected: int) -> None:
    # 0 of 6 succeed: the Wilson interval is 0%-39%, so only a bar above 39% fails.
    out = tmp_path / "run"
    args = run_args(out, agent_file(tmp_path, UNHELPFUL), "--max-turns", "2")
    code, printed = simulate_main(capsys, *args, "--fail-under", bar)
    assert code == expected
    gate = f"error: goal rate 0% (0%-39%, n=6): its upper 95% bound is below --fail-under {bar}"
    assert (gate in printed) == bool(expected)


MODULE_CLIENT = """
import os
from openai import AsyncOpenAI

client = AsyncOpenAI(base_url=os.environ["SIMULATE_TEST_BASE_URL"], api_key="test-key")
"""
CLIENT_AGENT = """
from shared_client import client

async def respond(messages):
    completion = await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    return completion.choices[0].message.content
"""


@pytest.fixture
def module_client_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An agent whose AsyncOpenAI client lives in an imported module, made once per process."""
    (tmp_path / "shared_client.py").write_text(MODULE_CLIENT)
    (tmp_path / "client_agent.py").write_text(CLIENT_AGENT)
    monkeypatch.syspath_prepend(str(tmp_path))
    with FakeOpenAIServer() as server:
        monkeypatch.setenv("SIMULATE_TEST_BASE_URL", server.base_url)
        yield "python:client_agent:respond"
    for name in ("shared_client", "client_agent"):
        sys.modules.pop(name, None)  # the next test's agent is made afresh


def statuses(run: Path) -> set[str]:
    return {row["outcome"]["status"] for row in simulate.load_run(run)}


def test_calibrate_repeats_share_a_module_level_async_client(
    tmp_path, capsys, module_client_agent
) -> None:
    out = tmp_path / "noise"
    args = run_args(out, module_client_agent, "--max-turns", "2")
    args = [a for a in args if a not in ("run",)]
    code, printed = simulate_main(capsys, "calibrate", *args, "--repeats", "2")
    assert code == 0, printed
    for repeat in ("repeat-1", "repeat-2"):
        assert "target_error" not in statuses(out / repeat), repeat


def test_two_run_sync_calls_in_one_process_share_the_client(tmp_path, module_client_agent) -> None:
    for name in ("first", "second"):
        config = simulate.RunConfig(
            personas=[str(SHOP / "personas.yaml")],
            scenarios=[str(SHOP / "scenarios.yaml")],
            target=module_client_agent,
            max_turns=2,
            out=str(tmp_path / name),
        )
        result = simulate.run_sync(config)
        assert result.stored.stored == 6
        assert "target_error" not in statuses(tmp_path / name), name
