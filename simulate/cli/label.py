"""`simulate label`, `simulate golden`, `simulate agreement`: labels into golden sets."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.markup import escape
from rich.progress import Progress, TextColumn, TimeElapsedColumn

from simulate.cli import run_async, stop
from simulate.cli.options import (
    CONCURRENCY,
    engine_options,
    llm_options,
    rule_limit_options,
    setting,
)
from simulate.cli.render import err, out
from simulate.cli.render.labels import print_agreement, print_golden, print_label_summary


@click.command("golden")
@click.argument("run_dir", type=click.Path())
@setting(
    "--split",
    "0.8,0.1,0.1",
    None,
    "Fractions of persona x scenario pairs per split; they sum to 1.",
    metavar="TRAIN,VAL,TEST",
)
@setting("--seed", 0, int, "Split seed.")
@setting(
    "--precedence",
    "adjudicator,human,judge,rule",
    None,
    "Labeler kinds, strongest first; kinds left out are ignored.",
)
@click.option(
    "--keep-disputed",
    is_flag=True,
    help="Keep disputed units, marked, instead of leaving them out.",
)
@setting("--license", "cc-by-4.0", None, "Hub licence id.", dest="license_id")
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
    print_golden(result)


@click.command("label")
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
@setting(
    "--samples",
    1,
    click.IntRange(1, 100),
    "Ask the judge this many times per unit and keep the majority.",
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
@setting("--concurrency", 8, CONCURRENCY, "Units judged at once.")
@setting(
    "--human-examples",
    3,
    click.IntRange(0),
    "Labels people gave in this run shown to the judge as examples, per criterion.",
)
@rule_limit_options
@click.option("--quiet", "-q", is_flag=True, help="No progress line.")
@llm_options
@engine_options
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
    from simulate.label.labeling import LabelConfig, label_run, summarize_labels
    from simulate.label.rules import RuleLimits

    if import_file or annotator:
        if not (import_file and annotator):
            raise click.UsageError("--import FILE and --annotator NAME go together")
        if options["judge"] or rules_only or options["criteria"] or options["engine"] != "local":
            raise click.UsageError("--import only brings labels in; label in another command")
        imported = import_labels(run_dir, import_file, annotator, rubrics)
        skipped = f" ({imported.skipped} given before, skipped)" if imported.skipped else ""
        out.print(f"imported {imported.written} labels as human:{annotator}{skipped}")
        print_label_summary(summarize_labels(run_dir, {f"human:{annotator}"}))
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
        result = run_async(
            label_run(config, on_label=lambda _: progress.advance(task)),
            interrupted=f"labels written are kept in {run_dir}/labels; "
            "run the same command again to continue",
        )
    skipped = f", {result.skipped} units already labeled" if result.skipped else ""
    out.print(
        f"[bold]Labels[/] {escape(run_dir)}  ({result.written} written{skipped})", markup=True
    )
    if not rubrics:
        out.print("rules only; LLM judges: --rubric support --judge llm:MODEL")
    print_label_summary(result.summary)
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
    if result.failures and not result.judged:
        stop(1, f"error: the judge answered none of the {len(result.failures)} units it was asked")
    if result.stopped:
        stop(
            3,
            f"stopped early: {result.stopped}; labels written are kept; "
            "run the same command again to continue",
        )


@click.command("agreement")
@click.argument("run_dir", type=click.Path())
@click.option("--criterion", metavar="ID", help="Only this criterion.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def agreement_command(run_dir: str, criterion: str | None, as_json: bool) -> None:
    """How far labelers agree per criterion, and judges and rules against people."""
    from simulate.label.agreement import agreement_report

    report = agreement_report(run_dir, criterion=criterion)
    if as_json:
        click.echo(json.dumps(report.model_dump(mode="json"), indent=2, allow_nan=False))
        return
    print_agreement(report)
