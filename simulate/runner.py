"""The run loop: plays planned episodes concurrently and hands each to the store as it ends;
and `run_bounded`, the one bounded work pool (runs, judges and persona enrichment use it).

One asyncio loop, a fixed pool of workers (``concurrency``) pulling specs from the plan, so
memory stays flat however long the plan is. A failing episode is recorded with its outcome,
never dropped; only a RunStopped (a spent budget, a replay miss, the first episodes all
ending in errors) or cancellation (Ctrl-C) stops the batch, after storing what finished.
Reasons and tracebacks are redacted (`store.redact`) before they are stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any, TypeVar

from simulate.checks import failed_checks
from simulate.errors import RunAborted, RunStopped, TargetError
from simulate.llm.usage import episode_usage
from simulate.schema import (
    Episode,
    EpisodeSpec,
    Message,
    Outcome,
    Status,
    Usage,
    is_rated,
)
from simulate.store import ShardWriter, now_iso, redact
from simulate.targets import Reply, Target, TargetFactory
from simulate.users import EpisodeState, UserFactory, UserSimulator
from simulate.users.faults import detect_faults

T = TypeVar("T")
R = TypeVar("R")


async def run_bounded(
    items: Iterable[T],
    work: Callable[[T], Awaitable[R]],
    *,
    concurrency: int,
    on_done: Callable[[R], Any] | None = None,
) -> None:
    """Run ``work`` on every item, at most ``concurrency`` at once, each result to ``on_done``.

    A fixed set of workers pull from one shared iterator, so memory stays flat however many
    items there are. The first exception ``work`` raises stops the workers from taking new
    items (those in flight finish) and is raised once all have stopped; every result finished
    before it has reached ``on_done``.
    """
    pending = iter(items)  # shared: each item goes to exactly one worker
    failed: list[BaseException] = []

    async def worker() -> None:
        for item in pending:
            if failed:
                return
            try:
                result = await work(item)
            except Exception as exc:
                failed.append(exc)
                return
            if on_done is not None:
                on_done(result)

    workers = max(1, concurrency)
    if isinstance(items, Sized):
        workers = min(workers, max(1, len(items)))  # no idle worker per unused slot
    async with asyncio.TaskGroup() as group:
        for _ in range(workers):
            group.create_task(worker())
    if failed:
        raise failed[0]


@dataclass
class Tally:
    """Running counts of finished episodes, for the progress bar and the summary."""

    planned: int = 0
    skipped: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    successes: int = 0
    faulted: int = 0
    """Episodes stored with simulator faults (after any resimulation)."""
    workers: Counter[str] = field(default_factory=Counter)
    """Episodes stored per worker, when an engine plays them elsewhere (`--engine ray`)."""
    set_aside: int = 0
    """Attempts set aside by `--resimulate-faults` in other processes (`--engine ray`)."""
    first_error: str | None = None
    """The reason of the first episode that ended in a target or simulator error."""

    @property
    def done(self) -> int:
        """Episodes played in this invocation."""
        return sum(self.statuses.values())

    @property
    def errors(self) -> int:
        """Episodes that ended in a target or simulator error."""
        return sum(n for status, n in self.statuses.items() if not is_rated(status))

    @property
    def rated(self) -> int:
        """Episodes that count for or against the agent (errors excluded)."""
        return self.done - self.errors

    def add(self, episode: Episode) -> None:
        """Count one finished episode."""
        self.statuses[episode.outcome.status] += 1
        self.successes += episode.success
        self.faulted += bool(episode.simulator_faults)
        if self.first_error is None and not is_rated(episode.outcome.status):
            self.first_error = f"{episode.outcome.status}: {episode.outcome.reason}"


@dataclass
class EarlyStop:
    """`stop_after_errors`: watches a session's first episodes and stops the run when they all
    ended in target or simulator errors (the agent or the user is not usable)."""

    limit: int
    """How many first episodes (0: never stop)."""
    first: Tally = field(default_factory=Tally)

    def add(self, episode: Episode) -> None:
        """Count ``episode`` if it is one of the first ``limit``."""
        if self.first.done < self.limit:
            self.first.add(episode)

    def check(self) -> None:
        """Raise RunAborted when the first ``limit`` episodes all ended in errors."""
        if self.limit and self.first.errors >= self.limit:
            raise RunAborted(
                f"the first {self.first.errors} episodes all ended in errors, so the run stopped "
                f"(first: {self.first.first_error})"
            )


@dataclass(frozen=True)
class RunSettings:
    """How episodes are played."""

    user: str = "agenda"
    """The `--user` spec, recorded on each episode."""
    target: str = "demo"
    """The `--target` spec, recorded on each episode."""
    concurrency: int = 8
    turn_timeout_s: float = 30.0
    stateful: bool = False
    """Send the target only the newest user message (it keeps its own history)."""
    resimulate_faults: int = 0
    """Play an episode with simulator faults again, with a new seed, up to this many times."""
    max_reply_chars: int = 100_000
    """A longer agent reply ends the episode as `target_error` (`--max-reply-chars`)."""
    stop_after_errors: int = 5
    """Stop the run when this many first episodes all end in target or simulator errors
    (0: never)."""
    secrets: tuple[str, ...] = ()
    """Values never to store (header values read from the environment): redacted."""


async def play_episode(
    spec: EpisodeSpec, user: UserSimulator, target: Target, settings: RunSettings
) -> Episode:
    """Play one conversation to its end and return it as an Episode. Never raises for faults."""
    state = EpisodeState(spec=spec)
    started = time.perf_counter()
    with episode_usage(spec.episode_id) as usage:  # the session id its target is made with
        ending = await _converse(state, user, target, settings)
    outcome = ending.outcome
    if is_rated(outcome.status):
        outcome.failed_checks = failed_checks(spec.scenario.success, state.messages)
    episode = _record(spec, settings, ending, state, usage, time.perf_counter() - started)
    episode.simulator_faults = detect_faults(spec, state.messages, outcome)
    return episode


@dataclass
class Ending:
    """How a conversation ended, and the traceback when an exception ended it."""

    outcome: Outcome
    traceback: str | None = None


def _failure(status: Status, exc: BaseException, settings: RunSettings) -> Ending:
    """The ending of an episode cut short by ``exc``: its one-line reason and its traceback
    (none for Simulate's own protocol errors, whose message says it all), both redacted."""
    reason = redact(_describe(exc), settings.secrets)
    trace = None
    if not isinstance(exc, TargetError) or exc.__cause__ is not None:
        trace = redact("".join(traceback.format_exception(exc)), settings.secrets)
        trace = trace[-MAX_TRACEBACK_CHARS:]
    return Ending(Outcome(status=status, reason=reason), trace)


MAX_TRACEBACK_CHARS = 20_000
"""The end of a traceback kept with an episode (deep recursion makes huge ones)."""


def _record(
    spec: EpisodeSpec,
    settings: RunSettings,
    ending: Ending,
    state: EpisodeState | None = None,
    usage: list[Usage] | None = None,
    duration_s: float = 0.0,
) -> Episode:
    """The dataset row of one finished (or never started) episode."""
    messages = state.messages if state else []
    outcome = ending.outcome
    return Episode(
        episode_id=spec.episode_id,
        run_id=spec.run_id,
        persona_id=spec.persona.id,
        scenario_id=spec.scenario.id,
        trial=spec.trial,
        seed=spec.seed,
        persona=spec.persona.model_dump_json(),
        scenario=spec.scenario.model_dump_json(),
        messages=messages,
        outcome=outcome,
        success=outcome.status == Status.GOAL_REACHED and not outcome.failed_checks,
        n_turns=state.n_turns if state else 0,
        usage=usage or [],
        duration_s=round(duration_s, 4),
        user=settings.user,
        target=settings.target,
        created_at=now_iso(),
        error_traceback=ending.traceback,
    )


async def _converse(
    state: EpisodeState, user: UserSimulator, target: Target, settings: RunSettings
) -> Ending:
    """Alternate user and agent turns until a stop condition; return how it ended."""
    while True:
        try:
            turn = await user.next_turn(state)
        except RunStopped:
            raise
        except Exception as exc:  # the simulator's fault, recorded as such
            return _failure(Status.SIMULATOR_ERROR, exc, settings)
        if turn.done:
            if turn.content:
                state.messages.append(Message(role="user", content=turn.content))
            return Ending(Outcome(status=Status(turn.status or "gave_up"), reason=turn.reason))
        if state.n_turns >= state.spec.max_turns:
            return Ending(
                Outcome(
                    status=Status.MAX_TURNS, reason=f"no end after {state.spec.max_turns} turns"
                )
            )
        if not turn.content:
            return Ending(
                Outcome(status=Status.SIMULATOR_ERROR, reason="simulator sent an empty message")
            )
        state.messages.append(Message(role="user", content=turn.content))
        sent = state.messages[-1:] if settings.stateful else state.messages
        began = time.perf_counter()
        try:
            reply = await ask(target, sent, settings)
        except RunStopped:
            raise
        except Exception as exc:  # the agent's crash, recorded, the run goes on
            return _failure(Status.TARGET_ERROR, exc, settings)
        state.messages.append(_reply_message(reply, (time.perf_counter() - began) * 1000))
        if reply.end:
            return await _after_target_end(state, user, settings)


async def ask(target: Target, sent: Sequence[Message], settings: RunSettings) -> Reply:
    """One turn of the agent, within the turn timeout and the reply size limit.

    Raises:
        TargetError: no reply in time, or a reply over `max_reply_chars`; anything the agent
            raised propagates as it is.
    """
    deadline = asyncio.timeout(settings.turn_timeout_s)
    try:
        # Not wait_for: its task per turn costs CPU, and its hop through the event loop
        # leaves more pooled connections idle, each probed by the HTTP client per request.
        async with deadline:
            reply = await target.respond(sent)
    except TimeoutError:
        if not deadline.expired():
            raise  # the agent's own TimeoutError, a crash like any other
        raise TargetError(
            f"no reply within {settings.turn_timeout_s:g}s (--turn-timeout)"
        ) from None
    if len(reply.reply) > settings.max_reply_chars:
        raise TargetError(
            f"the reply has {len(reply.reply):,} characters, over --max-reply-chars "
            f"{settings.max_reply_chars:,}"
        )
    return reply


async def _after_target_end(
    state: EpisodeState, user: UserSimulator, settings: RunSettings
) -> Ending:
    """The agent closed the conversation: goal reached if the user says so, else target_ended."""
    try:
        turn = await user.next_turn(state)
    except RunStopped:
        raise
    except Exception as exc:
        return _failure(Status.SIMULATOR_ERROR, exc, settings)
    if turn.done and turn.status == Status.GOAL_REACHED:
        return Ending(Outcome(status=Status.GOAL_REACHED, reason=turn.reason))
    return Ending(Outcome(status=Status.TARGET_ENDED, reason="the agent ended the conversation"))


def _reply_message(reply: Reply, latency_ms: float) -> Message:
    return Message(
        role="assistant",
        content=reply.reply,
        tool_calls=reply.tool_calls,
        context=reply.context,
        latency_ms=round(latency_ms, 3),
    )


def _describe(exc: BaseException) -> str:
    """One line naming an exception: its type and first line of message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def run_episodes(
    specs: Iterable[EpisodeSpec],
    make_user: UserFactory,
    make_target: TargetFactory,
    writer: ShardWriter,
    settings: RunSettings,
    on_episode: Callable[[Episode], Any] | None = None,
    discarded: ShardWriter | None = None,
) -> None:
    """Play every spec with at most ``settings.concurrency`` at once, storing each as it ends.

    The writers are open for the batch: shards reach disk at least every second and once
    more on the way out, cancellation included, so everything finished is stored. With
    ``settings.resimulate_faults``, an episode with simulator faults is played again (see
    `play_until_clean`) and the attempts set aside go to ``discarded``.

    Raises:
        RunStopped: a budget ran out or a replay missed; the episodes it cut short are not
            stored (a resume plays them), every finished one is.
        RunAborted: the first ``settings.stop_after_errors`` episodes all ended in target or
            simulator errors; no new episode starts, those in flight finish and are stored.
    """
    early = EarlyStop(settings.stop_after_errors)

    def store(played: tuple[Episode, list[Episode]]) -> None:
        episode, set_aside = played
        if discarded is not None:
            for attempt in set_aside:
                discarded.add(attempt)
        writer.add(episode)
        early.add(episode)
        if on_episode:
            on_episode(episode)

    async def play(spec: EpisodeSpec) -> tuple[Episode, list[Episode]]:
        early.check()
        return await play_until_clean(spec, make_user, make_target, settings)

    try:
        async with writer, discarded or contextlib.nullcontext():
            await run_bounded(specs, play, concurrency=settings.concurrency, on_done=store)
    finally:
        await _close(make_target)


async def play_until_clean(
    spec: EpisodeSpec, make_user: UserFactory, make_target: TargetFactory, settings: RunSettings
) -> tuple[Episode, list[Episode]]:
    """Play ``spec``; while the episode has simulator faults, play it again with a new seed,
    up to ``settings.resimulate_faults`` times.

    Returns the episode kept (the first without faults, else the one with the fewest, the
    earliest on a tie) and the attempts set aside, for audit.
    """
    attempts = [await _play_with_fresh_parties(spec, make_user, make_target, settings)]
    for attempt in range(1, settings.resimulate_faults + 1):
        if not attempts[-1].simulator_faults:
            break
        again = spec.model_copy(update={"seed": resimulation_seed(spec.seed, attempt)})
        attempts.append(await _play_with_fresh_parties(again, make_user, make_target, settings))
    kept = min(attempts, key=lambda e: len(e.simulator_faults))
    return kept, [a for a in attempts if a is not kept]


def resimulation_seed(seed: int, attempt: int) -> int:
    """The seed of the ``attempt``-th replay of an episode whose seed is ``seed``."""
    digest = hashlib.sha256(f"{seed}\x1fresimulate\x1f{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


async def preflight(spec: EpisodeSpec, make_target: TargetFactory, settings: RunSettings) -> None:
    """Send the target one opening turn (the first scenario's) before any episode is played.

    Raises:
        RunAborted: the target failed it (the reason says how); nothing was played.
    """
    opening = spec.scenario.opening or spec.scenario.description
    target: Target | None = None
    try:
        target = make_target(f"preflight-{spec.episode_id}")
        await ask(target, [Message(role="user", content=opening)], settings)
    except RunStopped:
        raise
    except Exception as exc:
        raise RunAborted(
            f"preflight: the target failed its first turn, so no episode was played: "
            f"{redact(_describe(exc), settings.secrets)} (--no-preflight skips this check)"
        ) from exc
    finally:
        await _close(target)


async def _play_with_fresh_parties(
    spec: EpisodeSpec, make_user: UserFactory, make_target: TargetFactory, settings: RunSettings
) -> Episode:
    """Make this episode's user and target, play it, and close the target whatever happens."""
    try:
        user = make_user(spec)
    except RunStopped:
        raise
    except Exception as exc:
        return _record(spec, settings, _failure(Status.SIMULATOR_ERROR, exc, settings))
    try:
        target = make_target(spec.episode_id)
    except Exception as exc:
        return _record(spec, settings, _failure(Status.TARGET_ERROR, exc, settings))
    try:
        return await play_episode(spec, user, target, settings)
    finally:
        await _close(target)


async def _close(resource: Any) -> None:
    """Call ``aclose()`` when the object has one; a failure to close is not the run's end."""
    close = getattr(resource, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


def goal_rate(tally: Tally) -> float | None:
    """Share of rated episodes that succeeded, or None before any."""
    return tally.successes / tally.rated if tally.rated else None
