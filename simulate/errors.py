"""The errors Simulate raises on purpose.

    SimulateError            anything Simulate reports to a user as one line
    ├── ConfigError          bad files and flags: names the file, line, field and the fix
    ├── RunFolderError       a run folder that is missing, foreign, or planned differently
    │   └── RunLocked        another process is writing the same run folder
    ├── OutputError          a file could not be written (full disk, read-only folder)
    ├── LLMError             a model endpoint failed or answered out of contract
    ├── RunStopped           ends the whole run, not one episode: a spent budget, a cache
    │   │                    miss in replay-only mode (finished episodes are kept); exit 3
    │   └── RunAborted       the target failed its preflight, or the first episodes all
    │                        ended in errors: nothing worth measuring; exit 1
    └── TargetError          the agent under test failed (recorded on the episode, not raised
                             past the runner)

The CLI prints ``error: <message>`` for a SimulateError and exits with its ``exit_code`` (1,
3 for a RunStopped); everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SimulateError(Exception):
    """Base of every error Simulate reports to a user as one line."""

    exit_code = 1
    """The CLI's exit status when this error ends a command."""


class ConfigError(SimulateError):
    """A file or flag the user gave is wrong; the message says where and how to fix it."""


class RunFolderError(SimulateError):
    """A run folder is missing, is not a run folder, or belongs to a different plan."""


class RunLocked(RunFolderError):
    """Another process holds the run folder's writer lock; the message says who."""


class OutputError(SimulateError, OSError):
    """A file Simulate writes could not be written; what was there before is untouched."""


class LLMError(SimulateError):
    """A model endpoint failed or replied with something outside its contract."""


class RunStopped(SimulateError):
    """A condition that ends the whole run cleanly, not one episode (budget, replay miss)."""

    exit_code = 3


class RunAborted(RunStopped):
    """The agent (or the simulated user) is not usable: it failed the preflight turn, or the
    first episodes all ended in errors. Finished episodes are kept; the command exits 1."""

    exit_code = 1


class TargetError(SimulateError):
    """The agent under test raised, timed out, or answered outside its protocol."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_choice(kind: str, value: str, choices: Iterable[str]) -> ConfigError:
    """A ConfigError for a name that is not one of ``choices``, listing them."""
    names = sorted(choices)
    return ConfigError(
        f"unknown {kind} {value!r}{did_you_mean(value, names)}; choose from: {', '.join(names)}"
    )
