"""Tokens, money and budgets: what a run's model calls spent, per role and model.

One `UsageMeter` is shared by every LLM of a run. It counts calls and tokens, prices them from
a table (USD per million tokens), and refuses a new paid call once a budget is reached.

Each episode's own usage is counted here too: the runner opens `episode_usage()` around an
episode, and every completion a `MeteredLLM` returns while it is open is added to it, so
simulated users and targets never count anything themselves.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from simulate.errors import ConfigError, LLMError, RunStopped
from simulate.llm import LLM, Completion, LLMRole
from simulate.schema import Message, Usage

_SNAPSHOT = re.compile(r"^(?P<model>.+)-(\d{4}-\d{2}-\d{2}|\d{4})$")


class BudgetExceeded(LLMError, RunStopped):
    """A run reached its `max_calls` or `max_cost_usd`; no further paid calls are made."""


class Price(BaseModel):
    """What a model costs, in USD per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: float = Field(ge=0)
    """USD per million prompt tokens."""
    output_per_mtok: float = Field(ge=0)
    """USD per million completion tokens."""


@functools.cache
def _builtin_prices() -> dict[str, Price]:
    text = resources.files("simulate.llm").joinpath("prices.yaml").read_text("utf-8")
    return {name: Price(**p) for name, p in yaml.safe_load(text)["prices"].items()}


def builtin_prices() -> dict[str, Price]:
    """The price table shipped in `simulate/llm/prices.yaml` (a fresh copy)."""
    return dict(_builtin_prices())


def find_price(model: str, prices: Mapping[str, Price]) -> Price | None:
    """The price of ``model``; a dated snapshot (`gpt-4o-2024-08-06`) is priced as its model."""
    if model in prices:
        return prices[model]
    snapshot = _SNAPSHOT.match(model)
    return prices.get(snapshot["model"]) if snapshot else None


def estimate_cost(
    model: str, prompt_tokens: int, completion_tokens: int, prices: Mapping[str, Price]
) -> float | None:
    """USD for this many tokens on ``model``, or None when its price is unknown."""
    price = find_price(model, prices)
    if price is None:
        return None
    return (prompt_tokens * price.input_per_mtok + completion_tokens * price.output_per_mtok) / 1e6


@dataclass
class UsageStats:
    """Calls and tokens of one role and model, or of a whole run."""

    calls: int = 0
    """Completions returned, cached ones included."""
    cached_calls: int = 0
    """Of those, how many came from the cache (free: no request was made)."""
    prompt_tokens: int = 0
    """Prompt tokens of every completion, cached ones included (as recorded)."""
    completion_tokens: int = 0
    """Completion tokens of every completion, cached ones included (as recorded)."""
    cost_usd: float | None = 0.0
    """What the uncached calls cost; None when one of them has no known price."""

    @property
    def paid_calls(self) -> int:
        """Calls that reached the endpoint."""
        return self.calls - self.cached_calls


