"""The LLMs of one run: one per (model, role), one usage meter, one cache, closed together.

The run's OpenAI-compatible LLMs that reach one endpoint share one HTTP client, so one
connection pool: a second pool's connections would sit idle while the first one's are busy, and
the client checks every idle connection on each request. Each role may have its own endpoint
(`LLMSettings.for_role`), so a run may hold a client per endpoint.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from simulate.llm import LLM, LLMRole, get_llm, split_spec
from simulate.llm.cache import CompletionCache
from simulate.llm.settings import ENDPOINT_ROLES, EndpointRole, LLMSettings, endpoint_role
from simulate.llm.usage import MeteredLLM, Price, UsageMeter, UsageStats
from simulate.schema import Model


class EndpointFlags(Model):
    """The endpoint flags every model-using command takes; its configs extend this one."""

    llm_config: str | None = None
    """A YAML file of endpoint settings (base_url, api_key_env, limits, prices, models, and a
    section per role)."""
    base_url: str | None = None
    """An OpenAI-compatible endpoint; overrides the config file and OPENAI_BASE_URL."""
    user_base_url: str | None = None
    """The simulated user's endpoint, over `base_url` and the file's `user:` section."""
    agent_base_url: str | None = None
    """The agent's endpoint (an `openai:` target, the model proxy's upstream)."""
    judge_base_url: str | None = None
    """The judges' endpoint."""
    use_cache: bool = True
    """Serve repeated model requests from the cache (`--no-cache` turns it off)."""
    replay_only: bool = False
    """Answer model requests only from the cache; a miss stops the work."""
    max_calls: int | None = Field(None, ge=1)
    """Stop cleanly after this many paid model calls."""
    max_cost_usd: float | None = Field(None, gt=0)
    """Stop cleanly once this much is spent on models."""


@dataclass
class PoolUsage:
    """What a pool's LLMs used, for the pool of the same run in another process (a Ray
    worker's, for the driver's)."""

    rows: dict[tuple[LLMRole, str], UsageStats]
    """The meter's usage per (role, model)."""
    keys: set[str]
    """Cache keys of the calls made or replayed."""
    endpoints: dict[EndpointRole, str]
    """The endpoint host of each role that had an LLM."""


def role_prices(settings: LLMSettings) -> dict[LLMRole, Mapping[str, Price]]:
    """The price tables of the roles whose endpoint section has prices of its own."""
    tables: dict[LLMRole, Mapping[str, Price]] = {}
    for role in ("user", "target", "agent", "judge", "generator"):
        section = settings.roles.get(endpoint_role(role))  # type: ignore[arg-type]
        if section is not None and section.prices:
            tables[role] = settings.for_role(role).prices  # type: ignore[arg-type]
    return tables


class LLMPool:
    """Hands out the run's shared LLMs, made on first use, all counted by one meter."""

    def __init__(self, settings: LLMSettings, meter: UsageMeter) -> None:
        self.settings = settings
        self.meter = meter
        self._llms: dict[tuple[str, str], LLM] = {}
        self._clients: dict[tuple[str, str, float], Any] = {}
        """The `openai.AsyncOpenAI` clients the openai LLMs share, one per endpoint and key."""
        self._cache: CompletionCache | None = None
        self._elsewhere = PoolUsage({}, set(), {})
        """What pools of this run in other processes used (`absorb`), besides the meter's."""

    @classmethod
    def from_config(cls, config: EndpointFlags) -> LLMPool:
        """A pool from the endpoint flags of a run or a labeling, the config file and the env."""
        settings = LLMSettings.resolve(
            config.llm_config,
            base_url=config.base_url,
            use_cache=config.use_cache,
            replay_only=config.replay_only,
            role_base_urls={
                "user": config.user_base_url,
                "agent": config.agent_base_url,
                "judge": config.judge_base_url,
            },
        )
        meter = UsageMeter(
            settings.prices,
            role_prices=role_prices(settings),
            max_calls=config.max_calls,
            max_cost_usd=config.max_cost_usd,
        )
        return cls(settings, meter)

    def get(self, spec: str, role: str) -> LLM:
        """The LLM for a `backend:model` spec playing ``role`` (user, target, agent, judge...).

        Its completions count toward the run's meter and the episode being played."""
        key = (spec, role)
        if key not in self._llms:
            role_name: LLMRole = role  # type: ignore[assignment]
            backend, model = split_spec(spec)
            options: dict[str, Any] = {}
            if backend == "openai":
                settings = self.settings.for_role(role_name)
                options = {
                    "settings": settings,
                    "role": role_name,
                    "meter": self.meter,
                    "cache": self.cache(),
                }
                if not settings.replay_only:  # a replay never calls out, so needs no key
                    options["client"] = self._openai_client(settings)  # no key: say so now
                self.meter.require_prices([model], role_name)
            llm = get_llm(spec, **options)
            self._llms[key] = MeteredLLM(llm, role_name, model, self.meter)
        return self._llms[key]

    def cache(self) -> CompletionCache | None:
        """The completion cache the run's LLMs share (None with the cache off)."""
        if self._cache is None and (self.settings.use_cache or self.settings.replay_only):
            self._cache = CompletionCache(self.settings.cache_dir)
        return self._cache

    def used_keys(self) -> set[str]:
        """The cache keys of every call this pool's LLMs (or those it absorbed) made or
        replayed."""
        used = set(self._cache.used) if self._cache is not None else set()
        return used | self._elsewhere.keys

    def usage(self) -> PoolUsage:
        """What this pool's LLMs used: usage, cache keys, endpoints."""
        return PoolUsage(self.meter.rows(), self.used_keys(), self.endpoints())

    def absorb(self, other: PoolUsage) -> None:
        """Count what a pool of the same run in another process used as this pool's."""
        self.meter.absorb(other.rows)
        self._elsewhere.keys.update(other.keys)
        self._elsewhere.endpoints.update(other.endpoints)

    def endpoints(self) -> dict[EndpointRole, str]:
        """The endpoint host (no path, no credentials) of each role that has an LLM here (or
        in a pool it absorbed)."""
        hosts: dict[EndpointRole, str] = dict(self._elsewhere.endpoints)
        for spec, role in self._llms:
            if split_spec(spec)[0] == "openai":
                hosts[endpoint_role(role)] = self.settings.for_role(role).host  # type: ignore[arg-type]
        return {r: hosts[r] for r in ENDPOINT_ROLES if r in hosts}

    def _openai_client(self, settings: LLMSettings) -> Any:
        """The openai client of one endpoint; ConfigError when OpenAI's needs a key."""
        from simulate.llm.openai import new_client

        key = (settings.endpoint, settings.client_key(), settings.timeout_s)
        if key not in self._clients:
            self._clients[key] = new_client(settings)
        return self._clients[key]

    async def aclose(self) -> None:
        """Close every client the run opened."""
        for llm in self._llms.values():
            close = getattr(llm, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
        if self._cache is not None:
            self._cache.close()
