"""The `simulate` command: a thin click layer over the library, and the only place that exits.

A SimulateError prints as `error: <message>` with exit status 1 (3 for a RunStopped: a budget
or a replay miss stopped the work early); usage errors exit 2; `SIMULATE_DEBUG=1` shows
tracebacks.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from simulate.cli.render import err
from simulate.errors import RunStopped, SimulateError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="simulate")
def cli() -> None:
    """Simulated users for conversational agents, recorded as Hugging Face datasets."""


def _register() -> None:
    """Add every command module's commands to the group (one module per command family)."""
    from simulate.cli import authoring, data, label, realism, report, run

    for command in (
        run.run_command,
        run.demo_command,
        run.calibrate_command,
        data.show_command,
        data.export_command,
        label.label_command,
        label.golden_command,
        label.agreement_command,
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
        cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except SimulateError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(3 if isinstance(exc, RunStopped) else 1)
