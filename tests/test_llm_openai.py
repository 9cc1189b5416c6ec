"""OpenAILLM with the real openai client against the local OpenAI-compatible server.

The wire (messages, tools, structured output), retries, limits, the cache, budgets and settings.
Retries wait 10 ms here (`retry_backoff_s`), so only Retry-After and timeouts take real time.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import platformdirs
import pytest
from fakes.openai_server import FakeOpenAIServer, Fault
from pydantic import BaseModel

from simulate.errors import ConfigError, LLMError
from simulate.llm import get_llm
from simulate.llm.cache import CompletionCache
from simulate.llm.openai import OpenAILLM, strict_schema
from simulate.llm.pool import LLMPool
from simulate.llm.settings import LLMSettings
from simulate.llm.usage import BudgetExceeded, Price, UsageMeter, estimate_cost, find_price
from simulate.schema import Message, ToolCall, Usage

KEY = "sk-test-6f1d2c0ffee-never-leak-me"
MODEL = "gpt-4o-mini"
HI = [Message(role="user", content="where is my order")]


class Verdict(BaseModel):
    ok: bool
    reason: str = ""


class Inner(BaseModel):
    code: str


class Nested(BaseModel):
    inner: Inner
    note: str | None = None


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def settings(server: FakeOpenAIServer, tmp_path: Path) -> LLMSettings:
    """Settings for the local server: short timeout, one quick retry, no cache unless asked."""
    return LLMSettings(
        base_url=server.base_url,
        api_key=KEY,
        timeout_s=2,
        max_retries=1,
        retry_backoff_s=0.01,
        cache_dir=tmp_path / "cache",
        use_cache=False,
    )


@pytest.fixture
async def llm(settings: LLMSettings) -> AsyncIterator[OpenAILLM]:
    llm = OpenAILLM(MODEL, settings=settings)
    yield llm
    await llm.aclose()


def with_changes(settings: LLMSettings, **changes: Any) -> LLMSettings:
    return LLMSettings.model_validate(
        {**settings.model_dump(), "api_key": settings.api_key, **changes}
    )


async def one_call(settings: LLMSettings, messages: list[Message] = HI, **kwargs: Any) -> Any:
    async with OpenAILLM(MODEL, settings=settings) as llm:
        return await llm.complete(messages, **kwargs)


# --- the wire ---------------------------------------------------------------------------------


async def test_plain_completion_and_usage_in_the_meter(
    server: FakeOpenAIServer, settings: LLMSettings
) -> None:
    meter = UsageMeter(prices={MODEL: Price(input_per_mtok=1.0, output_per_mtok=2.0)})
    llm = OpenAILLM(MODEL, settings=settings, role="target", meter=meter)
    messages = [Message(role="system", content="be brief"), *HI]

    completion = await llm.complete(messages, temperature=0.2, seed=7)
    await llm.aclose()

    assert completion.content == "echo: where is my order"
    assert (completion.model, completion.finish_reason, completion.cached) == (MODEL, "stop", False)
    assert (completion.prompt_tokens, completion.completion_tokens) == (6, 5)
    body = server.requests[0].body
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "where is my order"},
    ]
    assert (body["temperature"], body["seed"]) == (0.2, 7)
    assert server.requests[0].authorization == f"Bearer {KEY}"
    row = meter.rows()[("target", MODEL)]
    assert (row.calls, row.cached_calls, row.prompt_tokens, row.completion_tokens) == (1, 0, 6, 5)
    assert row.cost_usd == pytest.approx((6 * 1.0 + 5 * 2.0) / 1e6)
    assert meter.as_usage_list() == [
        Usage(
            role="target",
            model=MODEL,
            calls=1,
            prompt_tokens=6,
            completion_tokens=5,
            cost_usd=row.cost_usd,
        )
    ]


async def test_tool_calls_are_converted_both_ways(server: FakeOpenAIServer, llm: OpenAILLM) -> None:
    server.queue(
        {
            "tool_calls": [
                {"name": "lookup_order", "arguments": {"order": "12345"}},
                {"name": "broken", "arguments": '{"order": "123'},
            ]
        }
    )
    tool = {
        "name": "lookup_order",
        "description": "Find an order",
        "parameters": {"type": "object", "properties": {"order": {"type": "string"}}},
    }
    history = [
        *HI,
        Message(
            role="assistant",
            tool_calls=[
                ToolCall(id="call_a", name="lookup_order", arguments={"order": "1"}),
                ToolCall(name="note", arguments={"_raw": "not json"}),
            ],
        ),
        Message(role="tool", tool_call_id="call_a", content='{"status": "shipped"}'),
    ]

    completion = await llm.complete(history, tools=[tool])

    body = server.requests[0].body
    assert body["tools"] == [{"type": "function", "function": tool}]
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "lookup_order", "arguments": '{"order": "1"}'},
                },
                {
                    "id": "call_1_1",
                    "type": "function",
                    "function": {"name": "note", "arguments": "not json"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": '{"status": "shipped"}'},
    ]
    assert completion.finish_reason == "tool_calls"
    assert completion.content == ""
    assert [(c.name, c.arguments) for c in completion.tool_calls] == [
        ("lookup_order", {"order": "12345"}),
        ("broken", {"_raw": '{"order": "123'}),
    ]
    assert all(c.id and c.id.startswith("call_") for c in completion.tool_calls)


async def test_transport_options_reach_the_wire_as_create_would_send_them(
    server: FakeOpenAIServer, llm: OpenAILLM
) -> None:
    await llm.complete(
        HI,
        extra_headers={"X-Trace": "t-1"},
        extra_query={"api-version": "2024-06-01"},
        extra_body={"top_k": 3},
        timeout=5,
    )

    request = server.requests[0]
    assert request.headers["x-trace"] == "t-1"
    assert request.authorization == f"Bearer {KEY}"
    assert request.path.endswith("?api-version=2024-06-01")
    assert request.body["top_k"] == 3
    assert not {"extra_headers", "extra_query", "extra_body", "timeout"} & set(request.body)


async def test_a_runs_llms_share_one_client_that_the_pool_closes(
    server: FakeOpenAIServer, settings: LLMSettings
) -> None:
    pool = LLMPool(settings, UsageMeter())
    user, target = pool.get(f"openai:{MODEL}", "user"), pool.get(f"openai:{MODEL}", "target")
    await user.complete(HI)
    await target.complete(HI)
    client = user._client  # type: ignore[attr-defined]

    assert client is not None and client is target._client  # type: ignore[attr-defined]
    await user.aclose()
    assert not client.is_closed()  # the target still uses it
    await pool.aclose()
    assert client.is_closed()


# --- structured output ------------------------------------------------------------------------


async def test_structured_output_asks_for_a_strict_json_schema(
    server: FakeOpenAIServer, llm: OpenAILLM
) -> None:
    server.queue({"json": {"inner": {"code": "A1"}, "note": None}})

    completion = await llm.complete(HI, output_type=Nested)

    assert completion.parsed == Nested(inner=Inner(code="A1"))
    fmt = server.requests[0].body["response_format"]
    assert fmt["type"] == "json_schema"
    assert (fmt["json_schema"]["name"], fmt["json_schema"]["strict"]) == ("Nested", True)
    schema = fmt["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["inner", "note"]
    assert schema["$defs"]["Inner"]["additionalProperties"] is False
    assert "default" not in json.dumps(schema)


def test_a_schema_with_free_form_keys_is_not_made_strict() -> None:
    class Tags(BaseModel):
        tags: dict[str, str]

    assert strict_schema(Tags.model_json_schema()) is None
    assert strict_schema(Verdict.model_json_schema())["required"] == ["ok", "reason"]  # type: ignore[index]


async def test_without_json_schema_it_falls_back_to_json_mode_and_remembers(
    server: FakeOpenAIServer, llm: OpenAILLM
) -> None:
    server.supports_json_schema = False
    server.reply_with(lambda request: {"json": {"ok": True}})
    messages = [Message(role="system", content="judge the reply"), *HI]

    first = await llm.complete(messages, output_type=Verdict)
    second = await llm.complete(messages, output_type=Verdict)

    assert first.parsed == second.parsed == Verdict(ok=True)
    kinds = [r.body["response_format"]["type"] for r in server.requests]
    assert kinds == ["json_schema", "json_object", "json_object"]
    system = server.requests[1].body["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("judge the reply\n\n")
    assert '"ok"' in system["content"]
    assert llm.output_mode == "json_object"
    assert llm.meter.totals().calls == 2  # the refused request is not a call


async def test_plain_text_with_the_schema_when_json_mode_is_refused_too(
    server: FakeOpenAIServer, llm: OpenAILLM
) -> None:
    server.supports_json_schema = False

    def reply(request: dict[str, Any]) -> Any:
        if request.get("response_format"):
            return Fault.server_error(400)
        return "Sure! Here it is:\n```json\n" + json.dumps({"ok": False}) + "\n```"

    server.reply_with(reply)

    first = await llm.complete(HI, output_type=Verdict)
    second = await llm.complete(HI, output_type=Verdict)

    assert first.parsed == second.parsed == Verdict(ok=False)
    formats = [(r.body.get("response_format") or {}).get("type") for r in server.requests]
    assert formats == ["json_schema", "json_object", None, None]
    assert "JSON schema" in server.requests[2].body["messages"][0]["content"]
    assert llm.output_mode == "text"


async def test_an_invalid_reply_gets_one_repair_round(
    server: FakeOpenAIServer, llm: OpenAILLM
) -> None:
    server.queue(Fault.bad_json_content('{"ok": "perhaps'), {"json": {"ok": True, "reason": "r"}})

    completion = await llm.complete(HI, output_type=Verdict)

    assert completion.parsed == Verdict(ok=True, reason="r")
    assert server.count == 2
    repair = server.requests[1].body["messages"]
    assert repair[-2] == {"role": "assistant", "content": '{"ok": "perhaps'}
    assert repair[-1]["role"] == "user"
    assert "Invalid JSON" in repair[-1]["content"]
    # The answer's tokens are both requests' tokens.
    assert completion.prompt_tokens == 4 + sum(len(str(m["content"]).split()) for m in repair)


async def test_a_reply_that_still_does_not_fit_is_an_error_and_not_cached(
    server: FakeOpenAIServer, settings: LLMSettings
) -> None:
    server.reply_with(lambda request: {"json": {"ok": "maybe"}})
    cached = with_changes(settings, use_cache=True)

    with pytest.raises(LLMError, match=r"^reply does not fit Verdict: ok: Input should be"):
        await one_call(cached, output_type=Verdict)
    assert server.count == 2
    assert len(CompletionCache(cached.cache_dir)) == 0


# --- retries ----------------------------------------------------------------------------------


async def test_rate_limit_waits_out_retry_after(server: FakeOpenAIServer, llm: OpenAILLM) -> None:
    server.queue(Fault.rate_limit(retry_after=0.3), "finally")

    start = time.monotonic()
    completion = await llm.complete(HI)

    assert time.monotonic() - start >= 0.3
    assert completion.content == "finally"
    assert server.count == 2


@pytest.mark.parametrize(
    "fault",
    [
        Fault.server_error(500),
        Fault.hang(3),
        Fault.drop(),
        Fault.malformed(),
        Fault.malformed("<html>bad gateway</html>", content_type="text/html"),
    ],
    ids=["500", "hang", "drop", "cut-short-json", "html"],
)
async def test_a_transient_failure_is_retried(
    server: FakeOpenAIServer, settings: LLMSettings, fault: Fault
) -> None:
    server.queue(fault, "recovered")

    start = time.monotonic()
    completion = await one_call(with_changes(settings, timeout_s=0.3))

    assert completion.content == "recovered"
    assert server.count == 2
    assert time.monotonic() - start < 2.5


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.server_error(503), r"HTTP 503 \(The server had an error \(fake server\)\.\)"),
        (Fault.malformed(), "a 200 reply whose body is not JSON"),
        (Fault.hang(3), "timed out after 0.3 s"),
        (Fault.drop(), "connection failed"),
    ],
    ids=["503", "cut-short-json", "hang", "drop"],
)
async def test_exhausted_retries_are_one_line_naming_host_model_failure_and_attempts(
    server: FakeOpenAIServer, settings: LLMSettings, fault: Fault, expected: str
) -> None:
    server.reply_with(lambda request: fault)
    host = settings.base_url.split("//")[1].split("/")[0]  # type: ignore[union-attr]

    with pytest.raises(LLMError) as caught:
        await one_call(with_changes(settings, timeout_s=0.3))

    message = str(caught.value)
    assert message.startswith(f"{MODEL} at {host}: ")
    assert message.endswith(" after 2 attempts")
    assert re.search(expected, message)
    assert "\n" not in message
    assert KEY not in message
    assert server.count == 2


async def test_a_refused_key_is_not_retried_and_not_quoted(
    server: FakeOpenAIServer, settings: LLMSettings
) -> None:
    server.reply_with(lambda request: Fault.server_error(401))

    with pytest.raises(
        LLMError, match=r"HTTP 401 \(the endpoint refused the API key\) after 1 "
    ) as caught:
        await one_call(settings)

    assert caught.value.__cause__ is None
    assert server.count == 1


# --- limits -----------------------------------------------------------------------------------


async def test_requests_in_flight_are_bounded(
    server: FakeOpenAIServer, settings: LLMSettings
) -> None:
    server.latency_s = 0.1
    async with OpenAILLM(MODEL, settings=with_changes(settings, max_concurrency=2)) as llm:
        start = time.monotonic()
        replies = await asyncio.gather(
            *(llm.complete([Message(role="user", content=f"n {i}")]) for i in range(6))
        )

    assert time.monotonic() - start >= 0.3
    assert sorted(r.content for r in replies) == [f"echo: n {i}" for i in range(6)]


async def test_requests_per_minute_spreads_calls(
    server: FakeOpenAIServer, settings: LLMSettings
) -> None:
    async with OpenAILLM(MODEL, settings=with_changes(settings, requests_per_minute=600)) as llm:
        start = time.monotonic()
        await asyncio.gather(
            *(llm.complete([Message(role="user", content=f"n {i}")]) for i in range(4))
        )

    assert time.monotonic() - start >= 0.3 - 0.02
    assert server.count == 4


# --- cache ------------------------------------------------------------------------------------


async def test_a_cache_hit_makes_no_request_and_gives_the_same_completion(
    server: FakeOpenAIServer, settings: LLMSettings
) -> None:
    cached = with_changes(settings, use_cache=True)
    meter = UsageMeter()
    server.queue({"content": "first answer", "tool_calls": [{"name": "t", "arguments": {"a": 1}}]})
    async with OpenAILLM(MODEL, settings=cached, meter=meter) as llm:
        fresh = await llm.complete(HI, temperature=0, seed=1)
        again = await llm.complete(HI, temperature=0, seed=1)
        other_seed = await llm.complete(HI, temperature=0, seed=2)

    assert server.count == 2
    assert again.cached and not fresh.cached and not other_seed.cached
    assert {**vars(again), "cached": False} == vars(fresh)
    assert other_seed.content == "echo: where is my order"
    row = meter.rows()[("user", MODEL)]
    assert (row.calls, row.cached_calls, row.paid_calls) == (3, 1, 2)
    assert row.cost_usd == pytest.approx(
        estimate_cost(MODEL, fresh.prompt_tokens, fresh.completion_tokens, meter.prices)  # type: ignore[operator]
        + estimate_cost(MODEL, other_seed.prompt_tokens, other_seed.completion_tokens, meter.prices)
    )


async def test_the_cache_ignores_endpoint_and_key_and_keeps_structured_results(
    server: FakeOpenAIServer, settings: LLMSettings
) -> None:
    server.queue({"json": {"ok": True, "reason": "fine"}})
    first = await one_call(with_changes(settings, use_cache=True), output_type=Verdict)

    with FakeOpenAIServer() as elsewhere:
        moved = with_changes(
            settings, use_cache=True, base_url=elsewhere.base_url, api_key="sk-other"
        )
        again = await one_call(moved, output_type=Verdict)
        assert elsewhere.count == 0

    assert again.cached
    assert again.parsed == first.parsed == Verdict(ok=True, reason="fine")


async def test_the_key_is_nowhere_in_the_cache_settings_or_errors(
    server: FakeOpenAIServer, settings: LLMSettings
) -> None:
    cached = with_changes(settings, use_cache=True)
    await one_call(cached, tools=[{"name": "t", "parameters": {"type": "object"}}])
    server.queue({"json": {"ok": True}})
    await one_call(cached, output_type=Verdict)
    server.reply_with(lambda request: Fault.server_error(500))
    with pytest.raises(LLMError) as caught:
        await one_call(cached, messages=[Message(role="user", content="fails")])

    files = list(Path(cached.cache_dir).iterdir())
    assert files
    for file in files:
        assert KEY.encode() not in file.read_bytes()
    assert KEY not in str(caught.value)
    assert KEY not in repr(cached) + str(cached) + cached.model_dump_json()
    assert "api_key" not in cached.model_dump()


async def test_replay_only_answers_from_the_cache_and_fails_on_a_miss(
    server: FakeOpenAIServer, settings: LLMSettings
) -> None:
    await one_call(with_changes(settings, use_cache=True))
    # No key and OpenAI's endpoint: replaying must not need either.
    replay = with_changes(settings, replay_only=True, use_cache=True, base_url=None, api_key=None)

    hit = await one_call(replay)
    with pytest.raises(
        LLMError,
        match=rf"^cache miss in --replay-only mode for model {MODEL} \(request \w{{12}}\)$",
    ):
        await one_call(replay, messages=[Message(role="user", content="never asked")])

    assert hit.cached and hit.content == "echo: where is my order"
    assert server.count == 1


async def test_many_coroutines_share_the_cache(
    server: FakeOpenAIServer, settings: LLMSettings
) -> None:
    cached = with_changes(settings, use_cache=True)
    asks = [[Message(role="user", content=f"question {i}")] for i in range(40)]
    async with OpenAILLM(MODEL, settings=cached) as llm:
        first = await asyncio.gather(*(llm.complete(m) for m in asks))
        again = await asyncio.gather(*(llm.complete(m) for m in asks))

    assert server.count == 40
    assert all(c.cached for c in again)
    assert [c.content for c in again] == [c.content for c in first]


def test_processes_create_and_write_cache_files_at_once(tmp_path: Path) -> None:
    script = (
        "import sys, time; from pathlib import Path\n"
        "from simulate.llm.cache import CompletionCache\n"
        "folder, name = Path(sys.argv[1]), sys.argv[2]\n"
        "(folder / f'ready-{name}').touch()\n"
        "while not (folder / 'go').exists(): time.sleep(0.001)\n"
        "for n in range(100):  # both create each file at about the same moment\n"
        "    cache = CompletionCache(folder / str(n))\n"
        "    for i in range(5): cache.put(f'{name}-{i}', {'content': str(i)})\n"
    )
    names = ("a", "b")
    command = [sys.executable, "-c", script, str(tmp_path)]
    workers = [subprocess.Popen([*command, name], stderr=subprocess.PIPE) for name in names]
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"ready-{n}").exists() for n in names):
        assert time.monotonic() < deadline and all(w.poll() is None for w in workers)
        time.sleep(0.005)
    (tmp_path / "go").touch()
    errors = [w.communicate(timeout=30)[1] for w in workers]

    assert [w.returncode for w in workers] == [0, 0], errors
    for n in range(100):
        cache = CompletionCache(tmp_path / str(n))
        assert len(cache) == 10
        assert cache.get(f"b-{n % 5}") == {"content": str(n % 5)}


# --- budgets and prices -----------------------------------------------------------------------


async def test_max_calls_stops_paid_calls_but_not_cached_ones(
    server: FakeOpenAIServer, settings: LLMSettings
) -> None:
    prices = {MODEL: Price(input_per_mtok=3.0, output_per_mtok=7.0)}
    meter = UsageMeter(prices, max_calls=2)
    async with OpenAILLM(
        MODEL, settings=with_changes(settings, use_cache=True), meter=meter
    ) as llm:
        await llm.complete([Message(role="user", content="one")])
        await llm.complete([Message(role="user", content="two words")])
        with pytest.raises(BudgetExceeded, match="max_calls"):
            await llm.complete([Message(role="user", content="three")])
        replayed = await llm.complete([Message(role="user", content="one")])

    assert isinstance(BudgetExceeded("x"), LLMError)
    assert replayed.cached
    assert server.count == 2
    totals = meter.totals()
    assert (totals.calls, totals.cached_calls) == (3, 1)
    # prompt 1 + 2 words, completion "echo: one" + "echo: two words" = 2 + 3 words
    assert totals.cost_usd == pytest.approx((3 * 3.0 + 5 * 7.0) / 1e6)


async def test_max_cost_stops_once_spent_and_needs_prices(
    server: FakeOpenAIServer, settings: LLMSettings
) -> None:
    meter = UsageMeter({MODEL: Price(input_per_mtok=1e5, output_per_mtok=1e5)}, max_cost_usd=0.5)
    async with OpenAILLM(MODEL, settings=settings, meter=meter) as llm:
        await llm.complete(HI)
        with pytest.raises(BudgetExceeded, match="max_cost_usd"):
            await llm.complete(HI)
    assert server.count == 1

    unpriced = UsageMeter({}, max_cost_usd=1.0)
    with pytest.raises(ConfigError, match="no price for model 'local-llama'"):
        await OpenAILLM("local-llama", settings=settings, meter=unpriced).complete(HI)
    assert server.count == 1


def test_prices_built_in_snapshots_and_estimates() -> None:
    prices = UsageMeter().prices
    assert {"gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-nano", "o4-mini", "gpt-5"} <= set(prices)
    assert find_price("gpt-4o-mini-2024-07-18", prices) == prices["gpt-4o-mini"]
    assert find_price("my-model", prices) is None
    custom = {"m": Price(input_per_mtok=2, output_per_mtok=4)}
    assert estimate_cost("m", 1_000_000, 500_000, custom) == pytest.approx(4.0)
    assert estimate_cost("unknown", 10, 10, custom) is None


# --- settings ---------------------------------------------------------------------------------


def test_settings_from_the_environment(tmp_path: Path) -> None:
    env = {
        "OPENAI_API_KEY": "sk-env",
        "OPENAI_BASE_URL": "http://localhost:8000/v1",
        "SIMULATE_CACHE_DIR": str(tmp_path),
    }

    settings = LLMSettings.resolve(env=env)

    assert settings.client_key() == "sk-env"
    assert (settings.base_url, settings.host, settings.cache_dir) == (
        "http://localhost:8000/v1",
        "localhost:8000",
        tmp_path,
    )
    assert (settings.timeout_s, settings.max_retries, settings.max_concurrency) == (60, 5, 64)
    assert (settings.use_cache, settings.replay_only, settings.requests_per_minute) == (
        True,
        False,
        None,
    )
    default = LLMSettings.resolve(env={})
    assert default.cache_dir == platformdirs.user_cache_path("simulate", appauthor=False)
    assert default.endpoint == "https://api.openai.com/v1"


def test_settings_from_a_config_file_then_explicit_values(tmp_path: Path) -> None:
    config = tmp_path / "simulate.yaml"
    config.write_text(
        "base_url: http://vllm:8000/v1\n"
        "api_key_env: VLLM_KEY\n"
        "timeout_s: 5\n"
        "max_concurrency: 8\n"
        "requests_per_minute: 120\n"
        "prices:\n"
        "  llama: {input_per_mtok: 0, output_per_mtok: 0}\n"
        "models: {user: llama, judge: gpt-4o}\n"
    )
    env = {"OPENAI_API_KEY": "sk-env", "OPENAI_BASE_URL": "http://env/v1", "VLLM_KEY": "sk-file"}

    from_file = LLMSettings.resolve(config, env=env)
    explicit = LLMSettings.resolve(
        config,
        env=env,
        base_url="http://flag:1/v1",
        api_key="sk-flag",
        timeout_s=None,  # not given: the file's value stays
        models={"user": "gpt-4.1"},
        prices={"gpt-4o": {"input_per_mtok": 1, "output_per_mtok": 1}},
    )

    assert (from_file.base_url, from_file.client_key()) == ("http://vllm:8000/v1", "sk-file")
    assert (from_file.timeout_s, from_file.max_concurrency, from_file.requests_per_minute) == (
        5,
        8,
        120,
    )
    assert from_file.prices["llama"] == Price(input_per_mtok=0, output_per_mtok=0)
    assert "gpt-4o-mini" in from_file.prices  # built-in prices stay under the file's
    assert from_file.models == {"user": "llama", "judge": "gpt-4o"}
    assert (explicit.base_url, explicit.client_key(), explicit.timeout_s) == (
        "http://flag:1/v1",
        "sk-flag",
        5,
    )
    assert explicit.models == {"user": "gpt-4.1", "judge": "gpt-4o"}
    assert explicit.prices["gpt-4o"].input_per_mtok == 1
    assert "llama" in explicit.prices


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "base_url: http://x/v1\napi_key: sk-literal-in-file\n",
            r"simulate\.yaml:2: `api_key` is not allowed in a config file.*api_key_env",
        ),
        ("api_key_env: NOT_SET_ANYWHERE\n", r":1: api_key_env names 'NOT_SET_ANYWHERE', but"),
        ("timeout: 5\n", r":1: unknown setting 'timeout' \(did you mean 'timeout_s'\?\)"),
        ("max_retries: -1\n", r":1: max_retries: Input should be greater than or equal to 0"),
        ("models: {critic: gpt-4o}\n", r":1: models\.critic: Input should be 'user'"),
        ("- a list\n", r"a mapping of settings"),
    ],
    ids=["literal-key", "unset-env", "unknown", "range", "role", "list"],
)
def test_bad_config_files(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "simulate.yaml"
    config.write_text(text)

    with pytest.raises(ConfigError, match=message) as caught:
        LLMSettings.resolve(config, env={})

    assert "sk-literal-in-file" not in str(caught.value)


def test_replay_only_needs_the_cache() -> None:
    with pytest.raises(ConfigError, match="replay_only"):
        LLMSettings.resolve(env={}, replay_only=True, use_cache=False)


async def test_a_missing_key_for_openai_is_a_config_error_at_the_first_call(
    tmp_path: Path,
) -> None:
    settings = LLMSettings.resolve(env={}, cache_dir=tmp_path, use_cache=False)
    llm = get_llm(f"openai:{MODEL}", settings=settings)  # no client, no error yet

    with pytest.raises(ConfigError, match=r"^no API key: set OPENAI_API_KEY"):
        await llm.complete(HI)


async def test_a_local_endpoint_without_a_key_gets_a_placeholder(
    server: FakeOpenAIServer, settings: LLMSettings
) -> None:
    await one_call(with_changes(settings, api_key=None))

    assert server.requests[0].authorization == "Bearer not-needed"


@pytest.mark.parametrize(
    ("flag", "given", "expected"),
    [
        ("--judge", "gpt-4o-mini", "gpt-4o-mini"),
        ("--judge", "llm:gpt-4o-mini", "gpt-4o-mini"),
        ("--judge", "openai:gpt-4o-mini", "openai:gpt-4o-mini"),
        ("--enrich", "llm:fake:echo", "fake:echo"),
        ("--user llm:", "llama3.1:8b", "llama3.1:8b"),  # Ollama names carry a colon
    ],
)
def test_every_role_flag_takes_a_model_in_three_forms(flag, given, expected):
    from simulate.llm import model_spec, split_spec

    assert model_spec(flag, given) == expected
    assert split_spec("llama3.1:8b") == ("openai", "llama3.1:8b")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("llm:", "--judge 'llm:': name a model"),
        ("fake:", "--judge 'fake:': name a model after 'fake':"),
        ("openia:gpt-4o", "unknown model backend 'openia' (did you mean 'openai'?)"),
        (None, "--judge MODEL is required"),
    ],
)
def test_a_role_flag_without_a_model_is_one_error(given, message):
    from simulate.errors import ConfigError
    from simulate.llm import model_spec

    with pytest.raises(ConfigError, match=re.escape(message)):
        model_spec("--judge", given)


def test_users_take_a_bare_model_and_catch_misspelt_kinds():
    from simulate.errors import ConfigError
    from simulate.users import llm_model, needs_llm

    assert llm_model("llm:gpt-4o-mini") == llm_model("gpt-4o-mini") == "gpt-4o-mini"
    assert llm_model("openai:gpt-4o") == "openai:gpt-4o"
    assert not needs_llm("agenda") and not needs_llm("scripted")
    with pytest.raises(ConfigError, match="did you mean 'agenda'"):
        needs_llm("agendaa")
