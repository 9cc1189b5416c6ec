"""The `simulate` command: a thin click layer over the library, and the only place that exits.

A SimulateError prints as `error: <message>` with exit status 1 (3 for a RunStopped: a budget
or a replay miss stopped the work early); usage errors exit 2; `SIMULATE_DEBUG=1` shows
tracebacks.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from importlib import resources
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from simulate.errors import ConfigError, RunStopped, SimulateError
from simulate.runner import Tally, goal_rate
from simulate.schema import Episode
from simulate.session import RunConfig, RunResult, estimate_run, prepare, run
from simulate.store import iter_episodes, read_manifest
from simulate.summary import summarize_run

# Ids, phrases, paths and messages are the user's text: `out` prints everything as written
# (a `[/INST]` in a reply must not be read as rich markup); markup is asked for per call, with
# the user's parts escaped.
out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, markup=False)
marked = Console(highlight=False, soft_wrap=True)
"""For the library's printers that escape the user's text themselves (compare, calibrate)."""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="simulate")
def cli() -> None:
    """Simulated users for conversational agents, recorded as Hugging Face datasets."""


def _llm_options(func: Any) -> Any:
    """Model endpoint, cache and budget options, shared by `run`, `demo` and `label`."""
    options = [
        click.option(
            "--llm-config",
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="YAML endpoint settings: base_url, api_key_env, limits, prices.",
        ),
        click.option(
            "--base-url",
            metavar="URL",
            help="OpenAI-compatible endpoint (vLLM, Ollama...) [OPENAI_BASE_URL].",
        ),
        click.option(
            "--no-cache",
            "no_cache",
            is_flag=True,
            help="Do not serve repeated model requests from the cache.",
        ),
        click.option(
            "--replay-only",
            is_flag=True,
            help="Answer model requests only from the cache; a miss stops the run.",
        ),
        click.option(
            "--max-calls",
            type=click.IntRange(1),
            help="Stop cleanly after this many paid model calls.",
        ),
        click.option(
            "--max-cost-usd",
            type=click.FloatRange(min=0, min_open=True),
            help="Stop cleanly once this much is spent on models.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _run_options(func: Any) -> Any:
    """Options shared by `run` and `demo`."""
    options = [
        click.option(
            "--user",
            default="agenda",
            show_default=True,
            help="Simulated user: agenda (offline) or scripted.",
        ),
        click.option(
            "--trials",
            default=1,
            show_default=True,
            type=click.IntRange(1),
            help="Conversations per persona x scenario.",
        ),
        click.option("--seed", default=0, show_default=True, type=int, help="Run seed."),
        click.option(
            "--concurrency",
            default=8,
            show_default=True,
            type=click.IntRange(1),
            help="Conversations played at once.",
        ),
        click.option(
            "--max-turns",
            default=12,
            show_default=True,
            type=click.IntRange(1),
            help="Agent replies before an episode ends as max_turns.",
        ),
        click.option(
            "--turn-timeout",
            default=30.0,
            show_default=True,
            type=click.FloatRange(min=0, min_open=True),
            help="Seconds one agent reply may take.",
        ),
        click.option(
            "--persona",
            "persona_filter",
            multiple=True,
            metavar="ID",
            help="Only these personas (glob; repeatable).",
        ),
        click.option(
            "--scenario",
            "scenario_filter",
            multiple=True,
            metavar="ID",
            help="Only these scenarios (glob; repeatable).",
        ),
        click.option(
            "--tag",
            "tags",
            multiple=True,
            help="Only pairs whose persona or scenario has this tag (repeatable).",
        ),
        click.option("--name", default=None, help="Run name, part of episode ids [folder name]."),
        click.option("--resume", is_flag=True, help="Continue the run in --out."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
        click.option(
            "--user-prompt",
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="Jinja2 template replacing the LLM user's system prompt.",
        ),
        click.option(
            "--temperature",
            type=click.FloatRange(0, 2),
            help="Sampling temperature of the LLM user.",
        ),
        click.option(
            "--dry-run",
            is_flag=True,
            help="Print the plan and an estimate of model calls and cost; run nothing.",
        ),
    ]
    func = _llm_options(func)
    for option in reversed(options):
        func = option(func)
    return func


@cli.command("run")
@click.option(
    "--personas",
    multiple=True,
    required=True,
    metavar="PATH",
    help="Persona file or folder (repeatable).",
)
@click.option(
    "--scenarios",
    multiple=True,
    required=True,
    metavar="PATH",
    help="Scenario file or folder (repeatable).",
)
@click.option(
    "--target",
    required=True,
    metavar="SPEC",
    help="Agent under test: python:FILE:CALLABLE, http://URL, cmd:COMMAND, openai:MODEL, demo.",
)
@click.option("--stateful", is_flag=True, help="Send the target only the newest user message.")
@click.option(
    "--system-prompt",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="For --target openai:MODEL: the agent's system prompt.",
)
@click.option(
    "--tools",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="For --target openai:MODEL: YAML tools the model may call.",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder.")
@_run_options
def run_command(quiet: bool, dry_run: bool, **options: Any) -> None:
    """Play personas x scenarios against a target and record the conversations."""
    config = _config(options)
    if dry_run:
        _print_estimate(config)
        return
    result = _play(config, quiet)
    _print_summary(result)


@cli.command("demo")
@click.option(
    "--out",
    default="outputs/demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Run folder.",
)
@_run_options
def demo_command(quiet: bool, dry_run: bool, **options: Any) -> None:
    """Play the bundled personas and scenarios against the bundled airline agent, offline."""
    with ExitStack() as stack:
        base = stack.enter_context(resources.as_file(resources.files("simulate.demo")))
        options.update(
            personas=[str(base / "personas")],
            scenarios=[str(base / "scenarios")],
            target="demo",
            stateful=False,
        )
        if dry_run:
            _print_estimate(_config(options))
            return
        result = _play(_config(options), quiet)
    _print_summary(result, findings=True)
    _label_demo(result.run_dir)
    from simulate.report import build_report

    report = build_report(result.run_dir)
    html = _write_report_html(report, result.run_dir)
    out.print("\n[bold]Report[/]", markup=True)
    _print_report_headline(report)
    out.print(f"report: {html}  ·  tables: simulate report {result.run_dir}")


def _config(options: dict[str, Any]) -> RunConfig:
    options["turn_timeout_s"] = options.pop("turn_timeout")
    options["use_cache"] = not options.pop("no_cache")
    return RunConfig.model_validate(options)


def _print_estimate(config: RunConfig) -> None:
    """`--dry-run`: the plan and a rough count of model calls and their cost."""
    estimate = estimate_run(config)
    out.print(
        f"plan: {estimate['episodes']} episodes ({estimate['personas']} personas × "
        f"{estimate['scenarios']} scenarios × {config.trials} trials), "
        f"at most {config.max_turns} turns each"
    )
    if not estimate["models"]:
        out.print("no model calls: this user and target run offline")
        return
    for row in estimate["models"]:
        cost = row["cost_usd_max"]
        price = (
            "no price known"
            if cost is None
            else (f"${row['cost_usd_typical']:.2f} typical, ${cost:.2f} at most")
        )
        out.print(
            f"{row['role']} {row['model']}: about {row['calls_typical']} calls "
            f"(at most {row['calls_max']}), {price}"
        )
    out.print(
        "rough estimate: ~6 turns per conversation typical, every turn to --max-turns at "
        "most; tokens ~ prompt length + history; cached requests cost nothing"
    )


def _play(config: RunConfig, quiet: bool) -> RunResult:
    """Run with a live progress bar on a terminal; Ctrl-C keeps what finished."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("errors {task.fields[errors]}  goal {task.fields[goal]}"),
        TimeElapsedColumn(),
        console=err,
        disable=quiet or not err.is_terminal,
    )
    task = progress.add_task("episodes", total=None, errors=0, goal="-")

    def started(tally: Tally) -> None:
        progress.update(task, total=tally.planned - tally.skipped)
        if tally.skipped:
            err.print(f"resuming: {tally.skipped} of {tally.planned} episodes already stored")

    def finished(episode: Episode, tally: Tally) -> None:
        rate = goal_rate(tally)
        progress.update(
            task, advance=1, errors=tally.errors, goal="-" if rate is None else f"{rate:.0%}"
        )

    with progress:
        try:
            return asyncio.run(run(config, on_start=started, on_episode=finished))
        except KeyboardInterrupt:
            progress.stop()
            click.echo(
                f"interrupted: finished episodes are stored in {config.out}; "
                "continue with the same command plus --resume",
                err=True,
            )
            sys.exit(130)


