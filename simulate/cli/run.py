"""`simulate run`, `demo` and `calibrate`: play personas x scenarios against a target."""

from __future__ import annotations

import json
from contextlib import ExitStack
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from simulate.cli import run_async, stop
from simulate.cli.options import run_options, setting, target_check_options
from simulate.cli.render import err, marked, out
from simulate.cli.render.figures import print_calibration, print_report_headline
from simulate.cli.render.runs import (
    per_worker,
    print_estimate,
    print_gate,
    print_proxy,
    print_summary,
    round_line,
)
from simulate.errors import RunStopped
from simulate.report.summary import summarize_run
from simulate.runner import Tally, goal_rate
from simulate.schema import Episode
from simulate.simulation import RunConfig, RunResult, estimate_run, run

if TYPE_CHECKING:
    from simulate.report.gate import Gated, Round

RESUME_HINT = "continue with the same command plus --resume"


@click.command("run")
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
    help="Agent under test: python:FILE:CALLABLE, http://URL, cmd:COMMAND, openai:MODEL, demo, "
    "agents:FILE:AGENT, pydantic-ai:FILE:AGENT, langgraph:FILE:GRAPH.",
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
@click.option(
    "--agent-llm-proxy",
    is_flag=True,
    help="Serve the agent a local OpenAI-compatible endpoint (OPENAI_BASE_URL) that records,"
    " meters and replays its own model calls.",
)
@click.option(
    "--agent-llm-proxy-port",
    default=0,
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help="The proxy's port on 127.0.0.1, for an http: agent started beforehand [any free].",
)
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="For http targets: a header for every request, ${VAR} read from the environment "
    "(repeatable; never recorded).",
)
@setting(
    "--target-retries",
    2,
    click.IntRange(0, 10),
    "For http targets: retries after a connection error, 429 or 503 (with backoff).",
)
@target_check_options
@click.option(
    "--fail-under",
    type=click.FloatRange(0, 1),
    metavar="RATE",
    help="Exit 1 when the goal rate's upper 95% bound is below RATE (a CI gate).",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder.")
@click.option(
    "--baseline",
    type=click.Path(),
    metavar="RUN",
    help="With --until-decided: the run to compare against.",
)
@click.option(
    "--until-decided",
    is_flag=True,
    help="Play one trial of every cell per round, up to --trials rounds, and stop as soon as an "
    "always-valid test against --baseline decides; exit 1 on a regression.",
)
@setting(
    "--margin",
    0.05,
    click.FloatRange(0, 1, min_open=True, max_open=True),
    "With --until-decided: the drop that counts; smaller ones may pass as no regression.",
)
@setting(
    "--alpha",
    0.05,
    click.FloatRange(0, 1, min_open=True, max_open=True),
    "With --until-decided: the chance of a false alarm, however many rounds.",
)
@run_options
def run_command(
    quiet: bool,
    dry_run: bool,
    baseline: str | None,
    until_decided: bool,
    margin: float,
    alpha: float,
    **options: Any,
) -> None:
    """Play personas x scenarios against a target and record the conversations."""
    config = run_config(options)
    if until_decided and not baseline:
        raise click.UsageError("--until-decided needs --baseline RUN")
    if baseline and not until_decided:
        raise click.UsageError("--baseline goes with --until-decided")
    if dry_run:
        print_estimate(config, estimate_run(config))
        return
    if until_decided:
        gated = play_until_decided(config, str(baseline), alpha, margin, quiet)
        print_summary(gated.result, summarize_run(config.out))
        print_gate(gated.gate)
        if gated.gate.regressed:
            stop(
                1, f"regression against {baseline} at alpha {alpha:g} (see {config.out}/gate.json)"
            )
        stop_if_stopped(gated.result)
        fail_under(gated.result, config.fail_under)
        return
    result = play(config, quiet)
    print_summary(result, summarize_run(result.run_dir))
    stop_if_stopped(result)
    fail_under(result, config.fail_under)


def fail_under(result: RunResult, bar: float | None) -> None:
    """`--fail-under`: exit 1 when the goal rate's upper bound is below the bar."""
    verdict = result.verdict(bar)
    if verdict:
        stop(1, f"error: {verdict}")


@click.command("demo")
@setting("--out", "outputs/demo", click.Path(file_okay=False), "Run folder.")
@run_options
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
        config = run_config(options)
        if dry_run:
            print_estimate(config, estimate_run(config))
            return
        result = play(config, quiet)
    print_summary(result, summarize_run(result.run_dir), findings=True)
    stop_if_stopped(result)
    label_demo(result.run_dir)
    from simulate.cli.report import write_html
    from simulate.report.figures import build_report

    report = build_report(result.run_dir)
    html = write_html(report, result.run_dir)
    out.print("\n[bold]Report[/]", markup=True)
    print_report_headline(report)
    out.print(f"report: {html}  ·  tables: simulate report {result.run_dir}")


def run_config(options: dict[str, Any]) -> RunConfig:
    """The `RunConfig` of `run`'s options (flag names mapped to its fields)."""
    options["turn_timeout_s"] = options.pop("turn_timeout")
    options["use_cache"] = not options.pop("no_cache")
    if "no_preflight" in options:
        options["preflight"] = not options.pop("no_preflight")
    return RunConfig.model_validate(options)


def stop_if_stopped(result: RunResult) -> None:
    """Exit 3 when a budget or a replay miss cut the run short, 1 when the first episodes all
    ended in errors (after its summary)."""
    if result.aborted:
        stop(1, f"error: {result.stopped}; finished episodes are kept")
    if result.stopped:
        stop(3, f"stopped early: {result.stopped}; finished episodes are kept; {RESUME_HINT}")


class EpisodeProgress:
    """A live progress bar of episodes on a terminal (errors and goal rate so far)."""

    def __init__(self, quiet: bool, rounds: bool = False) -> None:
        self.rounds = rounds
        """Sessions are the rounds of `--until-decided`: earlier rounds are no resume."""
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("errors {task.fields[errors]}  goal {task.fields[goal]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[workers]}"),
            console=err,
            disable=quiet or not err.is_terminal,
        )
        self.task = self.progress.add_task("episodes", total=None, errors=0, goal="-", workers="")

    def started(self, tally: Tally) -> None:
        self.progress.reset(
            self.task, total=tally.planned - tally.skipped, errors=0, goal="-", workers=""
        )
        if tally.skipped and not self.rounds:
            err.print(f"resuming: {tally.skipped} of {tally.planned} episodes already stored")

    def finished(self, episode: Episode, tally: Tally) -> None:
        rate = goal_rate(tally)
        self.progress.update(
            self.task,
            advance=1,
            errors=tally.errors,
            goal="-" if rate is None else f"{rate:.0%}",
            workers=per_worker(tally),
        )


