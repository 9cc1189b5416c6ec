"""One `simulate run`: load inputs, plan, open the run folder, play, and write the manifest.

`run()` is the library form of the command; the CLI adds a progress bar and a summary.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import Field

from simulate import prompts, targets, users
from simulate.engines import ENGINE_FIELDS, EngineFlags, check_engine
from simulate.errors import ConfigError, RunAborted, RunStopped
from simulate.llm import split_spec
from simulate.llm.cassette import record_calls
from simulate.llm.pool import EndpointFlags, LLMPool
from simulate.llm.settings import LLMSettings
from simulate.llm.usage import Sessions, estimate_cost
from simulate.loader import load_personas, load_scenarios
from simulate.plan import MAX_EPISODES, build_plan
from simulate.runner import RunSettings, Tally, goal_rate, preflight, run_episodes
from simulate.schema import (
    SCHEMA_VERSION,
    Episode,
    EpisodeSpec,
    LLMRecord,
    Manifest,
    Model,
    PlanRecord,
    RecordedConfig,
    RunCounts,
    SessionRecord,
    Usage,
    is_rated,
)
from simulate.stats import wilson_interval
from simulate.store import DISCARDED, RunFolder, environment, find_secrets, now_iso, redact
from simulate.targets.http import parse_headers
from simulate.users.llm import read_prompt

if TYPE_CHECKING:
    from simulate.agent_proxy import AgentProxy

T = TypeVar("T")


class RunConfig(EndpointFlags, EngineFlags):
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
    agent_llm_proxy: bool = False
    """Serve the agent a local model endpoint that forwards through the run's LLM layer."""
    agent_llm_proxy_port: int = Field(0, ge=0, le=65535)
    """The model proxy's port on 127.0.0.1; 0 picks a free one."""
    headers: list[str] = Field(default_factory=list)
    """`Name: value` headers for `http:` targets, `${VAR}` read from the environment; only
    their names are recorded."""
    target_retries: int = Field(2, ge=0, le=10)
    """Retries of an HTTP target's request after a connection error, 429 or 503."""
    max_reply_chars: int = Field(100_000, ge=1)
    """A longer agent reply ends its episode as `target_error`."""
    preflight: bool = True
    """Send the target one opening turn before any episode (not with `replay_only`); stop the
    run if it fails."""
    stop_after_errors: int = Field(5, ge=0)
    """Stop when this many first episodes all end in target or simulator errors (0: never)."""
    fail_under: float | None = Field(None, ge=0, le=1)
    """A CI gate: `verdict()` fails the run when the goal rate's upper 95% bound is below."""

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
    aborted: bool = False
    """The stop was a RunAborted: the first episodes all ended in errors (exit 1, not 3)."""

    @property
    def rated(self) -> int:
        """Episodes in the folder that count toward the goal rate (errors left out)."""
        errors = sum(n for status, n in self.stored.by_status.items() if not is_rated(status))
        return self.stored.stored - errors

    @property
    def goal_rate(self) -> float | None:
        """Successes over rated episodes in the folder, or None when none is rated."""
        return self.stored.successes / self.rated if self.rated else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """The goal rate's 95% Wilson interval, or None when no episode is rated."""
        return wilson_interval(self.stored.successes, self.rated) if self.rated else None

    def verdict(self, fail_under: float | None = None) -> str | None:
        """Why this run should fail a CI gate, in one line, or None when it passes.

        It fails when no episode counts toward the goal rate (all ended in target or
        simulator errors: nothing was measured), and, with ``fail_under``, when the goal
        rate's upper 95% bound is below it: the data then show, with 95% confidence, that the
        agent is under the bar. The upper bound, not the rate itself, so a small run fails on
        evidence rather than on noise; play more episodes for a stricter gate.
        """
        if self.stored.stored and not self.rated:
            first = f" (first: {self.tally.first_error})" if self.tally.first_error else ""
            return (
                f"no episode counts toward the goal rate: all {self.stored.stored} ended in "
                f"target_error or simulator_error{first}"
            )
        interval = self.interval
        if fail_under is not None and interval is not None and interval[1] < fail_under:
            return (
                f"goal rate {self.goal_rate:.0%} ({interval[0]:.0%}-{interval[1]:.0%}, "
                f"n={self.rated}): its upper 95% bound is below --fail-under {fail_under:g}"
            )
        return None


