"""The run report as plain data: rates with intervals, pass^k, slices worst first, label criteria,
failure examples with the turn where each went wrong, and simulator health.

Computed with polars lazily over the run's shards: the scan keeps a few numbers per episode
(status, turns, latency, tokens, cost), and only the handful of example transcripts are read
whole. `simulate report` prints it as tables, as JSON, and renders it to `report.html`.
"""

from __future__ import annotations

import ast
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import Field
from scipy import stats as scipy_stats

from simulate.checks import matched_at
from simulate.errors import RunFolderError
from simulate.report.health import HealthReport, simulator_health
from simulate.report.realism import RealismReport, load_realism
from simulate.report.summary import (
    RoleUsage,
    agent_calls_run_wide,
    count_failure_kinds,
    usage_by_role,
)
from simulate.schema import NOT_RATED, Episode, Manifest, Model, Status, Usage
from simulate.stats import (
    Estimate,
    Rate,
    bootstrap_mean_interval,
    population_rate,
    ppi_mean,
    suite_rate,
)
from simulate.store import LABELS, RunFolder, rated

CONFIDENCE = 0.95
BOOTSTRAP_MAX_N = 500
"""Means of up to this many values get a bootstrap (BCa) interval; above it the t interval,
as good at that size (the mean is near normal) and free, where a bootstrap per slice and figure
would dominate the report's time on a large run."""

EXCLUDED_FROM_GOAL_RATE = list(NOT_RATED)
GOAL_RATE_NOTE = (
    "goal rate = episodes that reached the goal with every success check holding, over "
    f"episodes not ended by {' or '.join(EXCLUDED_FROM_GOAL_RATE)} (not the agent's fault); "
    "95% Wilson intervals"
)
WORST_FIRST_NOTE = (
    "slices are sorted by the upper end of the goal rate's population interval, lowest first "
    "(the suite interval, then Wilson's, where a slice has no population interval): a slice "
    "comes first when the data say it is bad for users and tasks like its own, not when a few "
    "episodes happened to fail; slices holding exactly the same episodes are listed once"
)
SUITE_NOTE = (
    "suite interval: would the same personas and scenarios, played again with new seeds, give "
    "another goal rate? (trial-to-trial variation within each persona × scenario cell)"
)
POPULATION_NOTE = (
    "population interval: how will the agent do on similar users and tasks? (personas and "
    "scenarios as samples from larger populations: a two-way cluster-robust interval)"
)
WILSON_NOTE = (
    "the plain Wilson interval treats every episode as independent: too wide for the first "
    "question and too narrow for the second when cells differ"
)
PASS_K_NOTE = (
    "pass^k is averaged over persona × scenario cells, each weighing the same; pass^1 is the "
    "mean of the cells' goal rates, and equals the goal rate when every cell has the same "
    "number of rated trials"
)
FAULTS_NOTE = (
    "simulator faults are the simulated user's, not the agent's: breaking role, stating a fact "
    "it was not given, revealing the success checks, repeating itself, ending at a "
    "confirmation question; the goal rate without them leaves those episodes out"
)
MAX_MESSAGE_CHARS = 5_000
"""Characters of one message the report (and report.html) embeds; the run keeps them all."""
_MAX_RESULT_CHARS = 2000


# --- the report's shape ------------------------------------------------------------------------


class PassHatK(Model):
    """pass^k over the persona × scenario cells of a slice."""

    cells: int
    max_trials: int
    """The most trials any cell of the run had."""
    values: dict[str, float]
    """k (as text) -> mean pass^k, for k from 1 to the fewest rated trials of a cell."""
    stops_because: str | None = None
    """Why the curve ends where it does, when it ends before `max_trials`."""


class Cost(Model):
    """Model cost of a slice's episodes, where a price was known."""

    total: float | None
    per_episode: Estimate


