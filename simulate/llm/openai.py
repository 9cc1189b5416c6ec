"""Any OpenAI-compatible endpoint as an `LLM`: retries, limits, cache, structured output, usage.

    llm = OpenAILLM("gpt-4o-mini", settings=LLMSettings.resolve(), role="user", meter=meter)
    completion = await llm.complete(messages, output_type=UserTurn, temperature=0.7, seed=3)
    await llm.aclose()

Transient failures are retried here, not by the openai client, so that every attempt passes
the rate limit and the concurrency bound and one count covers them all: 429 (after its
Retry-After), 5xx, timeouts, dropped connections, and 200 replies that are not completions
(cut-short JSON, a proxy's HTML page). Simulate's messages become the OpenAI shape only here.

Requests go out through the client's generic `post()` and replies come back as plain JSON:
the same wire, the same retries and errors, without `create()`'s walk of the parameters and
without its response models, which together are half the client's CPU per call
(benchmarks/throughput.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import openai
from aiolimiter import AsyncLimiter
from pydantic import BaseModel, ValidationError

from simulate.errors import LLMError
from simulate.llm import Completion, LLMRole
from simulate.llm.cache import CacheMiss, CompletionCache, request_key
from simulate.llm.settings import LLMSettings
from simulate.llm.usage import UsageMeter
from simulate.schema import Message, ToolCall

OutputMode = Literal["json_schema", "json_object", "text"]
"""How structured output is asked for, best first."""
MODES: tuple[OutputMode, ...] = ("json_schema", "json_object", "text")

MAX_BACKOFF_S = 8.0
"""The longest wait between retries, unless the first wait is longer."""
MAX_RETRY_AFTER_S = 60.0
"""The longest Retry-After honoured; a server asking for more is retried after this."""

SCHEMA_INSTRUCTIONS = (
    "Answer with one JSON object only, with no prose and no code fences, that fits this JSON"
    " schema:\n{schema}"
)
REPAIR_INSTRUCTIONS = (
    "That reply does not fit the required JSON schema: {error}\n"
    "Answer again with the corrected JSON object only."
)

# Request options that say how to send, not what to ask: left out of cache keys.
_TRANSPORT_PARAMS = frozenset({"extra_headers", "extra_query", "timeout"})
_CHAT_PATH = "/chat/completions"
_FORMAT_WORDS = ("response_format", "json_schema", "json schema", "structured output", "guided")

_jitter = random.Random()  # not the global one: seeded simulations may rely on it


class _FormatRejected(Exception):
    """The endpoint answered 400 to the response_format it was sent."""

    def __init__(self, error: LLMError) -> None:
        super().__init__(str(error))
        self.error = error


class OpenAILLM:
    """A model behind an OpenAI-compatible chat completions endpoint.

    The `openai.AsyncOpenAI` client is made on the first call and closed by `aclose()`, unless
    one is given to share.

    Args:
        model: the model name the endpoint knows, e.g. `gpt-4o-mini`.
        settings: endpoint, key, limits and cache; default `LLMSettings.resolve()` (the env).
        role: whose calls these are in the usage meter.
        meter: the run's shared usage meter; default a meter of its own.
        client: a client (`new_client(settings)`) shared with the run's other LLMs, so that
            they share one connection pool; its owner closes it. Limits stay per LLM.
        cache: the completion cache shared with the run's other LLMs (it notes the keys the
            run used); default one of its own in `settings.cache_dir`.
    """

    def __init__(
        self,
        model: str,
        *,
        settings: LLMSettings | None = None,
        role: LLMRole = "user",
        meter: UsageMeter | None = None,
        client: openai.AsyncOpenAI | None = None,
        cache: CompletionCache | None = None,
    ) -> None:
        self.model = model
        self.settings = settings if settings is not None else LLMSettings.resolve()
        self.role: LLMRole = role
        self.meter = meter if meter is not None else UsageMeter(self.settings.prices)
        self.output_mode: OutputMode = "json_schema"
        """Moves to json_object, then text, once the endpoint refuses one and takes the next."""
        use_cache = self.settings.use_cache or self.settings.replay_only
        if not use_cache:
            cache = None
        elif cache is None:
            cache = CompletionCache(self.settings.cache_dir)
        self._cache = cache
        self._shared_client = client
        self._client: openai.AsyncOpenAI | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._limiter: AsyncLimiter | None = None

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        output_type: type[BaseModel] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> Completion:
        """Answer a conversation, from the cache when the same request was answered before.

        Raises:
            LLMError: the endpoint failed after retries, or the reply does not fit output_type.
            BudgetExceeded: the meter's budget is reached (only uncached calls are refused).
            ConfigError: no API key for api.openai.com.
        """
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [to_openai_message(m, i) for i, m in enumerate(messages)],
            **params,
        }
        if tools:
            request["tools"] = [to_openai_tool(t) for t in tools]
        key = None
        if self._cache is not None:
            key = request_key(
                {
                    "model": self.model,
                    "messages": request["messages"],
                    "tools": request.get("tools", []),
                    "output_schema": _schema(output_type) if output_type else None,
                    "params": {k: v for k, v in params.items() if k not in _TRANSPORT_PARAMS},
                }
            )
            hit = self._from_cache(key, output_type)
            if hit is not None:
                return hit
            if self.settings.replay_only:
                raise CacheMiss(
                    f"cache miss in --replay-only mode for model {self.model} (request {key[:12]})"
                )
        if output_type is None:
            try:
                completion = await self._call(request)
            except _FormatRejected as rejected:  # the caller's own response_format
                raise rejected.error from None
        else:
            completion = await self._structured(request, output_type)
        if self._cache is not None and key is not None:
            self._cache.put(key, _record(completion))
        return completion

    async def aclose(self) -> None:
        """Close the HTTP client and the cache file; a later call opens them again."""
        client, self._client = self._client, None
        self._semaphore = self._limiter = None
        if client is not None and client is not self._shared_client:
            await client.close()
        if self._cache is not None:
            self._cache.close()

    async def __aenter__(self) -> OpenAILLM:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- structured output ----------------------------------------------------------------

    async def _structured(
        self, request: dict[str, Any], output_type: type[BaseModel]
    ) -> Completion:
        """Ask for JSON fitting ``output_type``; one repair round when the reply does not fit."""
        first = await self._ask_in_format(request, output_type)
        parsed, error = _parse(first, output_type)
        if error is None:
            first.parsed = parsed
            return first
        repair = {
            **request,
            "messages": [
                *request["messages"],
                {"role": "assistant", "content": first.content},
                {"role": "user", "content": REPAIR_INSTRUCTIONS.format(error=error)},
            ],
        }
        second = await self._ask_in_format(repair, output_type)
        parsed, error = _parse(second, output_type)
        if error is not None:
            raise LLMError(f"reply does not fit {output_type.__name__}: {error}")
        second.parsed = parsed
        second.prompt_tokens += first.prompt_tokens
        second.completion_tokens += first.completion_tokens
        return second

    async def _ask_in_format(
        self, request: dict[str, Any], output_type: type[BaseModel]
    ) -> Completion:
        """One answer in the best output mode the endpoint takes; remembers a step down."""
        mode = self.output_mode
        while True:
            try:
                completion = await self._call(_with_format(request, mode, output_type))
            except _FormatRejected as rejected:
                if mode == "text":
                    raise rejected.error from None
                mode = MODES[MODES.index(mode) + 1]
                continue
            if MODES.index(mode) > MODES.index(self.output_mode):
                self.output_mode = mode  # only once a lower mode worked: the 400 was the format
            return completion

    # --- the wire -------------------------------------------------------------------------

    async def _call(self, request: dict[str, Any]) -> Completion:
        """One paid call, within the budget, recorded in the meter."""
        await self.meter.admit(self.model, self.role)
        try:
            response = await self._send(request)
        except BaseException:
            self.meter.release()
            raise
        completion = _to_completion(response, self.model)
        self.meter.record(
            self.role, self.model, completion.prompt_tokens, completion.completion_tokens
        )
        return completion

    async def _send(
        self,
        request: dict[str, Any],
        *,
        path: str = _CHAT_PATH,
        accept: Callable[[Any], bool] | None = None,
    ) -> dict[str, Any]:
        """POST the request under the limits, retrying transient failures with backoff.

        Retried: 408, 409, 429 (after its Retry-After), 5xx, timeouts, dropped connections,
        and 200 replies ``accept`` refuses (default: all but chat completions; cut-short JSON, a
        proxy's HTML page). Each attempt passes the rate limiter and holds a concurrency slot;
        waits hold neither.
        """
        accept = accept or is_chat_completion
        client, semaphore, limiter = self._open()
        body, options = _split_request(request)
        attempts = self.settings.max_retries + 1
        what = "a chat completion" if path == _CHAT_PATH else f"a {path.strip('/')} reply"
        for attempt in range(1, attempts + 1):
            wait: float | None = None
            async with semaphore:
                if limiter is not None:
                    await limiter.acquire()
                try:
                    response = await client.post(path, body=body, options=options, cast_to=object)
                except json.JSONDecodeError:
                    failure = "a 200 reply whose body is not JSON"
                except openai.APIError as exc:
                    failure = self._describe(exc)
                    if not _retryable(exc) or attempt == attempts:
                        raise self._error(failure, attempt, exc, request) from _chain(exc)
                    if isinstance(exc, openai.APIStatusError):
                        wait = retry_after(exc.response.headers)
                else:
                    if accept(response):
                        return response
                    failure = f"a 200 reply that is not {what}"
            if attempt == attempts:
                break
            await asyncio.sleep(wait if wait is not None else self._backoff(attempt))
        raise LLMError(self._failed(failure, attempts))

    async def post(
        self, path: str, body: dict[str, Any], accept: Callable[[Any], bool]
    ) -> dict[str, Any]:
        """POST a request body as it is to ``path`` (`/responses`...): one paid-call attempt
        series under the limits and retries, without the cache or the meter (the caller's).

        Raises:
            LLMError: the endpoint failed after retries; a refused request's `__cause__` is the
                openai error with the endpoint's status and body (none for 401 and 403).
        """
        try:
            return await self._send(body, path=path, accept=accept)
        except _FormatRejected as rejected:
            raise rejected.error from rejected.__cause__

    @contextlib.asynccontextmanager
    async def open_stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[Any]:
        """POST a streaming request body as it is, retrying until a 200 arrives; yields the
        open HTTP response (read it with `aiter_bytes()`), holding a concurrency slot until the
        block ends. Raises like `post`."""
        client, semaphore, limiter = self._open()
        attempts = self.settings.max_retries + 1
        failure = "no attempt"
        for attempt in range(1, attempts + 1):
            wait: float | None = None
            async with semaphore:
                if limiter is not None:
                    await limiter.acquire()
                try:
                    stream = await client.post(
                        path,
                        body=body,
                        options={"security": {"bearer_auth": True}},
                        cast_to=object,
                        stream=True,
                        stream_cls=openai.AsyncStream[object],
                    )
                except openai.APIError as exc:
                    failure = self._describe(exc)
                    if not _retryable(exc) or attempt == attempts:
                        raise LLMError(self._failed(failure, attempt)) from _chain(exc)
                    if isinstance(exc, openai.APIStatusError):
                        wait = retry_after(exc.response.headers)
                else:
                    try:
                        yield stream.response
                    finally:
                        await stream.close()
                    return
            if attempt == attempts:
                break
            await asyncio.sleep(wait if wait is not None else self._backoff(attempt))
        raise LLMError(self._failed(failure, attempts))

    @property
    def cache(self) -> CompletionCache | None:
        """The completion cache this LLM reads and writes (None with the cache off)."""
        return self._cache

    def _backoff(self, attempt: int) -> float:
        """Seconds before retry number ``attempt``: doubling, capped, less up to 25 % jitter."""
        first = self.settings.retry_backoff_s
        delay = min(first * 2 ** (attempt - 1), max(first, MAX_BACKOFF_S))
        return delay * (1 - 0.25 * _jitter.random())

    def _open(self) -> tuple[openai.AsyncOpenAI, asyncio.Semaphore, AsyncLimiter | None]:
        """The client and limits, made on first use (inside the running loop)."""
        if self._client is None or self._semaphore is None:
            settings = self.settings
            self._client = self._shared_client or new_client(settings)
            self._semaphore = asyncio.Semaphore(settings.max_concurrency)
            rpm = settings.requests_per_minute
            # One request per 60/rpm seconds, evenly: no burst of a whole minute's quota.
            self._limiter = AsyncLimiter(1, 60 / rpm) if rpm else None
        return self._client, self._semaphore, self._limiter

    def _failed(self, what: str, attempts: int) -> str:
        plural = "s" if attempts != 1 else ""
        return f"{self.model} at {self.settings.host}: {what} after {attempts} attempt{plural}"

    def _describe(self, exc: openai.APIError) -> str:
        """What went wrong, in a few words (the key scrubbed from what the server said)."""
        if isinstance(exc, openai.APITimeoutError):
            return f"timed out after {self.settings.timeout_s:g} s"
        if isinstance(exc, openai.APIConnectionError):
            return "connection failed"
        if isinstance(exc, openai.APIStatusError):
            if exc.status_code in (401, 403):
                return f"HTTP {exc.status_code} (the endpoint refused the API key)"
            detail = self._detail(exc)
            return f"HTTP {exc.status_code} ({detail})" if detail else f"HTTP {exc.status_code}"
        return type(exc).__name__

    def _error(
        self, what: str, attempts: int, exc: openai.APIError, request: Mapping[str, Any]
    ) -> LLMError | _FormatRejected:
        """The one-line LLMError for a failed request; a refused response_format is marked."""
        error = LLMError(self._failed(what, attempts))
        fmt = request.get("response_format")
        if (
            isinstance(exc, openai.BadRequestError)
            and isinstance(fmt, dict)
            and (fmt.get("type") == "json_object" or _about_format(exc))
        ):
            return _FormatRejected(error)
        return error

    def _detail(self, exc: openai.APIStatusError) -> str:
        """The server's error message on one line, shortened, without the key."""
        body = exc.body
        text = body.get("message") if isinstance(body, dict) else None
        text = " ".join(str(text or exc.message).split())
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else ""
        if key:
            text = text.replace(key, "***")
        return text if len(text) <= 200 else text[:197] + "..."

    def _from_cache(self, key: str, output_type: type[BaseModel] | None) -> Completion | None:
        assert self._cache is not None
        record = self._cache.get(key)
        if record is None:
            return None
        calls = [ToolCall.model_validate(c) for c in record.get("tool_calls", [])]
        completion = Completion(**{**record, "tool_calls": calls}, cached=True)
        if output_type is not None:
            parsed, error = _parse(completion, output_type)
            if error is not None:
                return None  # the model changed since it was stored: ask again
            completion.parsed = parsed
        self.meter.record(
            self.role,
            self.model,
            completion.prompt_tokens,
            completion.completion_tokens,
            cached=True,
        )
        return completion


def new_client(settings: LLMSettings) -> openai.AsyncOpenAI:
    """The openai client for ``settings``; it does not retry (`OpenAILLM` does, under limits).

    Raises:
        ConfigError: no API key for api.openai.com.
    """
    return openai.AsyncOpenAI(
        base_url=settings.endpoint,
        api_key=settings.client_key(),
        timeout=settings.timeout_s,
        max_retries=0,
    )


# --- conversion at the edge -------------------------------------------------------------------


def to_openai_message(message: Message, index: int = 0) -> dict[str, Any]:
    """A Simulate message in the OpenAI chat shape; ``index`` names calls that have no id."""
    if message.role == "tool":
        wire: dict[str, Any] = {"role": "tool", "content": message.content}
        if message.tool_call_id is not None:
            wire["tool_call_id"] = message.tool_call_id
        return wire
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                _to_openai_call(call, f"call_{index}_{i}")
                for i, call in enumerate(message.tool_calls)
            ],
        }
    return {"role": message.role, "content": message.content}


