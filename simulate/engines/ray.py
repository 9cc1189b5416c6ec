"""The Ray engine (`--engine ray`): a run's plan in shards over a Ray cluster.

    driver (simulate run)                       workers (Ray async actors w0, w1, ...)
    holds the run folder's writer lock          each plays the shards it is handed with the
    splits the plan into shards  ── shard ──>   ordinary runner (`run_episodes`, its own
    follows episodes/ for progress              --concurrency) and writes episodes/ shards
    merges usage, writes the manifest  <── report ──  named by plan shard and worker

The driver holds `RunFolder.lock("episodes")` for the whole session and the workers write
through `RunFolder.writer()` WITHOUT taking it: the lock is the driver's, held for them; each
worker holds a helper's lock (`RunFolder.hold`) for its life, so that when the driver is killed
(its workers outlive it by a second or so) the next writer waits for them before it reads. Their
shard files carry the session, the plan shard and the worker in their names, so no two workers
write the same file, and a worker that plays a shard again after a crash skips the episodes the
dead one stored (Ray restarts the actor and retries its call; a worker that keeps dying leaves
its shard to the others). The progress bar counts what is stored, read from the new files, so
an episode a killed worker had not flushed yet is counted once, when it is played again.

Limits hold across the cluster: each worker gets its share of each endpoint's
`requests_per_minute` (exact: the shares add up to the limit) and of `max_concurrency`
(⌊limit / workers⌋, at least 1), kept by its LLMs for its whole life; `--max-calls` and
`--max-cost-usd` are leased to the workers by one actor (`engines/budget.py`). The LLM cache is
the sqlite file in the cache folder the driver resolved: on one machine, or with that folder
on a shared file system, every worker reads and writes the same cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import secrets
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulate.engines import SHARDS_PER_WORKER, import_ray, remote, split
from simulate.engines.budget import LeasedMeter, new_ledger
from simulate.errors import ConfigError, RunStopped, SimulateError
from simulate.llm.pool import LLMPool, PoolUsage, role_prices
from simulate.llm.settings import LLMSettings
from simulate.llm.usage import UsageMeter
from simulate.runner import EarlyStop, Tally, run_episodes
from simulate.schema import Episode, EpisodeSpec
from simulate.store import DISCARDED, EPISODES, LABELS, RunFolder, ShardKind

if TYPE_CHECKING:
    from simulate.label.labeling import LabelConfig, LabelResult
    from simulate.schema import Label
    from simulate.simulation import Prepared, RunConfig

FOLLOW_INTERVAL_S = 0.5
"""How often the driver reads the workers' new shards for the progress bar."""
MAX_RESTARTS = 3
"""Times Ray restarts a dead worker (retrying its shard) before the driver gives the shard to
another worker."""
MAX_SHARD_FAILURES = 3
"""Workers a shard may take down for good before the run stops with an error."""
CANCEL_WAIT_S = 15.0
"""On Ctrl-C, how long the driver waits for workers to store what they finished."""

_WORKER = re.compile(r"-(w\d+)-[0-9a-f]{6}-\d{5}\.parquet$")


# --- the cluster ----------------------------------------------------------------------------------


@contextlib.contextmanager
def cluster(address: str | None) -> Iterator[float]:
    """Join the Ray cluster at ``address`` (or the one this process already joined), or start
    a local one for the block; yields the cluster's CPUs."""
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                logging_level=logging.ERROR,
                log_to_driver=False,  # workers' logs stay in Ray's session folder
            )
        except ConnectionError as exc:
            raise ConfigError(f"--ray-address {address!r}: no Ray cluster there ({exc})") from None
        started = True
    try:
        yield float(ray.cluster_resources().get("CPU", 1.0))
    finally:
        if started:
            ray.shutdown()


def worker_options(cpus: float, workers: int) -> dict[str, Any]:
    """Ray options of each worker actor: an equal slice of the CPUs (so more workers than
    CPUs still start), restarted after a crash with its call retried."""
    return {
        "num_cpus": min(1.0, cpus / workers),
        "max_restarts": MAX_RESTARTS,
        "max_task_retries": MAX_RESTARTS,
    }


