"""What `run`, `demo` and `show` print: estimates, run summaries, transcripts."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from simulate.cli.render import err, out
from simulate.report.gate import GateResult, Round
from simulate.report.summary import RoleUsage, RunSummary
from simulate.runner import Tally
from simulate.schema import Episode
from simulate.simulation import RunConfig, RunEstimate, RunResult

if TYPE_CHECKING:
    from simulate.agent_proxy import AgentProxy
    from simulate.llm.cassette import Exported


def print_estimate(config: RunConfig, estimate: RunEstimate) -> None:
    """`--dry-run`: the plan and a rough count of model calls and their cost."""
    out.print(
        f"plan: {estimate.episodes} episodes ({estimate.personas} personas × "
        f"{estimate.scenarios} scenarios × {config.trials} trials), "
        f"at most {config.max_turns} turns each"
    )
    if config.agent_llm_proxy:
        out.print("the agent's own calls through the model proxy: not estimated (it decides them)")
    if not estimate.models:
        if not config.agent_llm_proxy:
            out.print("no model calls: this user and target run offline")
        return
    for row in estimate.models:
        cost = row.cost_usd_max
        price = (
            "no price known"
            if cost is None
            else (f"${row.cost_usd_typical or 0:.2f} typical, ${cost:.2f} at most")
        )
        out.print(
            f"{row.role} {row.model}: about {row.calls_typical} calls "
            f"(at most {row.calls_max}), {price}"
        )
    out.print(
        "rough estimate: ~6 turns per conversation typical, every turn to --max-turns at "
        "most; tokens ~ prompt length + history; cached requests cost nothing"
    )


def print_proxy(proxy: AgentProxy, target: str) -> None:
    """Where the agent's model proxy listens; for an `http:` agent, how to point it there."""
    from simulate.agent_proxy import TOKEN_VARIABLE

    if not target.startswith(("http:", "https:")):
        err.print(f"agent model proxy: {proxy.base_url} (OPENAI_BASE_URL of the agent)")
        return
    err.print(
        f"agent model proxy: start the agent with OPENAI_BASE_URL={proxy.base_url} and "
        f"OPENAI_API_KEY=${TOKEN_VARIABLE}; to count its calls per conversation, send the "
        "request's session_id as the X-Simulate-Session header",
        soft_wrap=True,
    )


def print_cassette_export(exported: Exported) -> None:
    """`simulate cassette export`: what the cassette holds, and what the cache had lost."""
    out.print(f"wrote {exported.calls} recorded model calls to {exported.path}")
    if exported.missing:
        err.print(
            f"warning: {exported.missing} of the run's calls are no longer in the cache and are"
            " not in the cassette: a --replay-only run will miss them"
        )


def print_cassette_import(calls: int, cache_dir: str) -> None:
    """`simulate cassette import`: how many calls the cache got."""
    out.print(f"imported {calls} recorded model calls into the cache in {cache_dir}")


def print_summary(result: RunResult, summary: RunSummary, findings: bool = False) -> None:
    """The end of `run` and `demo`: outcomes, the goal rate, model usage, where the data is."""
    tally = result.tally
    out.print(
        f"\n[bold]Run[/] {escape(str(result.run_dir))}  ({tally.done} played, "
        f"{tally.skipped} already stored, {summary.episodes} in the folder)",
        markup=True,
    )
    if tally.workers:
        out.print(f"ray workers: {per_worker(tally)} episodes")
    statuses = ", ".join(f"{k} {v}" for k, v in summary.by_status.items())
    out.print(f"outcomes: {statuses}")
    rate = summary.goal_rate
    if rate is None and summary.episodes:
        out.print(
            "[bold]goal rate n/a[/]: every episode ended in a target or simulator error",
            markup=True,
        )
    if rate is not None:
        out.print(
            f"[bold]goal rate {rate:.0%}[/] ({summary.successes}/{summary.rated} "
            "episodes; target and simulator errors left out)",
            markup=True,
        )
    if result.usage:
        print_usage(result)
    for line in role_usage_lines(summary.usage_by_role, summary.agent_calls_run_wide):
        out.print(line)
    if findings:
        print_findings(summary)
    out.print(
        f"\ndata: {result.run_dir}/episodes/*.parquet  ·  "
        f"python: simulate.load_run({str(result.run_dir)!r})  ·  "
        f"transcripts: simulate show {result.run_dir} --failed"
    )


def per_worker(tally: Tally) -> str:
    """`w0 12 · w1 14`: episodes stored by each Ray worker (empty on the local engine)."""
    return " · ".join(f"{name} {n}" for name, n in sorted(tally.workers.items()))