def _to_openai_call(call: ToolCall, default_id: str) -> dict[str, Any]:
    raw = call.arguments.get("_raw") if set(call.arguments) == {"_raw"} else None
    arguments = raw if isinstance(raw, str) else json.dumps(call.arguments, default=str)
    return {
        "id": call.id or default_id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    }


def to_openai_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """`{"name", "description", "parameters"}` as an OpenAI function tool (kept if already one)."""
    if tool.get("type") == "function" and isinstance(tool.get("function"), Mapping):
        return dict(tool)
    return {"type": "function", "function": dict(tool)}


def parse_arguments(text: str | None) -> dict[str, Any]:
    """A tool call's JSON arguments; text that is not a JSON object is kept as {"_raw": text}."""
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_raw": text}


def _split_request(request: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A request as `create()` takes it -> the JSON body and the client's request options."""
    body = {k: v for k, v in request.items() if k not in _TRANSPORT_PARAMS and k != "extra_body"}
    body.update(request.get("extra_body") or {})
    options: dict[str, Any] = {"security": {"bearer_auth": True}}  # as create() sends it
    for name, option in (("extra_headers", "headers"), ("extra_query", "params")):
        if request.get(name) is not None:
            options[option] = request[name]
    if "timeout" in request:
        options["timeout"] = request["timeout"]
    return body, options


def is_chat_completion(data: Any) -> bool:
    """Whether a 200 reply's JSON is a chat completion with a message to read."""
    choices = data.get("choices") if isinstance(data, dict) else None
    return bool(
        isinstance(choices, list)
        and choices
        and isinstance(choices[0], dict)
        and isinstance(choices[0].get("message"), dict)
    )


def _to_completion(response: Mapping[str, Any], model: str) -> Completion:
    """A chat completion's JSON (checked by `is_chat_completion`) as a Completion."""
    choice = response["choices"][0]
    message = choice["message"]
    calls = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):  # custom (non-function) tools are skipped
            arguments = parse_arguments(function.get("arguments"))
            calls.append(
                ToolCall(id=call.get("id"), name=function.get("name") or "", arguments=arguments)
            )
    usage = response.get("usage") or {}
    return Completion(
        content=message.get("content") or "",
        tool_calls=calls,
        model=response.get("model") or model,
        prompt_tokens=usage.get("prompt_tokens") or 0,
        completion_tokens=usage.get("completion_tokens") or 0,
        finish_reason=choice.get("finish_reason"),
    )


