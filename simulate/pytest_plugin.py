"""The `simulate_run` pytest fixture: play personas x scenarios against an agent in a test.

Registered through the `pytest11` entry point, so installing Simulate is enough:

    async def test_support_agent(simulate_run):
        result = await simulate_run("python:agent.py:respond",
                                    personas="personas/", scenarios="scenarios/")
        assert result.goal_rate >= 0.8, result

The target is a `--target` spec string, a function, a class, an object with `respond()`, or a
framework's agent or graph. Personas and scenarios are paths or in-memory `Persona` /
`Scenario` models; any other `RunConfig` field is a keyword (`trials=3`, `max_turns=8`, ...).
The run plays in the test's own event loop (`await`; `simulate_run.sync(...)` in a plain
test) into a folder under the test's `tmp_path`, and returns the goal rate, its 95% interval,
the failures and the run folder. When the test fails, the failing transcripts are printed in
a report section of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from simulate.schema import Episode, Persona, Scenario
    from simulate.simulation import RunConfig, RunResult

SECTION = "simulate: failing transcripts"
MAX_SHOWN = 5
"""Failing transcripts printed in a failed test's report."""

_RESULTS = pytest.StashKey[list["SimulationResult"]]()


@dataclass(repr=False)
class SimulationResult:
    """What a `simulate_run` played: the rate, how sure it is, and what went wrong."""

    run_dir: Path
    goal_rate: float | None
    """Successes over episodes that count toward it (None when none does)."""
    interval: tuple[float, float] | None
    """The goal rate's 95% Wilson interval."""
    n: int
    """Episodes that count toward the goal rate."""
    failures: list[Episode] = field(default_factory=list)
    """Episodes that count and did not succeed."""
    errors: list[Episode] = field(default_factory=list)
    """Episodes that ended in target or simulator errors (left out of the rate)."""
    run: RunResult | None = None

    def __str__(self) -> str:
        if self.goal_rate is None or self.interval is None:
            rate = "no episode counts toward the goal rate"
        else:
            low, high = self.interval
            rate = f"goal rate {self.goal_rate:.0%} ({low:.0%}-{high:.0%}, n={self.n})"
        return (
            f"{rate}; {len(self.failures)} failed, {len(self.errors)} errors; run folder "
            f"{self.run_dir}"
        )

    __repr__ = __str__  # what pytest shows for `assert ..., result`

    def transcripts(self, limit: int = MAX_SHOWN) -> str:
        """The first ``limit`` failing (and errored) episodes as plain text."""
        shown = [*self.failures, *self.errors][:limit]
        return "\n\n".join(format_transcript(e) for e in shown)


def format_transcript(episode: Episode) -> str:
    """One episode as plain text: who said what, tool calls, how it ended."""
    lines = [f"--- {episode.persona_id} x {episode.scenario_id} (trial {episode.trial}) ---"]
    for message in episode.messages:
        lines.append(f"{message.role}: {message.content}")
        lines += [f"    -> {c.name}({c.arguments})" for c in message.tool_calls]
    outcome = episode.outcome
    checks = f"; failed checks: {', '.join(outcome.failed_checks)}" if outcome.failed_checks else ""
    lines.append(f"[{outcome.status}] {outcome.reason}{checks}")
    if episode.error_traceback:
        lines.append(episode.error_traceback.rstrip())
    return "\n".join(lines)


class SimulateRun:
    """The fixture's value: call it (await it) to play a run."""

    def __init__(self, folder: Path, results: list[SimulationResult]) -> None:
        self._folder = folder
        self._results = results

    async def __call__(
        self,
        target: Any,
        *,
        personas: str | Path | Persona | Sequence[str | Path | Persona],
        scenarios: str | Path | Scenario | Sequence[str | Path | Scenario],
        **options: Any,
    ) -> SimulationResult:
        """Play ``personas`` x ``scenarios`` against ``target`` in the running event loop."""
        from simulate.simulation import run

        config, make_target = self._prepare(target, personas, scenarios, options)
        return self._finish(await run(config, make_target=make_target))

    def sync(self, target: Any, **kwargs: Any) -> SimulationResult:
        """The same from a test that is not async (the process's one event loop)."""
        from simulate.simulation import in_loop

        return in_loop(self(target, **kwargs))

    def _prepare(
        self, target: Any, personas: Any, scenarios: Any, options: dict[str, Any]
    ) -> tuple[RunConfig, Any]:
        from simulate.simulation import RunConfig
        from simulate.targets import TargetOptions, target_from_object

        index = len(self._results) + 1
        out = options.pop("out", None) or self._folder / f"run-{index}"
        spec, make_target = target, None
        if not isinstance(target, str):
            spec = f"python:{getattr(target, '__qualname__', type(target).__name__)}"
        config = RunConfig(
            personas=self._paths(personas, "personas", index),
            scenarios=self._paths(scenarios, "scenarios", index),
            target=spec,
            out=str(out),
            **options,
        )
        if not isinstance(target, str):
            make_target = target_from_object(
                target,
                TargetOptions(turn_timeout_s=config.turn_timeout_s),
            )
        return config, make_target

    def _paths(self, given: Any, kind: str, index: int) -> list[str]:
        """Paths as given; in-memory models written to a YAML file the run reads."""
        from pydantic import BaseModel

        from simulate.loader import write_yaml

        items = list(given) if isinstance(given, list | tuple) else [given]
        models = [i for i in items if isinstance(i, BaseModel)]
        paths = [str(i) for i in items if not isinstance(i, BaseModel)]
        if models:
            file = self._folder / f"{kind}-{index}.yaml"
            write_yaml(models, file, header=f"{kind} given to simulate_run", force=True)
            paths.append(str(file))
        return paths

    def _finish(self, run: RunResult) -> SimulationResult:
        from simulate.schema import is_rated
        from simulate.store import RunFolder

        episodes = list(RunFolder(run.run_dir).episodes())
        result = SimulationResult(
            run_dir=run.run_dir,
            goal_rate=run.goal_rate,
            interval=run.interval,
            n=run.rated,
            failures=[e for e in episodes if not e.success and is_rated(e.outcome.status)],
            errors=[e for e in episodes if not is_rated(e.outcome.status)],
            run=run,
        )
        self._results.append(result)
        return result


@pytest.fixture
def simulate_run(request: pytest.FixtureRequest, tmp_path: Path) -> SimulateRun:
    """Play personas x scenarios against an agent: `await simulate_run(target, personas=...,
    scenarios=...)` returns a `SimulationResult` (goal rate, interval, failures, run folder)."""
    results: list[SimulationResult] = []
    request.node.stash[_RESULTS] = results
    return SimulateRun(tmp_path / "simulate", results)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test that played runs shows their failing transcripts."""
    report = yield
    results = item.stash.get(_RESULTS, None)
    if report.when == "call" and report.failed and results:
        text = "\n\n".join(r.transcripts() for r in results if r.failures or r.errors)
        if text:
            report.sections.append((SECTION, text))
    return report
