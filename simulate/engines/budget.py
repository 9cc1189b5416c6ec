"""Budgets across a Ray cluster: one `Ledger` actor keeps a run's `--max-calls` and
`--max-cost-usd`, and each worker's `LeasedMeter` spends leases of it.

A worker asks for a lease (a slice of what is left, smaller as less is left) when the one it
holds is used up, before its next paid call, and gives back what it did not use when a shard
ends; while the rest is leased to other workers it waits for them to spend it or give it back
(up to `LEASE_WAIT_S`), so the run stops when the budget is spent, not when it is all handed
out. Paid calls never pass `--max-calls`: a call is counted against a lease before it is made
(the driver's preflight call too). The cost of a call is known only once it is answered, and a
worker starts calls while what it has spent is under its lease, so the cost can pass
`--max-cost-usd` by what the calls in flight cost when the budget is reached: at most each
worker's calls in flight then. What a killed worker leased counts as spent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from simulate.engines import remote
from simulate.llm import LLMRole
from simulate.llm.usage import BudgetExceeded, Price, UsageMeter

LEASE_RETRY_S = 0.05
"""How long a worker waits before asking again when the rest of the budget is leased to others."""
LEASE_WAIT_S = 60.0
"""How long it waits at most: then the budget counts as reached (the others never gave back)."""


@dataclass
class _Account:
    """One worker's (one incarnation's) dealings with the ledger."""

    worker: str
    granted_calls: int = 0
    spent_calls: int = 0
    granted_cost: float = 0.0
    spent_cost: float = 0.0


class Ledger:
    """A Ray actor that keeps a run's `--max-calls` and `--max-cost-usd` for all its workers,
    handing each a lease (a slice of what is left) and taking back what a finished shard did
    not use. What a killed worker leased counts as spent."""

    def __init__(self, max_calls: int | None, max_cost_usd: float | None, workers: int) -> None:
        self.max_calls = max_calls
        self.max_cost_usd = max_cost_usd
        self.workers = workers
        self.accounts: dict[str, _Account] = {}

    def join(self, worker: str, key: str) -> None:
        """A worker (re)started as ``key``: what its dead incarnations leased counts as spent."""
        for account in self.accounts.values():
            if account.worker == worker:
                account.spent_calls = max(account.spent_calls, account.granted_calls)
                account.spent_cost = max(account.spent_cost, account.granted_cost)
        self.accounts[key] = _Account(worker)

    def lease(
        self, key: str, spent_calls: int, spent_cost: float
    ) -> tuple[int, float] | str | None:
        """More budget for the meter ``key``, which has spent this much: its new limits, (calls,
        USD) in all; None when the rest is leased to other workers (ask again: they spend it or
        give it back); or why the budget is spent."""
        account = self._report(key, spent_calls, spent_cost)
        accounts = list(self.accounts.values())
        calls, cost = 0, 0.0
        if self.max_calls is not None:
            spent = sum(a.spent_calls for a in accounts)
            if spent >= self.max_calls:
                return f"budget reached: {self.max_calls} model calls (max_calls)"
            left = self.max_calls - sum(max(a.granted_calls, a.spent_calls) for a in accounts)
            if left <= 0:
                return None
            calls = max(1, left // (2 * self.workers))
        if self.max_cost_usd is not None:
            spent_usd = sum(a.spent_cost for a in accounts)
            if spent_usd >= self.max_cost_usd:
                return (
                    f"budget reached: ${spent_usd:.4f} spent of ${self.max_cost_usd:g}"
                    " (max_cost_usd)"
                )
            committed = sum(max(a.granted_cost, a.spent_cost) for a in accounts)
            left_usd = self.max_cost_usd - committed
            if left_usd <= 0:
                return None
            cost = min(left_usd, max(left_usd / (2 * self.workers), self.max_cost_usd / 100))
        account.granted_calls = max(account.granted_calls, account.spent_calls) + calls
        account.granted_cost = max(account.granted_cost, account.spent_cost) + cost
        return account.granted_calls, account.granted_cost

    def settle(self, key: str, spent_calls: int, spent_cost: float) -> None:
        """The meter ``key`` is between shards: what it leased and did not spend is free again."""
        account = self._report(key, spent_calls, spent_cost)
        account.granted_calls, account.granted_cost = spent_calls, spent_cost

    def _report(self, key: str, spent_calls: int, spent_cost: float) -> _Account:
        account = self.accounts.setdefault(key, _Account(key))
        account.spent_calls, account.spent_cost = spent_calls, spent_cost
        return account


class LeasedMeter(UsageMeter):
    """A worker's meter whose budgets are leases from the run's `Ledger`: when one is used up,
    it asks for more before the next paid call, and stops the shard when none is left."""

    def __init__(
        self,
        prices: Mapping[str, Price],
        ledger: Any,
        key: str,
        *,
        calls: bool,
        cost: bool,
        role_prices: Mapping[LLMRole, Mapping[str, Price]] | None = None,
    ) -> None:
        super().__init__(
            prices,
            role_prices=role_prices,
            max_calls=0 if calls else None,
            max_cost_usd=0.0 if cost else None,
        )
        self.ledger = ledger
        self.key = key
        self._asking = asyncio.Lock()

    async def admit(self, model: str, role: LLMRole | None = None) -> None:
        """Reserve a paid call within the lease, leasing more first when it is used up."""
        while True:
            with contextlib.suppress(BudgetExceeded):
                self.reserve(model, role)
                return
            async with self._asking:  # one request to the ledger at a time
                with contextlib.suppress(BudgetExceeded):
                    self.reserve(model, role)  # another call's lease came in meanwhile
                    return
                calls, cost = await self._lease()
                if self.max_calls is not None:
                    self.max_calls = calls
                if self.max_cost_usd is not None:
                    self.max_cost_usd = cost

    async def _lease(self) -> tuple[int, float]:
        """New limits from the ledger, waiting while the rest is leased to other workers."""
        waited = 0.0
        while True:
            grant = await self.ledger.lease.remote(self.key, *self.spent())
            if isinstance(grant, str):
                raise BudgetExceeded(grant)
            if grant is not None:
                return grant
            if waited >= LEASE_WAIT_S:
                raise BudgetExceeded(
                    f"budget reached: the rest of it was leased to other workers, which neither"
                    f" spent it nor gave it back in {LEASE_WAIT_S:g} s"
                )
            await asyncio.sleep(LEASE_RETRY_S)
            waited += LEASE_RETRY_S

    def give_back(self) -> None:
        """Between shards: return what the lease holds beyond what was spent."""
        calls, cost = self.spent()
        if self.max_calls is not None:
            self.max_calls = calls
        if self.max_cost_usd is not None:
            self.max_cost_usd = cost
        self.ledger.settle.remote(self.key, calls, cost)

    def spent(self) -> tuple[int, float]:
        """Paid calls (in flight included) and USD spent so far."""
        totals = self.totals()
        return totals.paid_calls + self._in_flight, totals.cost_usd or 0.0


def new_ledger(config: Any, workers: int, name: str, spent: tuple[int, float] = (0, 0.0)) -> Any:
    """The Ledger actor of a run or a labeling (``config`` holds the budget flags), named
    ``name`` (workers look it up by name: a handle among an actor's arguments makes Ray warn
    about restarts), or None when there is no budget. ``spent``: paid calls and USD the driver
    spent already (the preflight's call), counted against the budget."""
    if config.max_calls is None and config.max_cost_usd is None:
        return None
    ledger = remote(Ledger).options(num_cpus=0, name=name)
    handle = ledger.remote(config.max_calls, config.max_cost_usd, workers)
    handle.settle.remote("driver", *spent)
    return handle
