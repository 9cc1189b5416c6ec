"""The `simulate` command: a thin click layer over the library, and the only place that exits.

A SimulateError prints as `error: <message>` with exit status 1; usage errors exit 2;
`SIMULATE_DEBUG=1` shows tracebacks.
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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from simulate.errors import ConfigError, SimulateError
from simulate.runner import Tally, goal_rate
from simulate.schema import Episode
from simulate.session import RunConfig, RunResult, estimate_run, prepare, run
from simulate.store import iter_episodes, read_manifest
from simulate.summary import summarize_run

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


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
        f"\n[bold]Run[/] {result.run_dir}  ({tally.done} played, "
        f"{tally.skipped} already stored, {summary['episodes']} in the folder)"
    )
    statuses = ", ".join(f"{k} {v}" for k, v in summary["by_status"].items())
    out.print(f"outcomes: {statuses}")
    rate = summary["goal_rate"]
    if rate is None and summary["episodes"]:
        out.print("[bold]goal rate n/a[/]: every episode ended in a target or simulator error")
    if rate is not None:
        out.print(
            f"[bold]goal rate {rate:.0%}[/] ({summary['successes']}/{summary['rated']} "
            "episodes; target and simulator errors left out)"
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
    out.print(f"[bold]golden[/] {result.path}  ({sizes} episodes)")
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
        out.print(f"{who}: ", end="")
        out.print(message.content, markup=False)
        for call in message.tool_calls:
            out.print(f"    [dim]↳ {call.name}({json.dumps(call.arguments)})[/]")
    checks = (
        f" · failed checks: {', '.join(outcome.failed_checks)}" if outcome.failed_checks else ""
    )
    out.print(f"[{color}]{outcome.status}[/] {outcome.reason}{checks}\n", markup=True)


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
    out.print(f"[bold]Labels[/] {run_dir}  ({result.written} written{skipped})")
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
    out.print(f"[bold]Agreement[/] {run_dir}  ({report['labels']} labels)")
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
        f"\n[bold]{section['criterion']}[/] ({section['kind']}) · {section['units']} units · "
        f"raters (units): {raters}"
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
        out.print(f"[dim]corrected: {section['vs_people'][0]['corrected_pass_rate']['method']}[/]")


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


@cli.command("export")
@click.argument("run_dir", type=click.Path())
@click.option(
    "--format",
    "fmt",
    required=True,
    metavar="FORMAT",
    help="jsonl, parquet, csv (episodes), turns (one row per message), openai-chat, "
    "deepeval or inspect (one record per persona x scenario pair).",
)
@click.option(
    "--out",
    "out_path",
    required=True,
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
    fmt: str,
    out_path: str,
    criterion: str | None,
    passed_only: bool,
    force: bool,
) -> None:
    """Write a run's episodes in a format other tools read (files; no Hub push yet)."""
    from simulate.export import export_run

    result = export_run(
        run_dir, fmt, out_path, criterion=criterion, passed_only=passed_only, force=force
    )
    what = {"turns": "rows", "deepeval": "goldens", "inspect": "samples"}.get(
        result.format, "episodes"
    )
    left = f", {result.left_out} left out" if result.left_out else ""
    out.print(f"wrote {result.rows} {what} ({result.format}) to {result.path}{left}")


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
        sys.exit(1)
