"""The `simulate_run` fixture, in a pytest of its own (as a user's test suite runs it)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).parent.parent
SHOP = ROOT / "tests" / "data" / "shop"
AGENT = ROOT / "tests" / "data" / "shop_agent.py"

USER_TESTS = f"""
import simulate
from simulate import Persona, Scenario

SHOP = {str(SHOP)!r}


async def test_spec_string(simulate_run):
    result = await simulate_run("python:{AGENT}:respond", personas=SHOP + "/personas.yaml",
                                scenarios=SHOP + "/scenarios.yaml")
    assert result.n == 6 and result.goal_rate is not None
    assert result.interval[0] <= result.goal_rate <= result.interval[1]
    assert (result.run_dir / "manifest.json").is_file()


async def test_callable_and_models_in_memory(simulate_run):
    seen = []

    async def agent(messages, session_id):
        seen.append(session_id)
        return "Your refund has been issued."

    persona = Persona(id="ana", name="Ana", attributes={{"order_number": "A-10"}})
    scenario = Scenario(id="refund", description="I want a refund.", goal="A refund.",
                        success={{"must_mention": ["refund has been issued"]}})
    result = await simulate_run(agent, personas=[persona], scenarios=scenario, trials=2)
    assert result.goal_rate == 1.0 and result.n == 2
    assert len(set(seen)) == 3  # the preflight's session and one per episode


def test_sync_form(simulate_run):
    result = simulate_run.sync(lambda messages: "I cannot help with that.",
                               personas=SHOP + "/personas.yaml", scenarios=SHOP + "/scenarios.yaml",
                               max_turns=2)
    assert result.goal_rate == 0.0


async def test_failing_agent(simulate_run):
    result = await simulate_run(lambda messages: "I cannot help with that.",
                                personas=SHOP + "/personas.yaml",
                                scenarios=SHOP + "/scenarios.yaml", max_turns=2)
    assert result.goal_rate >= 0.8, result
"""


def test_the_fixture_plays_runs_and_prints_failing_transcripts(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # this checkout's simulate
    pytester.makepyfile(test_agent=USER_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "simulate.pytest_plugin", "-o", "asyncio_mode=auto", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=3, failed=1)
    output = result.stdout.str()
    assert "simulate: failing transcripts" in output
    assert "assistant: I cannot help with that." in output
    assert "goal rate 0% (0%-39%, n=6); 6 failed, 0 errors; run folder" in output


def test_the_plugin_is_registered_for_pytest() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {
        "simulate.pytest_plugin": "simulate.pytest_plugin"
    }
