"""`simulate validate --probe`: scenarios played against agents that should fail; weak checks
listed with the agent that passed them and why; the demo and every stress pack score 100%."""

from __future__ import annotations

import asyncio
from importlib import resources

import pytest
from click.testing import CliRunner

from simulate.authoring.packs import add_packs, pack_names
from simulate.checks import says
from simulate.cli import cli
from simulate.probe import COUNTERFACTUALS, ParrotAgent, RefusingAgent, probe
from simulate.runner import RunSettings, play_episode
from simulate.schema import Message, Scenario
from simulate.simulation import RunConfig, prepare
from simulate.users.agenda import AgendaUser
from tests.toy_agents import FunctionTarget

DEMO = resources.files("simulate.demo")

WEAK = """\
- id: refund_weak
  description: My parcel is late and I want my money back.
  goal: A refund is issued.
  success:
    must_mention: [refund]
- id: refund_strong
  description: My parcel is late and I want my money back.
  goal: A refund is issued.
  success:
    must_mention: [refund has been issued]
    must_call_tools: [issue_refund]
"""
PERSONAS = """\
- id: ana
  name: Ana
- id: bo
  name: Bo
  traits: {patience: high, politeness: polite}
"""


def demo_specs():
    config = RunConfig(
        personas=[str(DEMO / "personas")], scenarios=[str(DEMO / "scenarios")], out="x"
    )
    return prepare(config).specs


def test_validate_probe_flags_a_scenario_whose_only_check_is_a_word(tmp_path):
    (tmp_path / "scenarios.yaml").write_text(WEAK)
    (tmp_path / "personas.yaml").write_text(PERSONAS)
    result = CliRunner().invoke(
        cli, ["validate", "--probe", str(tmp_path), "--min-score", "1"], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 1, result.output
    weak_rows = [line for line in result.output.splitlines() if "refund_weak" in line]
    assert weak_rows and "parrot" in weak_rows[0]
    assert "must_mention 'refund' held on 'Sure, all done: refund.'" in result.output
    assert "no must_call_tools check" in result.output
    assert "refund_strong" not in result.output
    assert "probe score 88%: 7 of 8 scenario × agent pairs fail" in result.output
    lenient = CliRunner().invoke(cli, ["validate", "--probe", str(tmp_path), "--min-score", "0.8"])
    assert lenient.exit_code == 0, lenient.output


def test_min_score_needs_probe_and_probe_needs_personas(tmp_path):
    (tmp_path / "scenarios.yaml").write_text(WEAK)
    usage = CliRunner().invoke(cli, ["validate", "--min-score", "1", str(tmp_path)])
    assert usage.exit_code == 2 and "--min-score needs --probe" in usage.output
    from simulate.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "--probe", str(tmp_path / "scenarios.yaml")])
    assert exit_info.value.code == 1


ISSUES_REFUSAL = (
    "Sorry, I can't process a refund and I have no idea when anything will be delivered"
)


async def test_the_issues_refusal_agent_scores_zero_on_the_demo_scenarios():
    specs = demo_specs()
    refusing = FunctionTarget(lambda m: ISSUES_REFUSAL)
    episodes = [await play_episode(s, AgendaUser(s), refusing, RunSettings()) for s in specs]
    assert len(episodes) == 108
    assert sum(e.success for e in episodes) == 0
    assert all(e.outcome.status == "gave_up" for e in episodes)


async def test_the_demo_and_every_stress_pack_score_100_percent(tmp_path):
    demo = await probe(demo_specs())
    assert demo.weaknesses == [] and demo.score == 1.0 and demo.pairs == 9 * 4
    add_packs(pack_names(), tmp_path / "packs")
    config = RunConfig(
        personas=[str(tmp_path / "packs" / "personas")],
        scenarios=[str(tmp_path / "packs" / "scenarios")],
        out="x",
    )
    packs = await probe(prepare(config).specs)
    assert [(w.scenario_id, w.agent, w.why) for w in packs.weaknesses] == []
    assert packs.score == 1.0 and packs.pairs == 17 * 4


def test_the_counterfactual_agents_do_nothing_useful():
    scenario = Scenario(
        id="s",
        description="d",
        goal="g",
        success={"must_mention": ["refund", "has been cancelled", "NW8BKW"]},
    )
    said = [Message(role="user", content="Hello, please cancel my booking.")]
    for turn in range(1, 5):
        messages = said * turn
        refusal = asyncio.run(RefusingAgent(scenario).respond(messages))
        for phrase in scenario.success.must_mention:
            assert phrase in refusal.reply and not says(refusal.reply, phrase), refusal.reply
    parrot = asyncio.run(ParrotAgent(scenario).respond(said))
    assert all(says(parrot.reply, p) for p in scenario.success.must_mention)
    assert parrot.tool_calls == []
    echo = asyncio.run(COUNTERFACTUALS["echo"](scenario).respond(said))
    assert echo.reply == said[0].content
    stall = asyncio.run(COUNTERFACTUALS["staller"](scenario).respond(said))
    assert stall.reply.endswith("?")


def test_probe_counts_pairs_not_episodes(tmp_path):
    (tmp_path / "scenarios.yaml").write_text(WEAK)
    (tmp_path / "personas.yaml").write_text(PERSONAS)
    config = RunConfig(
        personas=[str(tmp_path / "personas.yaml")],
        scenarios=[str(tmp_path / "scenarios.yaml")],
        out="x",
    )
    result = asyncio.run(probe(prepare(config).specs))
    assert result.pairs == 8 and result.failing == 7
    assert [(w.scenario_id, w.agent) for w in result.weaknesses] == [("refund_weak", "parrot")]
    assert result.episodes == 15  # a weak pair stops at its first passing persona
