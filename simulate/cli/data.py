"""`simulate show` and `simulate export`: read a run's conversations, write them elsewhere."""

from __future__ import annotations

from typing import Any

import click

from simulate.cli.options import setting
from simulate.cli.render import err, out
from simulate.cli.render.runs import print_transcript
from simulate.errors import ConfigError
from simulate.store import RunFolder


@click.command("show")
@click.argument("run_dir", type=click.Path())
@click.option("--status", help="Only episodes that ended so (goal_reached, gave_up, ...).")
@click.option("--failed", is_flag=True, help="Only episodes that did not succeed.")
@click.option("--persona", "persona_id", help="Only this persona.")
@click.option("--scenario", "scenario_id", help="Only this scenario.")
@click.option("--episode", "episode_id", help="Only this episode id.")
@setting("--limit", 5, click.IntRange(0), "Transcripts to print (0 = all).")
@click.option("--json", "as_json", is_flag=True, help="Print episodes as JSON lines.")
def show_command(run_dir: str, failed: bool, limit: int, as_json: bool, **filters: Any) -> None:
    """Print transcripts of a run, filtered."""
    from simulate.schema import Status

    folder = RunFolder.open(run_dir)
    if filters["status"] and filters["status"] not in {s.value for s in Status}:
        choices = ", ".join(s.value for s in Status)
        raise ConfigError(f"--status {filters['status']!r} is not one of: {choices}")
    wanted = [(k, v) for k, v in filters.items() if v]
    shown = 0
    for episode in folder.episodes(wanted):
        if failed and episode.success:
            continue
        if as_json:
            click.echo(episode.model_dump_json())
        else:
            print_transcript(episode, with_traceback=bool(filters["episode_id"]))
        shown += 1
        if limit and shown >= limit:
            break
    if shown == 0 and not as_json:
        err.print(f"no episodes in run {folder.manifest.run_id or run_dir!r} match")


@click.command("export")
@click.argument("run_dir", type=click.Path())
@click.option(
    "--to-hub",
    "repo_id",
    metavar="OWNER/NAME",
    help="Push to this Hugging Face Hub dataset repository (token: HF_TOKEN or `hf auth login`; "
    "HF_ENDPOINT for a private mirror).",
)
@click.option("--public", is_flag=True, help="With --to-hub: create the repository public.")
@click.option(
    "--license",
    "license_id",
    metavar="ID",
    help="With --to-hub: the card's licence id [cc-by-4.0, or the personas' non-commercial one].",
)
@click.option(
    "--format",
    "fmt",
    metavar="FORMAT",
    help="jsonl, parquet, csv, openai-chat, phoenix (one record per episode), turns (one row "
    "per message), deepeval or inspect (one record per persona x scenario pair).",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(),
    help="Output file; a folder (or a path ending in /) gets a default file name.",
)
@click.option(
    "--criterion",
    metavar="ID",
    help="Only episodes that pass this labeled criterion (implies --passed-only).",
)
@click.option("--passed-only", is_flag=True, help="Only episodes that passed [success].")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def export_command(
    run_dir: str,
    repo_id: str | None,
    public: bool,
    license_id: str | None,
    fmt: str | None,
    out_path: str | None,
    criterion: str | None,
    passed_only: bool,
    force: bool,
) -> None:
    """Push a run or golden set to the Hugging Face Hub, or write files other tools read."""
    if repo_id is not None:
        if fmt or out_path or criterion or passed_only:
            raise click.UsageError(
                "--to-hub pushes the whole run; drop --format, --out, --criterion, --passed-only"
            )
        from simulate.hub import push_to_hub

        pushed = push_to_hub(run_dir, repo_id, public=public, license=license_id)
        for warning in pushed.warnings:
            err.print(f"warning: {warning}")
        parts = [
            f"{config} ({', '.join(f'{split} {n}' for split, n in splits.items())})"
            for config, splits in pushed.rows.items()
        ]
        visibility = "private" if pushed.private else "public"
        out.print(f"pushed {'; '.join(parts)} to {pushed.repo_url}")
        out.print(f"{visibility} repository, licence {pushed.license}")
        if pushed.deleted:
            out.print(f"replaced {len(pushed.deleted)} data files of the previous push")
        out.print(f"commit: {pushed.commit_url}")
        return
    if public or license_id:
        raise click.UsageError("--public and --license go with --to-hub")
    if not fmt or not out_path:
        raise click.UsageError("give --to-hub OWNER/NAME, or --format and --out")
    from simulate.export import export_run

    result = export_run(
        run_dir, fmt, out_path, criterion=criterion, passed_only=passed_only, force=force
    )
    names = {"turns": "rows", "deepeval": "goldens", "inspect": "samples", "phoenix": "examples"}
    what = names.get(result.format, "episodes")
    left = f", {result.left_out} left out" if result.left_out else ""
    for note in result.notes:
        err.print(f"note: {note}")
    out.print(f"wrote {result.rows} {what} ({result.format}) to {result.path}{left}")


@click.command("repair")
@click.argument("run_dir", type=click.Path())
def repair_command(run_dir: str) -> None:
    """Move shards that cannot be read (truncated, foreign) aside into RUN/quarantine/."""
    moved = RunFolder.open(run_dir).repair()
    if not moved:
        out.print(f"{run_dir}: every shard reads; nothing to repair")
        return
    for shard in moved:
        held = "rows unknown" if shard.rows is None else f"{shard.rows} rows"
        out.print(f"moved {shard.kind} shard to {shard.path} ({shard.problem}; {held} lost)")
    lost = [s for s in moved if s.kind == "episodes"]
    if lost:
        out.print(f"play the lost episodes again: simulate run ... --out {run_dir} --resume")
