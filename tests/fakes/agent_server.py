"""A real HTTP agent on 127.0.0.1, served from a thread, for tests of HTTP targets.

    with AgentServer() as server:
        HttpTargetFactory(server.url, options)   # talks to it over a socket
        server.mode = "error"                    # the next requests get HTTP 500
        server.requests                          # every JSON body it received

Modes: `reply` (answer with `server.reply(request)`), `error` (HTTP 500), `garbage` (HTTP 200
with a body that is not JSON), `slow` (sleep `server.delay_s`, then reply).
`server.failures` is a queue of statuses (e.g. 503, 429) or "drop" (close the connection
unanswered) acted out before the mode; `server.headers` holds each request's headers.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Mode = Literal["reply", "error", "garbage", "slow"]


def echo_reply(request: dict[str, Any]) -> Any:
    """Echo the last message with the turn number, one tool call and the session id as context."""
    messages = request["messages"]
    turn = sum(1 for m in messages if m["role"] == "user")
    return {
        "reply": f"turn {turn}: you said {messages[-1]['content']!r}",
        "tool_calls": [{"name": "lookup", "arguments": {"turn": turn}}],
        "context": [f"session {request['session_id']}"],
    }


class AgentServer:
    """An agent speaking the target protocol over HTTP; records the requests it saw."""

    def __init__(self, reply: Callable[[dict[str, Any]], Any] = echo_reply) -> None:
        self.reply = reply
        self.mode: Mode = "reply"
        self.delay_s = 1.0
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        """Each request's headers, names in lower case."""
        self.failures: list[int | str] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """Where the agent listens, e.g. http://127.0.0.1:54321/chat."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/chat"

    def start(self) -> AgentServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> AgentServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, request: dict[str, Any], headers: dict[str, str]) -> tuple[int, bytes]:
        """Status and body for one request, by the next failure or the current mode."""
        self.requests.append(request)
        self.headers.append(headers)
        if self.failures:
            failure = self.failures.pop(0)
            return (0, b"") if failure == "drop" else (int(failure), b"try again later")
        if self.mode == "error":
            return 500, b"Internal Server Error: the agent fell over"
        if self.mode == "garbage":
            return 200, b"<html>not json</html>"
        if self.mode == "slow":
            time.sleep(self.delay_s)
        return 200, json.dumps(self.reply(request)).encode()


def _handler(server: AgentServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = server.answer(json.loads(body), headers)
            if status == 0:  # drop: no answer at all
                self.close_connection = True
                return
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(payload)  # the client may have given up (timeout tests)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    return Handler