@dataclass
class Prepared:
    """A checked run: its plan, how episodes are played, and the prompt files' texts."""

    specs: list[EpisodeSpec]
    settings: RunSettings
    texts: dict[str, str]
    """`user_prompt`, `system_prompt`, `tools`: what was read from those files."""
    headers: tuple[tuple[str, str], ...] = ()
    """The HTTP target's headers, expanded from the environment (never recorded)."""

    def text_hashes(self) -> dict[str, str]:
        """Short hashes of the prompt files, for the manifest and the plan fingerprint."""
        return {k: prompts.digest(v) for k, v in self.texts.items()}


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
    check_engine(config)
    if config.engine == "ray" and config.agent_llm_proxy:
        raise ConfigError(
            "--agent-llm-proxy goes with --engine local: the proxy serves the agent's model calls"
            " from this process, and counts them per episode here, not in Ray workers"
        )
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
    header_set = parse_headers(config.headers)
    settings = RunSettings(
        user=redact(config.user),
        target=redact(config.target),
        concurrency=config.concurrency,
        turn_timeout_s=config.turn_timeout_s,
        stateful=config.stateful,
        resimulate_faults=config.resimulate_faults,
        max_reply_chars=config.max_reply_chars,
        stop_after_errors=config.stop_after_errors,
        secrets=(*header_set.secrets, *find_secrets(config.target), *find_secrets(config.user)),
    )
    texts = {}
    if users.needs_llm(config.user):
        texts["user_prompt"] = read_prompt(config.user_prompt)
    for name, path in (("system_prompt", config.system_prompt), ("tools", config.tools)):
        if path:
            texts[name] = _read(path, f"--{name.replace('_', '-')}")
    if targets.needs_llm(config.target) and "system_prompt" not in texts:
        raise ConfigError("--target openai:MODEL needs --system-prompt FILE (the agent's prompt)")
    return Prepared(specs=specs, settings=settings, texts=texts, headers=header_set.headers)


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
    on_proxy: Callable[[AgentProxy], Any] | None = None,
    *,
    make_target: targets.TargetFactory | None = None,
    only_trials: int | None = None,
) -> RunResult:
    """Play a run into ``config.out``; resumable, and safe to cancel (finished work is kept).

    Args:
        on_start: called once with the tally, after planning, before the first episode.
        on_episode: called with each finished episode and the tally so far.
        on_proxy: called with the agent's model proxy once it serves (`agent_llm_proxy`).
        make_target: the agent as a factory (`targets.target_from_object`), used instead of
            loading ``config.target``, which then only names it in the records.
        only_trials: play only the first this many trials of each cell this session (the plan
            stays the whole plan, so a later session resumes it): rounds of a sequential gate.
    """
    prepared = prepare(config)
    if make_target is not None and config.engine == "ray":
        raise ConfigError(
            "an agent given as a Python object plays on the local engine only; for --engine ray"
            " name it with --target python:FILE:FUNCTION, which every worker loads"
        )
    uses_llm = users.needs_llm(config.user) or targets.needs_llm(config.target)
    pool = LLMPool.from_config(config) if uses_llm or config.agent_llm_proxy else None
    if pool is None or not config.agent_llm_proxy:
        return await _play(
            config, prepared, pool, None, on_start, on_episode, make_target, only_trials
        )
    from simulate.agent_proxy import agent_proxy

    sessions = Sessions()
    elsewhere = config.target.startswith(("http:", "https:"))
    port = config.agent_llm_proxy_port
    async with agent_proxy(pool, sessions, port=port, agent_elsewhere=elsewhere) as proxy:
        if on_proxy:
            on_proxy(proxy)
        with sessions.tracking():
            return await _play(
                config, prepared, pool, proxy, on_start, on_episode, make_target, only_trials
            )