def _print_summary(result: RunResult, findings: bool = False) -> None:
    summary = summarize_run(result.run_dir)
    tally = result.tally
    out.print(
        f"\n[bold]Run[/] {escape(str(result.run_dir))}  ({tally.done} played, "
        f"{tally.skipped} already stored, {summary['episodes']} in the folder)",
        markup=True,
    )
    statuses = ", ".join(f"{k} {v}" for k, v in summary["by_status"].items())
    out.print(f"outcomes: {statuses}")
    rate = summary["goal_rate"]
    if rate is None and summary["episodes"]:
        out.print(
            "[bold]goal rate n/a[/]: every episode ended in a target or simulator error",
            markup=True,
        )
    if rate is not None:
        out.print(
            f"[bold]goal rate {rate:.0%}[/] ({summary['successes']}/{summary['rated']} "
            "episodes; target and simulator errors left out)",
            markup=True,
        )
    if result.usage:
        _print_usage(result)
    if findings:
        _print_findings(summary)
    out.print(
        f"\ndata: {result.run_dir}/episodes/*.parquet  ·  "
        f"python: simulate.load_run({str(result.run_dir)!r})  ·  "
        f"transcripts: simulate show {result.run_dir} --failed"
    )
    if result.stopped:
        click.echo(
            f"stopped early: {result.stopped}; finished episodes are kept; "
            "continue with the same command plus --resume",
            err=True,
        )
        sys.exit(3)


def _print_usage(result: RunResult) -> None:
    for row in result.usage:
        cost = "" if row.cost_usd is None else f", ${row.cost_usd:.4f}"
        out.print(
            f"model {row.role} {row.model}: {row.calls} calls, {row.prompt_tokens} prompt + "
            f"{row.completion_tokens} completion tokens{cost}"
        )


def _print_findings(summary: dict[str, Any]) -> None:
    table = Table(title="goal rate per persona", title_justify="left")
    for column in ("persona", "goal rate", "n"):
        table.add_column(column, justify="left" if column == "persona" else "right")
    for row in summary["per_persona"]:
        table.add_row(row["persona_id"], f"{row['goal_rate']:.0%}", str(row["n"]))
    out.print(table)
    if summary["failure_kinds"]:
        kinds = Table(title="what failed", title_justify="left")
        for column in ("failure", "episodes", "example episode"):
            kinds.add_column(column)
        for row in summary["failure_kinds"]:
            kinds.add_row(row["kind"], str(row["n"]), row["example"])
        out.print(kinds)
        out.print("read one: simulate show RUN --episode ID")


@cli.command("golden")
@click.argument("run_dir", type=click.Path())
@click.option(
    "--split",
    default="0.8,0.1,0.1",
    show_default=True,
    metavar="TRAIN,VAL,TEST",
    help="Fractions of persona x scenario pairs per split; they sum to 1.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Split seed.")
@click.option(
    "--precedence",
    default="human,judge,rule",
    show_default=True,
    help="Labeler kinds, strongest first; kinds left out are ignored.",
)
@click.option(
    "--keep-disputed",
    is_flag=True,
    help="Keep disputed units, marked, instead of leaving them out.",
)
@click.option(
    "--license", "license_id", default="cc-by-4.0", show_default=True, help="Hub licence id."
)
@click.option("--out", type=click.Path(file_okay=False), help="Golden folder [RUN/golden].")
def golden_command(
    run_dir: str,
    split: str,
    seed: int,
    precedence: str,
    keep_disputed: bool,
    license_id: str,
    out: str | None,
) -> None:
    """Merge a run's labels into a golden DatasetDict with splits and a dataset card."""
    from simulate.label.golden import build_golden, parse_precedence, parse_split

    result = build_golden(
        run_dir,
        split=parse_split(split),
        seed=seed,
        precedence=parse_precedence(precedence),
        keep_disputed=keep_disputed,
        license=license_id,
        out=out,
    )
    _print_golden(result)


def _print_golden(result: Any) -> None:
    sizes = ", ".join(f"{name} {n}" for name, n in result.splits.items())
    out.print(f"[bold]golden[/] {escape(str(result.path))}  ({sizes} episodes)", markup=True)
    policy = "kept, marked" if result.kept_disputed else "left out (--keep-disputed keeps them)"
    out.print(f"disputed units: {result.disputed}" + (f", {policy}" if result.disputed else ""))
    if result.unlabeled:
        out.print(f"episodes without labels, left out: {result.unlabeled}")
    out.print(f"criteria: {', '.join(result.criteria)}")
    out.print(
        f"load: datasets.load_dataset({str(result.path)!r})  ·  card: {result.path}/README.md"
    )


def _label_demo(run_dir: Path) -> None:
    """`simulate demo`: label the run with the rules and build its golden set."""
    from simulate.label.golden import build_golden
    from simulate.label.session import LabelConfig, label_run

    labeled = asyncio.run(label_run(LabelConfig(run_dir=str(run_dir))))
    out.print(f"labels: {labeled.written} rule labels added to {run_dir}/labels/")
    result = build_golden(run_dir)
    sizes = ", ".join(f"{name} {n}" for name, n in result.splits.items())
    out.print(
        f"golden: {result.path}/ ({sizes})  ·  python: datasets.load_dataset({str(result.path)!r})"
    )


