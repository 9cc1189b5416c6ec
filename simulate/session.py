"""One `simulate run`: load inputs, plan, open the run folder, play, and write the manifest.

`run()` is the library form of the command; the CLI adds a progress bar and a summary.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from simulate.errors import ConfigError
from simulate.loader import load_personas, load_scenarios
from simulate.plan import build_plan
from simulate.runner import RunSettings, Tally, goal_rate, run_episodes
from simulate.schema import SCHEMA_VERSION, Episode, EpisodeSpec, Model
from simulate.store import (
    ShardWriter,
    environment,
    now_iso,
    prepare_run_folder,
    stored_outcomes,
    write_manifest,
)
from simulate.targets import TargetOptions, load_target
from simulate.users import load_user


class RunConfig(Model):
    """Everything that defines a run; recorded in its manifest."""

    personas: list[str]
    """Persona files or folders."""
    scenarios: list[str]
    """Scenario files or folders."""
    out: str
    """The run folder."""
    name: str | None = None
    """Run name (part of every episode id); defaults to the run folder's name."""
    user: str = "agenda"
    target: str = "demo"
    trials: int = Field(1, ge=1)
    seed: int = 0
    max_turns: int = Field(12, ge=1)
    concurrency: int = Field(8, ge=1)
    turn_timeout_s: float = Field(30.0, gt=0)
    stateful: bool = False
    persona_filter: list[str] = Field(default_factory=list)
    scenario_filter: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    resume: bool = False
    """Continue the run already in `out`, skipping stored episodes."""

    @property
    def run_id(self) -> str:
        """The run's name."""
        return self.name or Path(self.out).resolve().name


@dataclass
class RunResult:
    """What a run did: where it is, what it counted, whether it was cut short."""

    run_dir: Path
    tally: Tally
    stored: dict[str, Any]
    """Counts over every episode in the folder, earlier sessions of a resumed run included."""


_URL_SECRET = re.compile(r"(?<=://)[^/@\s]+@")
_QUERY_SECRET = re.compile(r"(?i)([?&](?:api[_-]?key|key|token|access_token|secret)=)[^&\s]+")


def redact(spec: str) -> str:
    """A spec with credentials (URL user:password, key= query values) replaced by ***."""
    return _QUERY_SECRET.sub(r"\1***", _URL_SECRET.sub("***@", spec))


def plan_fingerprint(specs: list[EpisodeSpec], settings: RunSettings) -> str:
    """A hash of everything that decides the episodes' content, to refuse mixed resumes."""
    digest = hashlib.sha256()
    digest.update(json.dumps([settings.user, settings.target, settings.stateful]).encode())
    for spec in specs:
        digest.update(spec.model_dump_json().encode())
    return digest.hexdigest()


def prepare(config: RunConfig) -> tuple[list[EpisodeSpec], RunSettings]:
    """Load and check every input and build the plan; raises ConfigError on bad input."""
    personas = load_personas(config.personas)
    scenarios = load_scenarios(config.scenarios)
    specs = build_plan(
        personas,
        scenarios,
        run_id=config.run_id,
        trials=config.trials,
        seed=config.seed,
        max_turns=config.max_turns,
        persona_filter=config.persona_filter,
        scenario_filter=config.scenario_filter,
        tags=config.tags,
    )
    if config.user.partition(":")[0] == "scripted":
        missing = sorted({s.scenario.id for s in specs if not s.scenario.script})
        if missing:
            raise ConfigError(
                f"--user scripted needs a `script` in every scenario; none in: {', '.join(missing)}"
            )
    settings = RunSettings(
        user=redact(config.user),
        target=redact(config.target),
        concurrency=config.concurrency,
        turn_timeout_s=config.turn_timeout_s,
        stateful=config.stateful,
    )
    return specs, settings


async def run(
    config: RunConfig,
    on_start: Callable[[Tally], Any] | None = None,
    on_episode: Callable[[Episode, Tally], Any] | None = None,
) -> RunResult:
    """Play a run into ``config.out``; resumable, and safe to cancel (finished work is kept).

    Args:
        on_start: called once with the tally, after planning, before the first episode.
        on_episode: called with each finished episode and the tally so far.
    """
    specs, settings = prepare(config)
    make_user = load_user(config.user)
    make_target = load_target(config.target, TargetOptions(turn_timeout_s=config.turn_timeout_s))
    manifest = _new_manifest(config, specs, settings)
    done = prepare_run_folder(config.out, manifest, resume=config.resume)
    todo = [spec for spec in specs if spec.episode_id not in done]
    tally = Tally(planned=len(specs), skipped=len(specs) - len(todo))
    if on_start:
        on_start(tally)

    def record(episode: Episode) -> None:
        tally.add(episode)
        if on_episode:
            on_episode(episode, tally)

    started = time.perf_counter()
    status = "interrupted"
    try:
        await run_episodes(todo, make_user, make_target, ShardWriter(config.out), settings, record)
        status = "complete"
    finally:
        stored = stored_outcomes(config.out)
        manifest.update(
            status=status,
            updated_at=now_iso(),
            counts={"planned": len(specs), **stored},
            last_session={
                "played": tally.done,
                "skipped_already_stored": tally.skipped,
                "duration_s": round(time.perf_counter() - started, 3),
                "goal_rate": goal_rate(tally),
            },
        )
        write_manifest(config.out, manifest)
    return RunResult(run_dir=Path(config.out), tally=tally, stored=stored)


def _new_manifest(
    config: RunConfig, specs: list[EpisodeSpec], settings: RunSettings
) -> dict[str, Any]:
    recorded = config.model_dump(exclude={"resume"})
    recorded.update(user=settings.user, target=settings.target, run_id=config.run_id)
    return {
        "simulate": "run",
        "schema_version": SCHEMA_VERSION,
        "run_id": config.run_id,
        "created_at": now_iso(),
        "status": "running",
        "config": recorded,
        "plan": {"episodes": len(specs), "fingerprint": plan_fingerprint(specs, settings)},
        "environment": environment(),
    }