class Slice(Model):
    """Every figure of one slice of the run's episodes (or of all of them)."""

    dimension: str
    """`overall`, `persona`, `scenario`, `persona tag` or `scenario tag`."""
    value: str
    episodes: int
    outcomes: dict[str, int]
    goal_rate: Rate
    """With the Wilson interval (every episode independent)."""
    goal_rate_suite: Rate
    """The same rate with the suite interval (`stats.suite_rate`)."""
    goal_rate_population: Rate
    """The same rate with the population interval (`stats.population_rate`)."""
    goal_rate_without_faults: Rate
    faulted: int
    pass_hat_k: PassHatK
    turns: Estimate
    duration_s: Estimate
    latency_ms: Estimate
    tokens: Estimate
    target_tokens: int
    user_tokens: int
    cost_usd: Cost
    same_as: list[str] = Field(default_factory=list)
    """Other slices holding exactly the same episodes, as `dimension value` (shown once)."""

    @property
    def ranking_rate(self) -> Rate:
        """The rate whose interval orders the slices: population, else suite, else Wilson."""
        for rate in (self.goal_rate_population, self.goal_rate_suite, self.goal_rate):
            if rate.interval is not None:
                return rate
        return self.goal_rate


class RunInfo(Model):
    """Which run the report is of, and how far it got."""

    path: str
    run_id: str | None
    status: str | None
    state: str
    """`running` with no live writer reads as interrupted: killed, or its disk filled."""
    created_at: str | None
    user: str | None
    target: str | None
    planned: int | None
    """`counts` is written when a session ends; a killed run has only its `plan`."""
    episodes: int
    model_usage: list[Usage]
    stopped_because: str | None = None
    """Why the last session stopped before the plan's end (a budget, the gate's decision)."""


class Notes(Model):
    """What the figures mean, in a sentence each."""

    goal_rate: str
    order: str
    suite: str = SUITE_NOTE
    population: str = POPULATION_NOTE
    wilson: str = WILSON_NOTE
    pass_k: str = PASS_K_NOTE


class LabelCriterion(Model):
    """A label criterion's pass rate by one kind of labeler."""

    criterion: str
    labeler_kind: str
    labelers: list[str]
    unit: str
    """`episode` or `turn`."""
    labels: int
    episodes: int
    mean_score: float | None
    pass_rate: Rate
    corrected_pass_rate: Estimate | None = None
    """For judges and rules where people labeled some of the same units: the pass rate
    corrected by the people's labels (PPI++; `simulate agreement` has the details)."""


class FailureExample(Model):
    """A failing episode, and the turn where it went wrong."""

    episode_id: str
    persona_id: str
    scenario_id: str
    trial: int
    turn_index: int | None
    why: str
    excerpt: str | None


class FailureKind(Model):
    """Failing episodes of one kind (`summary.failure_kinds`), with examples."""

    kind: str
    agent_fault: bool
    n: int
    share: float
    """Of all the run's episodes."""
    examples: list[FailureExample]


class FaultExample(Model):
    """Where the simulated user went wrong in one episode."""

    episode_id: str
    persona_id: str
    scenario_id: str
    trial: int
    turn: int
    evidence: str


class FaultKind(Model):
    """Episodes with one kind of simulator fault."""

    kind: str
    episodes: int
    share: float | None
    examples: list[FaultExample]


class SimulatorFaults(Model):
    """Episodes where the simulated user, not the agent, went wrong."""

    note: str
    checked: int
    """Episodes checked for faults (none in run folders written before Simulate checked)."""
    episodes: int
    share: Rate
    kinds: list[FaultKind]


class ToolCallView(Model):
    name: str
    arguments: str
    result: str | None


class MessageView(Model):
    index: int
    role: str
    content: str
    latency_ms: float | None
    tool_calls: list[ToolCallView]


class Transcript(Model):
    """An episode as the report shows it."""

    episode_id: str
    persona_id: str
    scenario_id: str
    trial: int
    status: str
    reason: str
    failed_checks: list[str]
    success: bool
    n_turns: int
    messages: list[MessageView]


