"""One `simulate run`: load inputs, plan, open the run folder, play, and write the manifest.

`run()` is the library form of the command; the CLI adds a progress bar and a summary.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from simulate import prompts, targets, users
from simulate.errors import ConfigError, RunStopped
from simulate.llm import split_spec
from simulate.llm.pool import EndpointFlags, LLMPool
from simulate.llm.settings import LLMSettings
from simulate.llm.usage import estimate_cost
from simulate.loader import load_personas, load_scenarios
from simulate.plan import MAX_EPISODES, build_plan
from simulate.runner import RunSettings, Tally, goal_rate, run_episodes
from simulate.schema import (
    SCHEMA_VERSION,
    Episode,
    EpisodeSpec,
    LLMRecord,
    Manifest,
    PlanRecord,
    RecordedConfig,
    RunCounts,
    SessionRecord,
    Usage,
)
from simulate.store import DISCARDED, RunFolder, environment, now_iso
from simulate.users.llm import read_prompt


class RunConfig(EndpointFlags):
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
    trials: int = Field(1, ge=1, le=10_000)
    seed: int = 0
    max_turns: int = Field(12, ge=1, le=1000)
    concurrency: int = Field(8, ge=1, le=4096)
    max_episodes: int = Field(MAX_EPISODES, ge=1)
    """Refuse a larger plan (`--max-episodes`); plans are counted before they are built."""
    turn_timeout_s: float = Field(30.0, gt=0)
    stateful: bool = False
    persona_filter: list[str] = Field(default_factory=list)
    scenario_filter: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    user_prompt: str | None = None
    """A Jinja2 file replacing the LLM user's system-prompt template (`--user-prompt`)."""
    temperature: float | None = Field(None, ge=0, le=2)
    """Sampling temperature of the LLM user; None: the endpoint's default."""
    system_prompt: str | None = None
    """The `openai:` target's system-prompt file."""
    tools: str | None = None
    """The `openai:` target's tools file."""
    resume: bool = False
    """Continue the run already in `out`, skipping stored episodes."""
    resimulate_faults: int = Field(0, ge=0)
    """Play an episode with simulator faults again with a new seed, up to this many times; the
    attempts set aside are kept in `out/discarded/`."""

    @property
    def run_id(self) -> str:
        """The run's name."""
        return self.name or Path(self.out).resolve().name


@dataclass
class RunResult:
    """What a run did: where it is, what it counted, whether it was cut short."""

    run_dir: Path
    tally: Tally
    stored: RunCounts
    """Counts over every episode in the folder, earlier sessions of a resumed run included."""
    stopped: str | None = None
    """Why the run stopped before its end (a spent budget, a replay miss), or None."""
    usage: list[Usage] = field(default_factory=list)
    """Model usage of this session, per role and model."""


@dataclass
class Prepared:
    """A checked run: its plan, how episodes are played, and the prompt files' texts."""

    specs: list[EpisodeSpec]
    settings: RunSettings
    texts: dict[str, str]
    """`user_prompt`, `system_prompt`, `tools`: what was read from those files."""

    def text_hashes(self) -> dict[str, str]:
        """Short hashes of the prompt files, for the manifest and the plan fingerprint."""
        return {k: prompts.digest(v) for k, v in self.texts.items()}


_URL_SECRET = re.compile(r"(?<=://)[^/@\s]+@")
_QUERY_SECRET = re.compile(r"(?i)([?&](?:api[_-]?key|key|token|access_token|secret)=)[^&\s]+")


def redact(spec: str) -> str:
    """A spec with credentials (URL user:password, key= query values) replaced by ***."""
    return _QUERY_SECRET.sub(r"\1***", _URL_SECRET.sub("***@", spec))


