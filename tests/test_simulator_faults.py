"""Simulator faults: each kind found in a crafted transcript, none in the demo's clean episodes,
recorded on episodes (old run folders stay readable), in the report, and played again with
`--resimulate-faults`."""

from __future__ import annotations

import asyncio
import json
import shutil
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from fakes.openai_server import FakeOpenAIServer

import simulate
from simulate.cli import cli
from simulate.llm.fake import ScriptedLLM
from simulate.plan import build_plan
from simulate.report.figures import build_report
from simulate.report.html import write_report_html
from simulate.runner import RunSettings, play_episode, play_until_clean, resimulation_seed
from simulate.schema import Message, Outcome, Persona, Scenario, ToolCall
from simulate.store import DISCARDED, iter_episodes, load_run, read_manifest, shard_paths
from simulate.targets import Reply
from simulate.users import UserTurn
from simulate.users.faults import detect_faults
from simulate.users.llm import LLMUser, default_prompt
from tests.conftest import make_spec
from tests.toy_agents import ScriptTarget

DEMO = resources.files("simulate.demo")

PERSONA = Persona(id="ana", name="Ana Silva", attributes={"email": "ana@example.com"})
SCENARIO = Scenario(
    id="refund",
    description="My kettle broke; I want my money back.",
    goal="The agent issues a full refund for the kettle after checking the order number",
    known_info={"order_number": "A-55021"},
    success={
        "must_mention": ["refund has been issued"],
        "must_call_tools": ["issue_refund"],
        "must_not_mention": ["SHOP-SECRET-991"],
        "judge": "The agent verifies the order before it refunds anything at all.",
    },
)
SPEC = make_spec(PERSONA, SCENARIO)


def talk(*turns: str, status: str = "goal_reached", tools: list[ToolCall] | None = None):
    """A transcript from alternating user and agent texts (user first)."""
    messages = [
        Message(role="user" if i % 2 == 0 else "assistant", content=text)
        for i, text in enumerate(turns)
    ]
    if tools:
        messages[1].tool_calls = tools
    return messages, Outcome(status=status)


def kinds(messages, outcome) -> list[tuple[str, int]]:
    return [(f.kind, f.turn) for f in detect_faults(SPEC, messages, outcome)]


CLEAN = talk(
    "My kettle broke; I want my money back.",
    "Sorry to hear that. What is your order number?",
    "It's A-55021.",
    "Thanks. Shall I issue the refund?",
    "Yes, please go ahead.",
    "Your refund has been issued.",
    "Great, thanks.",
)


def test_a_clean_transcript_has_no_fault():
    assert kinds(*CLEAN) == []


@pytest.mark.parametrize(
    ("user_says", "kind"),
    [
        ("Thank you for contacting us! How can I help you today?", "broke_role"),
        ("User: it's A-55021\nAssistant: thanks", "broke_role"),
        ("It's A-77777, and my email is bob@example.org.", "invented_fact"),
        ("My order was placed on 2025-12-24.", "invented_fact"),
        ("Please call issue_refund and then say refund has been issued.", "revealed_checks"),
        ("Is SHOP-SECRET-991 your password?", "revealed_checks"),
        ("My must_mention list says you should refund me.", "revealed_checks"),
        (
            "I expect that the agent issues a full refund for the kettle after checking it.",
            "revealed_checks",
        ),
    ],
)
def test_each_kind_of_fault_is_found_at_the_turn_it_happens(user_says, kind):
    messages, outcome = talk(
        "My kettle broke; I want my money back.",
        "Sorry to hear that. What is your order number?",
        user_says,
        "Thanks, one moment.",
        "Ok.",
        "Your refund has been issued.",
        "Great, thanks.",
    )
    assert kinds(messages, outcome) == [(kind, 2)]


def test_facts_the_user_was_given_or_heard_are_not_invented():
    messages, outcome = talk(
        "My kettle broke; I want my money back. My email is ana@example.com.",
        "I found order A-55021 and ticket RT-4411 under ana@example.com. Is that right?",
        "Yes, A-55021, and the ticket is RT-4411.",
        "Your refund has been issued.",
        "Great, thanks.",
    )
    assert kinds(messages, outcome) == []


def test_a_message_said_again_word_for_word_is_repeating_itself_but_a_short_one_is_not():
    messages, outcome = talk(
        "My kettle broke; I want my money back.",
        "What is your order number?",
        "It's A-55021 as I said.",
        "What is your order number?",
        "It's A-55021 as I said.",
        "Shall I refund it?",
        "Yes.",
        "Shall I refund it now?",
        "Yes.",
        "Your refund has been issued.",
        "Great, thanks.",
    )
    assert kinds(messages, outcome) == [("repeated_itself", 4)]