class RunReport(Model):
    """Every figure of the run report (`build_report`); `--json` is its dump."""

    run: RunInfo
    notes: Notes
    overall: Slice
    slices: list[Slice]
    """Persona, scenario and tag slices, worst first."""
    turn_counts: dict[int, int]
    """Agent turns -> episodes."""
    labels: list[LabelCriterion]
    failure_kinds: list[FailureKind]
    simulator_faults: SimulatorFaults
    health: HealthReport
    realism: RealismReport | None
    usage_by_role: list[RoleUsage]
    """Model usage per role over the episodes (`summary.usage_by_role`)."""
    agent_calls_run_wide: int
    """The agent's calls through the model proxy that named no episode."""
    transcripts: dict[str, Transcript]


def _mean(values: Sequence[float] | np.ndarray) -> Estimate:
    """A mean with its interval (bootstrap BCa up to BOOTSTRAP_MAX_N values, else t) and n."""
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data)]
    n = int(data.size)
    if n == 0:
        return Estimate(value=None, n=0, reason="no values")
    mean = float(data.mean())
    if n <= BOOTSTRAP_MAX_N:
        interval = bootstrap_mean_interval(data, CONFIDENCE, resamples=1000)
        method = "bootstrap"
    else:
        half = float(scipy_stats.t.ppf((1 + CONFIDENCE) / 2, n - 1) * data.std(ddof=1) / n**0.5)
        interval, method = (mean - half, mean + half), "t"
    low, high = interval if interval else (None, None)
    return Estimate(value=mean, low=low, high=high, n=n, method=method)


def scan_episode_figures(run_dir: str | Path) -> pl.LazyFrame:
    """One row of numbers per episode, lazily: the columns every slice is computed from."""
    tokens = pl.element().struct.field("prompt_tokens") + pl.element().struct.field(
        "completion_tokens"
    )
    role = pl.element().struct.field("role")
    return (
        RunFolder(run_dir)
        .scan_episodes()
        .select(
            "episode_id",
            "persona_id",
            "scenario_id",
            "trial",
            "status",
            "failed_checks",
            "success",
            rated().alias("rated"),
            "n_turns",
            "duration_s",
            pl.col("messages")
            .list.eval(pl.element().struct.field("latency_ms").drop_nulls())
            .list.mean()
            .alias("latency_ms"),
            pl.col("usage").list.eval(tokens).list.sum().alias("tokens"),
            pl.col("usage")
            .list.eval(pl.when(role == "target").then(tokens).otherwise(0))
            .list.sum()
            .alias("target_tokens"),
            pl.col("usage")
            .list.eval(pl.when(role == "user").then(tokens).otherwise(0))
            .list.sum()
            .alias("user_tokens"),
            pl.col("usage")
            .list.eval(pl.element().struct.field("cost_usd"))
            .list.sum()
            .alias("cost"),
            pl.col("usage")
            .list.eval(pl.element().struct.field("cost_usd").is_not_null())
            .list.any()
            .alias("priced"),
            pl.col("usage").list.len().alias("usage_rows"),
            pl.col("simulator_faults").list.len().fill_null(0).alias("n_faults"),
            pl.col("simulator_faults").is_not_null().alias("faults_checked"),
        )
    )


def _tags(run_dir: str | Path, column: str, id_column: str) -> dict[str, list[str]]:
    """Tags of every persona (or scenario) in the run, from the stored JSON, by id."""
    stored = (
        RunFolder(run_dir)
        .scan_episodes()
        .group_by(id_column)
        .agg(pl.col(column).unique().head(20))
        .collect()
    )
    tags: dict[str, list[str]] = {}
    for ident, texts in stored.iter_rows():
        found: set[str] = set()
        for text in texts:
            try:
                found.update(json.loads(text).get("tags") or [])
            except (json.JSONDecodeError, AttributeError):
                continue
        tags[ident] = sorted(found)
    return tags


