"""`simulate report`, `compare`, `calibrate` and `plan-size`: figures about runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from simulate.cli import stop
from simulate.cli.options import setting
from simulate.cli.render import err, marked, out
from simulate.cli.render.figures import print_comparison, print_report

if TYPE_CHECKING:
    from simulate.report.figures import RunReport


@click.command("report")
@click.argument("run_dir", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
@click.option("--no-html", is_flag=True, help="Do not write RUN/report.html.")
@setting("--examples", 3, click.IntRange(0, 50), "Example episodes per failure kind.")
def report_command(run_dir: str, as_json: bool, no_html: bool, examples: int) -> None:
    """Goal rates with intervals, pass^k, worst slices, label criteria, failures and simulator
    health; writes RUN/report.html."""
    from simulate.report.figures import build_report, report_json

    report = build_report(run_dir, examples_per_kind=examples)
    html = None if no_html else write_html(report, run_dir)
    if as_json:
        click.echo(report_json(report))
        if html:
            err.print(f"report: {html}")
        return
    print_report(report)
    if html:
        out.print(f"\nreport: {html}  ·  figures as JSON: simulate report {run_dir} --json")


def write_html(report: RunReport, run_dir: str | Path) -> Path:
    """Write RUN/report.html and return its path."""
    from simulate.report.html import REPORT_FILE, write_report_html

    return write_report_html(report, Path(run_dir) / REPORT_FILE)


@click.command("plan-size")
@click.option(
    "--margin",
    required=True,
    type=click.FloatRange(0, 0.5, min_open=True),
    help="Half-width of the goal rate's interval, e.g. 0.05 for ±5 points.",
)
@setting(
    "--confidence",
    0.95,
    click.FloatRange(0, 1, min_open=True, max_open=True),
    "Confidence level of the interval.",
)
@click.option(
    "--expected",
    type=click.FloatRange(0, 1),
    help="The goal rate you expect [the pilot's; else 0.5, the worst case].",
)
@click.option(
    "--cells",
    type=click.IntRange(min=1),
    help="Persona × scenario pairs, to turn episodes into trials per pair.",
)
@click.option(
    "--pilot",
    type=click.Path(),
    metavar="RUN",
    help="A pilot run whose clustering (design effect) the plan should allow for.",
)
def plan_size_command(
    margin: float,
    confidence: float,
    expected: float | None,
    cells: int | None,
    pilot: str | None,
) -> None:
    """How many episodes give a goal rate within ±MARGIN at a confidence."""
    from simulate.cli.render.figures import print_plan_size
    from simulate.report.sizing import plan_size

    print_plan_size(plan_size(margin, confidence, expected, cells, pilot))


@click.command("compare")
@click.argument("before", type=click.Path())
@click.argument("after", type=click.Path())
@click.option(
    "--fail-on-regression",
    is_flag=True,
    help="Exit 1 when the overall goal rate, or a slice's after correction, drops significantly.",
)
@setting("--alpha", 0.05, float, "Significance level of the tests; intervals are at 1 - alpha.")
@setting(
    "--correction",
    "holm",
    None,
    "P-value adjustment across slices: holm, bonferroni, fdr_bh, hommel, sidak...",
    metavar="METHOD",
)
@setting("--limit", 20, click.IntRange(0), "Pass -> fail conversations to list (0 = all).")
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
    from simulate.report.compare import compare_runs, regression_message

    comparison = compare_runs(before, after, alpha=alpha, correction=correction)
    if as_json:
        click.echo(json.dumps(comparison.to_dict(), indent=2, allow_nan=False))
    else:
        print_comparison(comparison, marked, limit=limit)
    if fail_on_regression and comparison.regressions:
        stop(1, regression_message(comparison))
