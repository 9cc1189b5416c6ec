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
import signal
import sys
import warnings
from collections.abc import Coroutine, Sequence
from typing import Any, NoReturn, TypeVar

import click

from simulate.cli.render import err
from simulate.errors import SimulateError

T = TypeVar("T")


class Interrupted(click.exceptions.Abort):
    """Ctrl-C during a command's work, with what the user should know (what was kept)."""


class Terminated(Interrupted):
    """SIGTERM during a command's work: stopped as for Ctrl-C, exit status 143."""


def run_async(work: Coroutine[Any, Any, T], *, interrupted: str) -> T:
    """Run a command's coroutine to its end; on Ctrl-C (or SIGTERM) the work is cancelled,
    so it stores what finished, and the command says ``interrupted`` and exits 130 (143)."""
    try:
        return _loop(work)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {interrupted}") from None
    except _SigTerm:
        raise Terminated(f"terminated: {interrupted}") from None


def serve(work: Coroutine[Any, Any, Any]) -> None:
    """Run a server's coroutine until Ctrl-C, which is how a server ends (not an error)."""
    with contextlib.suppress(KeyboardInterrupt):
        _loop(work)


class _SigTerm(Exception):
    """The work was cancelled because the process got SIGTERM."""


def _loop(work: Coroutine[Any, Any, T]) -> T:
    async def main() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        terminated: list[bool] = []

        def terminate() -> None:
            terminated.append(True)
            if task is not None:
                task.cancel()  # as asyncio does for Ctrl-C: every `finally` runs

        # Not the main thread, or no signals here: SIGTERM keeps its default.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, terminate)
        try:
            return await work
        except asyncio.CancelledError:
            if terminated:
                raise _SigTerm from None
            raise
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGTERM)

    return asyncio.run(main())  # the CLI's only event loop entry


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
    from simulate.cli import annotate, authoring, cassette, data, label, realism, report, run

    for command in (
        run.run_command,
        run.demo_command,
        run.calibrate_command,
        data.show_command,
        data.export_command,
        data.repair_command,
        cassette.cassette_group,
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


def _one_line_warnings() -> None:
    """Simulate's warnings (a shard left out) print as one `warning:` line on stderr."""
    from simulate.store import ShardWarning

    shown = warnings.showwarning

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, ShardWarning):
            click.echo(f"warning: {message}", err=True)
        else:
            shown(message, category, *args, **kwargs)

    warnings.showwarning = show


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `simulate` console script."""
    debug = os.environ.get("SIMULATE_DEBUG") == "1"
    _one_line_warnings()
    try:
        status = cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:
        err.print(str(exc) if isinstance(exc, Interrupted) else "aborted")
        sys.exit(143 if isinstance(exc, Terminated) else 130)
    except SimulateError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    if isinstance(status, int) and status:  # click returns a command's `stop()` status
        sys.exit(status)
