"""What `label`, `agreement` and `golden` print."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from simulate.cli.render import figure_table, out

if TYPE_CHECKING:
    from simulate.label.agreement import AgreementReport, Coefficients, CriterionAgreement
    from simulate.label.labeling import CriterionTally
    from simulate.stats import Estimate


def print_label_summary(rows: list[CriterionTally]) -> None:
    """Per criterion and labeler: units, pass rate and how many were rated."""
    table = Table(title="per criterion", title_justify="left")
    for column in ("criterion", "labeler", "units", "pass rate", "n"):
        table.add_column(column, justify="left" if column in ("criterion", "labeler") else "right")
    for row in rows:
        rate = "-" if row.pass_rate is None else f"{row.pass_rate:.0%}"
        table.add_row(row.criterion, row.labeler, str(row.units), rate, str(row.rated))
    out.print(table)


def print_agreement(report: AgreementReport) -> None:
    """`simulate agreement`: each criterion with two or more labelers, then those with one."""
    out.print(f"[bold]Agreement[/] {escape(report.run_dir)}  ({report.labels} labels)", markup=True)
    alone = [s for s in report.criteria if s.agreement is None]
    for section in report.criteria:
        if section.agreement is not None:
            print_criterion_agreement(section)
    if alone:
        names = ", ".join(f"{s.criterion} ({s.raters[0].labeler})" for s in alone)
        out.print(f"\none labeler only, nothing to compare: {names}")


def print_criterion_agreement(section: CriterionAgreement) -> None:
    raters = ", ".join(f"{r.labeler} ({r.units})" for r in section.raters)
    out.print(
        f"\n[bold]{escape(section.criterion)}[/] ({section.kind}) · "
        f"{section.units} units · raters (units): {escape(raters)}",
        markup=True,
    )
    agreement = section.agreement
    assert agreement is not None
    rows = [
        (name, figure, False)
        for figure, name in (
            (agreement.cohen_kappa, "Cohen's kappa"),
            (agreement.fleiss_kappa, "Fleiss' kappa"),
        )
        if figure is not None
    ]
    rows += [
        (f"Krippendorff's alpha ({level})", figure, False)
        for level, figure in agreement.krippendorff_alpha.items()
    ]
    out.print(figure_table("between raters (every labeler)", rows))
    if section.people is not None:
        people = section.people
        out.print(
            figure_table(
                f"people only, the ceiling for a judge ({', '.join(people.raters)})",
                _coefficient_rows(people),
            )
        )
    else:
        out.print(f"people only: {section.people_reason}", style="dim")
    for row in section.vs_people:
        ties = f"; {row.ties_left_out} tied units left out" if row.ties_left_out else ""
        title = f"{row.labeler} against people ({', '.join(row.people)}{ties})"
        rows = [
            ("accuracy", row.accuracy, True),
            ("true-positive rate", row.tpr, True),
            ("true-negative rate", row.tnr, True),
            *(_coefficient_rows(row.agreement)[1:] if row.agreement else []),
            ("pass rate, observed", row.pass_rate, True),
        ]
        if row.people_pass_rate is not None:
            rows.append(("people's pass rate, same units", row.people_pass_rate, True))
        if row.ppi_pass_rate is not None:
            rows.append(("pass rate, corrected (PPI++)", row.ppi_pass_rate, True))
        rows.append(("pass rate, Rogan–Gladen", row.corrected_pass_rate, True))
        out.print(figure_table(title, rows))
    corrected = [r.corrected_pass_rate for r in section.vs_people]
    if any(c.value is not None for c in corrected):
        method = corrected[0].method or ""
        out.print(f"Rogan–Gladen: {method.removeprefix('Rogan–Gladen; ')}", style="dim")
    ppi = next((r.ppi_pass_rate for r in section.vs_people if r.ppi_pass_rate), None)
    if ppi is not None and ppi.method:
        out.print(f"corrected: {ppi.method}", style="dim")


def _coefficient_rows(figures: Coefficients) -> list[tuple[str, Estimate, bool]]:
    return [
        ("agreement (share of pairs)", figures.observed, True),
        ("kappa", figures.kappa, False),
        ("PABAK", figures.pabak, False),
        ("Gwet's AC1", figures.ac1, False),
    ]


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
