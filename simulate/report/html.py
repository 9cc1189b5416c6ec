"""The run report as one self-contained HTML page: inline CSS, inline SVG charts drawn here,
no JavaScript, no fonts or images from elsewhere. Transcripts of the examples are in the page.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from simulate.report.figures import RunReport, Slice, pass_k_highlights
from simulate.report.realism import SHARE_MEASURES, RealismReport
from simulate.store import write_atomic

REPORT_FILE = "report.html"
_BAR_ROW = 22
_LABEL_W = 210
_MAX_LABEL_W = 470
_CHAR_W = 7.2
"""Width of a label character at the charts' 12px font, generous (DejaVu Sans is wide)."""
_PLOT_W = 360
_RIGHT_W = 130


def rate_chart(rows: list[Slice]) -> dict[str, Any]:
    """Geometry of a horizontal bar chart of goal rates with interval whiskers and n.

    ``rows`` are slices from the report; their order is kept (worst first). The label column
    grows with the longest label (pack ids like `language-switching.german_speaker`), up to a
    limit past which labels are cut with `…` (the full name is in the bar's tooltip).
    """
    longest = max((len(row.value) for row in rows), default=0)
    fits = min(longest, int((_MAX_LABEL_W - 14) / _CHAR_W))
    label_w = max(_LABEL_W, 14 + math.ceil(_CHAR_W * fits))
    bars = []
    for i, row in enumerate(rows):
        rate = row.goal_rate
        y = 24 + i * _BAR_ROW
        value = rate.value
        # A slice with nothing rated has no rate and no interval: no bar and no whisker (its
        # Wilson interval, 0%–100%, would be drawn as if it had been measured).
        interval = rate.interval if value is not None else None
        population = row.goal_rate_population.interval
        bars.append(
            {
                "label": _fit(row.value, fits),
                "y": y,
                "mid": y + (_BAR_ROW - 6) / 2,
                "width": 0 if value is None else value * _PLOT_W,
                "low": label_w + interval[0] * _PLOT_W if interval else None,
                "high": label_w + interval[1] * _PLOT_W if interval else None,
                "text": (f"n/a · n={rate.n}" if value is None else f"{value:.0%} · n={rate.n}"),
                "title": (
                    f"{row.value}: goal rate "
                    + ("n/a" if value is None else f"{value:.1%}")
                    + (f", 95% interval {interval[0]:.1%}–{interval[1]:.1%}" if interval else "")
                    + (
                        f", population {population[0]:.1%}–{population[1]:.1%}"
                        if population
                        else ""
                    )
                    + f", n={rate.n}"
                ),
            }
        )
    return {
        "width": label_w + _PLOT_W + _RIGHT_W,
        "height": 32 + len(rows) * _BAR_ROW,
        "x0": label_w,
        "plot_w": _PLOT_W,
        "bar_h": _BAR_ROW - 6,
        "ticks": [
            {"x": label_w + t * _PLOT_W, "text": f"{t:.0%}"} for t in (0, 0.25, 0.5, 0.75, 1)
        ],
        "bars": bars,
    }


def _fit(label: str, chars: int) -> str:
    return label if len(label) <= chars else label[: chars - 1] + "…"


def count_chart(counts: dict[str, int]) -> dict[str, Any]:
    """Geometry of a horizontal bar chart of counts (outcomes), each labelled with its n."""
    top = max(counts.values(), default=0) or 1
    bars = [
        {
            "label": label,
            "y": 8 + i * _BAR_ROW,
            "mid": 8 + i * _BAR_ROW + (_BAR_ROW - 6) / 2,
            "width": n / top * _PLOT_W,
            "text": f"n={n}",
        }
        for i, (label, n) in enumerate(counts.items())
    ]
    return {
        "width": _LABEL_W + _PLOT_W + _RIGHT_W,
        "height": 16 + len(bars) * _BAR_ROW,
        "x0": _LABEL_W,
        "bar_h": _BAR_ROW - 6,
        "bars": bars,
    }


