"""Simulate: simulated users for conversational AI agents, recorded as Hugging Face datasets.

`simulate.load_run("outputs/demo")` returns a run as a `datasets.Dataset`, one row per episode;
`await simulate.run(RunConfig(...))` plays one from async code, `simulate.run_sync(...)` from a
script; the `simulate_run` pytest fixture (`simulate.pytest_plugin`) from a test.
"""

from simulate.errors import ConfigError, LLMError, RunFolderError, SimulateError, TargetError
from simulate.schema import Episode, EpisodeSpec, Message, Outcome, Persona, Scenario, Status
from simulate.simulation import RunConfig, RunResult, run, run_sync
from simulate.store import iter_episodes, load_run

__all__ = [
    "ConfigError",
    "Episode",
    "EpisodeSpec",
    "LLMError",
    "Message",
    "Outcome",
    "Persona",
    "RunConfig",
    "RunFolderError",
    "RunResult",
    "Scenario",
    "SimulateError",
    "Status",
    "TargetError",
    "iter_episodes",
    "load_run",
    "run",
    "run_sync",
]