def plan_fingerprint(prepared: Prepared) -> str:
    """A hash of everything that decides the episodes' content, to refuse mixed resumes."""
    settings = prepared.settings
    digest = hashlib.sha256()
    digest.update(json.dumps([settings.user, settings.target, settings.stateful]).encode())
    if settings.resimulate_faults:  # only then, so runs planned before it resume as they were
        digest.update(f"resimulate_faults={settings.resimulate_faults}".encode())
    digest.update(json.dumps(prepared.text_hashes(), sort_keys=True).encode())
    for spec in prepared.specs:
        digest.update(_spec_json(spec).encode())
    return digest.hexdigest()


#: Success checks added after runs were first planned: left out of the fingerprint when empty,
#: so a run planned before them still resumes.
_LATER_CHECKS = ("must_match", "must_not_match")


def _spec_json(spec: EpisodeSpec) -> str:
    success = spec.scenario.success
    empty = {name for name in _LATER_CHECKS if not getattr(success, name)}
    return spec.model_dump_json(exclude={"scenario": {"success": empty}} if empty else None)


def prepare(config: RunConfig) -> Prepared:
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
        max_episodes=config.max_episodes,
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
        resimulate_faults=config.resimulate_faults,
    )
    texts = {}
    if users.needs_llm(config.user):
        texts["user_prompt"] = read_prompt(config.user_prompt)
    for name, path in (("system_prompt", config.system_prompt), ("tools", config.tools)):
        if path:
            texts[name] = _read(path, f"--{name.replace('_', '-')}")
    if targets.needs_llm(config.target) and "system_prompt" not in texts:
        raise ConfigError("--target openai:MODEL needs --system-prompt FILE (the agent's prompt)")
    return Prepared(specs=specs, settings=settings, texts=texts)


