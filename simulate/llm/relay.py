"""The agent's own model requests, forwarded as they are through Simulate's LLM layer.

    relayed = await forward(llm, "chat/completions", body, on_usage)

``llm`` is the run's `OpenAILLM` for the model the request names, in role `agent`: the request
goes to that role's endpoint under its limits and retries, spends from the run's budget, is
counted by the run's meter, and is cached by a hash of the request (the API and the JSON body;
not the key, not the endpoint), so a `--replay-only` run answers it from the cache. The body is
sent and the reply returned unchanged; a stream (`"stream": true`) is relayed event by event as
it arrives, and stored whole once it has ended.

A chat completion stream is asked for with `stream_options.include_usage`, so that its tokens
can be counted; the usage-only last event is left out of what the agent gets unless it asked
for usage itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from simulate.llm.cache import CacheMiss, request_key
from simulate.llm.openai import OpenAILLM, is_chat_completion

Api = Literal["chat/completions", "responses"]
"""The OpenAI APIs the relay forwards (paths under the endpoint's base URL)."""


def _is_response(data: Any) -> bool:
    """Whether a 200 reply's JSON is a Responses API response."""
    return isinstance(data, dict) and isinstance(data.get("output"), list)


#: API -> whether a 200 reply's JSON is a reply of that API (else it is retried).
APIS: dict[Api, Callable[[Any], bool]] = {
    "chat/completions": is_chat_completion,
    "responses": _is_response,
}

UsageSink = Callable[[int, int], None]
"""Told (prompt tokens, completion tokens) once a forwarded call has finished, cached or not."""

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


@dataclass
class Relayed:
    """A forwarded call's answer: a JSON body, or a stream of server-sent events."""

    key: str
    """The request's cache key (its hash)."""
    body: Any = None
    """The reply's JSON, for a call that does not stream."""
    events: AsyncIterator[bytes] | None = None
    """The stream's events, each a complete `data: ...` block, for a call that streams."""
    cached: bool = False
    """Answered from the cache: no request was made."""


async def forward(llm: OpenAILLM, api: Api, body: dict[str, Any], on_usage: UsageSink) -> Relayed:
    """Answer one request of the agent, from the cache or from ``llm``'s endpoint.

    Raises:
        CacheMiss: replaying only, and the request is not in the cache.
        BudgetExceeded: the run's budget is spent.
        LLMError: the endpoint failed after retries or refused the request; a refused
            request's `__cause__` is the openai error carrying the endpoint's status and body.
    """
    key = request_key({"api": api, "body": body})
    streaming = bool(body.get("stream"))
    strip_usage = streaming and api == "chat/completions" and not _asks_for_usage(body)
    cache = llm.cache
    record = cache.get(key) if cache is not None else None
    if record is not None and record.get("stream") == streaming:
        tokens = record["prompt_tokens"], record["completion_tokens"]
        llm.meter.record(llm.role, llm.model, *tokens, cached=True)
        on_usage(*tokens)
        if streaming:
            return Relayed(key, events=_replay(record["events"], strip_usage), cached=True)
        return Relayed(key, body=record["body"], cached=True)
    if llm.settings.replay_only:
        raise CacheMiss(
            f"cache miss in --replay-only mode for the agent's call to {llm.model}"
            f" (request {key[:12]})"
        )
    await llm.meter.admit(llm.model, llm.role)
    if streaming:
        upstream = body
        if strip_usage:
            options = {**(body.get("stream_options") or {}), "include_usage": True}
            upstream = {**body, "stream_options": options}
        events = _relay(llm, api, upstream, key, strip_usage, on_usage)
        await anext(events)  # open the stream: its errors are raised here, before any reply
        return Relayed(key, events=events)
    try:
        reply = await llm.post(f"/{api}", body, APIS[api])
    except BaseException:
        llm.meter.release()
        raise
    tokens = usage_of(reply) or (0, 0)
    llm.meter.record(llm.role, llm.model, *tokens)
    on_usage(*tokens)
    if cache is not None:
        cache.put(key, {"stream": False, "body": reply, **_token_fields(tokens)})
    return Relayed(key, body=reply)


async def _relay(
    llm: OpenAILLM,
    api: Api,
    body: dict[str, Any],
    key: str,
    strip_usage: bool,
    on_usage: UsageSink,
) -> AsyncIterator[bytes]:
    """The stream's events as they arrive (first an empty chunk once it opened); metered and
    cached when it ends, its reservation given back when it is cut short."""
    events: list[str] = []
    finished = False
    try:
        async with llm.open_stream(f"/{api}", body) as response:
            yield b""
            buffer = b""
            async for data in response.aiter_bytes():
                buffer += data
                *complete, buffer = _EVENT_END.split(buffer)
                arrived = [raw.decode("utf-8", errors="replace") for raw in complete]
                events += arrived
                chunk = _join(arrived, strip_usage)
                if chunk:  # what came in one read goes out in one write
                    yield chunk
            if buffer.strip():
                events.append(buffer.decode("utf-8", errors="replace"))
                yield buffer + b"\n\n"
            finished = True
    finally:
        if not finished:
            llm.meter.release()
    tokens = _stream_usage(events)
    llm.meter.record(llm.role, llm.model, *tokens)
    on_usage(*tokens)
    if llm.cache is not None:
        llm.cache.put(key, {"stream": True, "events": events, **_token_fields(tokens)})


async def _replay(events: Sequence[str], strip_usage: bool) -> AsyncIterator[bytes]:
    """A stored stream's events, as they were relayed, at once."""
    yield _join(events, strip_usage)


def _join(events: Sequence[str], strip_usage: bool) -> bytes:
    """Events as the stream's bytes, the usage-only one left out when asked."""
    kept = [e for e in events if not (strip_usage and _usage_only(e))]
    return "".join(f"{event}\n\n" for event in kept).encode()


def _asks_for_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def _data(event: str) -> Iterator[Any]:
    """The JSON of an event's `data:` lines (nothing for `[DONE]`, comments, or bad JSON)."""
    lines = [line[5:].removeprefix(" ") for line in event.splitlines() if line.startswith("data:")]
    if not lines or lines == ["[DONE]"]:
        return
    try:
        yield json.loads("\n".join(lines))
    except ValueError:
        return


def _usage_only(event: str) -> bool:
    """Whether an event is the chunk that only carries usage (no choices)."""
    if "[]" not in event:  # cheap: most chunks have choices, so no empty list
        return False
    return any(
        isinstance(d, dict) and d.get("choices") == [] and isinstance(d.get("usage"), dict)
        for d in _data(event)
    )


def usage_of(data: Any) -> tuple[int, int] | None:
    """(prompt, completion) tokens of a reply, a chunk or a Responses event, when it says."""
    if not isinstance(data, dict):
        return None
    usage = data.get("usage")
    if not isinstance(usage, dict) and isinstance(data.get("response"), dict):
        usage = data["response"].get("usage")  # response.completed
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens")) or 0
    completion = usage.get("completion_tokens", usage.get("output_tokens")) or 0
    return int(prompt), int(completion)


def _stream_usage(events: Sequence[str]) -> tuple[int, int]:
    """The tokens the last usage-bearing event of a stream reports, or none."""
    for event in reversed(events):
        for data in _data(event):
            tokens = usage_of(data)
            if tokens is not None:
                return tokens
    return 0, 0


def _token_fields(tokens: tuple[int, int]) -> dict[str, int]:
    return {"prompt_tokens": tokens[0], "completion_tokens": tokens[1]}
