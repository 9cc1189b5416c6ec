"""The fake OpenAI server, driven by the real `openai` client over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from fakes.openai_server import FakeOpenAIServer, Fault, count_tokens

USER = [{"role": "user", "content": "where is my order"}]
SCHEMA_FORMAT: Any = {
    "type": "json_schema",
    "json_schema": {
        "name": "verdict",
        "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
        "strict": True,
    },
}


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def client(server: FakeOpenAIServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="test-key", max_retries=0) as client:
        yield client


def ask(client: openai.OpenAI, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model=kwargs.pop("model", "gpt-4o-mini"), messages=kwargs.pop("messages", USER), **kwargs
    )


def test_echo_completion_with_usage_and_recorded_request(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    messages = [{"role": "system", "content": "be brief"}, *USER]

    completion = ask(client, model="my-model", messages=messages)

    assert completion.object == "chat.completion"
    assert completion.model == "my-model"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "echo: where is my order"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (6, 5)
    assert completion.usage.total_tokens == 11
    assert server.count == 1
    request = server.requests[0]
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.body["messages"] == messages
    assert request.authorization == "Bearer test-key"


def test_tool_calls_are_parsed_by_the_client(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.queue({"tool_calls": [{"name": "lookup_order", "arguments": {"order": "12345"}}]})
    tools: Any = [{"type": "function", "function": {"name": "lookup_order", "parameters": {}}}]

    completion = ask(client, tools=tools)

    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    call = message.tool_calls[0]
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "lookup_order"
    assert json.loads(call.function.arguments) == {"order": "12345"}
    assert server.requests[0].body["tools"] == tools


def test_json_schema_reply_is_the_content(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.reply_with(lambda request: {"json": {"ok": request["response_format"]["type"] != ""}})

    completion = ask(client, response_format=SCHEMA_FORMAT)

    assert json.loads(completion.choices[0].message.content) == {"ok": True}
    assert server.requests[0].body["response_format"] == SCHEMA_FORMAT


def test_unsupported_json_schema_is_a_bad_request_and_keeps_the_queue(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.supports_json_schema = False
    server.queue({"json": {"ok": False}})

    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, response_format=SCHEMA_FORMAT)
    fallback = ask(client, response_format={"type": "json_object"})

    assert caught.value.param == "response_format"
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert json.loads(fallback.choices[0].message.content) == {"ok": False}
    assert server.count == 2


def test_rate_limit_carries_retry_after(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.queue(Fault.rate_limit(retry_after=2.5))

    with pytest.raises(openai.RateLimitError) as caught:
        ask(client)

    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "2.5"
    assert caught.value.code == "rate_limit_exceeded"


def test_client_retries_after_the_rate_limit_delay(server: FakeOpenAIServer) -> None:
    server.queue(Fault.rate_limit(retry_after=0.2), "finally")
    start = time.monotonic()
    with openai.OpenAI(base_url=server.base_url, api_key="test-key", max_retries=1) as client:
        completion = ask(client)

    assert completion.choices[0].message.content == "finally"
    assert time.monotonic() - start >= 0.2
    assert server.count == 2
    assert server.pending == 0


@pytest.mark.parametrize("status", [500, 503])
def test_server_error(server: FakeOpenAIServer, client: openai.OpenAI, status: int) -> None:
    server.queue(Fault.server_error(status))

    with pytest.raises(openai.InternalServerError) as caught:
        ask(client)

    assert caught.value.status_code == status


def test_hang_past_the_client_timeout_and_stop_does_not_wait_for_it() -> None:
    start = time.monotonic()
    with FakeOpenAIServer() as server:
        server.queue(Fault.hang(10))
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=0.2)
        with client, pytest.raises(openai.APITimeoutError):
            ask(client)

    assert time.monotonic() - start < 1.0


def test_hang_then_answers(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.queue(Fault.hang(0.05, then="late"))

    assert ask(client).choices[0].message.content == "late"


def test_malformed_json_body_surfaces_as_a_json_decode_error(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    # The client does not wrap this: callers must catch ValueError themselves.
    server.queue(Fault.malformed())

    with pytest.raises(json.JSONDecodeError):
        ask(client)


def test_html_body_comes_back_as_a_string_not_a_completion(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    # A proxy's HTML page with status 200: the client returns the text without raising.
    server.queue(Fault.malformed("<html>bad gateway</html>", content_type="text/html"))

    assert ask(client) == "<html>bad gateway</html>"


def test_drop_is_a_connection_error(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.queue(Fault.drop())

    with pytest.raises(openai.APIConnectionError) as caught:
        ask(client)

    assert not isinstance(caught.value, openai.APITimeoutError)
    assert ask(client).choices[0].message.content == "echo: where is my order"


def test_bad_json_content_is_a_valid_envelope(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.queue(Fault.bad_json_content())

    content = ask(client, response_format=SCHEMA_FORMAT).choices[0].message.content

    with pytest.raises(json.JSONDecodeError):
        json.loads(content)


def test_queue_comes_first_then_the_reply_function_then_reset(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.queue("one", {"content": "two", "finish_reason": "length"})
    server.reply_with(lambda request: f"fn saw {len(request['messages'])} message(s)")

    replies = [ask(client).choices[0] for _ in range(3)]

    assert [c.message.content for c in replies] == ["one", "two", "fn saw 1 message(s)"]
    assert [c.finish_reason for c in replies] == ["stop", "length", "stop"]
    assert server.count == 3
    server.reset()
    assert (server.count, server.pending) == (0, 0)
    assert ask(client).choices[0].message.content == "echo: where is my order"


def test_reply_function_can_return_a_fault(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.reply_with(lambda request: Fault.server_error())

    with pytest.raises(openai.InternalServerError):
        ask(client)


def test_a_broken_reply_is_a_500_that_names_the_mistake(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.queue({"text": "oops"})

    with pytest.raises(openai.InternalServerError, match="unknown reply keys"):
        ask(client)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": USER}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": USER, "stream": True}, "stream"),
    ],
)
def test_invalid_requests_get_the_openai_error_shape(
    client: openai.OpenAI, body: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/chat/completions", body=body, cast_to=object)

    assert caught.value.param == param
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]


def test_models_and_unknown_paths(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini"]
    with pytest.raises(openai.NotFoundError):
        client.post("/embeddings", body={}, cast_to=object)
    assert [r.method for r in server.requests] == ["GET", "POST"]


async def test_async_client_requests_are_served_concurrently(server: FakeOpenAIServer) -> None:
    server.latency_s = 0.2
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test-key", max_retries=0)

    start = time.monotonic()
    async with client:
        completions = await asyncio.gather(
            *(
                client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": f"n {i}"}]
                )
                for i in range(20)
            )
        )

    assert time.monotonic() - start < 0.8
    assert sorted(c.choices[0].message.content for c in completions) == sorted(
        f"echo: n {i}" for i in range(20)
    )
    assert server.count == 20


def test_count_tokens_is_words() -> None:
    assert count_tokens("  echo: where is\nmy order ") == 5
