"""The agent's own model calls through Simulate's proxy (`simulate run --agent-llm-proxy`).

Agents call the proxy with the real `openai` client, the proxy forwards to the local
OpenAI-compatible test server: what reaches the server, what the agent gets back (streams, tool
calls, the Responses API), what is counted per episode, and what a replay answers offline.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from click.testing import CliRunner, Result
from fakes.openai_server import FakeOpenAIServer
from test_cli import shop_args

import simulate
from simulate.card import render_run_card
from simulate.cli import cli
from simulate.llm.pool import LLMPool
from simulate.llm.proxy import ModelProxy
from simulate.llm.settings import LLMSettings
from simulate.llm.usage import BudgetExceeded, Sessions, UsageMeter, episode_usage
from simulate.plan import episode_id

UPSTREAM_KEY = "sk-upstream-THIS-KEY-MUST-NEVER-LEAK-42"
AGENT_MODEL = "agent-model"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "track_parcel",
            "description": "Where a customer's parcel is.",
            "parameters": {"type": "object", "properties": {"email": {"type": "string"}}},
        },
    }
]

PYTHON_AGENT = """
import openai

client = openai.AsyncOpenAI()  # OPENAI_BASE_URL and OPENAI_API_KEY, read once, at import


async def respond(messages):
    reply = await client.chat.completions.create(
        model="agent-model",
        messages=[{"role": "system", "content": "You track parcels."}, *messages],
    )
    return reply.choices[0].message.content
"""

CMD_AGENT = """
import json, sys
import openai

client = openai.OpenAI()  # this episode's OPENAI_BASE_URL (its own path) and the proxy's key
for line in sys.stdin:
    request = json.loads(line)
    reply = client.chat.completions.create(
        model="agent-model",
        messages=[{"role": "system", "content": "You track parcels."}, *request["messages"]],
    )
    print(json.dumps({"reply": reply.choices[0].message.content}), flush=True)
