"""All console output of the CLI: the consoles, shared cells, and one module per command
family's output (runs, figures, labels, authoring). No library module prints or imports rich.

Ids, phrases, paths and messages are the user's text: `out` prints everything as written (a
`[/INST]` in a reply must not be read as rich markup); markup is asked for per call, with the
user's parts escaped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from simulate.stats import Estimate

out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, markup=False)
marked = Console(highlight=False, soft_wrap=True)
"""For printers that escape the user's text themselves (compare, calibrate)."""


def pct_interval(rate: Estimate) -> str:
    """`73% (48%–89%, n=15)`, or `n/a (n=0)`."""
    if rate.value is None:
        return f"n/a (n={rate.n})"
    if rate.interval is None:
        return f"{rate.value:.0%} (n={rate.n})"
    low, high = rate.interval
    return f"{rate.value:.0%} ({low:.0%}–{high:.0%}, n={rate.n})"


def figure_cells(figure: Estimate, percent: bool = False) -> list[str]:
    """Value, interval and n of a figure, as table cells."""
    if figure.value is None:
        return ["n/a", figure.reason or "—", str(figure.n)]
    fmt = "{:.0%}" if percent else "{:.3f}"
    interval = figure.interval
    shown = (
        figure.reason or "—"
        if interval is None
        else f"{fmt.format(interval[0])} – {fmt.format(interval[1])}"
    )
    return [fmt.format(figure.value), shown, str(figure.n)]


def figure_table(title: str, rows: list[tuple[str, Estimate, bool]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("figure", "value", "95% interval", "n"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for name, figure, percent in rows:
        table.add_row(name, *figure_cells(figure, percent))
    return table