def histogram(counts: dict[int, int], height: int = 160) -> dict[str, Any]:
    """Geometry of a vertical histogram of turn counts: one column per count of turns."""
    if not counts:
        return {"width": 0, "height": 0, "columns": [], "base": 0}
    lo, hi = min(counts), max(counts)
    span = hi - lo + 1
    col_w = max(6, min(40, 560 // span))
    top = max(counts.values())
    base = height - 24
    columns = []
    for i, turns in enumerate(range(lo, hi + 1)):
        n = counts.get(turns, 0)
        h = n / top * (base - 20)
        columns.append(
            {
                "x": 40 + i * col_w,
                "y": base - h,
                "w": col_w - 2,
                "h": h,
                "turns": turns,
                "n": n,
                "label": span <= 30 or turns % max(1, span // 15) == 0,
            }
        )
    return {"width": 60 + span * col_w, "height": height, "columns": columns, "base": base}


def paired_chart(realism: RealismReport) -> dict[str, Any]:
    """Geometry of the realism chart: for each share measure, a bar for the simulated users
    and one for people, each with its interval's whisker and n."""
    measures = {m.id: m for m in realism.measures}
    rows = []
    y = 24
    for ident in SHARE_MEASURES:
        measure = measures.get(ident)
        if measure is None:
            continue
        for side, css in (("simulated", "sim"), ("human", "hum")):
            figure = getattr(measure, side)
            value = figure.value if figure else None
            low, high = (figure.low, figure.high) if figure else (None, None)
            rows.append(
                {
                    "label": measure.name if side == "simulated" else "",
                    "side": "simulated" if side == "simulated" else "people",
                    "css": css,
                    "y": y,
                    "mid": y + (_BAR_ROW - 8) / 2,
                    "width": 0 if value is None else value * _PLOT_W,
                    "low": None if low is None else _LABEL_W + low * _PLOT_W,
                    "high": None if high is None else _LABEL_W + high * _PLOT_W,
                    "text": "n/a"
                    if value is None
                    else f"{'sim' if css == 'sim' else 'people'} {value:.0%} · n={figure.n}",
                }
            )
            y += _BAR_ROW - 4
        y += 8
    return {
        "width": _LABEL_W + _PLOT_W + _RIGHT_W + 30,
        "height": y + 8,
        "x0": _LABEL_W,
        "plot_w": _PLOT_W,
        "bar_h": _BAR_ROW - 8,
        "ticks": [
            {"x": _LABEL_W + t * _PLOT_W, "text": f"{t:.0%}"} for t in (0, 0.25, 0.5, 0.75, 1)
        ],
        "rows": rows,
    }


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_template),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v, digits=0: "n/a" if v is None else f"{v:.{digits}%}"
    env.filters["highlights"] = pass_k_highlights
    env.filters["num"] = lambda v, digits=1: "n/a" if v is None else f"{v:,.{digits}f}"
    return env


def _load_template(name: str) -> str:
    return resources.files("simulate").joinpath("templates", name).read_text(encoding="utf-8")


def render_report(report: RunReport) -> str:
    """The report as a self-contained HTML page."""
    slices = report.slices
    charts = {
        "personas": rate_chart([s for s in slices if s.dimension == "persona"]),
        "scenarios": rate_chart([s for s in slices if s.dimension == "scenario"]),
        "outcomes": count_chart(report.overall.outcomes),
        "turns": histogram(report.turn_counts),
    }
    if report.realism:
        charts["realism"] = paired_chart(report.realism)
    wrong = {
        (e.episode_id, e.turn_index)
        for kind in report.failure_kinds
        for e in kind.examples
        if e.turn_index is not None
    }
    template = _environment().get_template("report.html.j2")
    return template.render(report=report, charts=charts, wrong=wrong)


def write_report_html(report: RunReport, path: str | Path) -> Path:
    """Render the report and write it atomically (temporary file, then rename)."""
    return write_atomic(path, render_report(report))