@cli.command("show")
@click.argument("run_dir", type=click.Path())
@click.option("--status", help="Only episodes that ended so (goal_reached, gave_up, ...).")
@click.option("--failed", is_flag=True, help="Only episodes that did not succeed.")
@click.option("--persona", "persona_id", help="Only this persona.")
@click.option("--scenario", "scenario_id", help="Only this scenario.")
@click.option("--episode", "episode_id", help="Only this episode id.")
@click.option(
    "--limit",
    default=5,
    show_default=True,
    type=click.IntRange(0),
    help="Transcripts to print (0 = all).",
)
@click.option("--json", "as_json", is_flag=True, help="Print episodes as JSON lines.")
def show_command(run_dir: str, failed: bool, limit: int, as_json: bool, **filters: Any) -> None:
    """Print transcripts of a run, filtered."""
    from simulate.schema import Status

    manifest = read_manifest(run_dir)
    if filters["status"] and filters["status"] not in {s.value for s in Status}:
        choices = ", ".join(s.value for s in Status)
        raise ConfigError(f"--status {filters['status']!r} is not one of: {choices}")
    wanted = [(k, v) for k, v in filters.items() if v]
    shown = 0
    for episode in iter_episodes(run_dir, wanted):
        if failed and episode.success:
            continue
        if as_json:
            click.echo(episode.model_dump_json())
        else:
            _print_transcript(episode)
        shown += 1
        if limit and shown >= limit:
            break
    if shown == 0 and not as_json:
        err.print(f"no episodes in run {manifest.get('run_id', run_dir)!r} match")


def _print_transcript(episode: Episode) -> None:
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
    out.print(f"[{color}]{outcome.status}[/] {escape(outcome.reason + checks)}\n", markup=True)