async def _play(
    config: RunConfig,
    prepared: Prepared,
    pool: LLMPool | None,
    proxy: AgentProxy | None,
    on_start: Callable[[Tally], Any] | None,
    on_episode: Callable[[Episode, Tally], Any] | None,
    make_target: targets.TargetFactory | None,
    only_trials: int | None,
) -> RunResult:
    """`run` with its LLMs and the agent's model proxy (if any) ready."""
    specs = prepared.specs
    get_llm = pool.get if pool else None
    make_user = user_factory(config, prepared, get_llm)
    make_target = make_target or target_factory(
        config, prepared, get_llm, agent_env=proxy.env_for if proxy else None
    )
    if proxy is not None:
        make_target = proxy.watch(make_target)
    manifest = _new_manifest(config, prepared)
    with RunFolder(config.out).lock("episodes", "simulate run"):
        done = RunFolder(config.out).episode_ids() if config.resume else set()
        now = [spec for spec in specs if only_trials is None or spec.trial < only_trials]
        todo = [spec for spec in now if spec.episode_id not in done]
        if config.preflight and todo and not config.replay_only:  # replays ask nothing new
            try:
                await preflight(todo[0], make_target, prepared.settings)
            except BaseException:
                await _close_all(make_target, pool)
                raise
        folder = RunFolder.create(config.out, manifest, resume=config.resume)
        tally = Tally(planned=len(now), skipped=len(now) - len(todo))
        if on_start:
            on_start(tally)

        def record(episode: Episode) -> None:
            tally.add(episode)
            if on_episode:
                on_episode(episode, tally)

        started = time.perf_counter()
        status, stopped, aborted = "interrupted", None, False
        discarded = None
        try:
            if config.engine == "ray":  # shards over a cluster; the workers write, we follow
                from simulate.engines.ray import play_on_ray

                try:
                    await play_on_ray(config, prepared, folder, todo, tally, record, pool)
                finally:
                    await _close_all(make_target, None)  # it played the preflight turn only
            else:
                writer = folder.writer()
                discarded = folder.writer(DISCARDED) if config.resimulate_faults else None
                await run_episodes(
                    todo, make_user, make_target, writer, prepared.settings, record, discarded
                )
                if proxy is not None:
                    proxy.raise_stop()  # an agent's call that failed after its episode had ended
            status = "complete"
        except RunStopped as exc:
            status, stopped, aborted = "stopped", str(exc), isinstance(exc, RunAborted)
        finally:
            if pool is not None:
                await pool.aclose()
                record_calls(folder.path, pool.used_keys())
            stored = folder.outcome_counts()
            stored.planned = len(specs)
            usage = pool.meter.as_usage_list() if pool else []
            session = SessionRecord(
                played=tally.done,
                skipped_already_stored=tally.skipped,
                duration_s=round(time.perf_counter() - started, 3),
                goal_rate=goal_rate(tally),
                faulted=tally.faulted,
                discarded_attempts=discarded.written if discarded else tally.set_aside,
                model_usage=usage,
                engine=config.engine,
                workers=dict(sorted(tally.workers.items())) or None,
            )

            def finish(written: Manifest) -> None:
                written.status = status  # type: ignore[assignment]
                written.stopped_because = stopped
                written.updated_at = now_iso()
                written.counts = stored
                written.last_session = session
                if pool is not None:
                    written.llm = _llm_manifest(pool, prepared, proxy)

            folder.update_manifest(finish)
    return RunResult(
        run_dir=Path(config.out),
        tally=tally,
        stored=stored,
        stopped=stopped,
        usage=usage,
        aborted=aborted,
    )


def user_factory(
    config: RunConfig, prepared: Prepared, get_llm: Callable[[str, str], Any] | None
) -> users.UserFactory:
    """What makes each episode's simulated user (in this process, or in each Ray worker from
    the same config and prompt texts)."""
    return users.load_user(
        config.user,
        users.UserOptions(
            get_llm=get_llm,
            prompt=prepared.texts.get("user_prompt"),
            temperature=config.temperature,
        ),
    )