def _read(path: str, flag: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{flag} {path!r}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{flag} {path!r}: not UTF-8 text") from exc


async def run(
    config: RunConfig,
    on_start: Callable[[Tally], Any] | None = None,
    on_episode: Callable[[Episode, Tally], Any] | None = None,
    *,
    only_trials: int | None = None,
) -> RunResult:
    """Play a run into ``config.out``; resumable, and safe to cancel (finished work is kept).

    Args:
        on_start: called once with the tally, after planning, before the first episode.
        on_episode: called with each finished episode and the tally so far.
        only_trials: play only the first this many trials of each cell this session (the plan
            stays the whole plan, so a later session resumes it): rounds of a sequential gate.
    """
    prepared = prepare(config)
    specs = prepared.specs
    uses_llm = users.needs_llm(config.user) or targets.needs_llm(config.target)
    pool = LLMPool.from_config(config) if uses_llm else None
    get_llm = pool.get if pool else None
    make_user = users.load_user(
        config.user,
        users.UserOptions(
            get_llm=get_llm,
            prompt=prepared.texts.get("user_prompt"),
            temperature=config.temperature,
        ),
    )
    make_target = targets.load_target(
        config.target,
        targets.TargetOptions(
            turn_timeout_s=config.turn_timeout_s,
            system_prompt=prepared.texts.get("system_prompt"),
            tools_file=config.tools,
            get_llm=get_llm,
        ),
    )
    manifest = _new_manifest(config, prepared)
    with RunFolder(config.out).lock("episodes", "simulate run"):
        folder = RunFolder.create(config.out, manifest, resume=config.resume)
        done = folder.episode_ids() if config.resume else set()
        now = [spec for spec in specs if only_trials is None or spec.trial < only_trials]
        todo = [spec for spec in now if spec.episode_id not in done]
        tally = Tally(planned=len(now), skipped=len(now) - len(todo))
        if on_start:
            on_start(tally)

        def record(episode: Episode) -> None:
            tally.add(episode)
            if on_episode:
                on_episode(episode, tally)

        started = time.perf_counter()
        status, stopped = "interrupted", None
        discarded = None
        try:
            writer = folder.writer()
            discarded = folder.writer(DISCARDED) if config.resimulate_faults else None
            await run_episodes(
                todo, make_user, make_target, writer, prepared.settings, record, discarded
            )
            status = "complete"
        except RunStopped as exc:
            status, stopped = "stopped", str(exc)
        finally:
            if pool is not None:
                await pool.aclose()
            stored = folder.outcome_counts()
            stored.planned = len(specs)
            usage = pool.meter.as_usage_list() if pool else []
            session = SessionRecord(
                played=tally.done,
                skipped_already_stored=tally.skipped,
                duration_s=round(time.perf_counter() - started, 3),
                goal_rate=goal_rate(tally),
                faulted=tally.faulted,
                discarded_attempts=discarded.written if discarded else 0,
                model_usage=usage,
            )

            def finish(written: Manifest) -> None:
                written.status = status  # type: ignore[assignment]
                written.stopped_because = stopped
                written.updated_at = now_iso()
                written.counts = stored
                written.last_session = session
                if pool is not None:
                    written.llm = _llm_manifest(pool, prepared)

            folder.update_manifest(finish)
    return RunResult(
        run_dir=Path(config.out), tally=tally, stored=stored, stopped=stopped, usage=usage
    )


def _llm_manifest(pool: LLMPool, prepared: Prepared) -> LLMRecord:
    """What the manifest says of the models: endpoint host, models, prompt hashes, totals."""
    totals = pool.meter.totals()
    return LLMRecord(
        endpoint=pool.settings.host,
        cache=pool.settings.use_cache,
        replay_only=pool.settings.replay_only,
        prompt_hashes=prepared.text_hashes(),
        calls=totals.calls,
        cached_calls=totals.cached_calls,
        prompt_tokens=totals.prompt_tokens,
        completion_tokens=totals.completion_tokens,
        cost_usd=totals.cost_usd,
    )


def _new_manifest(config: RunConfig, prepared: Prepared) -> Manifest:
    settings = prepared.settings
    recorded = config.model_dump(exclude={"resume"})
    recorded.update(
        user=settings.user,
        target=settings.target,
        run_id=config.run_id,
        base_url=redact(config.base_url) if config.base_url else None,
    )
    return Manifest(
        schema_version=SCHEMA_VERSION,
        run_id=config.run_id,
        created_at=now_iso(),
        status="running",
        config=RecordedConfig.model_validate(recorded),
        plan=PlanRecord(episodes=len(prepared.specs), fingerprint=plan_fingerprint(prepared)),
        environment=environment(),
    )


TYPICAL_TURNS = 6
MESSAGE_TOKENS = 40
"""Rough size of one chat message, for `--dry-run` estimates."""


def estimate_run(config: RunConfig) -> dict[str, Any]:
    """The plan's size and a rough count of model calls and cost, without calling anything."""
    prepared = prepare(config)
    specs = prepared.specs
    callers = []
    if users.needs_llm(config.user):
        model = users.llm_model(config.user) or ""
        callers.append(("user", split_spec(model)[1], prepared.texts["user_prompt"]))
    if targets.needs_llm(config.target):
        callers.append(("target", config.target.partition(":")[2], prepared.texts["system_prompt"]))
    prices = LLMSettings.resolve(config.llm_config).prices if callers else {}
    rows = []
    for role, model, prompt in callers:
        system_tokens = len(prompt) // 4
        row: dict[str, Any] = {"role": role, "model": model}
        for label, turns in (
            ("typical", min(TYPICAL_TURNS, config.max_turns)),
            ("max", config.max_turns),
        ):
            prompt_tokens = turns * system_tokens + MESSAGE_TOKENS * turns * (turns - 1)
            cost = estimate_cost(model, prompt_tokens, MESSAGE_TOKENS * turns, prices)
            row[f"calls_{label}"] = turns * len(specs)
            row[f"cost_usd_{label}"] = None if cost is None else cost * len(specs)
        rows.append(row)
    return {
        "episodes": len(specs),
        "personas": len({s.persona.id for s in specs}),
        "scenarios": len({s.scenario.id for s in specs}),
        "models": rows,
    }