"""


def shop_world(request: dict[str, Any]) -> Any:
    """Both sides of a parcel conversation: the LLM user (structured output) and the agent."""
    said = [m.get("content") or "" for m in request["messages"] if m["role"] == "user"]
    if "response_format" in request:  # the simulated user; the agent's words arrive as "user"
        if said and "on its way" in said[-1]:
            return {"json": {"message": "Thanks!", "status": "goal_reached", "reason": "told"}}
        email = re.search(r"\S+@example\.com", request["messages"][0]["content"])
        where = f" My email is {email.group(0)}." if email else ""
        move = {"message": f"Where is my parcel?{where}", "status": "continue", "reason": "ask"}
        return {"json": move}
    if any("@" in text for text in said):
        return "Your parcel is on its way."
    return "What is your email address?"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        fake.reply_with(shop_world)
        yield fake


def invoke(args: list[str], cache: Path, **env: str | None) -> Result:
    """`simulate ARGS` in this process, with only the given keys and the given cache."""
    base = {"SIMULATE_CACHE_DIR": str(cache), "OPENAI_BASE_URL": None, "OPENAI_API_KEY": None}
    return CliRunner().invoke(cli, args, env={**base, **env})


def shop_run(out: Path, target: str, *extra: str) -> list[str]:
    return [
        *shop_args(out, target),
        "--scenario",
        "status",
        "--agent-llm-proxy",
        "--no-preflight",  # the server counts exactly the episodes' calls
        "--max-turns",
        "4",
        "--name",
        "proxied",
        *extra,
    ]


def comparable(run_dir: Path) -> list[dict[str, Any]]:
    rows = simulate.load_run(run_dir).remove_columns(["duration_s", "created_at"]).to_list()
    for row in rows:
        for message in row["messages"]:
            message.pop("latency_ms")
    return rows


def agent_requests(server: FakeOpenAIServer) -> list[Any]:
    return [r for r in server.requests if r.body and r.body.get("model") == AGENT_MODEL]


def assert_no_secret_in(folder: Path, *texts: str) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert UPSTREAM_KEY.encode() not in data and b"simulate-proxy-" not in data, path
    for text in texts:
        assert UPSTREAM_KEY not in text


# --- a whole run, recorded and replayed ----------------------------------------------------------


def test_a_python_agent_with_a_module_level_client_is_recorded_once_then_replayed_offline(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    agent = tmp_path / "agent.py"
    agent.write_text(PYTHON_AGENT)
    target = f"python:{agent}:respond"
    upstream = ["--agent-base-url", server.base_url, "--persona", "ana", "--persona", "bruno"]

    first = invoke(
        shop_run(tmp_path / "first", target, *upstream),
        tmp_path / "cache",
        OPENAI_API_KEY=UPSTREAM_KEY,
    )

    assert first.exit_code == 0, first.output + first.stderr
    rows = simulate.load_run(tmp_path / "first")
    replies = sum(m["role"] == "assistant" for row in rows for m in row["messages"])
    assert rows.num_rows == 2 and all(rows["success"])
    # every call the agent made reached the server once, with the upstream key, not the token
    calls = agent_requests(server)
    assert len(calls) == replies == server.count > 0
    assert all(r.authorization == f"Bearer {UPSTREAM_KEY}" for r in calls)
    assert calls[0].body["messages"][0] == {"role": "system", "content": "You track parcels."}
    manifest = json.loads((tmp_path / "first" / "manifest.json").read_text())
    (agent_usage,) = manifest["last_session"]["model_usage"]
    assert (agent_usage["role"], agent_usage["model"]) == ("agent", AGENT_MODEL)
    assert agent_usage["calls"] == replies
    assert manifest["llm"]["cached_calls"] == 0
    assert manifest["llm"]["endpoints"] == {"agent": server.base_url.split("/")[2]}
    assert manifest["llm"]["agent_proxy"].startswith("http://127.0.0.1:")
    # a plain function gets no session id: its calls count for the run, not an episode
    assert manifest["llm"]["agent_calls_run_wide"] == replies
    assert "run as a whole" not in first.stderr and "agent model proxy:" in first.stderr
    assert "OPENAI_BASE_URL" not in os.environ and "OPENAI_API_KEY" not in os.environ

    # the run's calls move to a clean cache, and replay there with no key and no server call
    cassette = tmp_path / "calls.sqlite"
    exported = invoke(
        ["cassette", "export", str(tmp_path / "first"), "-o", str(cassette)], tmp_path / "cache"
    )
    assert exported.exit_code == 0, exported.output + exported.stderr
    assert f"wrote {replies} recorded model calls" in exported.output
    imported = invoke(["cassette", "import", str(cassette)], tmp_path / "ci-cache")
    assert imported.exit_code == 0 and f"imported {replies} recorded" in imported.output
    before = server.count

    replay = invoke(
        shop_run(tmp_path / "replay", target, *upstream, "--replay-only"), tmp_path / "ci-cache"
    )

    assert replay.exit_code == 0, replay.output + replay.stderr
    assert server.count == before
    assert comparable(tmp_path / "first") == comparable(tmp_path / "replay")
    replayed = json.loads((tmp_path / "replay" / "manifest.json").read_text())["llm"]
    assert replayed["cached_calls"] == replayed["calls"] == replies
    assert_no_secret_in(tmp_path, first.output, first.stderr, replay.output, replay.stderr)


def test_a_replay_miss_of_the_agent_stops_the_run_naming_the_episode_and_request(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    agent = tmp_path / "agent.py"
    agent.write_text(PYTHON_AGENT)
    target = f"python:{agent}:respond"
    upstream = ["--agent-base-url", server.base_url, "--concurrency", "1"]
    recorded = invoke(
        shop_run(tmp_path / "first", target, *upstream, "--persona", "ana"),
        tmp_path / "cache",
        OPENAI_API_KEY=UPSTREAM_KEY,
    )
    assert recorded.exit_code == 0, recorded.output + recorded.stderr
    before = server.count

    missed = invoke(
        shop_run(tmp_path / "missed", target, *upstream, "--persona", "bruno", "--replay-only"),
        tmp_path / "cache",
    )

    assert missed.exit_code == 3, missed.output + missed.stderr
    assert server.count == before
    bruno = episode_id("proxied", "bruno", "status", 0)
    assert re.search(
        r"stopped early: cache miss in --replay-only mode for the agent's call to agent-model"
        rf" \(request [0-9a-f]{{12}}\), in .*episode {bruno}",
        missed.stderr,
    ), missed.stderr
    manifest = json.loads((tmp_path / "missed" / "manifest.json").read_text())
    assert manifest["status"] == "stopped"
    # the episode cut short is not stored as the agent's error: a resume plays it again
    assert (
        not (tmp_path / "missed" / "episodes").exists()
        or simulate.load_run(tmp_path / "missed").num_rows == 0
    )


def test_a_cmd_agent_s_calls_are_counted_per_episode_and_add_up_to_the_server_s_tokens(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    agent = tmp_path / "agent_cmd.py"
    agent.write_text(CMD_AGENT)
    args = shop_run(
        tmp_path / "run",
        f"cmd:{sys.executable} {agent}",
        "--user",
        "llm:sim-user",
        "--base-url",
        server.base_url,
        "--persona",
        "ana",
        "--persona",
        "bruno",
        "--concurrency",
        "2",
        "--no-cache",
    )

    result = invoke(args, tmp_path / "cache", OPENAI_API_KEY=UPSTREAM_KEY)

    assert result.exit_code == 0, result.output + result.stderr
    rows = simulate.load_run(tmp_path / "run").to_list()
    assert len(rows) == 2 and all(row["success"] for row in rows)
    for row in rows:
        agent_row = next(u for u in row["usage"] if u["role"] == "agent")
        replies = sum(m["role"] == "assistant" for m in row["messages"])
        assert (agent_row["model"], agent_row["calls"]) == (AGENT_MODEL, replies)
        assert {u["role"] for u in row["usage"]} == {"user", "agent"}
    for role, model in (("agent", AGENT_MODEL), ("user", "sim-user")):
        counted = [u for row in rows for u in row["usage"] if u["role"] == role]
        served = [(p, c) for m, p, c in server.usage if m == model]
        assert sum(u["calls"] for u in counted) == len(served)
        assert sum(u["prompt_tokens"] for u in counted) == sum(p for p, _ in served)
        assert sum(u["completion_tokens"] for u in counted) == sum(c for _, c in served)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())["llm"]
    assert manifest["agent_calls_run_wide"] == 0
    assert "usage by role over the episodes: user" in result.output
    report = invoke(["report", str(tmp_path / "run"), "--json", "--no-html"], tmp_path / "cache")
    shown = invoke(["report", str(tmp_path / "run")], tmp_path / "cache")  # and report.html
    assert "usage by role over the episodes: user" in shown.output
    by_role = {r["role"]: r for r in json.loads(report.output)["usage_by_role"]}
    agent_calls = sum(1 for m, _, _ in server.usage if m == AGENT_MODEL)
    assert by_role["agent"]["calls"] == agent_calls
    html = (tmp_path / "run" / "report.html").read_text()
    assert re.search(
        rf"<td>agent</td><td class=\"num\">2</td><td class=\"num\">{agent_calls}<", html
    )
    card = render_run_card(tmp_path / "run", {"episodes": {"train": "episodes/*.parquet"}})
    assert f"agent: {agent_calls} calls" in card.card.text


def test_an_http_agent_is_told_where_the_proxy_is(server: FakeOpenAIServer, tmp_path: Path) -> None:
    from fakes.agent_server import AgentServer

    with AgentServer() as agent:
        args = shop_run(tmp_path / "run", agent.url, "--agent-base-url", server.base_url)
        result = invoke(args, tmp_path / "cache", SIMULATE_PROXY_TOKEN="my-own-token")

    assert result.exit_code == 0, result.output + result.stderr
    proxy = json.loads((tmp_path / "run" / "manifest.json").read_text())["llm"]["agent_proxy"]
    assert f"OPENAI_BASE_URL={proxy}" in result.stderr
    assert "OPENAI_API_KEY=$SIMULATE_PROXY_TOKEN" in result.stderr
    assert "my-own-token" not in result.stderr

    unset = invoke(args, tmp_path / "cache", SIMULATE_PROXY_TOKEN=None)
    assert unset.exit_code != 0
    assert "set SIMULATE_PROXY_TOKEN to a key of your choosing" in str(unset.exception)


# --- the proxy itself ----------------------------------------------------------------------------


@pytest.fixture
async def proxy(server: FakeOpenAIServer, tmp_path: Path) -> AsyncIterator[ModelProxy]:
    settings = LLMSettings(
        base_url=server.base_url, api_key=UPSTREAM_KEY, cache_dir=tmp_path, retry_backoff_s=0.01
    )
    pool = LLMPool(settings, UsageMeter())
    async with ModelProxy(pool, Sessions()) as served:
        yield served
    await pool.aclose()


class Clients:
    """The agent's openai clients of one test, closed when it ends."""

    def __init__(self) -> None:
        self.opened: list[openai.AsyncOpenAI] = []

    def to(self, url: str, key: str) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0)
        self.opened.append(client)
        return client

    def of(self, proxy: ModelProxy, session: str | None = None) -> openai.AsyncOpenAI:
        """A client of the proxy (of one episode's path, with ``session``)."""
        return self.to(proxy.session_url(session) if session else proxy.base_url, proxy.token)


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    made = Clients()
    yield made
    for client in made.opened:
        await client.close()