def _record(completion: Completion) -> dict[str, Any]:
    """What the cache stores of a completion (`parsed` is rebuilt from the content)."""
    return {
        "content": completion.content,
        "tool_calls": [c.model_dump(mode="json", exclude_none=True) for c in completion.tool_calls],
        "model": completion.model,
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "finish_reason": completion.finish_reason,
    }


def _chain(exc: openai.APIError) -> BaseException | None:
    """The cause to chain: none for auth errors, whose text may quote part of the key."""
    status = getattr(exc, "status_code", None)
    return None if status in (401, 403) else exc


def _retryable(exc: openai.APIError) -> bool:
    """Whether a request that failed this way may succeed when sent again."""
    if isinstance(exc, openai.APIConnectionError):  # timeouts included
        return True
    if not isinstance(exc, openai.APIStatusError):
        return False
    should = exc.response.headers.get("x-should-retry")
    if should in ("true", "false"):
        return should == "true"
    if exc.code == "insufficient_quota":  # a 429 that waiting does not cure: billing
        return False
    return exc.status_code in (408, 409, 429) or exc.status_code >= 500


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a server asked to wait (`retry-after-ms`, `retry-after` seconds or date)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                continue
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - datetime.now(UTC)).total_seconds()
        if seconds == seconds:  # not NaN
            return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
    return None


