"""What `report`, `compare` and `calibrate` print."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from simulate.cli.render import out, pct_interval
from simulate.cli.render.runs import role_usage_lines

if TYPE_CHECKING:  # the statistics stack (scipy, statsmodels) loads only when a table needs it
    from simulate.report.calibrate import Calibration
    from simulate.report.compare import Comparison
    from simulate.report.figures import RunReport, Slice
    from simulate.report.sizing import PlanSize
    from simulate.stats import Rate


def _interval(rate: Rate) -> str:
    interval = rate.interval
    return "—" if interval is None else f"{interval[0]:.0%}–{interval[1]:.0%}"


def _share(rate: Rate) -> str:
    return f"{rate.count}/{rate.n}"


def interval_line(figures: Slice) -> str:
    """The goal rate's two labelled intervals, or why one is missing."""

    def shown(rate: Rate) -> str:
        return f"n/a, {rate.reason}" if rate.interval is None else _interval(rate)

    return (
        "suite interval (the same personas and scenarios again): "
        f"{shown(figures.goal_rate_suite)} · population interval (similar users and tasks): "
        f"{shown(figures.goal_rate_population)}"
    )


def print_report_headline(report: RunReport) -> None:
    """The report's headline figures: goal rate, pass^k, the worst slice, simulator health."""
    overall = report.overall
    out.print(f"[bold]goal rate {pct_interval(overall.goal_rate)}[/]", markup=True)
    out.print(f"  {interval_line(overall)}")
    print_fault_line(report)
    from simulate.report.figures import pass_k_highlights

    curve = pass_k_highlights(overall.pass_hat_k.values)
    if curve:
        values = ", ".join(f"pass^{k} {v:.0%}" for k, v in curve.items())
        out.print(f"{values}  (over {overall.pass_hat_k.cells} persona × scenario cells)")
    if overall.pass_hat_k.stops_because:
        out.print(overall.pass_hat_k.stops_because, style="dim")
    rated = [s for s in report.slices if s.goal_rate.n]
    if rated:
        worst = rated[0]
        out.print(
            f"worst slice: {worst.dimension} {worst.value} {pct_interval(worst.goal_rate)}; "
            f"population {_interval(worst.ranking_rate)}"
        )
    health = report.health.overall
    flagged = [r.persona_id for r in report.health.per_persona if r.flags]
    out.print(
        f"simulator health: repeats {_share(health.repeat_rate)} and assistant-like "
        f"{_share(health.assistant_like_rate)} user messages; simulator errors "
        f"{_share(health.simulator_error_share)} episodes"
        + (f"; flagged: {', '.join(flagged)}" if flagged else "")
    )


