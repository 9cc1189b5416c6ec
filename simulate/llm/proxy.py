"""A local OpenAI-compatible endpoint for the agent under test, forwarding to its upstream.

    async with ModelProxy(pool, sessions) as proxy:
        proxy.base_url              # http://127.0.0.1:PORT/v1   (the agent's OPENAI_BASE_URL)
        proxy.token                 # the agent's OPENAI_API_KEY, checked on every request
        proxy.session_url(sid)      # http://127.0.0.1:PORT/s/<sid>/v1: calls of that episode

Each call goes through the run's LLM layer as role `agent` (`relay.forward`): the endpoint of
the `agent` role, its cache, retries, limits, the run's budget and meter. Served:
`POST /v1/chat/completions` and `POST /v1/responses` (streaming or not, tools and all, the body
passed on unchanged) and `GET /v1/models`. A call counts toward an episode when its path names
the session (`/s/<session>/v1/...`, given to `cmd:` agents, one process per episode) or it
carries an `X-Simulate-Session` header (any agent that forwards the session id it receives);
otherwise it counts for the run as a whole.

It listens on 127.0.0.1 only and answers only requests with its token. A replay miss or a spent
budget is answered with an error the agent's client does not retry (`x-should-retry: false`)
and kept in `stops`, for the run to stop on.

Served with Starlette and uvicorn inside the run's event loop, so the forwarded calls share the
loop, the limits and the meter of every other call of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import openai
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route

from simulate.errors import ConfigError, LLMError, RunStopped, SimulateError
from simulate.llm.openai import OpenAILLM
from simulate.llm.pool import LLMPool
from simulate.llm.relay import Api, forward
from simulate.llm.usage import Sessions

SESSION_HEADER = "x-simulate-session"
"""The header an agent may send with the session id it received, to attribute its calls."""
HOST = "127.0.0.1"


@dataclass(frozen=True)
class ProxyStop:
    """A call the proxy could not answer in a way that must stop the run."""

    error: RunStopped
    """The replay miss or spent budget, its message naming the episode."""
    episodes: frozenset[str]
    """The episode the call was attributed to; for a call that named none, every episode
    playing when it came (any of them may have made it)."""


class _Server(uvicorn.Server):
    """uvicorn inside the run's loop: Ctrl-C stays the run's (no signal handlers here)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ModelProxy:
    """The agent's model endpoint for one run (an async context manager that serves it).

    Args:
        pool: the run's LLMs; calls go through `pool.get("openai:MODEL", "agent")`.
        sessions: the episodes being played, to count calls toward.
        port: the port on 127.0.0.1; 0 picks a free one.
        token: the key agents must send; default a fresh random one.
    """

    def __init__(
        self, pool: LLMPool, sessions: Sessions, *, port: int = 0, token: str | None = None
    ) -> None:
        self.pool = pool
        self.sessions = sessions
        self.token = token or f"simulate-proxy-{secrets.token_urlsafe(24)}"
        self.stops: list[ProxyStop] = []
        """Calls that must stop the run, in order."""
        self.run_wide_calls = 0
        """Calls counted for the run as a whole (no session, or none being played)."""
        self.models: list[str] = []
        """Models the agent asked for, in the order first seen (for `GET /v1/models`)."""
        default = pool.settings.models.get("agent")
        if default:
            self.models.append(default)
        self._socket = _listen(port)
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._socket.getsockname()[1])

    @property
    def base_url(self) -> str:
        """The base URL to give an OpenAI client: calls count for the run as a whole."""
        return f"http://{HOST}:{self.port}/v1"

    def session_url(self, session_id: str) -> str:
        """The base URL of one episode's agent: its calls count toward that episode."""
        return f"http://{HOST}:{self.port}/s/{quote(session_id, safe='')}/v1"

    async def __aenter__(self) -> ModelProxy:
        config = uvicorn.Config(
            self.app(),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                await self._task  # serving failed: say why
                raise RuntimeError("the model proxy stopped before it started")
            await asyncio.sleep(0.005)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop serving (requests in flight get a short grace) and free the port."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await self._task
        self._server = self._task = None
        self._socket.close()

    def app(self) -> Starlette:
        """The ASGI app: the OpenAI paths, at the root and under `/s/{session}`."""
        routes: list[BaseRoute] = [
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/responses", self._responses, methods=["POST"]),
            Route("/v1/models", self._list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", self._model, methods=["GET"]),
        ]
        return Starlette(routes=[*routes, Mount("/s/{session}", routes=routes)])

    # --- endpoints ------------------------------------------------------------------------

    async def _chat(self, request: Request) -> Response:
        return await self._forward(request, "chat/completions")

    async def _responses(self, request: Request) -> Response:
        return await self._forward(request, "responses")

    async def _list_models(self, request: Request) -> Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        return JSONResponse({"object": "list", "data": [_model(m) for m in self.models]})

    async def _model(self, request: Request) -> Response:
        refused = self._refuse(request)
        return refused or JSONResponse(_model(request.path_params["model"]))

    async def _forward(self, request: Request, api: Api) -> Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        session = request.path_params.get("session") or request.headers.get(SESSION_HEADER)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.")
        model = body.get("model") or self.pool.settings.models.get("agent")
        if not isinstance(model, str) or not model:
            return _error(400, "Missing required parameter: 'model'.", param="model")
        if model not in self.models:
            self.models.append(model)
        try:
            metered = self.pool.get(f"openai:{model}", "agent")
        except SimulateError as exc:  # no price for a cost budget, no key...
            return _error(502, f"Simulate's model proxy: {exc}", kind="upstream_error")
        llm: OpenAILLM = getattr(metered, "llm", metered)

        def count(prompt_tokens: int, completion_tokens: int) -> None:
            cost = self.pool.meter.cost("agent", model, prompt_tokens, completion_tokens)
            if not self.sessions.add(
                session, "agent", model, prompt_tokens, completion_tokens, cost
            ):
                self.run_wide_calls += 1

        try:
            relayed = await forward(llm, api, {**body, "model": model}, count)
        except RunStopped as exc:
            return self._stop(exc, session)
        except LLMError as exc:
            return _upstream_error(exc)
        if relayed.events is not None:
            return StreamingResponse(
                relayed.events,
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        return JSONResponse(relayed.body)

    # --- guards and errors ----------------------------------------------------------------

    def _refuse(self, request: Request) -> Response | None:
        """A 401 unless the request carries the proxy's token (as a bearer token or api-key)."""
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        given = given or request.headers.get("api-key", "")
        if hmac.compare_digest(given.encode(), self.token.encode()):
            return None
        return _error(
            401,
            "Simulate's model proxy needs its token as the API key (the OPENAI_API_KEY it set).",
            kind="invalid_request_error",
            code="invalid_api_key",
        )

    def _stop(self, exc: RunStopped, session: str | None) -> Response:
        """Keep a run-stopping error, named with its episode, and tell the agent not to retry."""
        playing = self.sessions.playing()
        if session is not None:
            where = f"episode {session}"
        elif len(playing) == 1:
            where = f"a call naming no episode, while only episode {playing[0]} was playing"
        else:
            where = "a call naming no episode (send X-Simulate-Session to attribute it)"
        stop = type(exc)(f"{exc}, in {where}")
        episodes = frozenset([session] if session is not None else playing)
        self.stops.append(ProxyStop(stop, episodes))
        return _error(503, f"Simulate stopped the run: {stop}", kind="simulate_stopped")


def _listen(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1 only.

    Its protocol is named (TCP), so that asyncio sets TCP_NODELAY on each connection: without
    it a reply's body waits for the client's delayed ACK of its headers, 40 ms a call.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"--agent-llm-proxy-port {port}: cannot listen on {HOST}:{port}: {exc.strerror}"
        ) from None
    sock.listen(256)
    sock.setblocking(False)
    return sock


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "simulate-proxy"}


def _error(
    status: int,
    message: str,
    *,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> JSONResponse:
    """An error in the OpenAI shape, which the agent's client is told not to retry."""
    error = {"message": message, "type": kind, "param": param, "code": code}
    return JSONResponse({"error": error}, status, headers={"x-should-retry": "false"})


def _upstream_error(exc: LLMError) -> JSONResponse:
    """The upstream's own refusal (status and body) when it gave one, else a 502."""
    cause = exc.__cause__
    if isinstance(cause, openai.APIStatusError):
        body = cause.body if isinstance(cause.body, dict) else {"message": str(exc)}
        headers = {"x-should-retry": "false"}
        return JSONResponse({"error": body}, cause.status_code, headers=headers)
    return _error(502, f"Simulate's model proxy: {exc}", kind="upstream_error")
