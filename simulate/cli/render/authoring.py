"""What `personas stats` prints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

from simulate.cli.render import out

if TYPE_CHECKING:
    from simulate.authoring.diversity import PersonaStats


def print_persona_stats(stats: PersonaStats) -> None:
    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    out.print(f"{stats.personas} personas", style="bold")
    for what, counts in (("sources", stats.sources), ("licenses", stats.licenses)):
        out.print(f"{what}: " + ", ".join(f"{k} ({v})" for k, v in counts.items()))
    table = Table(title="levels per axis", title_justify="left")
    table.add_column("axis")
    table.add_column("levels (count)")
    for axis, levels in stats.axes.items():
        table.add_row(axis, ", ".join(f"{level} {count}" for level, count in levels.items()))
    out.print(table)
    pairs = stats.pair_coverage
    percent = "-" if pairs.share is None else f"{pairs.share:.1%}"
    out.print(
        f"level pairs covered: {pairs.covered} of {pairs.total} ({percent}), over the "
        f"levels seen of {len(pairs.axes)} varied axes"
    )
    for missing in pairs.missing[:5]:
        out.print(f"  missing: {missing}")
    unlisted = pairs.total - pairs.covered - min(5, len(pairs.missing))
    if unlisted > 0:
        out.print(f"  and {unlisted} more missing pairs (--json lists up to 20)")
    texts = stats.descriptions
    near = texts.near_duplicates
    out.print(
        f"descriptions: distinct-1 {share(texts.distinct_1)}, distinct-2 "
        f"{share(texts.distinct_2)}, {texts.empty} empty; near-duplicate pairs "
        f"(Jaccard of word {near.ngram}-grams >= {near.threshold:g}): {near.pairs}"
    )
    for a, b, similarity in near.examples[:5]:
        out.print(f"  {a} ~ {b} ({similarity:.2f})")


def print_probe(result: Any) -> None:
    """The weak scenarios, each with the agent that passed it and why, then the score."""
    agents = ", ".join(result.agents)
    if result.weaknesses:
        table = Table(
            title="scenarios a counterfactual agent passed (their checks are weak)",
            title_justify="left",
        )
        for column in ("scenario", "agent", "persona", "why it passed"):
            table.add_column(column, overflow="fold")
        for w in result.weaknesses:
            table.add_row(w.scenario_id, w.agent, w.persona_id, w.why)
        out.print(table)
    else:
        out.print(f"probe: no scenario passed by any counterfactual agent ({agents})")
    out.print(
        f"probe score {result.score:.0%}: {result.failing} of {result.pairs} scenario × agent "
        f"pairs fail, as they should ({result.episodes} episodes played against {agents})"
    )
