"""HTTP targets: an agent behind a URL, for `--target http://host/path`.

Each turn POSTs `{"session_id": ..., "messages": [...]}` as JSON and reads the protocol reply
from the JSON body. All episodes share one connection pool, opened on the first request.

Headers given with `--header 'Name: value'` go with every request; `${VAR}` in a value is read
from the environment, and those values (and whole values of credential headers such as
`Authorization`) are redacted from everything stored. A request that cannot connect, or is
answered 429 or 503, is sent again after a backoff (`--target-retries`, honouring
`Retry-After`); every request of one turn carries the same `Idempotency-Key` header, so the
agent can recognise a repeat. A body longer than the reply size limit is cut off unread.
Credentials in the URL itself never reach a message: errors name the redacted URL.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import tenacity

from simulate.errors import ConfigError, TargetError
from simulate.schema import Message
from simulate.store import redact
from simulate.targets import Reply, TargetOptions, parse_reply, to_protocol

RETRY_STATUSES = frozenset({429, 503})
"""Statuses that say "try again later"."""
MAX_BACKOFF_S = 10.0
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""What a header name may be made of (RFC 9110)."""
_CREDENTIAL_HEADER = re.compile(r"(?i)authorization|cookie|key|token|secret|password|auth")


@dataclass(frozen=True)
class HeaderSet:
    """What `--header` flags expand to."""

    headers: tuple[tuple[str, str], ...] = ()
    secrets: tuple[str, ...] = ()
    """Values to redact: those read from the environment, and credential headers' values."""


def parse_headers(raw: Sequence[str], environ: Mapping[str, str] | None = None) -> HeaderSet:
    """`Name: value` strings as headers, `${VAR}` read from ``environ`` (default os.environ).

    Raises:
        ConfigError: a header without `:` or a name, or a variable that is not set.
    """
    environ = os.environ if environ is None else environ
    headers: list[tuple[str, str]] = []
    secrets: list[str] = []
    for text in raw:
        name, colon, template = text.partition(":")
        name = name.strip()
        if not colon or not _TOKEN.fullmatch(name):
            raise ConfigError(f"--header {redact(text)!r}: expected 'Name: value'")

        def expand(match: re.Match[str], header: str = name) -> str:
            if match[1] not in environ:
                raise ConfigError(f"--header {header}: environment variable {match[1]} is not set")
            secrets.append(environ[match[1]])
            return environ[match[1]]

        value = _VARIABLE.sub(expand, template.strip())
        if _CREDENTIAL_HEADER.search(name):
            secrets.extend([value, *value.split()])  # "Bearer xyz": the value and its token
        headers.append((name, value))
    return HeaderSet(tuple(headers), tuple(s for s in secrets if len(s) >= 4))


class _Retry(Exception):
    """A request worth sending again; carries the error to raise when retries run out."""

    def __init__(self, error: TargetError, wait_s: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait_s = wait_s


class HttpTargetFactory:
    """Makes one HttpTarget per session; owns the shared HTTP client (close with `aclose`)."""

    def __init__(self, url: str, options: TargetOptions) -> None:
        """Check ``url``; the client itself is created on the first request.

        Raises:
            ConfigError: ``url`` is not an http(s) URL with a host.
        """
        self.shown = redact(url)
        """The URL as messages name it: credentials redacted."""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ConfigError(f"--target {self.shown}: invalid URL: {redact(str(exc))}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError(
                f"--target {self.shown!r}: expected an http(s) URL such as "
                "http://127.0.0.1:8000/chat"
            )
        self.url = url
        self.options = options
        self.max_body_bytes = max(1 << 20, 16 * options.max_reply_chars)
        """Longest body read: room for the reply's text in any encoding and its tool calls."""
        self._client: httpx.AsyncClient | None = None

    def __call__(self, session_id: str) -> HttpTarget:
        """The target of one episode."""
        return HttpTarget(self, session_id)

    def _redact(self, text: str) -> str:
        return redact(text, self.options.secrets)

    async def post(self, session_id: str, messages: Sequence[Message], turn: int) -> Reply:
        """Send one turn (retrying what is worth retrying) and read the reply.

        Raises:
            TargetError: what went wrong, the URL and any credential redacted.
        """
        if self._client is None:
            # The runner bounds concurrency; a pool limit here would only add queueing timeouts.
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=100)
            self._client = httpx.AsyncClient(
                timeout=self.options.turn_timeout_s,
                limits=limits,
                headers=list(self.options.headers),
            )
        body = {"session_id": session_id, "messages": to_protocol(messages)}
        headers = {"Idempotency-Key": f"{session_id}-{turn}"}
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.options.retries + 1),
            wait=_backoff,
            retry=tenacity.retry_if_exception_type(_Retry),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    data = await self._send(body, headers)
        except _Retry as exc:
            tries = self.options.retries + 1
            raise TargetError(
                f"{exc.error} (after {tries} attempt{'s' if tries > 1 else ''})"
            ) from None
        return parse_reply(data, self.shown)

    async def _send(self, body: dict[str, Any], headers: dict[str, str]) -> Any:
        """One request; raises _Retry for what may pass, TargetError for what will not."""
        assert self._client is not None
        try:
            async with self._client.stream("POST", self.url, json=body, headers=headers) as reply:
                content = await self._read(reply)
        except httpx.TimeoutException:
            raise TargetError(
                f"no reply from {self.shown} within {self.options.turn_timeout_s:g}s"
            ) from None
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            error = TargetError(f"cannot connect to {self.shown}: {self._redact(str(exc))}")
            raise _Retry(error) from exc
        except httpx.HTTPError as exc:
            raise TargetError(
                f"request to {self.shown} failed: {type(exc).__name__}: {self._redact(str(exc))}"
            ) from None
        text = content.decode(errors="replace")
        if reply.status_code >= 400:
            error = TargetError(
                f"HTTP {reply.status_code} from {self.shown}: {self._redact(text[:200])}"
            )
            if reply.status_code in RETRY_STATUSES:
                raise _Retry(error, _retry_after(reply.headers.get("Retry-After")))
            raise error
        try:
            return httpx.Response(200, content=content).json()
        except ValueError:
            raise TargetError(
                f"{self.shown} replied with a body that is not JSON: {self._redact(text[:200])!r}"
            ) from None

    async def _read(self, reply: httpx.Response) -> bytes:
        """The body, or TargetError as soon as it grows past the size limit."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in reply.aiter_bytes():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise TargetError(
                    f"{self.shown} sent a reply body over {self.max_body_bytes:,} bytes "
                    f"(--max-reply-chars {self.options.max_reply_chars:,}); not read further"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        """Close the shared client; safe to call twice or before any request."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _backoff(state: tenacity.RetryCallState) -> float:
    """Exponential backoff from 0.25 s with jitter, or the server's Retry-After."""
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, _Retry) and error.wait_s is not None:
        return min(error.wait_s, MAX_BACKOFF_S)
    return _EXPONENTIAL(state)


_EXPONENTIAL = tenacity.wait_exponential_jitter(multiplier=0.25, max=MAX_BACKOFF_S, jitter=0.25)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header given in seconds (dates are ignored)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class HttpTarget:
    """The agent behind a URL, for one conversation."""

    def __init__(self, factory: HttpTargetFactory, session_id: str) -> None:
        self.factory = factory
        self.session_id = session_id
        self.turns = 0

    async def respond(self, messages: Sequence[Message]) -> Reply:
        """POST the conversation under this session's id and return the agent's reply."""
        self.turns += 1
        return await self.factory.post(self.session_id, messages, self.turns)