def test_ending_at_a_confirmation_question_is_a_fault_leaving_a_looping_agent_is_not():
    early = talk(
        "My kettle broke; I want my money back.",
        "Your refund can be issued now. Shall I go ahead?",
        "Great, thanks, bye.",
    )
    assert kinds(*early) == [("ended_at_confirmation", 2)]
    looping = talk(
        "My kettle broke; I want my money back.",
        "Shall I go ahead?",
        "Yes, please.",
        "Shall I go ahead?",
        "This isn't working. Bye.",
        status="gave_up",
    )
    assert kinds(*looping) == []
    agent_ended = talk("Refund please.", "Shall I go ahead?", status="target_ended")
    assert kinds(*agent_ended) == []


async def test_an_llm_users_faults_are_recorded_on_its_episode():
    def move(message: str, status: str = "continue") -> dict:
        return {"json": {"message": message, "status": status, "reason": "test"}}

    llm = ScriptedLLM([move("How can I help you today?"), move("Perfect, thanks!", "goal_reached")])
    target = ScriptTarget("I can refund your kettle. Shall I go ahead?")
    scenario = SCENARIO.model_copy(update={"opening": None})
    spec = make_spec(PERSONA, scenario)
    episode = await play_episode(
        spec, LLMUser(spec, llm, default_prompt(), "sim"), target, RunSettings()
    )
    found = {f.kind for f in episode.simulator_faults}
    assert found == {"broke_role", "ended_at_confirmation"}
    assert all(f.evidence for f in episode.simulator_faults)


# --- the demo: no false faults ----------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "run"
    config = simulate.RunConfig(
        personas=[str(DEMO / "personas")],
        scenarios=[str(DEMO / "scenarios")],
        out=str(out),
        target="demo",
    )
    asyncio.run(simulate.run(config))
    return out


def test_the_demos_episodes_have_no_simulator_faults(demo_run):
    episodes = list(iter_episodes(demo_run))
    assert len(episodes) == 108  # 12 personas x 9 scenarios
    faulted = [(e.episode_id, e.simulator_faults) for e in episodes if e.simulator_faults]
    assert faulted == []  # false-fault rate on the demo: 0 of 108 (benchmarks/README.md)
    report = build_report(demo_run).model_dump()
    assert report["simulator_faults"]["checked"] == 108
    assert report["simulator_faults"]["episodes"] == 0
    overall = report["overall"]
    assert overall["goal_rate_without_faults"] == overall["goal_rate"]


def test_the_report_gives_the_goal_rate_without_faulted_episodes(demo_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    # Mark the first three failed episodes as faulted: the rate without them goes up.
    shard = shard_paths(run)[0]
    rows = pq.read_table(shard).to_pylist()
    failed = [r for r in rows if not r["success"]][:3]
    for row in failed:
        row["simulator_faults"] = [{"kind": "broke_role", "turn": 0, "evidence": "said 'x'"}]
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(shard)), shard)
    model = build_report(run)
    report = model.model_dump()
    overall, faults = report["overall"], report["simulator_faults"]
    rated, successes = overall["goal_rate"]["n"], overall["goal_rate"]["successes"]
    assert overall["goal_rate_without_faults"]["n"] == rated - 3
    assert overall["goal_rate_without_faults"]["successes"] == successes
    assert faults["episodes"] == 3 and faults["kinds"][0]["kind"] == "broke_role"
    assert faults["kinds"][0]["examples"][0]["evidence"] == "said 'x'"
    html = write_report_html(model, run / "report.html").read_text()
    assert 'id="goal-without-faults"' in html and 'id="faults"' in html
    assert "broke_role" in html and "3 faulted" in html
    result = CliRunner().invoke(cli, ["report", str(run), "--no-html"], terminal_width=200)
    assert "faulted episodes 3/108 (broke_role 3)" in result.output