def settings_share(settings: LLMSettings, workers: int) -> LLMSettings:
    """One worker's share of the endpoints' limits (the shared one's and each role section's):
    the rate split exactly, the concurrency ⌊limit / workers⌋ (at least 1)."""

    def share(limits: Any) -> dict[str, Any]:
        update: dict[str, Any] = {}
        if limits.max_concurrency:
            update["max_concurrency"] = max(1, limits.max_concurrency // workers)
        if limits.requests_per_minute:
            update["requests_per_minute"] = limits.requests_per_minute / workers
        return update

    roles = {
        role: section.model_copy(update=share(section)) for role, section in settings.roles.items()
    }
    return settings.model_copy(update={**share(settings), "roles": roles})


def unwrap(exc: BaseException) -> BaseException:
    """The Simulate error a worker raised, out of Ray's wrapper, so it prints as one line."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, SimulateError) else exc


# --- episodes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """A slice of the work (episode specs to play, or ids of episodes to label), done by one
    worker at a time."""

    tag: str
    """`<session>-<index>`: in the names of the files its rows are stored in."""
    items: list[Any]


@dataclass
class ShardReport:
    """What a worker did with a shard."""

    tag: str
    worker: str
    played: int = 0
    already_stored: int = 0
    """Episodes of the shard a crashed worker had stored before (skipped)."""
    set_aside: int = 0
    stopped: str | None = None


@dataclass(frozen=True)
class RunJob:
    """What every worker needs to play any shard of a run."""

    config: RunConfig
    prepared: Prepared
    """Without its specs (each shard carries its own)."""
    settings: LLMSettings | None
    """The worker's share of the endpoint's limits; None when no model is used."""


class ModelsOfWorker:
    """A worker's LLMs, kept for its life so that its share of the rate limit holds across
    its shards, and its meter, which leases budget from the run's `Ledger` when there is one."""

    def __init__(
        self, name: str, settings: LLMSettings | None, ledger: str | None, flags: Any
    ) -> None:
        self.pool: LLMPool | None = None
        self.ledger = import_ray().get_actor(ledger) if ledger else None
        if settings is None:
            return
        self.key = f"{name}-{secrets.token_hex(3)}"  # a restarted worker is a new account
        tables = role_prices(settings)
        meter: UsageMeter = UsageMeter(settings.prices, role_prices=tables)
        if self.ledger is not None:
            self.ledger.join.remote(name, self.key)
            calls, cost = flags.max_calls is not None, flags.max_cost_usd is not None
            meter = LeasedMeter(
                settings.prices, self.ledger, self.key, calls=calls, cost=cost, role_prices=tables
            )
        self.pool = LLMPool(settings, meter)

    @property
    def get_llm(self) -> Callable[[str, str], Any] | None:
        return self.pool.get if self.pool else None

    def settle(self) -> None:
        """Give the ledger back what the lease holds beyond what was spent."""
        if self.pool is not None and isinstance(self.pool.meter, LeasedMeter):
            self.pool.meter.give_back()

    async def close(self) -> PoolUsage | None:
        """Close the clients; what the worker's models used in its life."""
        if self.pool is None:
            return None
        self.settle()
        await self.pool.aclose()
        return self.pool.usage()


def cut_shards(
    items: Sequence[Any], workers: int | None, cpus: float
) -> tuple[str, list[Shard], int]:
    """This session's id, ``items`` cut into `SHARDS_PER_WORKER` shards per worker (named by
    the session and their index), and how many workers to start (``workers``, else one per
    CPU; never more than there are shards)."""
    wanted = workers or max(1, int(cpus))
    session = secrets.token_hex(3)
    shards = [
        Shard(f"{session}-{index:05d}", chunk)
        for index, chunk in enumerate(split(items, wanted * SHARDS_PER_WORKER))
    ]
    return session, shards, min(wanted, len(shards))


class FolderWorker:
    """What a Ray worker holds for its life: a hold on the run folder (a resume after the
    driver's death waits for the worker to be gone) and its models."""

    def __init__(
        self, name: str, folder: RunFolder, kind: ShardKind, models: ModelsOfWorker
    ) -> None:
        self.name = name
        self.release = folder.hold(kind, name)
        self.models = models

    async def close(self) -> PoolUsage | None:
        """Close the worker's model clients and let go of the folder; what its models used in
        its life."""
        try:
            return await self.models.close()
        finally:
            self.release()


class EpisodeWorker(FolderWorker):
    """A Ray worker: plays the shards it is handed with the ordinary runner, in Ray's event loop
    (an async actor), and writes their episodes into the run folder."""

    def __init__(self, name: str, job: RunJob, ledger: str | None) -> None:
        models = ModelsOfWorker(name, job.settings, ledger, job.config)
        super().__init__(name, RunFolder(job.config.out), EPISODES, models)
        self.job = job

    async def play(self, shard: Shard) -> ShardReport:
        """Play the episodes of ``shard`` not stored yet; never takes the folder's lock (the
        driver holds it for every worker)."""
        from simulate.simulation import target_factory, user_factory

        job, folder = self.job, RunFolder(self.job.config.out)
        make_user = user_factory(job.config, job.prepared, self.models.get_llm)
        make_target = target_factory(job.config, job.prepared, self.models.get_llm)
        stored = stored_by(folder, shard.tag)
        todo = [spec for spec in shard.items if spec.episode_id not in stored]
        tag = f"{shard.tag}-{self.name}"
        writer = folder.writer(tag=tag)
        discarded = folder.writer(DISCARDED, tag=tag) if job.config.resimulate_faults else None
        report = ShardReport(shard.tag, self.name, already_stored=len(stored))
        try:
            await run_episodes(
                todo, make_user, make_target, writer, job.prepared.settings, None, discarded
            )
        except RunStopped as exc:
            report.stopped = str(exc)
        finally:
            self.models.settle()
        report.played = writer.written
        report.set_aside = discarded.written if discarded else 0
        return report


def stored_by(folder: RunFolder, shard_tag: str) -> set[str]:
    """Ids of the episodes stored in files of the plan shard ``shard_tag`` (by a worker that
    died playing it)."""
    return {
        episode.episode_id
        for path in folder.shards(EPISODES, tag=shard_tag)
        for episode in folder.episodes_in(path)
    }


class Follower:
    """Hands each shard file of ``kind`` the workers write, with the worker's name, to
    ``on_shard``, once, as the files appear."""

    def __init__(
        self, folder: RunFolder, kind: ShardKind, on_shard: Callable[[Path, str], Any]
    ) -> None:
        self.folder = folder
        self.kind = kind
        self.on_shard = on_shard
        self.seen = {path.name for path in folder.shards(kind)}  # earlier sessions'

    def catch_up(self) -> None:
        """Hand on the files written since the last call."""
        for path in self.folder.shards(self.kind):
            if path.name not in self.seen:
                self.seen.add(path.name)
                match = _WORKER.search(path.name)
                self.on_shard(path, match.group(1) if match else "?")


async def play_on_ray(
    config: RunConfig,
    prepared: Prepared,
    folder: RunFolder,
    todo: list[EpisodeSpec],
    tally: Tally,
    record: Callable[[Episode], Any],
    pool: LLMPool | None,
) -> None:
    """Play ``todo`` on a Ray cluster into ``folder`` (whose lock the caller holds), calling
    ``record`` with each episode as it is stored and adding what the workers' models used to
    ``pool``.

    `stop_after_errors` is kept here, over the episodes as they are stored (so a few more may
    be played than on the local engine): the workers' shards are parts of one run.

    Raises:
        RunStopped: a budget ran out or a replay missed; finished episodes are stored.
        RunAborted: the first episodes all ended in errors; the running shards are cancelled.
    """
    if not todo:
        return
    with cluster(config.ray_address) as cpus:
        session, shards, workers = cut_shards(todo, config.workers, cpus)
        spent = pool.meter.totals() if pool else None  # the preflight's call
        ledger = new_ledger(
            config,
            workers,
            f"simulate-ledger-{session}",
            spent=(spent.paid_calls, spent.cost_usd or 0.0) if spent else (0, 0.0),
        )
        job = RunJob(
            config=config.model_copy(update={"out": str(Path(config.out).resolve())}),
            prepared=dataclasses.replace(
                prepared,
                specs=[],
                settings=dataclasses.replace(prepared.settings, stop_after_errors=0),
            ),
            settings=settings_share(pool.settings, workers) if pool else None,
        )
        actor = remote(EpisodeWorker).options(**worker_options(cpus, workers))
        ledger_name = f"simulate-ledger-{session}" if ledger is not None else None
        actors = {f"w{i}": actor.remote(f"w{i}", job, ledger_name) for i in range(workers)}
        wanted = {spec.episode_id for spec in todo}
        early = EarlyStop(config.stop_after_errors)

        def count(path: Path, worker: str) -> None:
            for episode in folder.episodes_in(path):
                if episode.episode_id in wanted:  # once, though a crash may have it replayed
                    wanted.discard(episode.episode_id)
                    tally.workers[worker] += 1
                    early.add(episode)
                    record(episode)

        follower = Follower(folder, EPISODES, count)

        def follow() -> None:
            follower.catch_up()
            early.check()

        def merge(report: ShardReport) -> None:
            tally.set_aside += report.set_aside

        try:
            stopped = await drive(actors, "play", shards, follow, merge, pool)
        finally:
            if ledger is not None:
                import_ray().kill(ledger)
            follower.catch_up()  # what the cancelled shards stored on their way out
    if stopped:
        raise RunStopped(stopped)


async def drive(
    actors: dict[str, Any],
    method: str,
    shards: list[Any],
    follow: Callable[[], None],
    merge: Callable[[Any], None],
    pool: LLMPool | None,
) -> str | None:
    """Hand ``shards`` to idle ``actors`` (calling ``method``) until all are done, following
    progress between replies; returns why the work stopped early (a budget, a replay miss).
    When ``follow`` raises (an early stop), the running shards are cancelled as on Ctrl-C.

    A shard whose worker is gone for good (Ray's restarts spent) goes to another worker. Once
    one stops early no new shard is handed out; those running end on their own (the spent
    budget stops them too). Cancelled (Ctrl-C), it cancels the running shards and waits for
    their workers to store what they finished. At the end every worker closes its clients and
    what its models used is added to ``pool`` (a killed worker's is lost with it).
    """
    ray = import_ray()
    from ray.exceptions import RayActorError, RayTaskError

    queue, idle = deque(shards), list(actors)
    running: dict[asyncio.Future[Any], tuple[str, Any, Any]] = {}
    failures: dict[int, int] = {}
    stopped: str | None = None
    try:
        while queue or running:
            while queue and idle and stopped is None:
                name, shard = idle.pop(0), queue.popleft()
                ref = getattr(actors[name], method).remote(shard)
                running[asyncio.wrap_future(ref.future())] = (name, shard, ref)
            if not running:
                break
            done, _ = await asyncio.wait(
                running, timeout=FOLLOW_INTERVAL_S, return_when=asyncio.FIRST_COMPLETED
            )
            follow()
            for future in done:
                name, shard, _ref = running.pop(future)
                try:
                    report = future.result()
                except RayActorError:  # restarted and retried until Ray gave up on it
                    del actors[name]
                    failures[id(shard)] = failures.get(id(shard), 0) + 1
                    if failures[id(shard)] >= MAX_SHARD_FAILURES or not actors:
                        raise SimulateError(
                            f"Ray workers kept dying on shard {shard.tag} "
                            f"({len(shard.items)} items); what finished is stored"
                        ) from None
                    queue.appendleft(shard)
                    continue
                except RayTaskError as exc:
                    raise unwrap(exc) from None
                idle.append(name)
                merge(report)
                stopped = stopped or report.stopped
    finally:
        if running:
            for _name, _shard, ref in running.values():
                ray.cancel(ref)
            with contextlib.suppress(Exception):
                await asyncio.wait(running, timeout=CANCEL_WAIT_S)
            for future in running:
                if future.done() and not future.cancelled():
                    future.exception()  # retrieved: a cancelled shard's error says nothing new
        closing = [asyncio.wrap_future(a.close.remote().future()) for a in actors.values()]
        with contextlib.suppress(Exception):
            done, _ = await asyncio.wait(closing, timeout=CANCEL_WAIT_S)
            for future in done:
                if not future.cancelled() and future.exception() is None and pool is not None:
                    used = future.result()
                    if used is not None:
                        pool.absorb(used)
        for handle in actors.values():
            with contextlib.suppress(Exception):
                ray.kill(handle, no_restart=True)
    return stopped


# --- labels ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelJob:
    """What every worker needs to label any shard of a run's episodes."""

    config: LabelConfig
    plan: Any
    """The labeling's `_Plan` (rules, judged criteria, the judge), checked by the driver."""
    settings: LLMSettings | None
    """The worker's share of the endpoint's limits; None when no judge is used."""


class LabelWorker(FolderWorker):
    """A Ray worker: labels the episodes of the shards it is handed, with the same labelers
    and the same loop as `simulate label` in one process (`label_units`)."""

    def __init__(self, name: str, job: LabelJob, ledger: str | None) -> None:
        from simulate.label.labeling import make_assignments

        folder = RunFolder(job.config.run_dir)
        models = ModelsOfWorker(name, job.settings, ledger, job.config)
        super().__init__(name, folder, LABELS, models)
        self.job = job
        self.assignments = make_assignments(job.config, folder, job.plan, self.models.pool)
        self.done = folder.label_keys()

    async def label(self, shard: Shard) -> LabelResult:
        """Label the units of ``shard``'s episodes not labeled yet (never taking the folder's
        labels lock: the driver holds it for every worker)."""
        from simulate.label.labeling import LabelResult, _todo, label_units

        folder = RunFolder(self.job.config.run_dir)
        done = self.done | {  # what a worker that crashed on this shard had stored
            label.key
            for path in folder.shards(LABELS, tag=shard.tag)
            for label in folder.labels_in(path)
        }
        result = LabelResult(run_dir=folder.path)
        todo = _todo(folder, self.assignments, done, result, ids=set(shard.items))
        try:
            async with folder.writer(LABELS, tag=f"{shard.tag}-{self.name}") as writer:
                await label_units(todo, writer, result, self.job.config.concurrency)
        finally:
            self.models.settle()
        return result


async def label_on_ray(
    config: LabelConfig,
    plan: Any,
    folder: RunFolder,
    result: LabelResult,
    on_label: Callable[[Label], Any] | None,
    pool: LLMPool | None,
) -> None:
    """Label ``folder``'s episodes on a Ray cluster (the caller holds the labels lock), the
    workers' counts, failures and usage added to ``result`` and ``pool``'s meter."""
    ids = sorted(folder.episode_ids())
    if not ids:
        return
    with cluster(config.ray_address) as cpus:
        session, shards, workers = cut_shards(ids, config.workers, cpus)
        ledger = new_ledger(config, workers, f"simulate-ledger-{session}")
        job = LabelJob(
            config=config.model_copy(update={"run_dir": str(folder.path.resolve())}),
            plan=plan,
            settings=settings_share(pool.settings, workers) if pool else None,
        )
        actor = remote(LabelWorker).options(**worker_options(cpus, workers))
        ledger_name = f"simulate-ledger-{session}" if ledger is not None else None
        actors = {f"w{i}": actor.remote(f"w{i}", job, ledger_name) for i in range(workers)}

        def count(path: Path, worker: str) -> None:
            if on_label is not None:
                for label in folder.labels_in(path):
                    on_label(label)

        def merge(report: LabelResult) -> None:
            result.written += report.written
            result.skipped += report.skipped
            result.judged += report.judged
            result.failures += report.failures

        follower = Follower(folder, LABELS, count)
        try:
            stopped = await drive(actors, "label", shards, follower.catch_up, merge, pool)
        finally:
            if ledger is not None:
                import_ray().kill(ledger)
        follower.catch_up()
    result.stopped = result.stopped or stopped
