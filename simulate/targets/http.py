"""HTTP targets: an agent behind a URL, for `--target http://host/path`.

Each turn POSTs `{"session_id": ..., "messages": [...]}` as JSON and reads the protocol reply
from the JSON body. All episodes share one connection pool, opened on the first request.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from simulate.errors import ConfigError, TargetError
from simulate.schema import Message
from simulate.targets import Reply, TargetOptions, parse_reply, to_protocol


class HttpTargetFactory:
    """Makes one HttpTarget per session; owns the shared HTTP client (close with `aclose`)."""

    def __init__(self, url: str, options: TargetOptions) -> None:
        """Check ``url``; the client itself is created on the first request.

        Raises:
            ConfigError: ``url`` is not an http(s) URL with a host.
        """
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ConfigError(f"--target {url}: invalid URL: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError(
                f"--target {url!r}: expected an http(s) URL such as http://127.0.0.1:8000/chat"
            )
        self.url = url
        self.options = options
        self._client: httpx.AsyncClient | None = None

    def __call__(self, session_id: str) -> HttpTarget:
        """The target of one episode."""
        return HttpTarget(self, session_id)

    async def post(self, session_id: str, messages: Sequence[Message]) -> Reply:
        """Send one turn and read the reply, or raise TargetError saying what went wrong."""
        if self._client is None:
            # The runner bounds concurrency; a pool limit here would only add queueing timeouts.
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=100)
            self._client = httpx.AsyncClient(timeout=self.options.turn_timeout_s, limits=limits)
        body = {"session_id": session_id, "messages": to_protocol(messages)}
        try:
            response = await self._client.post(self.url, json=body)
        except httpx.TimeoutException as exc:
            raise TargetError(
                f"no reply from {self.url} within {self.options.turn_timeout_s:g}s"
            ) from exc
        except httpx.ConnectError as exc:
            raise TargetError(f"cannot connect to {self.url}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise TargetError(f"request to {self.url} failed: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise TargetError(f"HTTP {response.status_code} from {self.url}: {response.text[:200]}")
        try:
            data = response.json()
        except ValueError as exc:
            raise TargetError(
                f"{self.url} replied with a body that is not JSON: {response.text[:200]!r}"
            ) from exc
        return parse_reply(data, self.url)

    async def aclose(self) -> None:
        """Close the shared client; safe to call twice or before any request."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


class HttpTarget:
    """The agent behind a URL, for one conversation."""

    def __init__(self, factory: HttpTargetFactory, session_id: str) -> None:
        self.factory = factory
        self.session_id = session_id

    async def respond(self, messages: Sequence[Message]) -> Reply:
        """POST the conversation under this session's id and return the agent's reply."""
        return await self.factory.post(self.session_id, messages)
