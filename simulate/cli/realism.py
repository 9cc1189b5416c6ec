"""`simulate realism`: how far simulated users are from people, on a run or by next-turn replay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from simulate.cli import run_async
from simulate.cli.options import llm_options, setting
from simulate.cli.render import err, out
from simulate.cli.render.realism import print_realism
from simulate.llm.pool import EndpointFlags
from simulate.report.replay import replay as replay_reference


@click.command("realism")
@click.argument("run_dir", required=False, type=click.Path(), metavar="[RUN]")
@click.option(
    "--reference",
    type=click.Path(),
    metavar="REF",
    help="Reference set (`simulate import conversations`) to compare RUN's users with.",
)
@click.option(
    "--replay",
    type=click.Path(),
    metavar="REF",
    help="Next-turn replay: the simulated user writes each user turn of REF's conversations.",
)
@setting("--user", "agenda", None, "Simulated user for --replay: agenda (offline) or llm:MODEL.")
@click.option("--limit", type=click.IntRange(1), help="Replay only the first N conversations.")
@click.option("--temperature", type=click.FloatRange(0, 2), help="The LLM user's temperature.")
@setting("--concurrency", 8, click.IntRange(1), "Conversations replayed at once.")
@setting(
    "--resamples", 500, click.IntRange(10, 100_000), "Bootstrap resamples behind every interval."
)
@setting("--seed", 0, int, "Folds and bootstrap seed.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option(
    "-o",
    "--out",
    "out_file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Write the result here [RUN/realism.json when measuring a run; nothing for --replay].",
)
@llm_options
def realism_command(
    run_dir: str | None,
    reference: str | None,
    replay: str | None,
    user: str,
    limit: int | None,
    temperature: float | None,
    concurrency: int,
    resamples: int,
    seed: int,
    as_json: bool,
    out_file: str | None,
    **options: Any,
) -> None:
    """User-side realism: measures with intervals and a discriminator's AUC (0.5 = human-like).

    \b
    simulate realism RUN --reference REF             a run's simulated users against people
    simulate realism --replay REF --user agenda      next-turn replay on real conversations
    """
    from simulate.report.realism import (
        REALISM_FILE,
        measure_realism,
        realism_json,
        save_realism,
    )

    if replay and (run_dir or reference):
        raise click.UsageError("--replay REF takes no RUN and no --reference")
    if not replay and not (run_dir and reference):
        raise click.UsageError("give RUN --reference REF, or --replay REF")
    flags = [name for name, value in options.items() if value]
    if not replay and (flags or limit or temperature is not None or user != "agenda"):
        raise click.UsageError("--user, --limit, --temperature and model flags go with --replay")
    with err.status("measuring realism"):
        if replay:
            report, usage = run_async(
                replay_reference(
                    replay,
                    user,
                    limit=limit,
                    temperature=temperature,
                    concurrency=concurrency,
                    resamples=resamples,
                    seed=seed,
                    endpoint=EndpointFlags(use_cache=not options.pop("no_cache"), **options),
                ),
                interrupted="nothing was written",
            )
            for row in usage:
                cost = "" if row.cost_usd is None else f", ${row.cost_usd:.4f}"
                err.print(f"model {row.role} {row.model}: {row.calls} calls{cost}")
        else:
            assert run_dir is not None and reference is not None
            report = measure_realism(run_dir, reference, resamples=resamples, seed=seed)
    target = out_file or (str(Path(run_dir) / REALISM_FILE) if run_dir else None)
    saved = save_realism(report, target) if target else None
    if as_json:
        click.echo(realism_json(report))
    else:
        print_realism(report)
    if saved:
        (err if as_json else out).print(f"realism: {saved}")