def print_report(report: RunReport) -> None:
    """`simulate report`: the figures as a few short tables."""
    run, overall = report.run, report.overall
    out.print(
        f"[bold]Report[/] {escape(run.path)}  ({run.episodes} episodes; "
        f"user {escape(run.user or '?')}, target {escape(run.target or '?')})",
        markup=True,
    )
    if run.planned and run.episodes < run.planned:
        why = (
            f"stopped early: {run.stopped_because}"
            if run.stopped_because
            else f"`simulate run ... --out {run.path} --resume` plays the rest"
        )
        out.print(
            f"incomplete run: {run.episodes} of {run.planned} planned episodes; {why}",
            style="yellow",
        )
    outcomes = ", ".join(f"{k} {v}" for k, v in overall.outcomes.items())
    out.print(f"outcomes: {outcomes}")
    print_report_headline(report)
    turns, latency, tokens = overall.turns, overall.latency_ms, overall.tokens
    line = f"turns {turns.value or 0:.1f} per episode (n={turns.n})"
    if latency.value is not None:
        line += f"  ·  reply latency {latency.value:.0f} ms (n={latency.n})"
    if tokens.value is not None:
        line += f"  ·  {tokens.value:.0f} tokens per episode (n={tokens.n})"
    if overall.cost_usd.total is not None:
        line += f"  ·  cost ${overall.cost_usd.total:.4f} (n={overall.cost_usd.per_episode.n})"
    out.print(line)
    for usage in role_usage_lines(report.usage_by_role, report.agent_calls_run_wide):
        out.print(usage)
    for note in (report.notes.goal_rate, report.notes.suite, report.notes.population):
        out.print(note, style="dim")
    rated = [s for s in report.slices if s.goal_rate.n]
    if rated:
        slices = Table(
            title="worst slices (by the population interval's upper end)", title_justify="left"
        )
        for column in ("slice", "value", "goal rate", "95% interval", "n", "suite", "population"):
            slices.add_column(column, justify="left" if column in ("slice", "value") else "right")
        for s in rated[:10]:
            rate = s.goal_rate
            tags = [name.split(" ", 2)[-1] for name in s.same_as]  # "persona tag X" -> X
            value = s.value + (f" (= tag {', '.join(tags)})" if tags else "")
            slices.add_row(
                s.dimension,
                value,
                f"{rate.value or 0:.0%}",
                _interval(rate),
                str(rate.n),
                _interval(s.goal_rate_suite),
                _interval(s.goal_rate_population),
            )
        out.print(slices)
    if report.labels:
        labels = Table(title="label criteria (worst first)", title_justify="left")
        for column in ("criterion", "labeler", "pass rate", "95% interval", "n", "corrected"):
            labels.add_column(
                column, justify="left" if column in ("criterion", "labeler") else "right"
            )
        for row in report.labels:
            rate, corrected = row.pass_rate, row.corrected_pass_rate
            labels.add_row(
                row.criterion,
                row.labeler_kind,
                "n/a" if rate.value is None else f"{rate.value:.0%}",
                _interval(rate),
                str(rate.n),
                "" if corrected is None else pct_interval(corrected),
            )
        out.print(labels)
    if report.failure_kinds:
        kinds = Table(title="what failed, with the turn where it went wrong", title_justify="left")
        for column in ("failure", "episodes", "example episode", "turn", "why"):
            kinds.add_column(column)
        for kind in report.failure_kinds:
            example = kind.examples[0] if kind.examples else None
            kinds.add_row(
                kind.kind,
                str(kind.n),
                example.episode_id if example else "",
                "" if not example or example.turn_index is None else str(example.turn_index),
                example.why if example else "",
            )
        out.print(kinds)
    health = Table(title="simulator health per persona", title_justify="left")
    for column in ("persona", "words", "distinct-2", "repeats", "assistant-like", "sim errors"):
        health.add_column(column, justify="left" if column == "persona" else "right")
    for row in [report.health.overall, *report.health.per_persona]:
        words, distinct = row.words, row.distinct_2.value
        health.add_row(
            Text(row.persona_id).append(
                f" ({', '.join(row.flags)})" if row.flags else "", style="red"
            ),
            "n/a" if words.mean is None else f"{words.mean:.1f} ± {words.sd or 0:.1f}",
            "n/a" if distinct is None else f"{distinct:.2f}",
            _share(row.repeat_rate),
            _share(row.assistant_like_rate),
            _share(row.simulator_error_share),
        )
    out.print(health)
    if report.realism:
        from simulate.cli.render.realism import print_realism_headline

        print_realism_headline(report.realism)


def _points(value: float) -> str:
    return f"{value * 100:+.1f}"


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2g}" if value >= 0.001 else f"{value:.1e}"


