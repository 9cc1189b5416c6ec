"""Tokens, money and budgets: what a run's model calls spent, per role and model.

One `UsageMeter` is shared by every LLM of a run. It counts calls and tokens, prices them from
a table (USD per million tokens), and refuses a new paid call once a budget is reached.

Each episode's own usage is counted here too: the runner opens `episode_usage()` around an
episode, and every completion a `MeteredLLM` returns while it is open is added to it, so
simulated users and targets never count anything themselves. Calls made outside the episode's
own task (the agent's, through the model proxy) reach its row through `Sessions`, by session id.
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

    def add(self, other: UsageStats) -> None:
        """Count ``other``'s usage in this one (the cost unknown once either's is)."""
        self.calls += other.calls
        self.cached_calls += other.cached_calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        if self.cost_usd is not None:
            self.cost_usd = None if other.cost_usd is None else self.cost_usd + other.cost_usd


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
        role_prices: Mapping[LLMRole, Mapping[str, Price]] | None = None,
        max_calls: int | None = None,
        max_cost_usd: float | None = None,
    ) -> None:
        self.prices = dict(prices) if prices is not None else builtin_prices()
        self.role_prices = {role: dict(table) for role, table in (role_prices or {}).items()}
        """Price tables of roles whose endpoint has prices of its own."""
        self.max_calls = max_calls
        self.max_cost_usd = max_cost_usd
        self._rows: dict[tuple[LLMRole, str], UsageStats] = {}
        self._in_flight = 0

    def prices_for(self, role: LLMRole | None) -> Mapping[str, Price]:
        """The price table of ``role``'s calls."""
        return self.role_prices.get(role, self.prices) if role is not None else self.prices

    def cost(
        self, role: LLMRole, model: str, prompt_tokens: int, completion_tokens: int
    ) -> float | None:
        """USD for this many tokens of ``role`` on ``model``, or None when it has no price."""
        return estimate_cost(model, prompt_tokens, completion_tokens, self.prices_for(role))

    def require_prices(self, models: Iterable[str], role: LLMRole | None = None) -> None:
        """Raise ConfigError when a cost budget is set and one of ``models`` has no price."""
        if self.max_cost_usd is None:
            return
        for model in models:
            if find_price(model, self.prices_for(role)) is None:
                raise ConfigError(
                    f"no price for model {model!r}, so a cost budget cannot be kept: add it"
                    " under `prices:` in the config file (USD per million tokens:"
                    " input_per_mtok, output_per_mtok)"
                )

    def reserve(self, model: str, role: LLMRole | None = None) -> None:
        """Claim one paid call, or raise BudgetExceeded when a budget is reached.

        Every reservation ends with `record()` (the call answered) or `release()` (it failed).
        """
        self.require_prices([model], role)
        totals = self.totals()
        if self.max_calls is not None and totals.paid_calls + self._in_flight >= self.max_calls:
            raise BudgetExceeded(f"budget reached: {self.max_calls} model calls (max_calls)")
        if self.max_cost_usd is not None and (totals.cost_usd or 0.0) >= self.max_cost_usd:
            raise BudgetExceeded(
                f"budget reached: ${totals.cost_usd:.4f} spent of ${self.max_cost_usd:g}"
                " (max_cost_usd)"
            )
        self._in_flight += 1

    async def admit(self, model: str, role: LLMRole | None = None) -> None:
        """`reserve()` from async code: where a meter shares a budget with other processes
        (the Ray engine's workers) it may first have to ask for a share of it."""
        self.reserve(model, role)

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
        cost = self.cost(role, model, prompt_tokens, completion_tokens)
        row.cost_usd = None if cost is None or row.cost_usd is None else row.cost_usd + cost

    def absorb(self, rows: Mapping[tuple[LLMRole, str], UsageStats]) -> None:
        """Add usage counted by another meter (a Ray worker's) to this one's rows."""
        for key, other in rows.items():
            self._rows.setdefault(key, UsageStats()).add(other)

    def rows(self) -> dict[tuple[LLMRole, str], UsageStats]:
        """Usage per (role, model), in the order first seen."""
        return dict(self._rows)

    def totals(self) -> UsageStats:
        """Usage of the whole run."""
        total = UsageStats()
        for row in self._rows.values():
            total.add(row)
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