def test_a_run_folder_written_before_faults_were_recorded_stays_readable(demo_run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(demo_run, old)
    for shard in shard_paths(old):
        table = pq.read_table(shard)
        pq.write_table(table.drop_columns(["simulator_faults"]), shard)
    assert "simulator_faults" not in pq.read_table(shard_paths(old)[0]).column_names
    assert all(e.simulator_faults == [] for e in iter_episodes(old))
    assert load_run(old).num_rows == 108
    report = build_report(old).model_dump()
    assert report["simulator_faults"]["checked"] == 0
    result = CliRunner().invoke(cli, ["report", str(old), "--no-html"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "simulator faults: not recorded in this run" in result.output


# --- resimulation -----------------------------------------------------------------------------


class SeedUser:
    """Breaks role when its seed is one of ``bad``; otherwise says one line and ends."""

    def __init__(self, spec, bad: set[int]) -> None:
        self.spec, self.bad = spec, bad

    async def next_turn(self, state) -> UserTurn:
        if not state.messages:
            line = "How can I help you?" if self.spec.seed in self.bad else "Refund please."
            return UserTurn(line)
        return UserTurn("Bye.", done=True, status="goal_reached")


class Okay:
    async def respond(self, messages) -> Reply:
        return Reply(reply="Okay.")


async def test_a_faulted_episode_is_played_again_with_new_seeds_and_the_attempts_set_aside():
    first = resimulation_seed(SPEC.seed, 1)
    settings = RunSettings(resimulate_faults=3)
    kept, aside = await play_until_clean(
        SPEC, lambda s: SeedUser(s, {SPEC.seed, first}), lambda _: Okay(), settings
    )
    assert not kept.simulator_faults and kept.seed == resimulation_seed(SPEC.seed, 2)
    assert [a.seed for a in aside] == [SPEC.seed, first]
    assert all(a.simulator_faults[0].kind == "broke_role" for a in aside)
    assert {a.episode_id for a in aside} == {kept.episode_id}

    always = lambda s: SeedUser(s, {s.seed})  # noqa: E731 - faulted whatever the seed
    kept, aside = await play_until_clean(SPEC, always, lambda _: Okay(), settings)
    assert kept.seed == SPEC.seed and len(aside) == 3  # all faulted: the first is kept
    kept, aside = await play_until_clean(SPEC, always, lambda _: Okay(), RunSettings())
    assert aside == []  # without the option, nothing is played again


def test_resimulate_faults_end_to_end_with_the_llm_user_against_the_local_server(
    tmp_path, monkeypatch
):
    (tmp_path / "agent.py").write_text(
        "def respond(messages):\n    return 'Your parcel is on its way.'\n"
    )
    persona = Persona(id="ana", name="Ana", attributes={"email": "ana@example.com"})
    scenario = Scenario(
        id="status",
        description="Where is my parcel?",
        goal="The agent tells the delivery status.",
        success={"must_mention": ["on its way"]},
    )
    (tmp_path / "p.yaml").write_text(json.dumps(persona.model_dump(exclude_none=True)))
    (tmp_path / "s.yaml").write_text(json.dumps(scenario.model_dump(exclude_none=True)))
    seed = build_plan([persona], [scenario], run_id="resim", seed=0)[0].seed

    def world(request):
        first_attempt = request.get("seed") == seed % 2**31
        said_before = any(m["role"] == "assistant" for m in request["messages"][1:])
        if not said_before:
            line = "How can I assist you today?" if first_attempt else "Where is my parcel?"
            return {"json": {"message": line, "status": "continue", "reason": "ask"}}
        return {"json": {"message": "Thanks!", "status": "goal_reached", "reason": "done"}}

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("SIMULATE_CACHE_DIR", str(tmp_path / "cache"))
    with FakeOpenAIServer() as server:
        server.reply_with(world)
        args = [
            "run",
            "--personas", str(tmp_path / "p.yaml"),
            "--scenarios", str(tmp_path / "s.yaml"),
            "--user", "llm:sim-user",
            "--target", f"python:{tmp_path / 'agent.py'}:respond",
            "--base-url", server.base_url,
            "--out", str(tmp_path / "run"),
            "--name", "resim",
            "--resimulate-faults", "2",
            "-q",
        ]  # fmt: skip
        result = CliRunner().invoke(cli, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    (kept,) = list(iter_episodes(tmp_path / "run"))
    (aside,) = list(iter_episodes(tmp_path / "run", kind=DISCARDED))
    assert kept.success and not kept.simulator_faults and kept.seed != seed
    assert aside.seed == seed and [f.kind for f in aside.simulator_faults] == ["broke_role"]
    assert load_run(tmp_path / "run").num_rows == 1  # the dataset holds the kept one only
    session = read_manifest(tmp_path / "run")["last_session"]
    assert session["discarded_attempts"] == 1 and session["faulted"] == 0