def print_comparison(comparison: Comparison, console: Any, limit: int = 20) -> None:
    """Print the comparison as rich text and tables on ``console`` (a rich Console)."""
    from rich.markup import escape
    from rich.table import Table

    c = comparison
    confidence = f"{(1 - c.alpha) * 100:g}%"
    # Paths, ids, tags and check phrases are the user's text: escaped, so a `[` in them is
    # printed as written rather than read as rich markup (a `[/b]` tag would raise).
    console.print(f"[bold]Compare[/] {escape(str(c.before.path))} → {escape(str(c.after.path))}")
    for label, side in (("before", c.before), ("after", c.after)):
        console.print(
            f"{label}: run {escape(repr(side.run_id))}, target {escape(str(side.target))}, "
            f"seed {side.seed}: "
            f"{side.episodes} episodes, {side.not_rated} target/simulator errors left out, "
            f"{side.unmatched} without a counterpart"
        )
    if c.design == "paired":
        console.print(
            f"matched {c.matched} episodes by persona × scenario × trial (the same seeds: the "
            f"same conversations); compared on the {c.compared} pairs rated in both runs"
        )
    else:
        console.print(
            f"compared within persona × scenario cells: {c.overall.n_before} + "
            f"{c.overall.n_after} rated episodes ({c.matched} matched by trial, for the "
            "pass → fail list)"
        )
    for note in c.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    o, z = c.overall, c.overall_independent
    console.print(
        f"[bold]goal rate {o.rate_before:.1%} → {o.rate_after:.1%}[/] "
        f"({_points(o.difference)} points, {confidence} interval {_points(o.low)} to "
        f"{_points(o.high)}); {o.pass_to_fail} pass → fail, {o.fail_to_pass} fail → pass"
        + (" among matched trials" if c.design == "stratified" else "")
    )
    primary = (
        "McNemar exact on matched pairs"
        if c.design == "paired"
        else f"Cochran–Mantel–Haenszel over cells{' (exact)' if o.test == 'cmh-exact' else ''}"
    )
    console.print(
        f"primary test: {primary}, p = {_p(o.p_value)}"
        f"{' [red](significant)[/]' if o.significant else ''}; the interval is the test's "
        f"(it leaves out 0 exactly when p < {c.alpha:g}); two-proportion ({z.test}) on pooled "
        f"counts, for reference: p = {_p(z.p_value)}, {confidence} interval {_points(z.low)} "
        f"to {_points(z.high)}"
    )
    headers = [
        "slice",
        "n",
        "before",
        "after",
        "change",
        f"{confidence} interval ({c.correction})",
        "p",
        f"p {c.correction}",
        "↓",
        "↑",
    ]
    for title, rows in (
        ("slices, worst change first", c.slices),
        ("label criteria (pass rates)", c.criteria),
    ):
        shown = [r for r in rows if r.pass_to_fail or r.fail_to_pass or r.difference]
        hidden = len(rows) - len(shown)
        if not shown:
            if rows:
                console.print(f"{title}: no conversation changed in any of {len(rows)}")
            continue
        caption = (
            f"{hidden} more with no conversation changed (--json lists them)" if hidden else None
        )
        table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
        for column in headers:
            if column == "slice":
                table.add_column(column, overflow="fold", min_width=12)
            else:
                wraps = column == headers[5]  # the interval, `-55.2 to +19.1`, may take 2 lines
                table.add_column(
                    column, justify="right", no_wrap=not wraps, min_width=9 if wraps else None
                )
        for row in shown:
            style = "red" if row.dropped else ("green" if row.significant else None)
            name = row.name + (f" (= {', '.join(row.same_as)})" if row.same_as else "")
            table.add_row(
                escape(name),
                str(row.n),
                f"{row.rate_before:.0%}",
                f"{row.rate_after:.0%}",
                _points(row.difference),
                (
                    "any (adjusted p = 1)"
                    if (row.low, row.high) == (-1.0, 1.0)
                    else f"{_points(row.low)} to {_points(row.high)}"
                ),
                _p(row.p_value),
                _p(row.p_adjusted),
                str(row.pass_to_fail),
                str(row.fail_to_pass),
                style=style,
            )
        console.print(table)
    if c.pass_to_fail:
        table = Table(
            title=f"pass → fail: {len(c.pass_to_fail)} conversations", title_justify="left"
        )
        # Episode ids stay whole (they are what `simulate show --episode` takes); the text
        # columns fold instead of being cut.
        for column in ("persona", "scenario", "trial", "before", "after", "after: how it ended"):
            ids = column in ("trial", "before", "after")
            table.add_column(column, no_wrap=ids, overflow="fold", min_width=8 if not ids else None)
        for flip in c.pass_to_fail[: limit or None]:
            checks = (
                f"; failed {', '.join(flip.failed_checks_after)}"
                if (flip.failed_checks_after)
                else ""
            )
            table.add_row(
                flip.persona_id,
                flip.scenario_id,
                str(flip.trial),
                flip.episode_before,
                flip.episode_after,
                escape(f"{flip.status_after} {flip.reason_after or ''}{checks}".strip()),
            )
        console.print(table)
        if limit and len(c.pass_to_fail) > limit:
            console.print(f"... and {len(c.pass_to_fail) - limit} more (--limit 0 or --json)")
        console.print(f"read one: simulate show {escape(str(c.after.path))} --episode ID")
    console.print(f"fail → pass: {len(c.fail_to_pass)} conversations")
    if c.regressions:
        names = ", ".join(
            f"{s.name} (p{'' if s.p_adjusted is None else ' adj'} = "
            f"{_p(s.p_value if s.p_adjusted is None else s.p_adjusted)})"
            for s in c.regressions
        )
        console.print(f"[bold red]significant drop[/] at alpha {c.alpha:g}: {escape(names)}")
    else:
        console.print(f"no significant drop at alpha {c.alpha:g}")


