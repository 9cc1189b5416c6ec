"""The budget ledger of `--engine ray`, in one process: leases add up to the budget, a worker
waits while the rest is leased to another, a dead worker's lease counts as spent. (The whole
cluster run against the test server is in test_engine_ray.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from simulate.engines import budget
from simulate.engines.budget import LeasedMeter, Ledger
from simulate.llm.usage import BudgetExceeded, Price

PRICES = {"m": Price(input_per_mtok=1_000_000, output_per_mtok=0)}  # $1 per prompt token


class Local:
    """An object called the way a Ray actor handle is (`handle.method.remote(...)`, awaited)."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.target, name)

        class Remote:
            @staticmethod
            def remote(*args: Any) -> asyncio.Future[Any]:
                future = asyncio.get_running_loop().create_future()
                future.set_result(method(*args))
                return future

        return Remote


def test_leases_never_add_up_to_more_calls_than_the_budget():
    ledger = Ledger(max_calls=10, max_cost_usd=None, workers=2)
    ledger.join("w0", "a")
    ledger.join("w1", "b")
    granted = {"a": 0, "b": 0}
    spent = {"a": 0, "b": 0}
    for _ in range(50):
        for key in ("a", "b"):
            grant = ledger.lease(key, spent[key], 0.0)
            if isinstance(grant, tuple):
                granted[key] = grant[0]
                spent[key] = grant[0]  # each spends its whole lease before asking again
    assert sum(spent.values()) == 10
    assert ledger.lease("a", spent["a"], 0.0) == "budget reached: 10 model calls (max_calls)"


def test_a_worker_waits_while_the_rest_is_leased_then_gets_what_is_given_back():
    ledger = Ledger(max_calls=4, max_cost_usd=None, workers=1)
    ledger.join("w0", "a")
    ledger.join("w1", "b")
    assert ledger.lease("a", 0, 0.0) == (2, 0.0)
    assert ledger.lease("a", 2, 0.0) == (3, 0.0)
    assert ledger.lease("a", 3, 0.0) == (4, 0.0)
    assert ledger.lease("b", 0, 0.0) is None  # all four are a's, one still unspent: wait
    ledger.settle("a", 3, 0.0)  # a's shard ended with one call unused
    assert ledger.lease("b", 0, 0.0) == (1, 0.0)
    assert isinstance(ledger.lease("b", 1, 0.0), str)


def test_a_dead_workers_lease_counts_as_spent():
    ledger = Ledger(max_calls=4, max_cost_usd=None, workers=1)
    ledger.join("w0", "a")
    ledger.join("w1", "b")
    ledger.lease("a", 0, 0.0)
    ledger.lease("a", 2, 0.0)  # a holds 3, spent 2 when it dies
    ledger.join("w0", "a-restarted")
    assert ledger.lease("a-restarted", 0, 0.0) == (1, 0.0)  # the 4th: the dead one's 3 are gone
    assert ledger.lease("b", 0, 0.0) is None  # not spent yet: it may be given back
    assert ledger.lease("a-restarted", 1, 0.0) == "budget reached: 4 model calls (max_calls)"


async def test_two_meters_on_one_ledger_keep_the_cost_budget_within_calls_in_flight(monkeypatch):
    monkeypatch.setattr(budget, "LEASE_RETRY_S", 0.001)
    ledger = Local(Ledger(max_calls=None, max_cost_usd=10.0, workers=2))
    meters = [LeasedMeter(PRICES, ledger, key, calls=False, cost=True) for key in ("a", "b")]
    for key in ("a", "b"):
        ledger.target.join(key, key)
    in_flight = 0
    most_in_flight = 0

    async def call(meter: LeasedMeter) -> None:
        nonlocal in_flight, most_in_flight
        await meter.admit("m")
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        await asyncio.sleep(0.001)
        in_flight -= 1
        meter.record("user", "m", prompt_tokens=1, completion_tokens=0)  # $1

    async def worker(meter: LeasedMeter) -> None:
        with pytest.raises(BudgetExceeded, match=r"max_cost_usd"):
            while True:
                await asyncio.gather(call(meter), call(meter), call(meter))

    await asyncio.gather(*(worker(m) for m in meters))
    spent = sum(m.totals().cost_usd for m in meters)
    assert 10.0 <= spent <= 10.0 + most_in_flight  # the overshoot: calls in flight, $1 each