def _slice(frame: pl.DataFrame, dimension: str, value: str, max_trials: int) -> Slice:
    """Every figure of one slice of the run's episodes."""
    rated_frame = frame.filter(pl.col("rated"))
    outcomes = dict(sorted(frame.group_by("status").len().iter_rows()))
    cells = (
        rated_frame.group_by("persona_id", "scenario_id")
        .agg(pl.len().alias("n"), pl.col("success").sum().alias("c"))
        .sort("persona_id", "scenario_id")
    )
    counts = cells.select("n", "c").rows()
    curve = pass_hat_k_by_k(counts)
    priced = frame.filter(pl.col("priced"))
    with_usage = frame.filter(pl.col("usage_rows") > 0)
    clean = rated_frame.filter(pl.col("n_faults") == 0)
    trials, successes = cells["n"].to_numpy(), cells["c"].to_numpy()
    personas = cells["persona_id"].rank("dense").to_numpy().astype(int) - 1
    scenarios = cells["scenario_id"].rank("dense").to_numpy().astype(int) - 1
    return Slice(
        dimension=dimension,
        value=value,
        episodes=frame.height,
        outcomes=outcomes,
        goal_rate=_goal_rate(int(rated_frame["success"].sum()), rated_frame.height),
        goal_rate_suite=suite_rate(successes, trials, CONFIDENCE),
        goal_rate_population=population_rate(successes, trials, personas, scenarios, CONFIDENCE),
        goal_rate_without_faults=_goal_rate(int(clean["success"].sum()), clean.height),
        faulted=int((frame["n_faults"] > 0).sum()),
        pass_hat_k=PassHatK(
            cells=len(counts),
            max_trials=max_trials,
            values={str(k): v for k, v in curve.items()},
            stops_because=_pass_k_stop(cells, max_trials),
        ),
        turns=_mean(frame["n_turns"].to_numpy()),
        duration_s=_mean(frame["duration_s"].to_numpy()),
        latency_ms=_mean(frame["latency_ms"].drop_nulls().to_numpy()),
        tokens=_mean(with_usage["tokens"].to_numpy()) if with_usage.height else _mean([]),
        target_tokens=int(frame["target_tokens"].fill_null(0).sum()),
        user_tokens=int(frame["user_tokens"].fill_null(0).sum()),
        cost_usd=Cost(
            total=float(priced["cost"].sum()) if priced.height else None,
            per_episode=_mean(priced["cost"].to_numpy()),
        ),
    )


def _pass_k_stop(cells: pl.DataFrame, max_trials: int) -> str | None:
    """Why pass^k ends before `max_trials`: the cells with the fewest rated trials."""
    if cells.is_empty():
        return "no cell has a rated trial"
    fewest = int(cells["n"].min())  # type: ignore[arg-type]
    if fewest >= max_trials:
        return None
    short = cells.filter(pl.col("n") == fewest)
    first = short.row(0, named=True)
    plural = "s" if fewest != 1 else ""
    return (
        f"k stops at {fewest}: pass^k needs k rated trials in every cell, and "
        f"{short.height} of {cells.height} cells have {fewest} rated trial{plural} (e.g. "
        f"{first['persona_id']} × {first['scenario_id']}; target and simulator errors are not "
        "rated)"
    )


def _goal_rate(successes: int, n: int) -> Rate:
    return Rate.wilson(
        successes, n, CONFIDENCE, empty="every episode ended in a target or simulator error"
    )


def pass_hat_k_by_k(cells: Sequence[tuple[int, int]]) -> dict[int, float]:
    """Mean pass^k over cells of (trials, passes), for k from 1 to the fewest trials of a cell.

    The same figures as `stats.pass_hat_k_curve`, computed for every k at once: pass^k of a cell
    is the running product of (c - i) / (n - i) over i < k, so one cumulative product per cell
    gives its whole curve (a run with 100 trials per cell needs this to stay fast).
    """
    if not cells:
        return {}
    counts = np.asarray(cells, dtype=float)
    n, c = counts[:, :1], counts[:, 1:]
    steps = np.arange(int(n.min()))
    curves = np.cumprod(np.clip((c - steps) / (n - steps), 0.0, None), axis=1)
    return {int(k) + 1: float(v) for k, v in zip(steps, curves.mean(axis=0), strict=True)}


