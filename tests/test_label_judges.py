"""LLM judges against the local OpenAI-compatible server, through the real OpenAI client: units,
what the judge sees (never the checks or the persona), repair, samples, skipping, resuming a
stopped or killed labeling, and one unit's failure leaving the others labeled."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes.openai_server import FakeOpenAIServer, Fault
from label_runs import SENTINELS, write_rubric, write_run

from simulate.label import label_key
from simulate.label.judges import majority
from simulate.label.labeling import LabelConfig, label_run
from simulate.schema import Criterion, Label
from simulate.store import ShardWriter, read_labels, read_manifest

UNITS = {"resolved": 2, "grounded": 4, "polite": 4, "right_tool": 2}
TOTAL = sum(UNITS.values())


def criterion_of(request: dict) -> str:
    return re.search(r"# Criterion: (\S+)", request["messages"][0]["content"]).group(1)


def unit_of(request: dict) -> str:
    return request["messages"][1]["content"]


def verdict(request: dict) -> dict:
    """The judge's answer: 2 on the politeness scale, yes for everything else."""
    criterion = criterion_of(request)
    value = "2" if criterion == "polite" else "yes"
    return {"json": {"rationale": f"judged {criterion}", "value": value}}


@pytest.fixture
def server():
    with FakeOpenAIServer() as fake:
        fake.reply_with(verdict)
        yield fake