def deltas(chunks: list[Any]) -> list[Any]:
    """What a stream says, without what differs between two answers (ids, times)."""
    return [(c.choices[0].delta.model_dump(), c.choices[0].finish_reason) for c in chunks]


async def stream_chat(client: openai.AsyncOpenAI, **extra: Any) -> list[Any]:
    stream = await client.chat.completions.create(
        model=AGENT_MODEL,
        messages=[{"role": "user", "content": "where is my parcel, ana@example.com"}],
        tools=TOOLS,
        stream=True,
        **extra,
    )
    return [chunk async for chunk in stream]


async def test_streams_and_tool_calls_pass_through_as_the_server_sent_them(
    server: FakeOpenAIServer, proxy: ModelProxy, clients: Clients
) -> None:
    server.supports_streaming = True
    server.reply_with(
        lambda request: {
            "content": "Let me look that up.",
            "tool_calls": [
                {"id": "call_1", "name": "track_parcel", "arguments": {"email": "ana@example.com"}}
            ],
        }
    )

    relayed = await stream_chat(clients.of(proxy))
    served = await stream_chat(clients.to(server.base_url, "k"))

    assert deltas(relayed) == deltas(served)
    calls = [c.choices[0].delta.tool_calls for c in relayed if c.choices[0].delta.tool_calls]
    arguments = "".join(call[0].function.arguments or "" for call in calls)
    assert calls[0][0].function.name == "track_parcel"
    assert json.loads(arguments) == {"email": "ana@example.com"}
    assert all(c.choices for c in relayed)  # no usage-only chunk the agent did not ask for
    # the proxy asked for usage upstream to count the tokens, and counted them
    assert server.requests[0].body["stream_options"] == {"include_usage": True}
    assert "stream_options" not in server.requests[1].body
    (usage,) = proxy.pool.meter.as_usage_list()
    assert (usage.role, usage.calls) == ("agent", 1) and usage.completion_tokens > 0

    with_usage = await stream_chat(clients.of(proxy), stream_options={"include_usage": True})
    assert with_usage[-1].choices == [] and with_usage[-1].usage.completion_tokens > 0

    again = await stream_chat(clients.of(proxy))  # the same request: from the cache, as sent
    assert [c.model_dump() for c in again] == [c.model_dump() for c in relayed]
    assert len(server.requests) == 3

    plain = await clients.of(proxy).chat.completions.create(
        model=AGENT_MODEL, messages=[{"role": "user", "content": "hi"}], tools=TOOLS
    )
    (call,) = plain.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "track_parcel",
        {"email": "ana@example.com"},
    )
    assert plain.choices[0].finish_reason == "tool_calls"