def target_factory(
    config: RunConfig,
    prepared: Prepared,
    get_llm: Callable[[str, str], Any] | None,
    agent_env: Callable[[str], Mapping[str, str]] | None = None,
) -> targets.TargetFactory:
    """What makes each episode's target from ``config.target`` (in this process, or in each
    Ray worker); ``agent_env`` gives an agent process the model proxy's address."""
    return targets.load_target(
        config.target,
        targets.TargetOptions(
            turn_timeout_s=config.turn_timeout_s,
            system_prompt=prepared.texts.get("system_prompt"),
            tools_file=config.tools,
            get_llm=get_llm,
            agent_env=agent_env,
            headers=prepared.headers,
            secrets=prepared.settings.secrets,
            retries=config.target_retries,
            max_reply_chars=config.max_reply_chars,
        ),
    )


async def _close_all(make_target: Any, pool: LLMPool | None) -> None:
    close = getattr(make_target, "aclose", None)
    if close is not None:
        await close()
    if pool is not None:
        await pool.aclose()


def run_sync(
    config: RunConfig,
    on_start: Callable[[Tally], Any] | None = None,
    on_episode: Callable[[Episode, Tally], Any] | None = None,
) -> RunResult:
    """`run()` for scripts: plays in the process's one event loop (see `in_loop`), so agents
    that keep an async client at module level work across several calls.

    Raises:
        RuntimeError: called from inside a running event loop (there, `await run(...)`).
    """
    return in_loop(run(config, on_start=on_start, on_episode=on_episode))


_runners = threading.local()


def in_loop(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to its end in this process's one event loop (one per thread), made on
    first use and kept.

    One loop for every `run_sync` (and `simulate_run.sync`) of a thread: an agent's
    module-level async client (OpenAI's, an Agents SDK's, LangChain's) binds to the first
    loop it is used in, and a second `asyncio.run` would leave it with a closed one ("Event
    loop is closed"). A CLI command is one coroutine, so it needs no kept loop.
    Ctrl-C cancels ``work`` and raises KeyboardInterrupt, as with `asyncio.run`; and as there,
    tasks ``work`` left behind are cancelled (and their `finally` blocks run) when it ends.
    """
    runner = getattr(_runners, "runner", None)
    if runner is None:
        runner = _runners.runner = asyncio.Runner()
    try:
        return runner.run(work)
    finally:
        runner.run(_cancel_leftovers())
        asyncio.set_event_loop(None)  # idle in between, as `asyncio.run` leaves a thread


async def _cancel_leftovers() -> None:
    """Cancel every other task of the loop and wait for them to finish."""
    current = asyncio.current_task()
    leftovers = [t for t in asyncio.all_tasks() if t is not current]
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)


def _llm_manifest(pool: LLMPool, prepared: Prepared, proxy: AgentProxy | None) -> LLMRecord:
    """What the manifest says of the models: endpoint hosts, models, prompt hashes, totals."""
    totals = pool.meter.totals()
    return LLMRecord(
        endpoint=pool.settings.host,
        endpoints=pool.endpoints(),
        agent_proxy=proxy.base_url if proxy else None,
        agent_calls_run_wide=proxy.proxy.run_wide_calls if proxy else 0,
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
    recorded = config.model_dump(exclude={"resume", "headers", *ENGINE_FIELDS})  # per session
    recorded.update(
        headers=[text.partition(":")[0].strip() for text in config.headers],
        user=settings.user,
        target=settings.target,
        run_id=config.run_id,
        **{
            flag: redact(url) if url else None
            for flag, url in config.model_dump(
                include={"base_url", "user_base_url", "agent_base_url", "judge_base_url"}
            ).items()
        },
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


class ModelEstimate(Model):
    """A rough count of one role's model calls over a plan, and their cost."""

    role: str
    model: str
    calls_typical: int
    calls_max: int
    cost_usd_typical: float | None
    """None when the model has no known price."""
    cost_usd_max: float | None


class RunEstimate(Model):
    """`--dry-run`: the plan's size and its model calls."""

    episodes: int
    personas: int
    scenarios: int
    models: list[ModelEstimate]


def estimate_run(config: RunConfig) -> RunEstimate:
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
        rows.append(ModelEstimate(**row))
    return RunEstimate(
        episodes=len(specs),
        personas=len({s.persona.id for s in specs}),
        scenarios=len({s.scenario.id for s in specs}),
        models=rows,
    )
