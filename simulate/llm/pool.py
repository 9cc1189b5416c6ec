"""The LLMs of one run: one per (model, role), one usage meter, closed together.

The run's OpenAI-compatible LLMs share one HTTP client, so one connection pool: a second
pool's connections would sit idle while the first one's are busy, and the client checks every
idle connection on each request.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pydantic import Field

from simulate.llm import LLM, LLMRole, get_llm, split_spec
from simulate.llm.settings import LLMSettings
from simulate.llm.usage import MeteredLLM, UsageMeter
from simulate.schema import Model


class EndpointFlags(Model):
    """The endpoint flags every model-using command takes; its configs extend this one."""

    llm_config: str | None = None
    """A YAML file of endpoint settings (base_url, api_key_env, limits, prices, models)."""
    base_url: str | None = None
    """An OpenAI-compatible endpoint; overrides the config file and OPENAI_BASE_URL."""
    use_cache: bool = True
    """Serve repeated model requests from the cache (`--no-cache` turns it off)."""
    replay_only: bool = False
    """Answer model requests only from the cache; a miss stops the work."""
    max_calls: int | None = Field(None, ge=1)
    """Stop cleanly after this many paid model calls."""
    max_cost_usd: float | None = Field(None, gt=0)
    """Stop cleanly once this much is spent on models."""


class LLMPool:
    """Hands out the run's shared LLMs, made on first use, all counted by one meter."""

    def __init__(self, settings: LLMSettings, meter: UsageMeter) -> None:
        self.settings = settings
        self.meter = meter
        self._llms: dict[tuple[str, str], LLM] = {}
        self._client: Any = None
        """The `openai.AsyncOpenAI` shared by the openai LLMs, made with the first of them."""

    @classmethod
    def from_config(cls, config: EndpointFlags) -> LLMPool:
        """A pool from the endpoint flags of a run or a labeling, the config file and the env."""
        settings = LLMSettings.resolve(
            config.llm_config,
            base_url=config.base_url,
            use_cache=config.use_cache,
            replay_only=config.replay_only,
        )
        meter = UsageMeter(
            settings.prices, max_calls=config.max_calls, max_cost_usd=config.max_cost_usd
        )
        return cls(settings, meter)

    def get(self, spec: str, role: str) -> LLM:
        """The LLM for a `backend:model` spec playing ``role`` (user, target, judge).

        Its completions count toward the run's meter and the episode being played."""
        key = (spec, role)
        if key not in self._llms:
            backend, model = split_spec(spec)
            options: dict[str, Any] = {}
            if backend == "openai":
                role_name: LLMRole = role  # type: ignore[assignment]
                options = {"settings": self.settings, "role": role_name, "meter": self.meter}
                if not self.settings.replay_only:  # a replay never calls out, so needs no key
                    options["client"] = self._openai_client()  # no key for OpenAI: say so now
                self.meter.require_prices([model])
            self._llms[key] = MeteredLLM(get_llm(spec, **options), role, model)  # type: ignore[arg-type]
        return self._llms[key]

    def _openai_client(self) -> Any:
        """The openai client the run's LLMs share; ConfigError when OpenAI's needs a key."""
        if self._client is None:
            from simulate.llm.openai import new_client

            self._client = new_client(self.settings)
        return self._client

    async def aclose(self) -> None:
        """Close every client the run opened."""
        for llm in self._llms.values():
            close = getattr(llm, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