async def test_the_responses_api_and_models_are_served(
    server: FakeOpenAIServer, proxy: ModelProxy, clients: Clients
) -> None:
    server.supports_streaming = True
    server.reply_with(None)  # echo
    client = clients.of(proxy)

    response = await client.responses.create(model=AGENT_MODEL, input="hello there")
    events = [
        e
        async for e in await client.responses.create(
            model=AGENT_MODEL, input="stream it", stream=True
        )
    ]
    models = [m.id async for m in client.models.list()]

    assert response.output_text == "echo: hello there"
    assert response.usage.input_tokens == 2
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "echo: stream it"
    assert [r.path for r in server.requests] == ["/v1/responses", "/v1/responses"]
    assert models == [AGENT_MODEL]
    (usage,) = proxy.pool.meter.as_usage_list()
    assert (usage.calls, usage.prompt_tokens) == (2, 2 + 2)


async def test_calls_naming_a_session_count_toward_its_episode(
    server: FakeOpenAIServer, proxy: ModelProxy, clients: Clients
) -> None:
    server.reply_with(None)  # echo
    sessions = proxy.sessions
    ask = {"model": AGENT_MODEL, "messages": [{"role": "user", "content": "one two three"}]}
    with sessions.tracking(), episode_usage("ep-1") as rows:
        await clients.of(proxy, "ep-1").chat.completions.create(**ask)
        await clients.of(proxy).chat.completions.create(
            **ask, extra_headers={"X-Simulate-Session": "ep-1"}
        )
        await clients.of(proxy).chat.completions.create(**ask)  # no session: the run's
        await clients.of(proxy, "not-playing").chat.completions.create(**ask)

    (row,) = rows
    assert (row.role, row.model, row.calls) == ("agent", AGENT_MODEL, 2)
    assert row.prompt_tokens == 2 * 3  # the second call was served from the cache, counted
    assert proxy.run_wide_calls == 2
    assert len(server.requests) == 1


