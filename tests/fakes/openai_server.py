"""A local OpenAI-compatible server on 127.0.0.1, served from a thread, for tests of the wire.

    with FakeOpenAIServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test-key")
        server.queue("hi", Fault.rate_limit(1.0))         # answered first, in order
        server.reply_with(lambda request: {"json": {"ok": True}})  # then this, for every request
        server.requests[0].body, server.requests[0].authorization, server.count

A reply is a string (the content), a dict with any of `content`, `json` (serialized as the
content), `tool_calls` (`[{"name", "arguments"}]`) and `finish_reason`, or a `Fault`. Without a
reply function the server echoes: "echo: <last user message>". Usage counts words
(`count_tokens`) so tests can assert totals. Served: `POST /v1/chat/completions`,
`POST /v1/responses` (the Responses API: text and function calls) and `GET /v1/models`; errors
use the OpenAI error shape. Streaming (`"stream": true`, server-sent events the way OpenAI
sends them, with `stream_options.include_usage`) is refused until `supports_streaming` is set.
A reply function gets the request's JSON; for the Responses API, `messages` is added to it
(built from `instructions` and `input`) so one function can answer both.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, TypeAlias

FaultKind = Literal["rate_limit", "server_error", "hang", "malformed", "drop", "bad_json_content"]
CUT_SHORT = '{"id": "chatcmpl-cut-short", "choi'
REPLY_KEYS = frozenset({"content", "json", "tool_calls", "finish_reason"})


@dataclass(frozen=True)
class Fault:
    """A failure the server acts out instead of a reply; build one with the class methods."""

    kind: FaultKind
    status: int = 200
    retry_after: float | None = None
    seconds: float = 0.0
    then: Reply | None = None
    body: str = ""
    content_type: str = "application/json"

    @classmethod
    def rate_limit(cls, retry_after: float = 1.0) -> Fault:
        """HTTP 429 with a `Retry-After` header in seconds."""
        return cls("rate_limit", status=429, retry_after=retry_after)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        """An HTTP 5xx with an OpenAI error body."""
        return cls("server_error", status=status)

    @classmethod
    def hang(cls, seconds: float, then: Reply | None = None) -> Fault:
        """Sleep `seconds`, then answer `then` (default: the reply function's answer).

        The queue is never consumed after the sleep, so retries that arrive meanwhile get the
        next queued item.
        """
        return cls("hang", seconds=seconds, then=then)

    @classmethod
    def malformed(
        cls,
        body: str = '{"id": "chatcmpl-cut-short", "choi',
        content_type: str = "application/json",
    ) -> Fault:
        """HTTP 200 with a body that is not JSON (e.g. a proxy's HTML page with "text/html")."""
        return cls("malformed", body=body, content_type=content_type)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without sending a response."""
        return cls("drop")

    @classmethod
    def bad_json_content(cls, content: str = '{"answer": "unfinished') -> Fault:
        """A valid completion whose message content is not valid JSON."""
        return cls("bad_json_content", body=content)


Reply: TypeAlias = "str | dict[str, Any] | Fault"
ReplyFn: TypeAlias = Callable[[dict[str, Any]], Reply]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names in lower case."""
    body: Any
    """The parsed JSON body; None for a GET or a body that is not JSON."""

    @property
    def authorization(self) -> str | None:
        """The `Authorization` header as sent, e.g. "Bearer test-key"."""
        return self.headers.get("authorization")


def count_tokens(text: str) -> int:
    """The fake's token estimate: whitespace-separated words."""
    return len(text.split())


def text_of(content: Any) -> str:
    """The text of a message's content: a string, a list of parts, or None."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def echo(request: dict[str, Any]) -> Reply:
    """The default reply: "echo: " and the last user message."""
    users = [m for m in request["messages"] if m.get("role") == "user"]
    return "echo: " + (text_of(users[-1].get("content")) if users else "")


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False
    content_type: str = "application/json"


_DROP = _Answer(0, b"", drop=True)


def _error(
    status: int,
    message: str,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> _Answer:
    error = {"message": message, "type": type_, "param": param, "code": code}
    return _Answer(status, json.dumps({"error": error}).encode(), headers)


def _missing(param: str) -> _Answer:
    return _error(
        400,
        f"Missing required parameter: {param!r}.",
        param=param,
        code="missing_required_parameter",
    )


class FakeOpenAIServer:
    """An OpenAI-compatible chat completions endpoint whose replies tests program."""

    def __init__(self, models: Sequence[str] = ("gpt-4o-mini",)) -> None:
        self.models = list(models)
        """What `GET /v1/models` lists."""
        self.supports_json_schema = True
        """False: answer `response_format: json_schema` with HTTP 400, like servers without it."""
        self.latency_s = 0.0
        """Seconds to wait before every answer."""
        self.supports_streaming = False
        """True: answer `"stream": true` with server-sent events; False: with HTTP 400."""
        self.requests: list[RecordedRequest] = []
        self.usage: list[tuple[str, int, int]] = []
        """(model, prompt tokens, completion tokens) of every completion answered, in order."""
        self._reply: ReplyFn = echo
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.stopping = self._stopping
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """The URL to give an OpenAI client, e.g. http://127.0.0.1:54321/v1."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def count(self) -> int:
        """How many requests arrived, of any kind."""
        with self._lock:
            return len(self.requests)

    @property
    def pending(self) -> int:
        """How many queued replies are still unused."""
        with self._lock:
            return len(self._queue)

    def reply_with(self, fn: ReplyFn | None) -> FakeOpenAIServer:
        """Answer with `fn(request_json)` once the queue is empty; None restores the echo."""
        self._reply = fn or echo
        return self

    def queue(self, *replies: Reply) -> FakeOpenAIServer:
        """Answer the next requests with these, in order, before the reply function."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def reset(self) -> None:
        """Forget requests and queued replies; echo again, with no latency and json_schema on."""
        with self._lock:
            self.requests.clear()
            self.usage.clear()
            self._queue.clear()
        self._reply = echo
        self.supports_json_schema = True
        self.supports_streaming = False
        self.latency_s = 0.0

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hanging answers are cut short and open connections closed."""
        self._stopping.set()
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> _Answer:
        """What to send back for one request; records it first."""
        body: Any = None
        if raw:
            with contextlib.suppress(ValueError):
                body = json.loads(raw)
        with self._lock:
            self.requests.append(RecordedRequest(method, path, headers, body))
        if self.latency_s > 0 and self._stopping.wait(self.latency_s):
            return _DROP
        route = path.split("?")[0].rstrip("/")
        if (method, route) == ("GET", "/v1/models"):
            return self._models()
        if (method, route) == ("POST", "/v1/chat/completions"):
            return self._chat(body)
        if (method, route) == ("POST", "/v1/responses"):
            return self._responses(body)
        return _error(404, f"Unknown request URL: {method} {path}.", code="unknown_url")

    def _models(self) -> _Answer:
        data = [
            {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "fake"}
            for m in self.models
        ]
        return _Answer(200, json.dumps({"object": "list", "data": data}).encode())

    def _chat(self, body: Any) -> _Answer:
        if not isinstance(body, dict):
            return _error(400, "We could not parse the JSON body of your request.")
        invalid = self._validate(body)
        if invalid:
            return invalid
        return self._answer_with_reply(body)

    def _answer_with_reply(self, body: dict[str, Any]) -> _Answer:
        with self._lock:
            reply = self._queue.popleft() if self._queue else None
        try:
            return self._render(body, reply if reply is not None else self._reply(body))
        except Exception as exc:  # a bug in a test's reply: show it to the client, loudly
            return _error(500, f"fake server: bad reply: {exc!r}", type_="server_error")

    def _responses(self, body: Any) -> _Answer:
        if not isinstance(body, dict):
            return _error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body.get("model"), str) or not body["model"]:
            return _missing("model")
        if body.get("input") is None:
            return _missing("input")
        if body.get("stream") and not self.supports_streaming:
            return _error(400, "Streaming is not supported by the fake server.", param="stream")
        return self._answer_with_reply({**body, "messages": _input_messages(body)})

    def _validate(self, body: dict[str, Any]) -> _Answer | None:
        if not isinstance(body.get("model"), str) or not body["model"]:
            return _missing("model")
        messages = body.get("messages")
        if messages is None:
            return _missing("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "'messages' must be a non-empty array.", param="messages")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                return _missing(f"messages[{i}].role")
        if body.get("stream") and not self.supports_streaming:
            return _error(400, "Streaming is not supported by the fake server.", param="stream")
        for i, tool in enumerate(body.get("tools") or []):
            if not isinstance(tool, dict) or not isinstance(tool.get("function"), dict):
                return _missing(f"tools[{i}].function")
            if not tool["function"].get("name"):
                return _missing(f"tools[{i}].function.name")
        fmt = body.get("response_format")
        if fmt is None:
            return None
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind not in ("text", "json_object", "json_schema"):
            return _error(400, f"Invalid response_format type: {kind!r}.", param="response_format")
        if kind == "json_schema":
            if not self.supports_json_schema:
                return _error(
                    400,
                    "Invalid parameter: 'response_format' of type 'json_schema' is not supported"
                    " with this model.",
                    param="response_format",
                )
            schema = fmt.get("json_schema")
            if not isinstance(schema, dict) or not schema.get("name"):
                return _missing("response_format.json_schema.name")
        return None

    def _render(self, request: dict[str, Any], reply: Reply) -> _Answer:
        if isinstance(reply, Fault):
            return self._act(request, reply)
        if isinstance(reply, str):
            reply = {"content": reply}
        unknown = set(reply) - REPLY_KEYS
        if unknown:
            raise ValueError(f"unknown reply keys {sorted(unknown)}; use {sorted(REPLY_KEYS)}")
        if "json" in reply and "content" in reply:
            raise ValueError("a reply has 'content' or 'json', not both")
        content = json.dumps(reply["json"]) if "json" in reply else reply.get("content")
        return self._completion(request, content, reply.get("tool_calls") or [], reply)

    def _act(self, request: dict[str, Any], fault: Fault) -> _Answer:
        if fault.kind == "rate_limit":
            return _error(
                429,
                "Rate limit reached for requests (fake server).",
                type_="requests",
                code="rate_limit_exceeded",
                headers=(("Retry-After", f"{fault.retry_after:g}"),),
            )
        if fault.kind == "server_error":
            return _error(
                fault.status, "The server had an error (fake server).", type_="server_error"
            )
        if fault.kind == "hang":
            if self._stopping.wait(fault.seconds):
                return _DROP
            then = fault.then if fault.then is not None else self._reply(request)
            return self._render(request, then)
        if fault.kind == "malformed":
            return _Answer(200, fault.body.encode(), content_type=fault.content_type)
        if fault.kind == "drop":
            return _DROP
        return self._completion(request, fault.body, [], {})

    def _completion(
        self,
        request: dict[str, Any],
        content: str | None,
        tool_calls: list[dict[str, Any]],
        reply: dict[str, Any],
    ) -> _Answer:
        n = next(self._ids)
        calls = [_tool_call(call, f"call_{n}_{i}") for i, call in enumerate(tool_calls)]
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        finish_reason = reply.get("finish_reason", "tool_calls" if calls else "stop")
        prompt = sum(count_tokens(text_of(m.get("content"))) for m in request["messages"])
        completion = count_tokens(content or "") + sum(
            count_tokens(c["function"]["name"]) + count_tokens(c["function"]["arguments"])
            for c in calls
        )
        with self._lock:
            self.usage.append((request["model"], prompt, completion))
        if "input" in request:  # the Responses API
            return _response_answer(request, n, content, calls, prompt, completion)
        if request.get("stream"):
            return _chunks(request, n, content, calls, finish_reason, prompt, completion)
        body = {
            "id": f"chatcmpl-fake-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
        return _Answer(200, json.dumps(body).encode())


def _tool_call(call: dict[str, Any], default_id: str) -> dict[str, Any]:
    """A reply's `{"name", "arguments"}` in the wire shape; string arguments are sent as is."""
    arguments = call.get("arguments", {})
    return {
        "id": call.get("id", default_id),
        "type": "function",
        "function": {
            "name": call["name"],
            "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
        },
    }


def _input_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A Responses API request's `instructions` and `input` as chat messages."""
    messages = (
        [{"role": "system", "content": body["instructions"]}] if body.get("instructions") else []
    )
    items = body["input"]
    if isinstance(items, str):
        return [*messages, {"role": "user", "content": items}]
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message":
            content = item.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            messages.append({"role": item.get("role", "user"), "content": content})
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append(
                {"role": "tool", "content": output, "tool_call_id": item.get("call_id")}
            )
    return messages


def _sse(events: list[tuple[str | None, Any]]) -> _Answer:
    """Server-sent events, sent whole (clients read them as a stream all the same)."""
    text = ""
    for name, data in events:
        if name:
            text += f"event: {name}\n"
        text += f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
    return _Answer(200, text.encode(), content_type="text/event-stream")


def _chunks(
    request: dict[str, Any],
    n: int,
    content: str | None,
    calls: list[dict[str, Any]],
    finish_reason: str,
    prompt: int,
    completion: int,
) -> _Answer:
    """A chat completion as OpenAI streams it: role, content word by word, tool calls with
    their arguments in two pieces, the finish reason; usage last when asked for."""
    with_usage = bool((request.get("stream_options") or {}).get("include_usage"))
    head = {
        "id": f"chatcmpl-fake-{n}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request["model"],
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        body = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return {**body, "usage": None} if with_usage else body

    deltas = [{"role": "assistant", "content": ""}]
    words = (content or "").split(" ")
    deltas += [
        {"content": w if i == len(words) - 1 else w + " "} for i, w in enumerate(words) if content
    ]
    for i, call in enumerate(calls):
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        start = {"index": i, "id": call["id"], "type": "function"}
        deltas.append(
            {
                "tool_calls": [
                    {**start, "function": {"name": call["function"]["name"], "arguments": ""}}
                ]
            }
        )
        for part in (arguments[:half], arguments[half:]):
            deltas.append({"tool_calls": [{"index": i, "function": {"arguments": part}}]})
    events: list[tuple[str | None, Any]] = [(None, chunk(d)) for d in deltas]
    events.append((None, chunk({}, finish_reason)))
    if with_usage:
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        events.append((None, {**head, "choices": [], "usage": usage}))
    events.append((None, "[DONE]"))
    return _sse(events)


def _response_answer(
    request: dict[str, Any],
    n: int,
    content: str | None,
    calls: list[dict[str, Any]],
    prompt: int,
    completion: int,
) -> _Answer:
    """A Responses API response (a message, function calls), whole or as its events."""
    output: list[dict[str, Any]] = []
    if content:
        output.append(
            {
                "type": "message",
                "id": f"msg_fake_{n}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": content, "annotations": []}],
            }
        )
    for call in calls:
        output.append(
            {
                "type": "function_call",
                "id": f"fc_{call['id']}",
                "call_id": call["id"],
                "name": call["function"]["name"],
                "arguments": call["function"]["arguments"],
                "status": "completed",
            }
        )
    response = {
        "id": f"resp_fake_{n}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": request["model"],
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": request.get("tools") or [],
        "usage": {
            "input_tokens": prompt,
            "output_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }
    if not request.get("stream"):
        return _Answer(200, json.dumps(response).encode())
    pending = {**response, "status": "in_progress", "output": [], "usage": None}
    events: list[tuple[str | None, Any]] = [
        ("response.created", {"type": "response.created", "response": pending})
    ]
    for index, item in enumerate(output):
        if item["type"] == "message":
            for word in content.split(" ") if content else []:
                delta = {
                    "type": "response.output_text.delta",
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "delta": word + " ",
                }
                events.append((delta["type"], delta))
        done = {"type": "response.output_item.done", "output_index": index, "item": item}
        events.append((done["type"], done))
    events.append(("response.completed", {"type": "response.completed", "response": response}))
    return _sse([(name, {**data, "sequence_number": i}) for i, (name, data) in enumerate(events)])


class _HTTPServer(ThreadingHTTPServer):
    # Many clients connect at once in benchmarks; the default backlog of 5 drops SYNs.
    request_queue_size = 256
    stopping: threading.Event

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Connections torn down by a client timeout or by stop() are expected, not errors.
        if not self.stopping.is_set():
            super().handle_error(request, client_address)


def _handler(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real API, for pooled clients

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes: without this the body waits for the
            # client's delayed ACK of the headers, 40 ms a request.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with server._lock:
                server._connections.add(self.connection)

        def finish(self) -> None:
            with server._lock:
                server._connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def do_GET(self) -> None:
            self._serve(b"")

        def do_POST(self) -> None:
            self._serve(self.rfile.read(int(self.headers.get("Content-Length", 0))))

        def _serve(self, raw: bytes) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            answer = server.answer(self.command, self.path, headers, raw)
            if answer.drop:
                self.close_connection = True
                return
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer.body)  # the client may have given up (timeout tests)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    return Handler