def pass_k_highlights(values: dict[str, float]) -> dict[str, float]:
    """A readable selection of a pass^k curve: k = 1, 2, 3, 5, 10, 20, 50, 100... and the last."""
    if not values:
        return {}
    last = max(int(k) for k in values)
    marks = {1, 2, 3, last} | {m for m in (5, 10, 20, 50, 100, 200, 500, 1000) if m < last}
    return {str(k): values[str(k)] for k in sorted(marks) if str(k) in values}


def _worst_first(slices: list[Slice]) -> list[Slice]:
    """Slices with the lowest upper end of the population interval first (`ranking_rate`);
    slices with nothing rated last."""

    def key(s: Slice) -> tuple[Any, ...]:
        rate = s.ranking_rate
        if rate.value is None or rate.high is None:
            return (1, 0.0, 0.0, 0, s.value)
        return (0, rate.high, rate.value, -rate.n, s.value)

    return sorted(slices, key=key)


def _merge_identical(slices: list[tuple[Slice, frozenset[str]]]) -> list[Slice]:
    """Persona and scenario slices, and one slice per other set of episodes: a tag slice with
    the same episodes as an earlier slice (a tag only one persona has) is named in that one's
    `same_as` instead of being listed again."""
    kept: dict[frozenset[str], Slice] = {}
    rest: list[Slice] = []
    for figures, ids in slices:
        if figures.dimension.endswith(" tag") and ids in kept:
            kept[ids].same_as.append(f"{figures.dimension} {figures.value}")
            continue
        kept.setdefault(ids, figures)
        rest.append(figures)
    return rest


def _phrase(kind: str) -> str:
    """The phrase or tool of a check string like `must_not_mention: 'X'`."""
    try:
        return str(ast.literal_eval(kind.split(": ", 1)[1]))
    except (IndexError, ValueError, SyntaxError):
        return kind.split(": ", 1)[-1]


def locate_failure(episode: Episode, kind: str) -> dict[str, Any]:
    """The turn (index into `messages`) where an episode went wrong in the way ``kind`` names,
    and a sentence saying why that turn."""
    messages = episode.messages
    last = len(messages) - 1 if messages else None

    def last_of(role: str) -> int | None:
        return next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == role), last)

    if kind.startswith("must_not_mention"):
        phrase = _phrase(kind).casefold()
        for i, message in enumerate(messages):
            if message.role == "assistant" and phrase in message.content.casefold():
                return {"turn_index": i, "why": f"the agent said {_phrase(kind)!r}"}
        return {"turn_index": last, "why": f"{_phrase(kind)!r} was said"}
    if kind.startswith("must_not_match"):
        at = matched_at(messages, _phrase(kind))
        if at:
            return {"turn_index": at[0], "why": f"the agent's reply matched {_phrase(kind)!r}"}
        return {"turn_index": last, "why": f"{_phrase(kind)!r} matched"}
    if kind.startswith("must_match"):
        return {
            "turn_index": last_of("assistant"),
            "why": f"the agent's last reply; no reply matched {_phrase(kind)!r}",
        }
    if kind.startswith("must_mention"):
        return {
            "turn_index": last_of("assistant"),
            "why": f"the agent's last reply; it never said {_phrase(kind)!r} (outside a refusal)",
        }
    if kind.startswith("must_call_tools"):
        return {
            "turn_index": last_of("assistant"),
            "why": f"the agent's last reply; it never called {_phrase(kind)}",
        }
    if kind == Status.GAVE_UP.value:
        return {"turn_index": last_of("user"), "why": "the user gave up here"}
    if kind == Status.TARGET_ENDED.value:
        return {"turn_index": last_of("assistant"), "why": "the agent ended the conversation"}
    if kind == Status.MAX_TURNS.value:
        return {"turn_index": last, "why": "the turn limit was reached here"}
    return {"turn_index": last, "why": episode.outcome.reason or kind}


