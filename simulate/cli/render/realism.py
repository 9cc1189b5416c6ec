"""What `simulate realism` prints, and the realism lines under `simulate report`."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from simulate.cli.render import out
from simulate.report.realism import SHARE_MEASURES


def _estimate(figure: Any, percent: bool = False, digits: int = 2) -> str:
    """`0.42 (0.38–0.47)` or `42% (38%–47%)`; `n/a` without a value."""
    if figure is None or figure.value is None:
        return "n/a"
    fmt = "{:.0%}" if percent else f"{{:.{digits}f}}"
    text = fmt.format(figure.value)
    if figure.low is not None and figure.high is not None:
        text += f" ({fmt.format(figure.low)}–{fmt.format(figure.high)})"
    return text


def print_realism_headline(report: Any) -> None:
    """The discriminator's AUC and the top giveaways, in a few lines (also under `report`)."""
    auc = report.discriminator.auc
    out.print(
        f"[bold]realism: discriminator AUC {_estimate(auc)}[/] (n={auc.n} user turns; "
        f"0.5 = indistinguishable from people, 1.0 = always told apart)",
        markup=True,
    )
    words = [g for g in report.discriminator.giveaways if g.kind == "word"][:6]
    if words:
        out.print(
            "gives the simulator away: "
            + ", ".join(
                f"{g.feature!r} ({g.simulated_share:.0%} vs {g.human_share:.0%})" for g in words
            )
        )


def print_realism(report: Any) -> None:
    """`simulate realism`: the headline, the measures, the endings, giveaways and replay."""
    sim, ref = report.simulated, report.reference
    out.print(
        f"[bold]Realism[/] ({report.mode}) simulated: {escape(sim.path)} "
        f"(user {escape(sim.user or '?')}, {sim.conversations} conversations, "
        f"{sim.user_messages} user messages) vs people: {escape(ref.path)} "
        f"({ref.conversations} conversations, {ref.user_messages} user messages"
        + (f"; {escape(ref.source)}, {escape(ref.license or '?')}" if ref.source else "")
        + ")",
        markup=True,
    )
    print_realism_headline(report)
    table = Table(title="user-side measures (95% bootstrap intervals)", title_justify="left")
    for column in ("measure", "simulated", "people", "distance", "n"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for m in report.measures:
        percent = m.id in SHARE_MEASURES
        distance = (
            ""
            if m.distance is None
            else _estimate(m.distance, percent and m.distance_kind == "difference")
        )
        kind = {"difference": "diff", "total_variation": "TV"}.get(m.distance_kind, m.distance_kind)
        if distance and kind:
            distance = f"{kind} {distance}"
        if m.p_value is not None:
            distance += f" p={m.p_value:.2g}"
        n = "" if m.simulated is None else f"{m.simulated.n} / {m.human.n}"
        table.add_row(
            m.name,
            "" if m.simulated is None else _estimate(m.simulated, percent),
            "" if m.human is None else _estimate(m.human, percent),
            distance,
            n,
        )
    out.print(table)
    endings = Table(title="how conversations end (user's last message)", title_justify="left")
    for column in ("last message", "simulated", "people"):
        endings.add_column(column, justify="left" if column == "last message" else "right")
    for e in report.endings:
        endings.add_row(e.kind, _estimate(e.simulated, True), _estimate(e.human, True))
    out.print(endings)
    for title, rows in (
        ("what gives the simulator away (leans simulated)", report.discriminator.giveaways[:12]),
        ("what people write that the simulator does not", report.discriminator.human_tells[:8]),
    ):
        features = Table(title=title, title_justify="left")
        for column in ("feature", "kind", "weight", "in simulated turns", "in people's turns"):
            features.add_column(
                column, justify="left" if column in ("feature", "kind") else "right"
            )
        for g in rows:
            features.add_row(
                repr(g.feature),
                g.kind,
                f"{g.weight:+.2f}",
                f"{g.simulated_share:.0%}",
                f"{g.human_share:.0%}",
            )
        out.print(features)
    if report.replay is not None:
        r = report.replay
        out.print(
            f"replay ({escape(r.user)}): {r.positions} user turns replayed, {r.produced} answered, "
            f"ended early {_estimate(r.ended, True)}, errors {r.errors}, openings not replayed "
            f"{r.skipped_openings}",
            markup=True,
        )
        out.print(
            f"facts disclosed: same as the person {_estimate(r.same_facts, True)} of turns "
            f"(n={r.same_facts.n}); recall {_estimate(r.fact_recall, True)} "
            f"(n={r.fact_recall.n}); precision {_estimate(r.fact_precision, True)} "
            f"(n={r.fact_precision.n})"
        )
        for example in r.examples[:4]:
            out.print(f"  agent: {example.agent}", style="dim")
            out.print(f"  person: {example.human}")
            out.print(f"  simulated: {example.simulated if example.simulated else '(ended)'}")
    for note in report.notes:
        out.print(note, style="dim")
