"""`simulate cassette export|import`: move a run's recorded model calls between caches."""

from __future__ import annotations

import click

from simulate.cli.render.runs import print_cassette_export, print_cassette_import

CACHE_DIR_HELP = "The LLM cache folder [SIMULATE_CACHE_DIR, else the user cache folder]."


@click.group("cassette")
def cassette_group() -> None:
    """A run's recorded model calls as one file, to replay elsewhere (CI) with --replay-only."""


@cassette_group.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", "out_file", required=True, metavar="FILE", help="Cassette to write.")
@click.option("--cache-dir", type=click.Path(file_okay=False), help=CACHE_DIR_HELP)
def export_command(run_dir: str, out_file: str, cache_dir: str | None) -> None:
    """Write the calls RUN made or replayed (user, agent, judges) from the cache to FILE."""
    from simulate.llm.cassette import export_calls

    print_cassette_export(export_calls(run_dir, out_file, _cache_dir(cache_dir)))


@cassette_group.command("import")
@click.argument("cassette", type=click.Path(dir_okay=False))
@click.option("--cache-dir", type=click.Path(file_okay=False), help=CACHE_DIR_HELP)
def import_command(cassette: str, cache_dir: str | None) -> None:
    """Copy a cassette's calls into the cache, so runs replay them (--replay-only)."""
    from simulate.llm.cassette import import_calls

    folder = _cache_dir(cache_dir)
    print_cassette_import(import_calls(cassette, folder), folder)


def _cache_dir(given: str | None) -> str:
    from simulate.llm.settings import LLMSettings

    return str(LLMSettings.resolve(cache_dir=given).cache_dir)