def print_usage(result: RunResult) -> None:
    for row in result.usage:
        cost = "" if row.cost_usd is None else f", ${row.cost_usd:.4f}"
        out.print(
            f"model {row.role} {row.model}: {row.calls} calls, {row.prompt_tokens} prompt + "
            f"{row.completion_tokens} completion tokens{cost}"
        )


def role_usage_lines(rows: list[RoleUsage], run_wide: int) -> list[str]:
    """Model usage per role over the episodes in the folder; the agent's unattributed calls."""
    if not rows:
        return []
    parts = []
    for row in rows:
        cost = "" if row.cost_usd is None else f", ${row.cost_usd:.4f}"
        tokens = row.prompt_tokens + row.completion_tokens
        parts.append(f"{row.role} {row.calls} calls, {tokens} tokens{cost}")
    lines = ["usage by role over the episodes: " + " · ".join(parts)]
    if run_wide:
        lines.append(
            f"the agent made {run_wide} calls through the model proxy that named no episode: in"
            " the totals, in no episode (send X-Simulate-Session to attribute them)"
        )
    return lines


def print_findings(summary: RunSummary) -> None:
    table = Table(title="goal rate per persona", title_justify="left")
    for column in ("persona", "goal rate", "n"):
        table.add_column(column, justify="left" if column == "persona" else "right")
    for row in summary.per_persona:
        table.add_row(row.persona_id, f"{row.goal_rate:.0%}", str(row.n))
    out.print(table)
    if summary.failure_kinds:
        kinds = Table(title="what failed", title_justify="left")
        for column in ("failure", "episodes", "example episode"):
            kinds.add_column(column)
        for kind in summary.failure_kinds:
            kinds.add_row(kind.kind, str(kind.n), kind.example)
        out.print(kinds)
        out.print("read one: simulate show RUN --episode ID")


def print_transcript(episode: Episode, with_traceback: bool = False) -> None:
    """One conversation and how it ended; ``with_traceback``: the agent's crash in full."""
    outcome = episode.outcome
    color = "green" if episode.success else "red"
    out.rule(
        f"{episode.persona_id} × {episode.scenario_id} · trial {episode.trial} · "
        f"{episode.episode_id}"
    )
    for message in episode.messages:
        who = {"user": "[cyan]user[/]", "assistant": "[magenta]agent[/]"}.get(
            message.role, message.role
        )
        out.print(f"{who}: ", end="", markup=True)
        out.print(message.content, markup=False)
        for call in message.tool_calls:
            out.print(f"    ↳ {call.name}({json.dumps(call.arguments)})", style="dim")
    checks = (
        f" · failed checks: {', '.join(outcome.failed_checks)}" if outcome.failed_checks else ""
    )
    faults = "".join(
        f"\n  simulator fault: {f.kind} at message {f.turn}: {f.evidence}"
        for f in episode.simulator_faults
    )
    out.print(
        f"[{color}]{outcome.status}[/] {escape(outcome.reason + checks + faults)}\n", markup=True
    )
    if episode.error_traceback and with_traceback:
        out.print(episode.error_traceback.rstrip() + "\n", markup=False, soft_wrap=True)
    elif episode.error_traceback:
        out.print(f"traceback: simulate show RUN --episode {episode.episode_id}\n", style="dim")


def round_line(done: Round) -> str:
    """One round of `--until-decided`."""
    rate = "n/a" if done.rate is None else f"{done.rate:.1%}"
    return (
        f"round {done.round}: {done.episodes} rated episodes, goal rate {rate} "
        f"(always-valid {done.low:.1%}–{done.high:.1%}): {done.decision}"
    )


def print_gate(gate: GateResult) -> None:
    """The decision of `--until-decided`, with the figures behind it."""
    out.print(
        f"\n[bold]gate[/] against {escape(gate.baseline)}: baseline {gate.baseline_rate:.1%} "
        f"({gate.baseline_low:.1%}–{gate.baseline_high:.1%}, n={gate.baseline_episodes}) over "
        f"{gate.cells} shared cells; alpha {gate.alpha:g}, margin {gate.margin:g}",
        markup=True,
    )
    for done in gate.rounds:
        out.print(round_line(done))
    played = len(gate.rounds)
    verdict = {
        "regression": "[bold red]regression[/]",
        "no regression larger than the margin": (
            f"[bold green]no regression larger than {gate.margin:g}[/]"
        ),
        "undecided": "[bold]undecided[/]: the trials ran out first",
    }[gate.decision]
    out.print(f"{verdict} after {played} of {gate.max_rounds} rounds", markup=True)
    out.print(gate.method, style="dim")