def play(config: RunConfig, quiet: bool) -> RunResult:
    """Run with a live progress bar on a terminal; Ctrl-C keeps what finished."""
    view = EpisodeProgress(quiet)
    with view.progress:
        return run_async(
            run(
                config,
                on_start=view.started,
                on_episode=view.finished,
                on_proxy=lambda proxy: print_proxy(proxy, config.target),
            ),
            interrupted=f"finished episodes are stored in {config.out}; {RESUME_HINT}",
        )


def play_until_decided(
    config: RunConfig, baseline: str, alpha: float, margin: float, quiet: bool
) -> Gated:
    """`--until-decided`: rounds with a progress bar, a line per round, then the decision."""
    from simulate.report.gate import run_until_decided

    view = EpisodeProgress(quiet, rounds=True)

    def announce(done: Round) -> None:
        if not quiet:
            err.print(round_line(done))

    with view.progress:
        return run_async(
            run_until_decided(
                config,
                baseline,
                alpha=alpha,
                margin=margin,
                on_round=announce,
                on_start=view.started,
                on_episode=view.finished,
            ),
            interrupted=f"finished episodes are stored in {config.out}; {RESUME_HINT}",
        )


def label_demo(run_dir: Path) -> None:
    """`simulate demo`: label the run with the rules and build its golden set."""
    from simulate.label.golden import build_golden
    from simulate.label.labeling import LabelConfig, label_run

    labeled = run_async(
        label_run(LabelConfig(run_dir=str(run_dir))),
        interrupted=f"labels written are kept in {run_dir}/labels",
    )
    out.print(f"labels: {labeled.written} rule labels added to {run_dir}/labels/")
    result = build_golden(run_dir)
    sizes = ", ".join(f"{name} {n}" for name, n in result.splits.items())
    out.print(
        f"golden: {result.path}/ ({sizes})  ·  python: datasets.load_dataset({str(result.path)!r})"
    )


# `calibrate` takes the options of `run` (but --out, --name, --resume, --fail-under and the
# sequential gate's), so they never drift apart.
NOT_FOR_CALIBRATE = frozenset(
    {"out", "name", "resume", "fail_under", "baseline", "until_decided", "margin", "alpha"}
)


@click.command(
    "calibrate",
    params=[p for p in run_command.params if p.name not in NOT_FOR_CALIBRATE],
)
@setting(
    "--repeats",
    5,
    click.IntRange(2),
    "Times to play the configuration, with seeds SEED, SEED+1, ...",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Calibration folder: DIR/repeat-1 ... and DIR/calibration.json.",
)
@click.option("--resume", is_flag=True, help="Reuse the finished repeats in --out; play the rest.")
@setting("--alpha", 0.05, float, "Compare's level.")
@setting(
    "--correction", "holm", None, "Compare's p-value adjustment across slices.", metavar="METHOD"
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
    from simulate.report.calibrate import calibrate
    from simulate.report.compare import check_options

    check_options(alpha, correction)
    config = run_config(options)
    if dry_run:
        print_estimate(config, estimate_run(config))
        out.print(f"× {repeats} repeats")
        return
    view = EpisodeProgress(quiet)

    def announce(index: int, repeat: RunConfig) -> None:
        if not quiet:
            err.print(f"repeat {index}/{repeats}: seed {repeat.seed} -> {repeat.out}")

    try:
        with view.progress:
            calibration = run_async(
                calibrate(
                    config,
                    repeats,
                    alpha=alpha,
                    correction=correction,
                    on_repeat=announce,
                    on_start=view.started,
                    on_episode=view.finished,
                ),
                interrupted=f"finished repeats are kept in {config.out}; {RESUME_HINT}",
            )
    except RunStopped as exc:
        stop(3, f"{exc}; {RESUME_HINT}")
    if as_json:
        click.echo(json.dumps(calibration.to_dict(), indent=2, allow_nan=False))
    else:
        print_calibration(calibration, marked)