def _simulator_faults(frame: pl.DataFrame, run_dir: str | Path, examples: int) -> SimulatorFaults:
    """Episodes with simulator faults: how many, by kind, with examples (turn and evidence).

    `checked` counts the episodes that were checked for them (none in run folders written
    before Simulate recorded faults)."""
    faulted = int((frame["n_faults"] > 0).sum())
    rows = (
        RunFolder(run_dir)
        .scan_episodes()
        .select("episode_id", "persona_id", "scenario_id", "trial", "simulator_faults")
        .filter(pl.col("simulator_faults").list.len() > 0)
        .explode("simulator_faults")
        .unnest("simulator_faults")
        .sort("kind", "persona_id", "scenario_id", "trial", "turn")
        .collect()
    )
    kinds = []
    for (kind,), group in rows.group_by("kind", maintain_order=True):
        first = group.unique(subset="episode_id", keep="first", maintain_order=True)
        kinds.append(
            FaultKind(
                kind=kind,
                episodes=first.height,
                share=first.height / frame.height if frame.height else None,
                examples=[
                    FaultExample(**row)
                    for row in first.head(examples)
                    .select("episode_id", "persona_id", "scenario_id", "trial", "turn", "evidence")
                    .to_dicts()
                ],
            )
        )
    return SimulatorFaults(
        note=FAULTS_NOTE,
        checked=int(frame["faults_checked"].sum()),
        episodes=faulted,
        share=Rate.wilson(faulted, frame.height, CONFIDENCE),
        kinds=sorted(kinds, key=lambda k: (-k.episodes, k.kind)),
    )


def _transcript(episode: Episode) -> Transcript:
    """An episode, as the report shows it: ids, outcome, and each message with its tool calls."""
    return Transcript(
        episode_id=episode.episode_id,
        persona_id=episode.persona_id,
        scenario_id=episode.scenario_id,
        trial=episode.trial,
        status=episode.outcome.status.value,
        reason=episode.outcome.reason,
        failed_checks=episode.outcome.failed_checks,
        success=episode.success,
        n_turns=episode.n_turns,
        messages=[
            MessageView(
                index=i,
                role=m.role,
                content=clip_message(m.content),
                latency_ms=m.latency_ms,
                tool_calls=[
                    ToolCallView(
                        name=call.name,
                        arguments=_clip(json.dumps(call.arguments, ensure_ascii=False)),
                        result=None
                        if call.result is None
                        else _clip(json.dumps(call.result, ensure_ascii=False, default=str)),
                    )
                    for call in m.tool_calls
                ],
            )
            for i, m in enumerate(episode.messages)
        ],
    )


def clip_message(text: str) -> str:
    """A message as the report embeds it: at most `MAX_MESSAGE_CHARS`, saying what was cut."""
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    cut = len(text) - MAX_MESSAGE_CHARS
    return f"{text[:MAX_MESSAGE_CHARS]} … [{cut:,} more characters: simulate show RUN --episode ID]"


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_RESULT_CHARS else text[:_MAX_RESULT_CHARS] + " …"


def _read_episodes(run_dir: str | Path, ids: set[str]) -> dict[str, Episode]:
    """Just the episodes named, read whole."""
    if not ids:
        return {}
    return {e.episode_id: e for e in RunFolder(run_dir).episodes(ids=ids)}


