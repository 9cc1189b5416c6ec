"""All console output of the CLI: consoles, tables, summaries and transcripts."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from simulate.report.summary import summarize_run
from simulate.schema import Episode
from simulate.simulation import RunConfig, RunResult, estimate_run

# Ids, phrases, paths and messages are the user's text: `out` prints everything as written
# (a `[/INST]` in a reply must not be read as rich markup); markup is asked for per call, with
# the user's parts escaped.
out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, markup=False)
marked = Console(highlight=False, soft_wrap=True)
"""For the library's printers that escape the user's text themselves (compare, calibrate)."""


def print_estimate(config: RunConfig) -> None:
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


def print_summary(result: RunResult, findings: bool = False) -> None:
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
        print_usage(result)
    if findings:
        print_findings(summary)
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


def print_usage(result: RunResult) -> None:
    for row in result.usage:
        cost = "" if row.cost_usd is None else f", ${row.cost_usd:.4f}"
        out.print(
            f"model {row.role} {row.model}: {row.calls} calls, {row.prompt_tokens} prompt + "
            f"{row.completion_tokens} completion tokens{cost}"
        )


def print_findings(summary: dict[str, Any]) -> None:
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


def print_golden(result: Any) -> None:
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


def print_transcript(episode: Episode) -> None:
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


def print_label_summary(rows: list[dict[str, Any]]) -> None:
    table = Table(title="per criterion", title_justify="left")
    for column in ("criterion", "labeler", "units", "pass rate", "n"):
        table.add_column(column, justify="left" if column in ("criterion", "labeler") else "right")
    for row in rows:
        rate = "-" if row["pass_rate"] is None else f"{row['pass_rate']:.0%}"
        table.add_row(row["criterion"], row["labeler"], str(row["units"]), rate, str(row["rated"]))
    out.print(table)


def figure_cells(figure: dict[str, Any], percent: bool = False) -> list[str]:
    """Value, interval and n of a report figure, as table cells."""
    value, low, high = figure.get("value"), figure.get("low"), figure.get("high")
    if value is None:
        return ["n/a", figure["reason"], str(figure["n"])]
    fmt = "{:.0%}" if percent else "{:.3f}"
    interval = (
        figure.get("reason", "—") if low is None else f"{fmt.format(low)} – {fmt.format(high)}"
    )
    return [fmt.format(value), interval, str(figure["n"])]


def figure_table(title: str, rows: list[tuple[str, dict[str, Any], bool]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("figure", "value", "95% interval", "n"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for name, figure, percent in rows:
        table.add_row(name, *figure_cells(figure, percent))
    return table


def print_agreement(section: dict[str, Any]) -> None:
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
    out.print(figure_table("between raters", rows))
    for row in section["vs_people"]:
        ties = f"; {row['ties_left_out']} tied units left out" if row["ties_left_out"] else ""
        title = f"{row['labeler']} against people ({', '.join(row['people'])}{ties})"
        out.print(
            figure_table(
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


def pct_interval(rate: dict[str, Any]) -> str:
    if rate["value"] is None:
        return f"n/a (n={rate['n']})"
    return f"{rate['value']:.0%} ({rate['low']:.0%}–{rate['high']:.0%}, n={rate['n']})"


def print_report_headline(report: dict[str, Any]) -> None:
    """The report's headline figures: goal rate, pass^k, the worst slice, simulator health."""
    overall = report["overall"]
    out.print(f"[bold]goal rate {pct_interval(overall['goal_rate'])}[/]", markup=True)
    print_fault_line(report)
    from simulate.report.figures import pass_k_highlights

    curve = pass_k_highlights(overall["pass_hat_k"]["values"])
    if curve:
        values = ", ".join(f"pass^{k} {v:.0%}" for k, v in curve.items())
        out.print(f"{values}  (over {overall['pass_hat_k']['cells']} persona × scenario cells)")
    rated = [s for s in report["slices"] if s["goal_rate"]["n"]]
    if rated:
        worst = rated[0]
        out.print(
            f"worst slice: {worst['dimension']} {worst['value']} {pct_interval(worst['goal_rate'])}"
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


def print_fault_line(report: dict[str, Any]) -> None:
    """The goal rate without the episodes the simulated user got wrong, and their kinds."""
    faults = report["simulator_faults"]
    if not faults["checked"]:
        out.print("simulator faults: not recorded in this run (made before they were checked)")
        return
    kinds = ", ".join(f"{k['kind']} {k['episodes']}" for k in faults["kinds"])
    out.print(
        f"without simulator faults {pct_interval(report['overall']['goal_rate_without_faults'])}"
        f"; faulted episodes {faults['episodes']}/{faults['checked']}"
        + (f" ({kinds})" if kinds else "")
    )


def print_report(report: dict[str, Any]) -> None:
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
    print_report_headline(report)
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


def print_persona_stats(stats: dict[str, Any]) -> None:
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