def _rule_limit_options(func: Any) -> Any:
    """`--max-turns`, `--reply-chars`, `--latency-ms`: thresholds of the limit rules."""
    from simulate.label.rules import RuleLimits

    defaults = RuleLimits()
    options = [
        click.option(
            "--max-turns",
            default=defaults.max_turns,
            show_default=True,
            type=click.IntRange(1),
            help="Rule max_turns: agent replies a conversation may take.",
        ),
        click.option(
            "--reply-chars",
            default=defaults.reply_chars,
            show_default=True,
            type=click.IntRange(1),
            help="Rule reply_chars: characters one agent reply may have.",
        ),
        click.option(
            "--latency-ms",
            default=defaults.latency_ms,
            show_default=True,
            type=click.FloatRange(min=0, min_open=True),
            help="Rule latency_ms: milliseconds one agent reply may take.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@cli.command("label")
@click.argument("run_dir", type=click.Path())
@click.option(
    "--rubric",
    "rubrics",
    multiple=True,
    metavar="FILE_OR_NAME",
    help="Rubric file, or a shipped one: support, goal_completion, faithfulness, "
    "context_relevance, tool_use, safety, tone (repeatable).",
)
@click.option(
    "--judge",
    metavar="llm:MODEL",
    help="Who answers the rubric, e.g. llm:gpt-4o-mini [models.judge of --llm-config].",
)
@click.option(
    "--samples",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Ask the judge this many times per unit and keep the majority.",
)
@click.option("--rules-only", is_flag=True, help="Only the rule checks: offline, no model.")
@click.option(
    "--import",
    "import_file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Bring in people's labels: CSV or JSONL with episode_id, criterion, turn_index, value.",
)
@click.option("--annotator", metavar="NAME", help="Who gave the --import labels (human:NAME).")
@click.option(
    "--criterion",
    "criteria",
    multiple=True,
    metavar="ID",
    help="Only these criteria, of the rules or rubrics (repeatable).",
)
@click.option(
    "--concurrency",
    default=8,
    show_default=True,
    type=click.IntRange(1),
    help="Units judged at once.",
)
@click.option(
    "--human-examples",
    default=3,
    show_default=True,
    type=click.IntRange(0),
    help="Labels people gave in this run shown to the judge as examples, per criterion.",
)
@_rule_limit_options
@click.option("--quiet", "-q", is_flag=True, help="No progress line.")
@_llm_options
def label_command(
    run_dir: str,
    rubrics: tuple[str, ...],
    import_file: str | None,
    annotator: str | None,
    rules_only: bool,
    quiet: bool,
    **options: Any,
) -> None:
    """Label a run: rule checks, LLM judges with a rubric, or people's labels (--import)."""
    from simulate.label.imports import import_labels
    from simulate.label.rules import RuleLimits
    from simulate.label.session import LabelConfig, label_run, summarize_labels

    if import_file or annotator:
        if not (import_file and annotator):
            raise click.UsageError("--import FILE and --annotator NAME go together")
        if options["judge"] or rules_only or options["criteria"]:
            raise click.UsageError("--import only brings labels in; label in another command")
        imported = import_labels(run_dir, import_file, annotator, rubrics)
        skipped = f" ({imported.skipped} given before, skipped)" if imported.skipped else ""
        out.print(f"imported {imported.written} labels as human:{annotator}{skipped}")
        _print_label_summary(summarize_labels(run_dir, {f"human:{annotator}"}))
        return
    if rules_only and (rubrics or options["judge"]):
        raise click.UsageError("--rules-only runs no judge: drop --rubric and --judge")
    limits = RuleLimits(
        max_turns=options.pop("max_turns"),
        reply_chars=options.pop("reply_chars"),
        latency_ms=options.pop("latency_ms"),
    )
    config = LabelConfig(
        run_dir=run_dir,
        rubrics=list(rubrics),
        limits=limits,
        use_cache=not options.pop("no_cache"),
        **{k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
    )
    progress = Progress(
        TextColumn("[bold]labels"),
        TextColumn("{task.completed}"),
        TimeElapsedColumn(),
        console=err,
        disable=quiet or not err.is_terminal,
    )
    task = progress.add_task("labels", total=None)
    with progress:
        try:
            result = asyncio.run(label_run(config, on_label=lambda _: progress.advance(task)))
        except KeyboardInterrupt:
            progress.stop()
            click.echo(
                f"interrupted: labels written are kept in {run_dir}/labels; "
                "run the same command again to continue",
                err=True,
            )
            sys.exit(130)
    skipped = f", {result.skipped} units already labeled" if result.skipped else ""
    out.print(
        f"[bold]Labels[/] {escape(run_dir)}  ({result.written} written{skipped})", markup=True
    )
    if not rubrics:
        out.print("rules only; LLM judges: --rubric support --judge llm:MODEL")
    _print_label_summary(result.summary)
    if result.usage:
        for row in result.usage:
            cost = "" if row.cost_usd is None else f", ${row.cost_usd:.4f}"
            out.print(f"model {row.role} {row.model}: {row.calls} calls{cost}")
    if result.failures:
        click.echo(
            f"{len(result.failures)} units failed and were not labeled "
            "(run the same command again to retry them):",
            err=True,
        )
        for line in result.failures[:5]:
            click.echo(f"  {line}", err=True)
        if len(result.failures) > 5:
            click.echo(f"  ... and {len(result.failures) - 5} more", err=True)
    if result.stopped:
        click.echo(
            f"stopped early: {result.stopped}; labels written are kept; "
            "run the same command again to continue",
            err=True,
        )
        sys.exit(3)


def _print_label_summary(rows: list[dict[str, Any]]) -> None:
    table = Table(title="per criterion", title_justify="left")
    for column in ("criterion", "labeler", "units", "pass rate", "n"):
        table.add_column(column, justify="left" if column in ("criterion", "labeler") else "right")
    for row in rows:
        rate = "-" if row["pass_rate"] is None else f"{row['pass_rate']:.0%}"
        table.add_row(row["criterion"], row["labeler"], str(row["units"]), rate, str(row["rated"]))
    out.print(table)


@cli.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def validate_command(paths: Sequence[str]) -> None:
    """Check persona and scenario files (kind guessed per file), templates included."""
    from simulate.loader import split_by_kind

    persona_paths, scenario_paths = split_by_kind(paths)
    config = RunConfig(personas=persona_paths, scenarios=scenario_paths, out="validate")
    if not persona_paths or not scenario_paths:
        _validate_one_kind(persona_paths, scenario_paths)
        return
    specs = prepare(config).specs
    personas = {s.persona.id for s in specs}
    scenarios = {s.scenario.id for s in specs}
    out.print(
        f"ok: {len(personas)} personas, {len(scenarios)} scenarios, "
        f"{len(specs)} episodes per trial; every template renders"
    )


def _validate_one_kind(persona_paths: list[str], scenario_paths: list[str]) -> None:
    from simulate.loader import load_personas, load_scenarios

    if persona_paths:
        out.print(f"ok: {len(load_personas(persona_paths))} personas")
    if scenario_paths:
        out.print(
            f"ok: {len(load_scenarios(scenario_paths))} scenarios "
            "(templates not rendered: give personas too to check them)"
        )


@cli.command("agreement")
@click.argument("run_dir", type=click.Path())
@click.option("--criterion", metavar="ID", help="Only this criterion.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def agreement_command(run_dir: str, criterion: str | None, as_json: bool) -> None:
    """How far labelers agree per criterion, and judges and rules against people."""
    from simulate.label.agreement import agreement_report

    report = agreement_report(run_dir, criterion=criterion)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    out.print(f"[bold]Agreement[/] {escape(run_dir)}  ({report['labels']} labels)", markup=True)
    alone = [s for s in report["criteria"] if s["agreement"] is None]
    for section in report["criteria"]:
        if section["agreement"] is not None:
            _print_agreement(section)
    if alone:
        names = ", ".join(f"{s['criterion']} ({s['raters'][0]['labeler']})" for s in alone)
        out.print(f"\none labeler only, nothing to compare: {names}")


def _figure_cells(figure: dict[str, Any], percent: bool = False) -> list[str]:
    """Value, interval and n of a report figure, as table cells."""
    value, low, high = figure.get("value"), figure.get("low"), figure.get("high")
    if value is None:
        return ["n/a", figure["reason"], str(figure["n"])]
    fmt = "{:.0%}" if percent else "{:.3f}"
    interval = (
        figure.get("reason", "—") if low is None else f"{fmt.format(low)} – {fmt.format(high)}"
    )
    return [fmt.format(value), interval, str(figure["n"])]


def _figure_table(title: str, rows: list[tuple[str, dict[str, Any], bool]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("figure", "value", "95% interval", "n"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for name, figure, percent in rows:
        table.add_row(name, *_figure_cells(figure, percent))
    return table


def _print_agreement(section: dict[str, Any]) -> None:
    raters = ", ".join(f"{r['labeler']} ({r['units']})" for r in section["raters"])
    out.print(
        f"\n[bold]{escape(section['criterion'])}[/] ({section['kind']}) · "
        f"{section['units']} units · raters (units): {escape(raters)}",
        markup=True,
    )
    agreement = section["agreement"]
    rows = [
        (name, agreement[key], False)
        for key, name in (("cohen_kappa", "Cohen's kappa"), ("fleiss_kappa", "Fleiss' kappa"))
        if key in agreement
    ]
    rows += [
        (f"Krippendorff's alpha ({level})", figure, False)
        for level, figure in agreement["krippendorff_alpha"].items()
    ]
    out.print(_figure_table("between raters", rows))
    for row in section["vs_people"]:
        ties = f"; {row['ties_left_out']} tied units left out" if row["ties_left_out"] else ""
        title = f"{row['labeler']} against people ({', '.join(row['people'])}{ties})"
        out.print(
            _figure_table(
                title,
                [
                    ("accuracy", row["accuracy"], True),
                    ("true-positive rate", row["tpr"], True),
                    ("true-negative rate", row["tnr"], True),
                    ("pass rate, observed", row["pass_rate"], True),
                    ("pass rate, corrected", row["corrected_pass_rate"], True),
                ],
            )
        )
    if any(r["corrected_pass_rate"].get("value") is not None for r in section["vs_people"]):
        method = section["vs_people"][0]["corrected_pass_rate"]["method"]
        out.print(f"corrected: {method}", style="dim")


@cli.command("report")
@click.argument("run_dir", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
@click.option("--no-html", is_flag=True, help="Do not write RUN/report.html.")
@click.option(
    "--examples",
    default=3,
    show_default=True,
    type=click.IntRange(0, 50),
    help="Example episodes per failure kind.",
)
def report_command(run_dir: str, as_json: bool, no_html: bool, examples: int) -> None:
    """Goal rates with intervals, pass^k, worst slices, label criteria, failures and simulator
    health; writes RUN/report.html."""
    from simulate.report import build_report, report_json

    report = build_report(run_dir, examples_per_kind=examples)
    html = None if no_html else _write_report_html(report, run_dir)
    if as_json:
        click.echo(report_json(report))
        if html:
            err.print(f"report: {html}")
        return
    _print_report(report)
    if html:
        out.print(f"\nreport: {html}  ·  figures as JSON: simulate report {run_dir} --json")


def _write_report_html(report: dict[str, Any], run_dir: str | Path) -> Path:
    from simulate.report_html import REPORT_FILE, write_report_html

    return write_report_html(report, Path(run_dir) / REPORT_FILE)


def _pct_interval(rate: dict[str, Any]) -> str:
    if rate["value"] is None:
        return f"n/a (n={rate['n']})"
    return f"{rate['value']:.0%} ({rate['low']:.0%}–{rate['high']:.0%}, n={rate['n']})"


def _print_report_headline(report: dict[str, Any]) -> None:
    """The report's headline figures: goal rate, pass^k, the worst slice, simulator health."""
    overall = report["overall"]
    out.print(f"[bold]goal rate {_pct_interval(overall['goal_rate'])}[/]", markup=True)
    from simulate.report import pass_k_highlights

    curve = pass_k_highlights(overall["pass_hat_k"]["values"])
    if curve:
        values = ", ".join(f"pass^{k} {v:.0%}" for k, v in curve.items())
        out.print(f"{values}  (over {overall['pass_hat_k']['cells']} persona × scenario cells)")
    rated = [s for s in report["slices"] if s["goal_rate"]["n"]]
    if rated:
        worst = rated[0]
        out.print(
            f"worst slice: {worst['dimension']} {worst['value']} "
            f"{_pct_interval(worst['goal_rate'])}"
        )
    health = report["health"]["overall"]
    flagged = [r["persona_id"] for r in report["health"]["per_persona"] if r["flags"]]

    def share(figure: dict[str, Any]) -> str:
        return f"{figure['count']}/{figure['n']}"

    out.print(
        f"simulator health: repeats {share(health['repeat_rate'])} and assistant-like "
        f"{share(health['assistant_like_rate'])} user messages; simulator errors "
        f"{share(health['simulator_error_share'])} episodes"
        + (f"; flagged: {', '.join(flagged)}" if flagged else "")
    )


def _print_report(report: dict[str, Any]) -> None:
    """`simulate report`: the figures as a few short tables."""
    run, overall = report["run"], report["overall"]
    out.print(
        f"[bold]Report[/] {escape(str(run['path']))}  ({run['episodes']} episodes; "
        f"user {escape(run['user'] or '?')}, target {escape(run['target'] or '?')})",
        markup=True,
    )
    planned = run.get("planned")
    if planned and run["episodes"] < planned:
        out.print(
            f"incomplete run: {run['episodes']} of {planned} planned episodes; "
            f"`simulate run ... --out {run['path']} --resume` plays the rest",
            style="yellow",
        )
    outcomes = ", ".join(f"{k} {v}" for k, v in overall["outcomes"].items())
    out.print(f"outcomes: {outcomes}")
    _print_report_headline(report)
    turns, latency = overall["turns"], overall["latency_ms"]
    line = f"turns {turns['value']:.1f} per episode (n={turns['n']})"
    if latency["value"] is not None:
        line += f"  ·  reply latency {latency['value']:.0f} ms (n={latency['n']})"
    if overall["tokens"]["value"] is not None:
        tokens = overall["tokens"]
        line += f"  ·  {tokens['value']:.0f} tokens per episode (n={tokens['n']})"
    if overall["cost_usd"]["total"] is not None:
        line += (
            f"  ·  cost ${overall['cost_usd']['total']:.4f} "
            f"(n={overall['cost_usd']['per_episode']['n']})"
        )
    out.print(line)
    out.print(report["notes"]["goal_rate"], style="dim")
    rated = [s for s in report["slices"] if s["goal_rate"]["n"]]
    if rated:
        slices = Table(title="worst slices (by the interval's upper end)", title_justify="left")
        for column in ("slice", "value", "goal rate", "95% interval", "n"):
            slices.add_column(column, justify="left" if column in ("slice", "value") else "right")
        for s in rated[:10]:
            rate = s["goal_rate"]
            slices.add_row(
                s["dimension"],
                s["value"],
                f"{rate['value']:.0%}",
                f"{rate['low']:.0%}–{rate['high']:.0%}",
                str(rate["n"]),
            )
        out.print(slices)
    if report["labels"]:
        labels = Table(title="label criteria (worst first)", title_justify="left")
        for column in ("criterion", "labeler", "pass rate", "95% interval", "n"):
            labels.add_column(
                column, justify="left" if column in ("criterion", "labeler") else "right"
            )
        for row in report["labels"]:
            rate = row["pass_rate"]
            labels.add_row(
                row["criterion"],
                row["labeler_kind"],
                "n/a" if rate["value"] is None else f"{rate['value']:.0%}",
                f"{rate['low']:.0%}–{rate['high']:.0%}",
                str(rate["n"]),
            )
        out.print(labels)
    if report["failure_kinds"]:
        kinds = Table(title="what failed, with the turn where it went wrong", title_justify="left")
        for column in ("failure", "episodes", "example episode", "turn", "why"):
            kinds.add_column(column)
        for row in report["failure_kinds"]:
            example = row["examples"][0] if row["examples"] else None
            kinds.add_row(
                row["kind"],
                str(row["n"]),
                example["episode_id"] if example else "",
                "" if not example or example["turn_index"] is None else str(example["turn_index"]),
                example["why"] if example else "",
            )
        out.print(kinds)
    health = Table(title="simulator health per persona", title_justify="left")
    for column in ("persona", "words", "distinct-2", "repeats", "assistant-like", "sim errors"):
        health.add_column(column, justify="left" if column == "persona" else "right")
    for row in [report["health"]["overall"], *report["health"]["per_persona"]]:
        words, distinct = row["words"], row["distinct_2"]["value"]
        health.add_row(
            Text(row["persona_id"]).append(
                f" ({', '.join(row['flags'])})" if row["flags"] else "", style="red"
            ),
            "n/a" if words["mean"] is None else f"{words['mean']:.1f} ± {words['sd'] or 0:.1f}",
            "n/a" if distinct is None else f"{distinct:.2f}",
            f"{row['repeat_rate']['count']}/{row['repeat_rate']['n']}",
            f"{row['assistant_like_rate']['count']}/{row['assistant_like_rate']['n']}",
            f"{row['simulator_error_share']['count']}/{row['simulator_error_share']['n']}",
        )
    out.print(health)


@cli.command("plan-size")
@click.option(
    "--margin",
    required=True,
    type=click.FloatRange(0, 0.5, min_open=True),
    help="Half-width of the goal rate's interval, e.g. 0.05 for ±5 points.",
)
@click.option(
    "--confidence",
    default=0.95,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Confidence level of the interval.",
)
@click.option(
    "--expected",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="The goal rate you expect (0.5 is the worst case).",
)
@click.option(
    "--cells",
    type=click.IntRange(min=1),
    help="Persona × scenario pairs, to turn episodes into trials per pair.",
)
def plan_size_command(margin: float, confidence: float, expected: float, cells: int | None) -> None:
    """How many episodes give a goal rate within ±MARGIN at a confidence."""
    from simulate.stats import episodes_needed, episodes_needed_wilson

    normal = episodes_needed(margin, confidence, expected)
    wilson = episodes_needed_wilson(margin, confidence, expected)
    out.print(
        f"episodes for a goal rate within ±{margin:g} at {confidence * 100:g}% confidence, "
        f"if it is near {expected:g}:"
    )
    if normal == wilson:
        out.print(f"  normal approximation and Wilson score interval: {normal}")
    else:
        out.print(f"  normal approximation: {normal}")
        out.print(f"  Wilson score interval: {wilson}")
    if cells:
        trials = -(-max(normal, wilson) // cells)
        out.print(
            f"over {cells} persona × scenario cells: {trials} trials per cell "
            f"({trials * cells} episodes); the margin is for the overall rate, not each cell's"
        )


@cli.command("compare")
@click.argument("before", type=click.Path())
@click.argument("after", type=click.Path())
@click.option(
    "--fail-on-regression",
    is_flag=True,
    help="Exit 1 when the overall goal rate, or a slice's after correction, drops significantly.",
)
@click.option(
    "--alpha",
    default=0.05,
    show_default=True,
    type=float,
    help="Significance level of the tests; intervals are at 1 - alpha.",
)
@click.option(
    "--correction",
    default="holm",
    show_default=True,
    metavar="METHOD",
    help="P-value adjustment across slices: holm, bonferroni, fdr_bh, hommel, sidak...",
)
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(0),
    help="Pass -> fail conversations to list (0 = all).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare_command(
    before: str,
    after: str,
    fail_on_regression: bool,
    alpha: float,
    correction: str,
    limit: int,
    as_json: bool,
) -> None:
    """Compare two runs episode by episode: changes per slice, pass -> fail conversations."""
    from simulate.compare import compare_runs, print_comparison, regression_message

    comparison = compare_runs(before, after, alpha=alpha, correction=correction)
    if as_json:
        click.echo(json.dumps(comparison.to_dict(), indent=2))
    else:
        print_comparison(comparison, marked, limit=limit)
    if fail_on_regression and comparison.regressions:
        click.echo(regression_message(comparison), err=True)
        sys.exit(1)


# `calibrate` takes the options of `run` (but --out, --name, --resume), so they never drift apart.
@cli.command(
    "calibrate",
    params=[p for p in run_command.params if p.name not in ("out", "name", "resume")],
)
@click.option(
    "--repeats",
    default=5,
    show_default=True,
    type=click.IntRange(2),
    help="Times to play the configuration, with seeds SEED, SEED+1, ...",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Calibration folder: DIR/repeat-1 ... and DIR/calibration.json.",
)
@click.option("--resume", is_flag=True, help="Reuse the finished repeats in --out; play the rest.")
@click.option("--alpha", default=0.05, show_default=True, type=float, help="Compare's level.")
@click.option(
    "--correction",
    default="holm",
    show_default=True,
    metavar="METHOD",
    help="Compare's p-value adjustment across slices.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def calibrate_command(
    repeats: int,
    alpha: float,
    correction: str,
    as_json: bool,
    quiet: bool,
    dry_run: bool,
    **options: Any,
) -> None:
    """Play one configuration several times to measure the noise floor of `compare`."""
    from simulate.calibrate import measure_noise, print_calibration, repeat_configs
    from simulate.compare import check_options

    check_options(alpha, correction)
    config = _config(options)
    if dry_run:
        _print_estimate(config)
        out.print(f"× {repeats} repeats")
        return
    for index, repeat in enumerate(repeat_configs(config, repeats), 1):
        if not quiet:
            err.print(f"repeat {index}/{repeats}: seed {repeat.seed} -> {repeat.out}")
        result = _play(repeat, quiet)
        if result.stopped:
            click.echo(
                f"stopped early in {repeat.out}: {result.stopped}; finished repeats are kept; "
                "continue with the same command plus --resume",
                err=True,
            )
            sys.exit(3)
    calibration = measure_noise(config.out, repeats, alpha=alpha, correction=correction)
    if as_json:
        click.echo(json.dumps(calibration.to_dict(), indent=2))
    else:
        print_calibration(calibration, marked)


@cli.group("import")
def import_group() -> None:
    """Bring existing task and persona collections in as scenario and persona files."""


@import_group.command("tau2")
@click.argument("file", type=click.Path())
@click.option("-o", "--out", "out_file", required=True, metavar="FILE", help="Scenario YAML.")
@click.option("--domain", help="Domain in ids and tags [the tasks' own, else the folder name].")
@click.option("--split", help="Only this split of the split_tasks.json beside FILE (e.g. test).")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def import_tau2_command(
    file: str, out_file: str, domain: str | None, split: str | None, force: bool
) -> None:
    """Scenarios from a tau2-bench task file (tasks.json)."""
    from simulate.importers import TAU2_LICENSE, TAU2_SOURCE, import_tau2, write_yaml

    scenarios = import_tau2(file, domain=domain, split=split)
    part = f", split {split}" if split else ""
    header = (
        f"Imported by `simulate import tau2` from {Path(file).name}{part}: "
        f"{len(scenarios)} scenarios.\nSource: {TAU2_SOURCE}\n"
        f"Licence: {TAU2_LICENSE}, Copyright (c) 2025 Sierra Research; keep this notice."
    )
    write_yaml(scenarios, out_file, header=header, force=force)
    out.print(f"wrote {len(scenarios)} scenarios to {out_file}")


@import_group.command("personahub")
@click.argument("file", type=click.Path())
@click.option("-o", "--out", "out_file", required=True, metavar="FILE", help="Persona YAML.")
@click.option("--n", "n", required=True, type=int, help="How many personas to sample.")
@click.option("--seed", default=0, show_default=True, type=int, help="Sampling and Faker seed.")
@click.option(
    "--locale",
    default="en_US",
    show_default=True,
    help="Faker locale for names and contact details; several, comma-separated, mix.",
)
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def import_personahub_command(
    file: str, out_file: str, n: int, seed: int, locale: str, force: bool
) -> None:
    """Personas from PersonaHub JSON Lines ({"persona": text}); Faker fills the details."""
    from simulate.importers import PERSONAHUB_LICENSE, import_personahub, write_yaml

    personas = import_personahub(file, n, seed=seed, locale=locale)
    header = (
        f"Imported by `simulate import personahub` from {Path(file).name}: {len(personas)} "
        f"personas, seed {seed}, locale {locale}.\n"
        "Source: PersonaHub (https://github.com/tencent-ailab/persona-hub, arXiv:2406.20094); "
        "names and contact details are Faker's.\n"
        f"Licence: {PERSONAHUB_LICENSE} (non-commercial, share-alike): do not ship it in a "
        "commercial product."
    )
    write_yaml(personas, out_file, header=header, force=force)
    out.print(f"wrote {len(personas)} personas to {out_file}")


@cli.group("personas")
def personas_group() -> None:
    """Generate persona files with trait coverage, and measure how varied personas are."""


@personas_group.command("generate")
@click.option("--n", "n", required=True, type=int, help="How many personas.")
@click.option(
    "--locale",
    default="en_US",
    show_default=True,
    help="Faker locales, comma-separated; personas are spread over them (an axis).",
)
@click.option(
    "--traits",
    "traits_file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="YAML `axes:` narrowing built-in axes and adding your own (axis: [levels]).",
)
@click.option(
    "--coverage",
    type=click.Choice(["pairwise", "random"]),
    default="pairwise",
    show_default=True,
    help="pairwise: every pair of levels of two axes occurs, then seeded samples; random: samples.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Coverage and Faker seed.")
@click.option("-o", "--out", "out_file", required=True, metavar="FILE", help="Persona YAML.")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@click.option(
    "--enrich",
    metavar="llm:MODEL",
    help="Have a model write each persona a backstory and way of speaking (one call each).",
)
@click.option(
    "--concurrency",
    default=8,
    show_default=True,
    type=click.IntRange(1),
    help="Personas enriched at once.",
)
@_llm_options
def personas_generate_command(
    n: int,
    locale: str,
    traits_file: str | None,
    coverage: str,
    seed: int,
    out_file: str,
    force: bool,
    enrich: str | None,
    concurrency: int,
    **options: Any,
) -> None:
    """Personas with Faker facts per locale and trait levels covered pairwise (or sampled)."""
    from simulate.generate import (
        EnrichConfig,
        check_locales,
        enrich_model,
        enrich_personas,
        generate_personas,
        generation_header,
        pairwise_rows,
        read_traits,
        refuse_overwrite,
        trait_axes,
    )
    from simulate.importers import write_yaml

    model = enrich_model(enrich) if enrich else None
    flags = [name for name, value in options.items() if value]
    if flags and not model:
        raise click.UsageError(
            f"--{flags[0].replace('_', '-')} only applies with --enrich llm:MODEL"
        )
    refuse_overwrite(out_file, force)
    given = read_traits(traits_file) if traits_file else None
    axes = trait_axes(check_locales(locale), given)
    personas = generate_personas(axes, n, seed=seed, coverage=coverage)  # type: ignore[arg-type]
    command = f"simulate personas generate --n {n} --locale {locale} --coverage {coverage}"
    command += f" --seed {seed}" + (f" --traits {Path(traits_file).name}" if traits_file else "")
    if model:
        command += f" --enrich {enrich}"
        config = EnrichConfig(
            model=model,
            concurrency=concurrency,
            use_cache=not options.pop("no_cache"),
            **options,
        )
        with err.status(f"enriching {len(personas)} personas with {model}"):
            result = asyncio.run(enrich_personas(personas, config))
        personas = result.personas
        for row in result.usage:
            cost = "" if row.cost_usd is None else f", ${row.cost_usd:.4f}"
            out.print(f"model {row.model}: {row.calls} calls{cost}")
    write_yaml(personas, out_file, header=generation_header(command, personas, seed), force=force)
    varied = sum(1 for levels in axes.values() if len(levels) > 1)
    if coverage == "pairwise":
        covering = len(pairwise_rows(axes, seed))
        how = f"{covering} cover every pair of levels of {varied} axes, {n - covering} sampled"
    else:
        how = f"sampled over {varied} axes"
    out.print(f"wrote {len(personas)} personas to {out_file} ({how})")


@personas_group.command("stats")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "--threshold",
    default=0.8,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True),
    help="Jaccard similarity of word 3-grams from which two descriptions are near-duplicates.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def personas_stats_command(paths: Sequence[str], threshold: float, as_json: bool) -> None:
    """Coverage and diversity of persona files: levels per axis, pairs covered, distinct-n."""
    from simulate.diversity import persona_stats
    from simulate.loader import load_personas

    stats = persona_stats(load_personas(paths), threshold=threshold)
    if as_json:
        click.echo(json.dumps(stats, indent=2, ensure_ascii=False))
        return
    _print_persona_stats(stats)


def _print_persona_stats(stats: dict[str, Any]) -> None:
    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    out.print(f"{stats['personas']} personas", style="bold")
    for what in ("sources", "licenses"):
        out.print(f"{what}: " + ", ".join(f"{k} ({v})" for k, v in stats[what].items()))
    table = Table(title="levels per axis", title_justify="left")
    table.add_column("axis")
    table.add_column("levels (count)")
    for axis, counts in stats["axes"].items():
        table.add_row(axis, ", ".join(f"{level} {count}" for level, count in counts.items()))
    out.print(table)
    pairs = stats["pair_coverage"]
    percent = "-" if pairs["share"] is None else f"{pairs['share']:.1%}"
    out.print(
        f"level pairs covered: {pairs['covered']} of {pairs['total']} ({percent}), over the "
        f"levels seen of {len(pairs['axes'])} varied axes"
    )
    for missing in pairs["missing"][:5]:
        out.print(f"  missing: {missing}")
    unlisted = pairs["total"] - pairs["covered"] - min(5, len(pairs["missing"]))
    if unlisted > 0:
        out.print(f"  and {unlisted} more missing pairs (--json lists up to 20)")
    texts = stats["descriptions"]
    near = texts["near_duplicates"]
    out.print(
        f"descriptions: distinct-1 {share(texts['distinct_1'])}, distinct-2 "
        f"{share(texts['distinct_2'])}, {texts['empty']} empty; near-duplicate pairs "
        f"(Jaccard of word {near['ngram']}-grams >= {near['threshold']:g}): {near['pairs']}"
    )
    for a, b, similarity in near["examples"][:5]:
        out.print(f"  {a} ~ {b} ({similarity:.2f})")


@cli.command("export")
@click.argument("run_dir", type=click.Path())
@click.option(
    "--to-hub",
    "repo_id",
    metavar="OWNER/NAME",
    help="Push to this Hugging Face Hub dataset repository (token: HF_TOKEN or `hf auth login`; "
    "HF_ENDPOINT for a private mirror).",
)
@click.option("--public", is_flag=True, help="With --to-hub: create the repository public.")
@click.option(
    "--license",
    "license_id",
    metavar="ID",
    help="With --to-hub: the card's licence id [cc-by-4.0, or the personas' non-commercial one].",
)
@click.option(
    "--format",
    "fmt",
    metavar="FORMAT",
    help="jsonl, parquet, csv, openai-chat, phoenix (one record per episode), turns (one row "
    "per message), deepeval or inspect (one record per persona x scenario pair).",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(),
    help="Output file; a folder (or a path ending in /) gets a default file name.",
)
@click.option(
    "--criterion",
    metavar="ID",
    help="Only episodes that pass this labeled criterion (implies --passed-only).",
)
@click.option("--passed-only", is_flag=True, help="Only episodes that passed [success].")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def export_command(
    run_dir: str,
    repo_id: str | None,
    public: bool,
    license_id: str | None,
    fmt: str | None,
    out_path: str | None,
    criterion: str | None,
    passed_only: bool,
    force: bool,
) -> None:
    """Push a run or golden set to the Hugging Face Hub, or write files other tools read."""
    if repo_id is not None:
        if fmt or out_path or criterion or passed_only:
            raise click.UsageError(
                "--to-hub pushes the whole run; drop --format, --out, --criterion, --passed-only"
            )
        from simulate.hub import push_to_hub

        pushed = push_to_hub(run_dir, repo_id, public=public, license=license_id)
        for warning in pushed.warnings:
            err.print(f"warning: {warning}")
        parts = [
            f"{config} ({', '.join(f'{split} {n}' for split, n in splits.items())})"
            for config, splits in pushed.rows.items()
        ]
        visibility = "private" if pushed.private else "public"
        out.print(f"pushed {'; '.join(parts)} to {pushed.repo_url}")
        out.print(f"{visibility} repository, licence {pushed.license}")
        if pushed.deleted:
            out.print(f"replaced {len(pushed.deleted)} data files of the previous push")
        out.print(f"commit: {pushed.commit_url}")
        return
    if public or license_id:
        raise click.UsageError("--public and --license go with --to-hub")
    if not fmt or not out_path:
        raise click.UsageError("give --to-hub OWNER/NAME, or --format and --out")
    from simulate.export import export_run

    result = export_run(
        run_dir, fmt, out_path, criterion=criterion, passed_only=passed_only, force=force
    )
    names = {"turns": "rows", "deepeval": "goldens", "inspect": "samples", "phoenix": "examples"}
    what = names.get(result.format, "episodes")
    left = f", {result.left_out} left out" if result.left_out else ""
    for note in result.notes:
        err.print(f"note: {note}")
    out.print(f"wrote {result.rows} {what} ({result.format}) to {result.path}{left}")


@cli.group("scenarios")
def scenarios_group() -> None:
    """Write scenario files: proposed by a model, or expanded from templates."""


@scenarios_group.command("generate")
@click.option(
    "--agent",
    "agent_file",
    required=True,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Markdown description of the agent: what it does, its rules, its tools.",
)
@click.option("--n", "n", required=True, type=int, help="How many scenarios to propose.")
@click.option(
    "--llm",
    "model",
    metavar="MODEL",
    help="Model that writes them: gpt-4o-mini, openai:MODEL or llm:MODEL [models.user].",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Sampling seed.")
@click.option("--temperature", type=click.FloatRange(0, 2), help="Sampling temperature.")
@click.option("-o", "--out", "out_file", required=True, metavar="FILE", help="Scenario YAML.")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@_llm_options
def scenarios_generate_command(no_cache: bool, **options: Any) -> None:
    """Propose scenarios for an agent: happy paths, edge cases, policy violations, multi-intent."""
    from simulate.scenario_generation import GenerateConfig, generate

    options["out"] = options.pop("out_file")
    result = generate(GenerateConfig(use_cache=not no_cache, **options))
    kinds: dict[str, int] = {}
    for scenario in result.scenarios:
        kinds[scenario.tags[-1]] = kinds.get(scenario.tags[-1], 0) + 1
    mix = ", ".join(f"{count} {kind}" for kind, count in kinds.items())
    cost = "" if result.cost_usd is None else f", ${result.cost_usd:.4f}"
    out.print(f"wrote {len(result.scenarios)} scenarios ({mix}) to {result.path}")
    out.print(f"model {result.model}: {result.calls} calls{cost}")


@scenarios_group.command("expand")
@click.argument("file", type=click.Path())
@click.option("-o", "--out", "out_file", required=True, metavar="FILE", help="Scenario YAML.")
@click.option(
    "--sample",
    type=int,
    metavar="N",
    help="Keep N combinations of each templated scenario, drawn with --seed [all].",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Sampling seed.")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def scenarios_expand_command(
    file: str, out_file: str, sample: int | None, seed: int, force: bool
) -> None:
    """Write the concrete scenarios of a file whose scenarios have `variables`."""
    from simulate.generate import refuse_overwrite
    from simulate.importers import write_yaml
    from simulate.scenario_generation import expand_scenarios

    refuse_overwrite(out_file, force)
    scenarios = expand_scenarios(file, sample=sample, seed=seed)
    how = "cross product" if sample is None else f"{sample} per template, seed {seed}"
    header = (
        f"Expanded by `simulate scenarios expand` from {Path(file).name} ({how}): "
        f"{len(scenarios)} scenarios."
    )
    write_yaml(scenarios, out_file, header=header, force=force)
    out.print(f"wrote {len(scenarios)} scenarios to {out_file}")


@cli.group("packs")
def packs_group() -> None:
    """Stress-test packs that ship with Simulate: personas and scenarios that probe one failure."""


@packs_group.command("list")
def packs_list_command() -> None:
    """Name, what it probes, and its personas and scenarios, for every pack."""
    from simulate.packs import list_packs

    table = Table(box=None, pad_edge=False)
    for column in ("pack", "probes", "personas", "scenarios"):
        table.add_column(column, justify="right" if column in ("personas", "scenarios") else "left")
    for pack in list_packs():
        table.add_row(
            pack.name, pack.description, str(len(pack.personas)), str(len(pack.scenarios))
        )
    out.print(table)
    out.print("add to a folder: simulate packs add NAME... -o DIR")


@packs_group.command("add")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option("-o", "--out", "out_dir", required=True, metavar="DIR", help="Folder to write to.")
@click.option("--force", is_flag=True, help="Overwrite pack files already in DIR.")
def packs_add_command(names: tuple[str, ...], out_dir: str, force: bool) -> None:
    """Copy packs into DIR/personas/<pack>.yaml and DIR/scenarios/<pack>.yaml."""
    from simulate.packs import add_packs

    written = add_packs(names, out_dir, force=force)
    for path in written:
        out.print(f"wrote {path}")
    folder = Path(out_dir)
    out.print(
        f"play them: simulate run --personas {folder / 'personas'} "
        f"--scenarios {folder / 'scenarios'} --target SPEC --out RUN"
    )


@cli.command("schema")
@click.option(
    "--out",
    "out_dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for persona.schema.json and scenario.schema.json.",
)
def schema_command(out_dir: str) -> None:
    """Write JSON schemas of persona and scenario files, for editors' YAML validation."""
    from simulate.schema import Persona, Scenario

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for name, model in (("persona", Persona), ("scenario", Scenario)):
        path = folder / f"{name}.schema.json"
        path.write_text(json.dumps(model.model_json_schema(), indent=2) + "\n", encoding="utf-8")
        out.print(f"wrote {path}")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `simulate` console script."""
    debug = os.environ.get("SIMULATE_DEBUG") == "1"
    try:
        cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except SimulateError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(3 if isinstance(exc, RunStopped) else 1)