async def test_the_proxy_refuses_requests_without_its_token(
    server: FakeOpenAIServer, proxy: ModelProxy
) -> None:
    body = {"model": AGENT_MODEL, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(base_url=proxy.base_url) as http:
        missing = await http.post("/chat/completions", json=body)
        wrong = await http.post(
            "/chat/completions", json=body, headers={"Authorization": "Bearer sk-guess"}
        )
        models = await http.get("/models")
        right = await http.post(
            "/chat/completions", json=body, headers={"Authorization": f"Bearer {proxy.token}"}
        )

    assert [missing.status_code, wrong.status_code, models.status_code] == [401, 401, 401]
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert proxy.token not in missing.text + wrong.text
    assert right.status_code == 200
    assert len(server.requests) == 1  # only the one with the token went upstream


async def test_the_proxy_listens_on_127_0_0_1_only(proxy: ModelProxy) -> None:
    assert proxy.base_url.startswith("http://127.0.0.1:")
    assert proxy._socket.getsockname()[0] == "127.0.0.1"
    address = outward_address()
    if address is None:
        pytest.skip("this machine has no address but the loopback one")
    with pytest.raises(OSError), socket.create_connection((address, proxy.port), timeout=2):
        pass


def outward_address() -> str | None:
    """An address of this machine other than the loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent by a UDP connect
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


async def test_a_spent_budget_or_a_replay_miss_is_kept_for_the_run_to_stop_on(
    server: FakeOpenAIServer, tmp_path: Path, clients: Clients
) -> None:
    settings = LLMSettings(base_url=server.base_url, api_key=UPSTREAM_KEY, cache_dir=tmp_path)
    pool = LLMPool(settings, UsageMeter(max_calls=1))
    ask = {"model": AGENT_MODEL, "messages": [{"role": "user", "content": "hi"}]}
    async with ModelProxy(pool, Sessions()) as proxy:
        await clients.of(proxy, "ep-1").chat.completions.create(**ask)
        with pytest.raises(openai.APIStatusError) as refused:
            await clients.of(proxy, "ep-1").chat.completions.create(
                **{**ask, "messages": [{"role": "user", "content": "again"}]}
            )
    await pool.aclose()

    assert refused.value.status_code == 503
    (stop,) = proxy.stops
    assert isinstance(stop.error, BudgetExceeded) and stop.episodes == {"ep-1"}
    assert "in episode ep-1" in str(stop.error)
    assert len(server.requests) == 1


def test_every_episode_that_may_have_made_a_failed_call_stops_once() -> None:
    from types import SimpleNamespace

    from simulate.agent_proxy import AgentProxy
    from simulate.llm.cache import CacheMiss
    from simulate.llm.proxy import ProxyStop

    unnamed = ProxyStop(CacheMiss("miss while a and b played"), frozenset({"a", "b"}))
    late = ProxyStop(CacheMiss("miss of c, after c had ended"), frozenset({"c"}))
    watched = AgentProxy(SimpleNamespace(stops=[unnamed, late]))  # type: ignore[arg-type]

    def raised(session: str | None) -> str | None:
        try:
            watched.raise_stop(session)
        except CacheMiss as exc:
            return str(exc)
        return None

    assert raised("a") == raised("b") == "miss while a and b played"
    assert raised("a") is None and raised("d") is None
    assert raised(None) == "miss of c, after c had ended"  # the run stops on it at the end
    assert raised(None) is None