def _label_criteria(run_dir: str | Path) -> list[LabelCriterion]:
    """Every label criterion's pass rate by labeler kind, with interval; worst first.

    A unit judged more than once by the same labeler counts once, with its latest label; a
    unit labeled by several labelers of a kind (two people) counts once, with their majority
    (ties left out), so n is units, not labels.
    """
    folder = RunFolder(run_dir)
    if not folder.has(LABELS):
        return []
    unit = ["episode_id", "criterion", "turn_index", "tool_call_index", "labeler"]
    latest = (
        folder.scan(LABELS)
        .select(*unit, "labeler_kind", "passed", "score", "created_at")
        .sort("created_at")
        .unique(subset=unit, keep="last")
        .collect()
    )
    corrected = _corrected_rates(latest)
    labels = (
        latest.lazy()
        .group_by("criterion", "labeler_kind")
        .agg(
            pl.len().alias("labels"),
            pl.col("episode_id").n_unique().alias("episodes"),
            pl.col("labeler").unique().sort().alias("labelers"),
            pl.col("turn_index").is_not_null().any().alias("per_turn"),
            pl.col("score").mean().alias("mean_score"),
        )
        .collect()
    )
    verdicts = (
        _majority(latest, [*_UNIT, "labeler_kind"])
        .group_by("criterion", "labeler_kind")
        .agg(pl.len().alias("n"), pl.col("verdict").sum().alias("passes"))
    )
    labels = labels.join(verdicts, on=["criterion", "labeler_kind"], how="left")
    rows = [
        LabelCriterion(
            criterion=r["criterion"],
            labeler_kind=r["labeler_kind"],
            labelers=r["labelers"],
            unit="turn" if r["per_turn"] else "episode",
            labels=r["labels"],
            episodes=r["episodes"],
            mean_score=r["mean_score"],
            pass_rate=Rate.wilson(int(r["passes"] or 0), int(r["n"] or 0), CONFIDENCE),
            corrected_pass_rate=corrected.get((r["criterion"], r["labeler_kind"])),
        )
        for r in labels.to_dicts()
    ]
    return sorted(
        rows,
        key=lambda r: (
            r.pass_rate.high is None,
            r.pass_rate.high or 0.0,
            r.criterion,
            r.labeler_kind,
        ),
    )


_UNIT = ("criterion", "episode_id", "turn_index", "tool_call_index")
"""What one label is about."""