def _about_format(exc: openai.APIStatusError) -> bool:
    text = f"{getattr(exc, 'param', None) or ''} {exc.message}".lower()
    return any(word in text for word in _FORMAT_WORDS)


# --- structured output ------------------------------------------------------------------------


def _with_format(
    request: dict[str, Any], mode: OutputMode, output_type: type[BaseModel]
) -> dict[str, Any]:
    """The request asking for ``output_type`` in ``mode``."""
    if mode == "json_schema":
        return {**request, "response_format": _json_schema_format(output_type)}
    schema = json.dumps(_schema(output_type), separators=(",", ":"))
    instructions = SCHEMA_INSTRUCTIONS.format(schema=schema)
    messages = list(request["messages"])
    if messages and messages[0].get("role") == "system":  # some chat templates take one only
        messages[0] = {**messages[0], "content": f"{messages[0]['content']}\n\n{instructions}"}
    else:
        messages.insert(0, {"role": "system", "content": instructions})
    body = {**request, "messages": messages}
    if mode == "json_object":
        body["response_format"] = {"type": "json_object"}
    return body


@functools.cache
def _schema(output_type: type[BaseModel]) -> dict[str, Any]:
    """``output_type``'s JSON schema, made once per type (callers must not change it)."""
    return output_type.model_json_schema()