def _drop(value: float | None) -> str:
    return "none" if value is None else f"{value * 100:.1f} points"


def print_calibration(calibration: Calibration, console: Any) -> None:
    """Print the calibration on ``console`` (a rich Console)."""
    from rich.markup import escape
    from rich.table import Table

    from simulate.report.calibrate import CALIBRATION, POWER

    c = calibration
    table = Table(title=f"goal rate of {len(c.repeats)} identical runs", title_justify="left")
    for column in ("repeat", "seed", "goal rate", "successes / rated", "episodes"):
        table.add_column(column, justify="left" if column == "repeat" else "right")
    for row in c.repeats:
        table.add_row(
            escape(row.path),
            str(row.seed),
            f"{row.goal_rate:.1%}",
            f"{row.successes}/{row.rated}",
            str(row.episodes),
        )
    console.print(table)
    sd_low, sd_high = c.sd_interval
    console.print(
        f"mean {c.mean_rate:.1%} · sd {c.sd * 100:.1f} points (95% interval "
        f"{sd_low * 100:.1f}–{sd_high * 100:.1f} from {len(c.repeats)} repeats; range "
        f"{c.min_rate:.1%} – {c.max_rate:.1%}) · a binomial at n = {c.episodes_per_run:g} would "
        f"give sd {c.binomial_sd * 100:.1f} points"
    )
    fa_low, fa_high = c.false_alarm_interval
    console.print(
        f"compare between repeats: {c.false_alarms} of {len(c.pairs)} pairs flagged a "
        f"significant change at alpha {c.alpha:g} ({c.overall_false_alarms} on the overall "
        f"rate; 95% interval of the false-alarm rate {fa_low:.0%}–{fa_high:.0%})"
    )
    noise_low, noise_high = c.noise_95_interval
    console.print(
        f"differences between identical runs stay within ±{c.noise_95 * 100:.1f} points (95%; "
        f"±{noise_low * 100:.1f} to ±{noise_high * 100:.1f} given the sd's uncertainty); "
        f"{c.discordance:.1%} of conversations change outcome between them"
    )
    console.print(
        f"smallest drop detectable with {POWER:.0%} power at n = {c.episodes_per_run:g}: "
        f"{_drop(c.minimum_detectable_drop)} with compare's paired test (McNemar), "
        f"{_drop(c.minimum_detectable_drop_independent)} with a two-proportion test"
    )
    if c.smallest_trusted_difference is None:
        console.print("[bold]no drop is reliably detectable at this n[/]: play more episodes")
    else:
        console.print(
            f"[bold]trust differences of at least {c.smallest_trusted_difference * 100:.1f} "
            f"points[/] between runs of {c.episodes_per_run:g} episodes of this agent"
        )
    if c.slices:
        table = Table(
            title="per slice: the smallest drop compare catches (least detectable first)",
            title_justify="left",
        )
        for column in ("slice", "n per run", "goal rate", "smallest drop", "power if halved"):
            table.add_column(column, justify="left" if column == "slice" else "right")
        for row in c.slices[:10]:
            table.add_row(
                escape(row.name),
                f"{row.n:g}",
                f"{row.rate:.0%}",
                _drop(row.minimum_detectable_drop),
                f"{row.power_if_halved:.0%}",
            )
        console.print(table)
        if len(c.slices) > 10:
            console.print(f"({len(c.slices) - 10} more slices in {CALIBRATION})", style="dim")
    console.print(f"figures: {Path(c.folder) / CALIBRATION}")


