"""All console output of the CLI: the consoles, shared cells, and one module per command
family's output (runs, figures, labels, authoring). No library module prints or imports rich.

Ids, phrases, paths and messages are the user's text: `out` prints everything as written (a
`[/INST]` in a reply must not be read as rich markup); markup is asked for per call, with the
user's parts escaped.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, markup=False)
marked = Console(highlight=False, soft_wrap=True)
"""For printers that escape the user's text themselves (compare, calibrate)."""


def pct_interval(rate: dict[str, Any]) -> str:
    if rate["value"] is None:
        return f"n/a (n={rate['n']})"
    return f"{rate['value']:.0%} ({rate['low']:.0%}–{rate['high']:.0%}, n={rate['n']})"


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
