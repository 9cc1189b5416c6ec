"""The `simulate` command: a thin click layer over the library, and the only place that exits.

`main()` turns outcomes into exit statuses: a SimulateError prints as `error: <message>` and
exits with its `exit_code` (1; 3 for a RunStopped: a budget or a replay miss stopped the work
early; 1 for a RunAborted: the agent failed its preflight or all first episodes); usage errors
exit 2; Ctrl-C exits 130; a command ends itself with `stop()` (a stop after its summary, a
failed gate). `SIMULATE_DEBUG=1` shows tracebacks. `run_async` is the CLI's one door to the
event loop: each command that plays or labels runs its whole work in one loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, NoReturn, TypeVar

import click

from simulate.cli.render import err
from simulate.errors import SimulateError

T = TypeVar("T")


class Interrupted(click.exceptions.Abort):
    """Ctrl-C during a command's work, with what the user should know (what was kept)."""


def run_async(work: Coroutine[Any, Any, T], *, interrupted: str) -> T:
    """Run a command's coroutine to its end; on Ctrl-C say ``interrupted`` and exit 130."""
    try:
        return _loop(work)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {interrupted}") from None


def serve(work: Coroutine[Any, Any, Any]) -> None:
    """Run a server's coroutine until Ctrl-C, which is how a server ends (not an error)."""
    with contextlib.suppress(KeyboardInterrupt):
        _loop(work)


def _loop(work: Coroutine[Any, Any, T]) -> T:
    # The CLI's only event loop entry. A command is one coroutine, so one loop per process:
    # `calibrate` plays all its repeats inside it (scripts use `simulation.in_loop`, kept).
    return asyncio.run(work)


def stop(code: int, message: str) -> NoReturn:
    """End the command with exit status ``code`` after one line on stderr."""
    click.echo(message, err=True)
    raise click.exceptions.Exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="simulate")
def cli() -> None:
    """Simulated users for conversational agents, recorded as Hugging Face datasets."""


def _register() -> None:
    """Add every command module's commands to the group (one module per command family)."""
    from simulate.cli import annotate, authoring, data, label, realism, report, run

    for command in (
        run.run_command,
        run.demo_command,
        run.calibrate_command,
        data.show_command,
        data.export_command,
        label.label_command,
        label.golden_command,
        label.agreement_command,
        annotate.annotate_command,
        report.report_command,
        report.compare_command,
        report.plan_size_command,
        realism.realism_command,
        authoring.validate_command,
        authoring.import_group,
        authoring.personas_group,
        authoring.scenarios_group,
        authoring.packs_group,
        authoring.schema_command,
    ):
        cli.add_command(command)


_register()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `simulate` console script."""
    debug = os.environ.get("SIMULATE_DEBUG") == "1"
    try:
        status = cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:
        err.print(str(exc) if isinstance(exc, Interrupted) else "aborted")
        sys.exit(130)
    except SimulateError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    if isinstance(status, int) and status:  # click returns a command's `stop()` status
        sys.exit(status)