class UsageMeter:
    """Usage of every model of a run, per (role, model), with optional budgets.

    Budgets are checked before each uncached call, against what was spent plus calls in flight
    (for `max_calls`): with many concurrent calls the cost can overshoot `max_cost_usd` by what
    the calls already in flight cost.
    """

    def __init__(
        self,
        prices: Mapping[str, Price] | None = None,
        *,
        max_calls: int | None = None,
        max_cost_usd: float | None = None,
    ) -> None:
        self.prices = dict(prices) if prices is not None else builtin_prices()
        self.max_calls = max_calls
        self.max_cost_usd = max_cost_usd
        self._rows: dict[tuple[LLMRole, str], UsageStats] = {}
        self._in_flight = 0

    def require_prices(self, models: Iterable[str]) -> None:
        """Raise ConfigError when a cost budget is set and one of ``models`` has no price."""
        if self.max_cost_usd is None:
            return
        for model in models:
            if find_price(model, self.prices) is None:
                raise ConfigError(
                    f"no price for model {model!r}, so a cost budget cannot be kept: add it"
                    " under `prices:` in the config file (USD per million tokens:"
                    " input_per_mtok, output_per_mtok)"
                )

    def reserve(self, model: str) -> None:
        """Claim one paid call, or raise BudgetExceeded when a budget is reached.

        Every reservation ends with `record()` (the call answered) or `release()` (it failed).
        """
        self.require_prices([model])
        totals = self.totals()
        if self.max_calls is not None and totals.paid_calls + self._in_flight >= self.max_calls:
            raise BudgetExceeded(f"budget reached: {self.max_calls} model calls (max_calls)")
        if self.max_cost_usd is not None and (totals.cost_usd or 0.0) >= self.max_cost_usd:
            raise BudgetExceeded(
                f"budget reached: ${totals.cost_usd:.4f} spent of ${self.max_cost_usd:g}"
                " (max_cost_usd)"
            )
        self._in_flight += 1

    def release(self) -> None:
        """Give back a reservation whose call failed."""
        self._in_flight = max(0, self._in_flight - 1)

    def record(
        self,
        role: LLMRole,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        cached: bool = False,
    ) -> None:
        """Count one completion; an uncached one ends a reservation and costs money."""
        row = self._rows.setdefault((role, model), UsageStats())
        row.calls += 1
        row.prompt_tokens += prompt_tokens
        row.completion_tokens += completion_tokens
        if cached:
            row.cached_calls += 1
            return
        self.release()
        cost = estimate_cost(model, prompt_tokens, completion_tokens, self.prices)
        row.cost_usd = None if cost is None or row.cost_usd is None else row.cost_usd + cost

    def rows(self) -> dict[tuple[LLMRole, str], UsageStats]:
        """Usage per (role, model), in the order first seen."""
        return dict(self._rows)

    def totals(self) -> UsageStats:
        """Usage of the whole run."""
        total = UsageStats()
        for row in self._rows.values():
            total.calls += row.calls
            total.cached_calls += row.cached_calls
            total.prompt_tokens += row.prompt_tokens
            total.completion_tokens += row.completion_tokens
            if total.cost_usd is not None:
                total.cost_usd = None if row.cost_usd is None else total.cost_usd + row.cost_usd
        return total

    def as_usage_list(self) -> list[Usage]:
        """The rows as `schema.Usage`, for the manifest and episode records."""
        return [
            Usage(
                role=role,
                model=model,
                calls=row.calls,
                prompt_tokens=row.prompt_tokens,
                completion_tokens=row.completion_tokens,
                cost_usd=row.cost_usd,
            )
            for (role, model), row in self._rows.items()
        ]


# --- usage per episode ----------------------------------------------------------------------------

_ROLE_ORDER = ("user", "target", "judge", "generator")
_episode: ContextVar[dict[tuple[str, str], Usage] | None] = ContextVar(
    "simulate_episode_usage", default=None
)


@contextlib.contextmanager
def episode_usage() -> Iterator[list[Usage]]:
    """Count the completions of the code inside (one episode) into the list it yields.

    The list is filled when the block ends, one row per role and model, users first.
    """
    rows: dict[tuple[str, str], Usage] = {}
    token = _episode.set(rows)
    counted: list[Usage] = []
    try:
        yield counted
    finally:
        _episode.reset(token)
        counted += sorted(rows.values(), key=lambda u: (_ROLE_ORDER.index(u.role), u.model))


def count_episode_usage(
    role: LLMRole, model: str, calls: int, prompt_tokens: int, completion_tokens: int
) -> None:
    """Add tokens to the episode being played (no-op outside `episode_usage()`): what a
    `MeteredLLM` counts, and what framework adapters report of an agent's own model calls."""
    rows = _episode.get()
    if rows is not None:
        row = rows.setdefault((role, model), Usage(role=role, model=model))
        row.calls += calls
        row.prompt_tokens += prompt_tokens
        row.completion_tokens += completion_tokens


class MeteredLLM:
    """An LLM whose completions count toward the episode being played (as one role)."""

    def __init__(self, llm: LLM, role: LLMRole, model: str) -> None:
        self.llm = llm
        self.role: LLMRole = role
        self.model = model

    async def complete(self, messages: Sequence[Message], **options: Any) -> Completion:
        """The wrapped LLM's completion, counted for the episode (cached ones too)."""
        completion = await self.llm.complete(messages, **options)
        count_episode_usage(
            self.role, self.model, 1, completion.prompt_tokens, completion.completion_tokens
        )
        return completion

    def __getattr__(self, name: str) -> Any:
        return getattr(self.llm, name)  # the wrapped LLM's own attributes (settings, client...)

    async def aclose(self) -> None:
        """Close the wrapped LLM when it has something to close."""
        close = getattr(self.llm, "aclose", None)
        if close is not None:
            await close()