def _majority(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """One `verdict` per group of ``by``: its labels' majority pass; ties are left out."""
    return (
        frame.filter(pl.col("passed").is_not_null())
        .group_by(by)
        .agg(pl.col("passed").sum().alias("yes"), pl.len().alias("all"))
        .filter(pl.col("yes") * 2 != pl.col("all"))
        .with_columns((pl.col("yes") * 2 > pl.col("all")).alias("verdict"))
        .drop("yes", "all")
    )


def _corrected_rates(latest: pl.DataFrame) -> dict[tuple[str, str], Estimate]:
    """Each judge's and rule's pass rate corrected by people's labels of the same units
    (`stats.ppi_mean`), by (criterion, labeler kind); where people labeled every unit, the
    people's own rate. A kind's verdict on a unit is its labelers' majority, as the people's
    is theirs; ties are left out."""
    where = list(_UNIT)
    people = _majority(latest.filter(pl.col("labeler_kind") == "human"), where)
    if people.is_empty():
        return {}
    machines = _majority(
        latest.filter(pl.col("labeler_kind").is_in(["judge", "rule"])), [*where, "labeler_kind"]
    ).join(people, on=where, how="left", suffix="_people", nulls_equal=True)
    found = {}
    for (criterion, kind), group in machines.group_by("criterion", "labeler_kind"):
        labeled = group.filter(pl.col("verdict_people").is_not_null())
        if labeled.is_empty():
            continue
        y = labeled["verdict_people"].to_numpy().astype(float)
        unlabeled = group.filter(pl.col("verdict_people").is_null())["verdict"].to_numpy()
        if unlabeled.size:
            f = labeled["verdict"].to_numpy().astype(float)
            found[(criterion, kind)] = ppi_mean(y, f, unlabeled.astype(float), CONFIDENCE)
        else:
            people_rate = Rate.wilson(int(y.sum()), y.size, CONFIDENCE)
            found[(criterion, kind)] = Estimate(
                **people_rate.model_dump(include={"value", "low", "high", "n"}),
                method="people labeled every unit: their own rate (Wilson)",
            )
    return found


def _model_usage(manifest: Manifest) -> list[Usage]:
    """The latest session's model usage, when the manifest records one."""
    return manifest.last_session.model_usage if manifest.last_session else []


def build_report(run_dir: str | Path, examples_per_kind: int = 3) -> RunReport:
    """Every figure of the run report.

    Raises RunFolderError when ``run_dir`` is not a run folder or holds no episodes.
    """
    folder = RunFolder.open(run_dir)
    manifest = folder.manifest
    if not folder.has():
        raise RunFolderError(f"{str(run_dir)!r} holds no episodes yet; nothing to report")
    frame = scan_episode_figures(run_dir).collect()
    max_trials = int(
        frame.group_by("persona_id", "scenario_id").len()["len"].max() or 0  # type: ignore[arg-type]
    )
    persona_tags = _tags(run_dir, "persona", "persona_id")
    scenario_tags = _tags(run_dir, "scenario", "scenario_id")

    overall = _slice(frame, "overall", "all", max_trials)
    slices: list[tuple[Slice, frozenset[str]]] = []

    def add(subset: pl.DataFrame, dimension: str, value: str) -> None:
        ids = frozenset(subset["episode_id"].to_list())
        slices.append((_slice(subset, dimension, value, max_trials), ids))

    for dimension, column in (("persona", "persona_id"), ("scenario", "scenario_id")):
        for value in sorted(frame[column].unique().to_list()):
            add(frame.filter(pl.col(column) == value), dimension, value)
    for dimension, column, tags in (
        ("persona tag", "persona_id", persona_tags),
        ("scenario tag", "scenario_id", scenario_tags),
    ):
        by_tag: dict[str, list[str]] = defaultdict(list)
        for ident, names in tags.items():
            for tag in names:
                by_tag[tag].append(ident)
        for tag in sorted(by_tag):
            add(frame.filter(pl.col(column).is_in(by_tag[tag])), dimension, tag)
    rest = _merge_identical(slices)

    kinds = count_failure_kinds(frame.filter(~pl.col("success")), examples_per_kind)
    health = simulator_health(run_dir)
    faults = _simulator_faults(frame, run_dir, examples_per_kind)
    wanted = {e for ids in kinds["examples"].to_list() for e in ids}
    wanted |= {e.episode_id for kind in faults.kinds for e in kind.examples}
    wanted |= {e.episode_id for rows in health.examples.values() for e in rows}
    episodes = _read_episodes(run_dir, wanted)
    failure_kinds = []
    for row in kinds.to_dicts():
        examples = []
        for episode_id in row["examples"]:
            episode = episodes[episode_id]
            where = locate_failure(episode, row["kind"])
            turn = where["turn_index"]
            examples.append(
                FailureExample(
                    episode_id=episode_id,
                    persona_id=episode.persona_id,
                    scenario_id=episode.scenario_id,
                    trial=episode.trial,
                    **where,
                    excerpt=None if turn is None else _excerpt(episode.messages[turn].content),
                )
            )
        failure_kinds.append(
            FailureKind(
                kind=row["kind"],
                agent_fault=row["kind"] not in EXCLUDED_FROM_GOAL_RATE,
                n=row["n"],
                share=row["n"] / frame.height,
                examples=examples,
            )
        )
    return RunReport(
        run=RunInfo(
            path=str(run_dir),
            run_id=manifest.run_id,
            status=manifest.status,
            state=folder.state(),
            created_at=manifest.created_at,
            user=manifest.config.user,
            target=manifest.config.target,
            planned=manifest.planned,
            episodes=frame.height,
            model_usage=_model_usage(manifest),
            stopped_because=manifest.stopped_because,
        ),
        notes=Notes(goal_rate=GOAL_RATE_NOTE, order=WORST_FIRST_NOTE),
        overall=overall,
        slices=_worst_first(rest),
        turn_counts=dict(
            sorted((int(k), int(v)) for k, v in frame.group_by("n_turns").len().iter_rows())
        ),
        usage_by_role=usage_by_role(folder),
        agent_calls_run_wide=agent_calls_run_wide(folder),
        labels=_label_criteria(run_dir),
        failure_kinds=failure_kinds,
        simulator_faults=faults,
        health=health,
        realism=load_realism(run_dir),
        transcripts={e: _transcript(episodes[e]) for e in sorted(episodes)},
    )


def _excerpt(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def report_json(report: RunReport) -> str:
    """The report as JSON (strict: no NaN, which JSON lacks)."""
    return json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False, allow_nan=False)