@functools.cache
def _json_schema_format(output_type: type[BaseModel]) -> dict[str, Any]:
    """The `response_format` for ``output_type``: strict when its schema allows."""
    schema = _schema(output_type)
    strict = strict_schema(schema)
    return {
        "type": "json_schema",
        "json_schema": {
            "name": re.sub(r"[^A-Za-z0-9_-]", "_", output_type.__name__)[:64],
            "schema": strict if strict is not None else schema,
            "strict": strict is not None,
        },
    }


class _NotStrict(Exception):
    pass


def strict_schema(schema: Mapping[str, Any]) -> dict[str, Any] | None:
    """``schema`` in OpenAI's strict subset, or None when it cannot be made strict.

    Every object gets `additionalProperties: false` and all its properties required (fields
    with defaults included), defaults are dropped, and a `$ref` with sibling keys is inlined.
    Objects with free-form keys (`dict[str, X]`) cannot be strict.
    """
    defs = schema.get("$defs", {})

    def fix(node: Any) -> Any:
        if isinstance(node, list):
            return [fix(n) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node and len(node) > 1:
            target = defs.get(str(node["$ref"]).removeprefix("#/$defs/"))
            if target is None:
                raise _NotStrict
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("properties", "$defs"):
                out[key] = {name: fix(sub) for name, sub in value.items()}
            elif key in ("enum", "const", "examples"):
                out[key] = value  # data, not schema
            elif key != "default":
                out[key] = fix(value)
        if out.get("type") == "object" or "properties" in out:
            if "properties" not in out or out.get("additionalProperties") not in (None, False):
                raise _NotStrict
            out["additionalProperties"] = False
            out["required"] = list(out["properties"])
        return out

    try:
        return fix(dict(schema))
    except _NotStrict:
        return None


def _parse(completion: Completion, output_type: type[BaseModel]) -> tuple[Any, str | None]:
    """(the validated instance, None), or (None, the first error); tool calls skip parsing."""
    if completion.tool_calls and not completion.content.strip():
        return None, None
    try:
        return output_type.model_validate_json(_json_text(completion.content)), None
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        return None, f"{where}: {error['msg']}" if where else error["msg"]


def _json_text(content: str) -> str:
    """The JSON object in a reply, without code fences or prose around it."""
    text = content.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.DOTALL)
    if fenced:
        text = fenced.group(1)
    if not text.startswith("{") and "{" in text and "}" in text:
        text = text[text.index("{") : text.rindex("}") + 1]
    return text