def print_fault_line(report: RunReport) -> None:
    """The goal rate without the episodes the simulated user got wrong, and their kinds."""
    faults = report.simulator_faults
    if not faults.checked:
        out.print("simulator faults: not recorded in this run (made before they were checked)")
        return
    kinds = ", ".join(f"{k.kind} {k.episodes}" for k in faults.kinds)
    out.print(
        f"without simulator faults {pct_interval(report.overall.goal_rate_without_faults)}"
        f"; faulted episodes {faults.episodes}/{faults.checked}" + (f" ({kinds})" if kinds else "")
    )


def print_plan_size(plan: PlanSize) -> None:
    """`simulate plan-size`: episodes for ±margin, then what a pilot's clustering changes."""
    out.print(
        f"episodes for a goal rate within ±{plan.margin:g} at {plan.confidence * 100:g}% "
        f"confidence, if it is near {plan.expected:g}:"
    )
    if plan.normal == plan.wilson:
        out.print(f"  normal approximation and Wilson score interval: {plan.normal}")
    else:
        out.print(f"  normal approximation: {plan.normal}")
        out.print(f"  Wilson score interval: {plan.wilson}")
    out.print(
        f"  both ends of the Wilson interval within ±{plan.margin:g} of the rate: {plan.within} "
        "(the two above size only the half-width; plan with this one)"
    )
    if plan.cells and plan.trials_per_cell:
        out.print(
            f"over {plan.cells} persona × scenario cells: {plan.trials_per_cell} trials per cell "
            f"({plan.trials_per_cell * plan.cells} episodes); the margin is for the overall "
            "rate, not each cell's, and for independent episodes"
        )
    pilot = plan.pilot
    if pilot is None:
        return
    out.print(
        f"pilot {pilot.path}: {pilot.episodes} rated episodes, {pilot.personas} personas × "
        f"{pilot.scenarios} scenarios ({pilot.cells} cells), goal rate {pilot.rate:.1%}, design "
        f"effect {pilot.design_effect:.2f} (population interval against binomial)"
    )
    per_cell = pilot.episodes / pilot.cells
    if plan.clustered_episodes is not None:
        out.print(
            f"  for similar users and tasks: about {plan.clustered_personas} personas × "
            f"{plan.clustered_scenarios} scenarios like the pilot's, {per_cell:.3g} trials per "
            f"cell: about {plan.clustered_episodes} episodes (differences between personas and "
            "scenarios shrink only as more of them are played, not with more trials)"
        )
    if plan.floor is not None:
        if plan.clustered_trials_per_cell is None:
            out.print(
                f"  with the pilot's {pilot.cells} cells no number of trials gets there: the "
                f"differences between cells alone leave ±{plan.floor * 100:.1f} points; add "
                "personas and scenarios"
            )
        else:
            trials = plan.clustered_trials_per_cell
            out.print(
                f"  with the pilot's {pilot.cells} cells: {trials} trials per cell "
                f"({trials * pilot.cells} episodes); the cells' own differences leave at least "
                f"±{plan.floor * 100:.1f} points"
            )
