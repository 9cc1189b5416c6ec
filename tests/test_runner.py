"""The run loop: faults become recorded outcomes, the batch goes on, everything is stored."""

from __future__ import annotations

import asyncio

from simulate.plan import build_plan
from simulate.runner import RunSettings, play_episode, run_episodes
from simulate.schema import Persona, Scenario
from simulate.store import ShardWriter, iter_episodes
from simulate.targets import Reply
from simulate.users.agenda import AgendaUser
from tests.conftest import make_spec
from tests.toy_agents import FunctionTarget, RaisingTarget, ScriptTarget, SlowTarget


async def test_target_exception_is_a_target_error_with_the_reason(persona, scenario):
    spec = make_spec(persona, scenario)
    episode = await play_episode(spec, AgendaUser(spec), RaisingTarget(after=1), RunSettings())
    assert episode.outcome.status == "target_error"
    assert episode.outcome.reason == "RuntimeError: database connection lost"
    assert episode.n_turns == 1
    assert not episode.success
    assert episode.outcome.failed_checks == []  # an infrastructure failure judges nothing


async def test_turn_timeout_is_a_target_error(persona, scenario):
    spec = make_spec(persona, scenario)
    settings = RunSettings(turn_timeout_s=0.05)
    episode = await play_episode(spec, AgendaUser(spec), SlowTarget(), settings)
    assert episode.outcome.status == "target_error"
    assert "0.05s" in episode.outcome.reason and "--turn-timeout" in episode.outcome.reason


async def test_reply_out_of_protocol_is_a_target_error(persona, scenario):
    spec = make_spec(persona, scenario)
    target = FunctionTarget(lambda m: {"text": "wrong key"})
    episode = await play_episode(spec, AgendaUser(spec), target, RunSettings())
    assert episode.outcome.status == "target_error"
    assert "out of protocol" in episode.outcome.reason


class BrokenUser:
    async def next_turn(self, state):
        raise KeyError("oops")


async def test_simulator_failure_is_a_simulator_error(persona, scenario):
    spec = make_spec(persona, scenario)
    episode = await play_episode(spec, BrokenUser(), ScriptTarget("hi"), RunSettings())
    assert episode.outcome.status == "simulator_error"
    assert "KeyError" in episode.outcome.reason


async def test_agent_ending_the_conversation_early_is_target_ended(persona, scenario):
    spec = make_spec(persona, scenario)
    target = FunctionTarget(lambda m: {"reply": "Goodbye.", "end": True})
    episode = await play_episode(spec, AgendaUser(spec), target, RunSettings())
    assert episode.outcome.status == "target_ended"


async def test_agent_ending_after_reaching_the_goal_is_goal_reached(persona, scenario):
    spec = make_spec(persona, scenario)
    target = FunctionTarget(
        lambda m: {
            "reply": "Your refund has been issued. Bye!",
            "end": True,
            "tool_calls": [{"name": "issue_refund"}],
        }
    )
    episode = await play_episode(spec, AgendaUser(spec), target, RunSettings())
    assert episode.outcome.status == "goal_reached"
    assert episode.success


async def test_forbidden_mention_fails_the_episode_even_when_the_goal_is_reached(persona):
    scenario = Scenario(
        id="s",
        description="d",
        goal="g",
        success={"must_mention": ["done"], "must_not_mention": ["SECRET-1"]},
    )
    spec = make_spec(persona, scenario)
    target = FunctionTarget(lambda m: "It is done. By the way my rules say SECRET-1.")
    episode = await play_episode(spec, AgendaUser(spec), target, RunSettings())
    assert episode.outcome.status == "goal_reached"
    assert episode.outcome.failed_checks == ["must_not_mention: 'SECRET-1'"]
    assert not episode.success


async def test_stateful_targets_get_only_the_newest_user_message(persona, scenario):
    spec = make_spec(persona, scenario)
    target = ScriptTarget("What is your order number?", "Hm?", "Hm?", "Hm?", "Hm?", "Hm?")
    await play_episode(spec, AgendaUser(spec), target, RunSettings(stateful=True))
    assert all(len(seen) == 1 and seen[0].role == "user" for seen in target.seen)
    assert "12345" in target.seen[1][0].content


async def test_a_batch_with_crashing_episodes_finishes_and_stores_every_episode(tmp_path):
    personas = [Persona(id=f"p{i}", name=f"P{i}") for i in range(6)]
    scenarios = [
        Scenario(id="s", description="Help me.", goal="g", success={"must_mention": ["done"]})
    ]
    specs = build_plan(personas, scenarios, run_id="r", trials=2)
    (tmp_path / "episodes").mkdir()
    writer = ShardWriter(tmp_path)

    def make_target(session_id: str):
        if session_id in {specs[0].episode_id, specs[5].episode_id}:
            return RaisingTarget()
        return FunctionTarget(lambda m: "All done.")

    await run_episodes(specs, AgendaUser, make_target, writer, RunSettings(concurrency=4))
    stored = list(iter_episodes(tmp_path))
    assert sorted(e.episode_id for e in stored) == sorted(s.episode_id for s in specs)
    statuses = {e.episode_id: e.outcome.status for e in stored}
    assert statuses[specs[0].episode_id] == "target_error"
    assert sum(s == "goal_reached" for s in statuses.values()) == 10


async def test_concurrency_bound_is_respected(tmp_path):
    personas = [Persona(id=f"p{i}", name=f"P{i}") for i in range(12)]
    scenarios = [
        Scenario(id="s", description="Help me.", goal="g", success={"must_mention": ["done"]})
    ]
    specs = build_plan(personas, scenarios, run_id="r")
    (tmp_path / "episodes").mkdir()
    active = peak = 0

    class CountingTarget:
        async def respond(self, messages):
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01)
            active -= 1
            return Reply(reply="done")

    await run_episodes(
        specs,
        AgendaUser,
        lambda sid: CountingTarget(),
        ShardWriter(tmp_path),
        RunSettings(concurrency=3),
    )
    assert peak == 3
    assert len(list(iter_episodes(tmp_path))) == 12
