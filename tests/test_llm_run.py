"""LLM user × openai target, end to end through the CLI, against the local OpenAI-compatible
server: tools, caching and replay, retries, repair, budgets, dry runs, and no key anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakes.openai_server import FakeOpenAIServer, Fault

import simulate

DATA = Path(__file__).parent / "data"
SHOP = DATA / "shop"
KEY = "sk-test-THIS-KEY-MUST-NEVER-LEAK-1234"


def is_user_call(request: dict) -> bool:
    """The simulated user asks for structured output; the agent does not."""
    return "response_format" in request


def last_text(request: dict, role: str) -> str:
    texts = [m.get("content") or "" for m in request["messages"] if m["role"] == role]
    return texts[-1] if texts else ""


def shop_world(request: dict):
    """Both sides of a parcel-status conversation, decided from the request."""
    if is_user_call(request):
        # roles are flipped for the simulated user: the agent's words arrive as "user"
        agent_said = last_text(request, "user")
        if "on its way" in agent_said:
            return {
                "json": {
                    "message": "Great, thanks!",
                    "status": "goal_reached",
                    "reason": "the agent told me where my parcel is",
                }
            }
        return {
            "json": {
                "message": "Where is my parcel? My email is ana@example.com",
                "status": "continue",
                "reason": "asking",
            }
        }
    if request["messages"][-1]["role"] == "tool":
        return "Your parcel is on its way."
    return {"tool_calls": [{"name": "track_parcel", "arguments": {"email": "ana@example.com"}}]}


@pytest.fixture
def server():
    with FakeOpenAIServer() as fake:
        fake.reply_with(shop_world)
        yield fake


@pytest.fixture
def files(tmp_path):
    (tmp_path / "agent.md").write_text("You are the support agent of a small shop.")
    (tmp_path / "tools.yaml").write_text(
        "tools:\n"
        "  - name: track_parcel\n"
        "    description: Where a customer's parcel is.\n"
        "    parameters: {type: object, properties: {email: {type: string}}}\n"
        "    result: {status: in transit}\n"
    )
    (tmp_path / "llm.yaml").write_text("max_retries: 2\nretry_backoff_s: 0.01\ntimeout_s: 2\n")
    return tmp_path


def llm_run(server, files: Path, out: str, *extra: str, key: str = KEY):
    env = {**os.environ, "OPENAI_API_KEY": key, "SIMULATE_CACHE_DIR": str(files / "cache")}
    env.pop("OPENAI_BASE_URL", None)
    args = [
        "run",
        "--personas",
        str(SHOP / "personas.yaml"),
        "--scenarios",
        str(SHOP / "scenarios.yaml"),
        "--scenario",
        "status",
        "--persona",
        "ana",
        "--user",
        "llm:sim-user",
        "--target",
        "openai:sim-agent",
        "--system-prompt",
        str(files / "agent.md"),
        "--tools",
        str(files / "tools.yaml"),
        "--llm-config",
        str(files / "llm.yaml"),
        "--base-url",
        server.base_url,
        "--no-preflight",  # these tests count the model requests of the episodes alone
        "--out",
        str(files / out),
        "--name",
        "llm",
        "-q",
        *extra,
    ]
    return subprocess.run(
        [sys.executable, "-m", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def comparable(run_dir: Path) -> list[dict]:
    rows = simulate.load_run(run_dir).remove_columns(["duration_s", "created_at"]).to_list()
    for row in rows:
        for message in row["messages"]:
            message.pop("latency_ms")
    return rows


def assert_no_key_anywhere(files: Path, *outputs: str) -> None:
    for path in files.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    for text in outputs:
        assert KEY not in text


def test_llm_user_and_openai_target_converse_with_tools_and_usage(server, files):
    # no cache: the two trials may ask the agent the same thing, and whether the second asks
    # before the first is answered (both reach the server) or after (a cache hit) is timing
    result = llm_run(server, files, "run", "--trials", "2", "--no-cache")
    assert result.returncode == 0, result.stderr
    ds = simulate.load_run(files / "run")
    assert ds.num_rows == 2
    for row in ds:
        assert row["outcome"]["status"] == "goal_reached" and row["success"]
        agent = next(m for m in row["messages"] if m["role"] == "assistant")
        calls = json.loads(agent["tool_calls"])
        assert calls[0]["name"] == "track_parcel"
        assert calls[0]["result"] == {"status": "in transit"}
        assert {u["role"] for u in row["usage"]} == {"user", "target"}
        assert all(u["prompt_tokens"] > 0 for u in row["usage"])
    # the agent's second call carried the tool result back to the model
    target_calls = [r.body for r in server.requests if r.body and not is_user_call(r.body)]
    with_results = [c for c in target_calls if any(m["role"] == "tool" for m in c["messages"])]
    assert len(with_results) == 2
    assert target_calls[0]["tools"][0]["function"]["name"] == "track_parcel"
    # the simulated user's system prompt carries the persona and scenario; the agent's doesn't
    user_calls = [r.body for r in server.requests if r.body and is_user_call(r.body)]
    assert "Ana Silva" in user_calls[0]["messages"][0]["content"]
    assert all("Ana Silva" not in json.dumps(c) for c in target_calls)
    assert all(r.authorization == f"Bearer {KEY}" for r in server.requests)
    manifest = json.loads((files / "run" / "manifest.json").read_text())
    assert manifest["llm"]["calls"] == server.count
    assert set(manifest["llm"]["prompt_hashes"]) == {"user_prompt", "system_prompt", "tools"}
    assert "model user sim-user" in result.stdout
    assert_no_key_anywhere(files, result.stdout, result.stderr)


def test_a_cached_rerun_makes_no_request_and_gives_identical_rows(server, files):
    assert llm_run(server, files, "first").returncode == 0
    before = server.count
    again = llm_run(server, files, "again")
    assert again.returncode == 0, again.stderr
    assert server.count == before
    assert comparable(files / "first") == comparable(files / "again")
    manifest = json.loads((files / "again" / "manifest.json").read_text())
    assert manifest["llm"]["cached_calls"] == manifest["llm"]["calls"] > 0
    replay = llm_run(server, files, "replay", "--replay-only")
    assert replay.returncode == 0 and server.count == before
    missed = llm_run(server, files, "missed", "--replay-only", "--seed", "5")
    assert missed.returncode == 3
    assert "cache miss in --replay-only mode" in missed.stderr
    assert server.count == before
    no_cache = llm_run(server, files, "fresh", "--no-cache")
    assert no_cache.returncode == 0 and server.count > before


def test_rate_limit_with_retry_after_is_waited_out(server, files):
    server.queue(Fault.rate_limit(0.3))
    result = llm_run(server, files, "run", "--no-cache")
    assert result.returncode == 0, result.stderr
    assert simulate.load_run(files / "run")[0]["success"]
    statuses = [r.body is not None for r in server.requests]
    assert len(statuses) == server.count and server.count >= 5  # the 429 was retried


def test_server_errors_past_the_retries_are_recorded_and_the_run_goes_on(server, files):
    def agent_down(request):
        return shop_world(request) if is_user_call(request) else Fault.server_error(500)

    server.reply_with(agent_down)
    result = llm_run(server, files, "run", "--no-cache", "--trials", "2")
    # Every episode recorded; nothing counted toward the goal rate, so the run exits 1 (#13).
    assert result.returncode == 1, result.stderr
    assert "no episode counts toward the goal rate" in result.stderr
    ds = simulate.load_run(files / "run")
    assert ds.num_rows == 2
    for row in ds:
        assert row["outcome"]["status"] == "target_error"
        assert "500" in row["outcome"]["reason"] and "sim-agent" in row["outcome"]["reason"]
        assert KEY not in row["outcome"]["reason"]
    target_requests = [r for r in server.requests if r.body and not is_user_call(r.body)]
    assert len(target_requests) == 2 * 3  # each episode: the call and its 2 retries


def test_timeouts_are_retried_then_succeed(server, files):
    server.queue(Fault.hang(3))
    result = llm_run(server, files, "run", "--no-cache")
    assert result.returncode == 0, result.stderr
    assert simulate.load_run(files / "run")[0]["success"]


def test_a_malformed_structured_reply_is_repaired(server, files):
    server.queue(Fault.bad_json_content())
    result = llm_run(server, files, "run", "--no-cache")
    assert result.returncode == 0, result.stderr
    assert simulate.load_run(files / "run")[0]["success"]
    repair = server.requests[1].body["messages"]
    assert "JSON" in repair[-1]["content"]  # the model was told what was wrong


def test_a_structured_reply_that_never_fits_is_a_simulator_error(server, files):
    def broken_user(request):
        if is_user_call(request):
            return {"json": {"msg": "wrong fields"}}
        return shop_world(request)

    server.reply_with(broken_user)
    result = llm_run(server, files, "run", "--no-cache")
    assert result.returncode == 1, result.stderr  # nothing was measured (#13)
    outcome = simulate.load_run(files / "run")[0]["outcome"]
    assert outcome["status"] == "simulator_error"
    assert "UserMove" in outcome["reason"]


def test_a_call_budget_stops_the_run_cleanly_and_resume_finishes_it(server, files):
    result = llm_run(
        server, files, "run", "--trials", "4", "--max-calls", "5", "--concurrency", "1"
    )
    assert result.returncode == 3
    assert "budget reached" in result.stderr and "--resume" in result.stderr
    manifest = json.loads((files / "run" / "manifest.json").read_text())
    assert manifest["status"] == "stopped"
    kept = simulate.load_run(files / "run")
    assert 1 <= kept.num_rows < 4 and all(kept["success"])  # only whole episodes are kept
    resumed = llm_run(server, files, "run", "--trials", "4", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert simulate.load_run(files / "run").num_rows == 4


def test_dry_run_estimates_without_calling(server, files):
    result = llm_run(server, files, "run", "--trials", "3", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "3 episodes" in result.stdout
    assert "user sim-user" in result.stdout and "target sim-agent" in result.stdout
    assert server.count == 0
    assert not (files / "run").exists()


def test_missing_key_for_openai_is_one_line_before_anything_is_written(files):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulate",
            "run",
            "--personas",
            str(SHOP / "personas.yaml"),
            "--scenarios",
            str(SHOP / "scenarios.yaml"),
            "--user",
            "llm:gpt-4o-mini",
            "--target",
            "demo",
            "--out",
            str(files / "run"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: no API key: set OPENAI_API_KEY")
    assert not (files / "run").exists()
