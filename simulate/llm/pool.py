"""The LLMs of one run: one client per (model, role), one usage meter, closed together."""

from __future__ import annotations

import contextlib
from typing import Any

from simulate.llm import LLM, LLMRole, get_llm, split_spec
from simulate.llm.settings import LLMSettings
from simulate.llm.usage import UsageMeter


class LLMPool:
    """Hands out the run's shared LLMs, made on first use, all counted by one meter."""

    def __init__(self, settings: LLMSettings, meter: UsageMeter) -> None:
        self.settings = settings
        self.meter = meter
        self._llms: dict[tuple[str, str], LLM] = {}

    def get(self, spec: str, role: str) -> LLM:
        """The LLM for a `backend:model` spec playing ``role`` (user, target, judge)."""
        key = (spec, role)
        if key not in self._llms:
            backend, model = split_spec(spec)
            options: dict[str, Any] = {}
            if backend == "openai":
                if not self.settings.replay_only:  # a replay never calls out, so needs no key
                    self.settings.client_key()  # no key for api.openai.com: say so up front
                self.meter.require_prices([model])
                role_name: LLMRole = role  # type: ignore[assignment]
                options = {"settings": self.settings, "role": role_name, "meter": self.meter}
            self._llms[key] = get_llm(spec, **options)
        return self._llms[key]

    async def aclose(self) -> None:
        """Close every client the run opened."""
        for llm in self._llms.values():
            close = getattr(llm, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