_ROLE_ORDER = ("user", "target", "agent", "judge", "generator")
EpisodeRows = dict[tuple[str, str], Usage]
"""One episode's usage so far, by (role, model)."""
_episode: ContextVar[EpisodeRows | None] = ContextVar("simulate_episode_usage", default=None)
_sessions: ContextVar[Sessions | None] = ContextVar("simulate_sessions", default=None)


class Sessions:
    """The episodes being played, by session id, so that calls made outside an episode's own
    task (the agent's, through the model proxy) count toward its row."""

    def __init__(self) -> None:
        self._rows: dict[str, EpisodeRows] = {}

    @contextlib.contextmanager
    def tracking(self) -> Iterator[Sessions]:
        """Register every episode that starts inside this block (the run's batch)."""
        token = _sessions.set(self)
        try:
            yield self
        finally:
            _sessions.reset(token)

    def playing(self) -> list[str]:
        """Session ids of the episodes being played now."""
        return list(self._rows)

    def add(
        self,
        session_id: str | None,
        role: LLMRole,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        cost_usd: float | None,
    ) -> bool:
        """Count one call toward the episode of ``session_id``; False when it is not playing."""
        rows = self._rows.get(session_id) if session_id else None
        if rows is None:
            return False
        add_call(rows, role, model, prompt_tokens, completion_tokens, cost_usd)
        return True


def add_call(
    rows: EpisodeRows,
    role: LLMRole,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    cost_usd: float | None,
    calls: int = 1,
) -> None:
    """Add calls to an episode's rows; the row's cost stays None once a call has no price."""
    row = rows.get((role, model))
    if row is None:
        row = rows[(role, model)] = Usage(
            role=role, model=model, cost_usd=None if cost_usd is None else 0.0
        )
    row.calls += calls
    row.prompt_tokens += prompt_tokens
    row.completion_tokens += completion_tokens
    if row.cost_usd is not None:
        row.cost_usd = None if cost_usd is None else row.cost_usd + cost_usd


@contextlib.contextmanager
def episode_usage(session_id: str | None = None) -> Iterator[list[Usage]]:
    """Count the completions of the code inside (one episode) into the list it yields.

    The list is filled when the block ends, one row per role and model, users first. With a
    ``session_id``, calls counted through the run's `Sessions` under that id are added too.
    """
    rows: EpisodeRows = {}
    token = _episode.set(rows)
    sessions = _sessions.get() if session_id else None
    if sessions is not None and session_id:
        sessions._rows[session_id] = rows
    counted: list[Usage] = []
    try:
        yield counted
    finally:
        _episode.reset(token)
        if sessions is not None and session_id:
            sessions._rows.pop(session_id, None)
        counted += sorted(rows.values(), key=lambda u: (_ROLE_ORDER.index(u.role), u.model))


def count_episode_usage(
    role: LLMRole, model: str, calls: int, prompt_tokens: int, completion_tokens: int
) -> None:
    """Add an agent's own calls to the episode being played (no-op outside `episode_usage()`),
    as framework adapters report them: tokens, no price (the framework's model is not ours)."""
    rows = _episode.get()
    if rows is not None:
        add_call(rows, role, model, prompt_tokens, completion_tokens, None, calls=calls)


class MeteredLLM:
    """An LLM whose completions count toward the episode being played (as one role)."""

    def __init__(
        self, llm: LLM, role: LLMRole, model: str, meter: UsageMeter | None = None
    ) -> None:
        self.llm = llm
        self.role: LLMRole = role
        self.model = model
        self.meter = meter
        """Prices the episode's rows; None leaves their cost unknown."""

    async def complete(self, messages: Sequence[Message], **options: Any) -> Completion:
        """The wrapped LLM's completion, counted for the episode (cached ones too)."""
        completion = await self.llm.complete(messages, **options)
        rows = _episode.get()
        if rows is not None:
            p, c = completion.prompt_tokens, completion.completion_tokens
            cost = self.meter.cost(self.role, self.model, p, c) if self.meter else None
            add_call(rows, self.role, self.model, p, c, cost)
        return completion

    def __getattr__(self, name: str) -> Any:
        return getattr(self.llm, name)  # the wrapped LLM's own attributes (settings, client...)

    async def aclose(self) -> None:
        """Close the wrapped LLM when it has something to close."""
        close = getattr(self.llm, "aclose", None)
        if close is not None:
            await close()