@pytest.fixture
def run(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SIMULATE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    (tmp_path / "llm.yaml").write_text("max_retries: 1\nretry_backoff_s: 0.01\ntimeout_s: 5\n")
    write_rubric(tmp_path)
    return write_run(tmp_path / "run")


def config(run: Path, server: FakeOpenAIServer, **options) -> LabelConfig:
    options.setdefault("rules", False)
    return LabelConfig(
        run_dir=str(run),
        rubrics=[str(run.parent / "rubric.yaml")],
        judge="llm:gpt-4o-mini",
        base_url=server.base_url,
        llm_config=str(run.parent / "llm.yaml"),
        **options,
    )


def judge_labels(run: Path) -> list[Label]:
    return [x for x in read_labels(run) if x.labeler_kind == "judge"]


def requests_for(server: FakeOpenAIServer, criterion: str, *needles: str) -> list[dict]:
    """The requests judging ``criterion`` on a unit whose text holds every needle."""
    return [
        r.body
        for r in server.requests
        if criterion_of(r.body) == criterion and all(n in unit_of(r.body) for n in needles)
    ]


async def test_each_criterion_judges_its_units_and_the_judge_sees_only_the_conversation(
    run, server
):
    result = await label_run(config(run, server))
    assert result.written == TOTAL and not result.failures and result.stopped is None
    labels = judge_labels(run)
    units = {
        c: sorted(
            (x.episode_id, x.turn_index, x.tool_call_index) for x in labels if x.criterion == c
        )
        for c in UNITS
    }
    assert units["resolved"] == [("ep-a", None, None), ("ep-b", None, None)]
    assert (
        units["grounded"]
        == units["polite"]
        == [
            ("ep-a", 1, None),
            ("ep-a", 3, None),
            ("ep-b", 1, None),
            ("ep-b", 3, None),
        ]
    )
    assert units["right_tool"] == [("ep-a", 1, 0), ("ep-b", 1, 0)]
    for label in labels:
        assert label.labeler == "judge:gpt-4o-mini" and label.rubric == "test@1"
        assert label.samples == 1 and label.spread == 0.0
        assert label.rationale == f"judged {label.criterion}"
        if label.criterion == "polite":
            assert (label.value, label.score, label.passed) == ("2", 2.0, False)
        else:
            assert (label.value, label.score, label.passed) == ("yes", 1.0, True)

    assert server.count == TOTAL
    for request in server.requests:
        wire = json.dumps(request.body)
        assert not [s for s in SENTINELS if s in wire], "the judge saw the persona or the checks"
        assert "goal_reached" not in wire
        schema = request.body["response_format"]["json_schema"]["schema"]
        assert set(schema["properties"]) == {"rationale", "value"}
    (polite,) = requests_for(server, "polite", "(judged): Up to 8 kg.")
    assert polite["response_format"]["json_schema"]["schema"]["properties"]["value"]["enum"] == [
        "1",
        "2",
        "3",
        "4",
        "5",
    ]
    (first_reply,) = requests_for(server, "grounded", "(judged): Up to 8 kg.")
    text = unit_of(first_reply)
    assert "context passage 1: ep-a: cabin bags up to 8 kg" in text
    assert "Thanks!" not in text, "messages after the judged reply are not shown"
    (second_reply,) = requests_for(
        server, "grounded", "How heavy", "[3] agent (judged): You're welcome!"
    )
    assert "context passage" not in unit_of(second_reply), "only the judged reply's context"
    (call,) = requests_for(server, "right_tool", "ep-a")
    text = unit_of(call)
    assert "tool: search_policy" in text and 'arguments: {"query": "ep-a baggage"}' in text
    assert 'result: {"passages": ["ep-a: cabin bags up to 8 kg"]}' in text
    assert "Up to 8 kg." not in text
    (episode,) = requests_for(server, "resolved", "ep-a")
    assert "nothing was asked" in episode["messages"][0]["content"], "the criterion's example"
    assert "[3] agent: You're welcome!" in unit_of(episode)

    session = read_manifest(run)["labeling"][-1]
    assert session["judge"] == "llm:gpt-4o-mini" and session["rubrics"] == ["test@1"]
    assert set(session["prompt_hashes"]) == {"judge_system.md.j2", "judge_unit.md.j2"}
    assert session["model_usage"][0]["calls"] == TOTAL
    rows = {row.criterion: row for row in result.summary}
    assert rows["polite"].pass_rate == 0.0 and rows["grounded"].units == 4


async def test_a_malformed_reply_is_repaired_and_a_near_miss_is_mapped(run, server):
    server.queue(
        "I would say yes.",
        {"json": {"rationale": "fixed", "value": "yes"}},
        {"json": {"rationale": "shouted", "value": "YES."}},
    )
    result = await label_run(config(run, server, criteria=["resolved"], concurrency=1))
    assert result.written == 2 and not result.failures
    assert server.count == 3
    repair = server.requests[1].body["messages"]
    assert repair[-2] == {"role": "assistant", "content": "I would say yes."}
    assert "does not fit" in repair[-1]["content"]
    labels = {x.episode_id: x for x in judge_labels(run)}
    assert labels["ep-a"].value == "yes" and labels["ep-a"].rationale == "fixed"
    assert labels["ep-b"].value == "yes" and labels["ep-b"].rationale == "shouted"


async def test_samples_keep_the_majority_with_its_spread_each_with_its_own_seed(run, server):
    def split_vote(request):
        value = "no" if request["seed"] == 1 else "yes"
        return {"json": {"rationale": f"seed {request['seed']}", "value": value}}

    server.reply_with(split_vote)
    result = await label_run(config(run, server, criteria=["resolved"], samples=3))
    assert result.written == 2
    for label in judge_labels(run):
        assert (label.value, label.passed, label.samples) == ("yes", True, 3)
        assert label.spread == pytest.approx(1 / 3)
        assert label.rationale in ("seed 0", "seed 2")
    seeds = sorted(r.body["seed"] for r in server.requests)
    assert seeds == [0, 0, 1, 1, 2, 2]
    assert {r.body["temperature"] for r in server.requests} == {0.7}


def test_ties_go_to_the_stricter_answer():
    binary = Criterion(id="b", question="?")
    assert majority(binary, ["yes", "no"]) == ("no", 0.5)
    assert majority(binary, ["yes", "yes", "no"]) == ("yes", pytest.approx(1 / 3))
    scale = Criterion(id="s", question="?", kind="scale", scale_min=1, scale_max=5)
    assert majority(scale, ["5", "2", "4", "4", "2"]) == ("2", 0.6)
    category = Criterion(
        id="c", question="?", kind="category", options=["good", "ok", "bad"], passing=["good"]
    )
    assert majority(category, ["good", "ok"])[0] == "ok"
    assert majority(category, ["bad", "ok"])[0] == "ok"


async def test_labeled_units_are_skipped_and_repeated_requests_come_from_the_cache(
    run, server, tmp_path
):
    await label_run(config(run, server))
    assert server.count == TOTAL
    again = await label_run(config(run, server, use_cache=False))
    assert (again.written, again.skipped) == (0, TOTAL)
    assert server.count == TOTAL, "a second run makes no request"
    assert len(judge_labels(run)) == TOTAL

    other = tmp_path / "other"
    shutil.copytree(run, other)
    shutil.rmtree(other / "labels")
    cached = await label_run(config(other, server))
    assert cached.written == TOTAL and server.count == TOTAL, "same requests: from the cache"

    bumped = run.parent / "rubric.yaml"
    bumped.write_text(bumped.read_text().replace('version: "1"', 'version: "2"'))
    new_version = await label_run(config(run, server, criteria=["resolved"]))
    assert new_version.written == 2, "another rubric version labels again"
    assert {x.rubric for x in judge_labels(run)} == {"test@1", "test@2"}


async def test_an_llm_error_on_one_unit_is_reported_and_the_rest_are_labeled(run, server):
    def flaky(request):
        if criterion_of(request) == "grounded" and "(judged): Yes, one bag" in unit_of(request):
            return Fault.server_error(500)
        return verdict(request)

    server.reply_with(flaky)
    result = await label_run(config(run, server))
    assert result.written == TOTAL - 1 and result.stopped is None
    (failure,) = result.failures
    assert "ep-b" in failure and "grounded" in failure and "reply 1" in failure
    assert "HTTP 500" in failure
    assert len(judge_labels(run)) == TOTAL - 1

    server.reply_with(verdict)
    before = server.count
    retry = await label_run(config(run, server))
    assert (retry.written, retry.skipped) == (1, TOTAL - 1) and server.count == before + 1


async def test_a_spent_budget_stops_cleanly_and_the_next_run_finishes(run, server):
    stopped = await label_run(config(run, server, max_calls=5, concurrency=1))
    assert stopped.stopped is not None and "budget" in stopped.stopped
    assert stopped.written == 5 and len(judge_labels(run)) == 5
    assert read_manifest(run)["labeling"][-1]["stopped_because"] == stopped.stopped
    finished = await label_run(config(run, server))
    assert finished.stopped is None and (finished.written, finished.skipped) == (TOTAL - 5, 5)
    labels = judge_labels(run)
    assert len(labels) == len({label_key(x) for x in labels}) == TOTAL
    assert server.count == TOTAL


async def test_people_labels_are_examples_for_other_episodes_only(run, server):
    writer = ShardWriter(run, "labels")
    writer.add(
        Label(
            episode_id="ep-a",
            criterion="resolved",
            value="no",
            score=0.0,
            passed=False,
            rationale="HUMAN-RATIONALE",
            labeler="human:ana",
            labeler_kind="human",
            rubric="test@1",
            created_at="2026-01-01T00:00:00+00:00",
        )
    )
    writer.flush()
    await label_run(config(run, server, criteria=["resolved"]))
    (for_b,) = requests_for(server, "resolved", "Can I take a bag on board?")
    system = for_b["messages"][0]["content"]
    assert "HUMAN-RATIONALE" in system and "How heavy may my cabin bag be?" in system
    assert 'Answer: "no" (HUMAN-RATIONALE)' in system
    (for_a,) = requests_for(server, "resolved", "How heavy may my cabin bag be?")
    assert "HUMAN-RATIONALE" not in for_a["messages"][0]["content"]
    none = await label_run(config(run, server, criteria=["resolved"], human_examples=0))
    assert none.skipped == 2


def label_cli(run: Path, server: FakeOpenAIServer, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SIMULATE_CACHE_DIR": str(run.parent / "cache"), "COLUMNS": "200"}
    env.pop("OPENAI_BASE_URL", None)
    args = [
        "label",
        str(run),
        "--rubric",
        str(run.parent / "rubric.yaml"),
        "--judge",
        "llm:gpt-4o-mini",
        "--base-url",
        server.base_url,
        "--llm-config",
        str(run.parent / "llm.yaml"),
        "--no-cache",
        *extra,
    ]
    return subprocess.Popen(
        [sys.executable, "-m", "simulate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_a_killed_labeling_resumes_where_it_stopped(run, server):
    server.latency_s = 0.2
    process = label_cli(run, server, "--concurrency", "1")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(judge_labels(run)) < 3:
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    kept = len(judge_labels(run))
    assert 3 <= kept < TOTAL, "killed while judging"
    rules = [x for x in read_labels(run) if x.labeler_kind == "rule"]
    assert rules, "the rules ran first and were written"

    server.latency_s = 0.0
    before = server.count
    process = label_cli(run, server)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert server.count - before == TOTAL - kept, "only the units not stored are asked"
    labels = read_labels(run)
    assert len({label_key(x) for x in labels}) == len(labels), "no unit labeled twice"
    assert len(judge_labels(run)) == TOTAL
    assert "judge:gpt-4o-mini" in stdout and "right_tool" in stdout
    assert f"{kept + len(rules)} units already labeled" in stdout


async def test_an_endpoint_that_always_fails_trips_the_breaker_after_ten_units(run, server):
    from simulate.errors import LLMError
    from simulate.label.labeling import BREAKER_FAILURES

    server.reply_with(lambda request: Fault.server_error(500))
    with pytest.raises(LLMError, match=f"the judge failed on the first {BREAKER_FAILURES} units"):
        await label_run(config(run, server, concurrency=1))
    assert judge_labels(run) == []
    asked = server.count
    assert asked < TOTAL * 2, "it stopped before asking about every unit"
    assert read_manifest(run)["labeling"][-1]["failed"] == BREAKER_FAILURES


def test_label_exits_1_when_the_judge_answered_no_unit(run, server):
    server.reply_with(lambda request: Fault.server_error(500))
    process = label_cli(run, server, "--criterion", "resolved")  # fewer units than the breaker
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr
    assert "the judge answered none of the" in stderr


async def test_the_judge_has_its_own_endpoint_and_its_calls_go_on_the_run_s_cassette(
    run, server, tmp_path
):
    from simulate.llm.cassette import call_keys, export_calls

    judged = config(run, server, criteria=["resolved"], judge_base_url=server.base_url)
    result = await label_run(judged.model_copy(update={"base_url": "http://127.0.0.1:9/v1"}))

    assert result.written > 0 and server.count > 0  # nothing went to the shared (dead) endpoint
    session = read_manifest(run)["labeling"][-1]
    assert session["endpoints"] == {"judge": server.base_url.split("/")[2]}
    assert len(call_keys(run)) == server.count
    exported = export_calls(run, tmp_path / "judge.sqlite", tmp_path / "cache")
    assert (exported.calls, exported.missing) == (server.count, 0)
