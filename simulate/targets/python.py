"""Python targets: an agent that is a function, a class or an object in this process.

`--target python:FILE_OR_MODULE:CALLABLE` names a `.py` file or a dotted module and, in it, a
function (shared by every episode), a class (one fresh instance per episode), or an object with
`respond()`. Functions and `respond()` take the protocol's message dicts and return a protocol
reply; sync code runs in a worker thread so a blocking agent cannot stall the other episodes.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from simulate.errors import ConfigError, TargetError, did_you_mean
from simulate.schema import Message
from simulate.targets import Reply, TargetFactory, TargetOptions, parse_reply, to_protocol

EXPECTED = "expected python:FILE_OR_MODULE:CALLABLE, e.g. python:agent.py:respond"


class PythonTarget:
    """An in-process agent for one conversation: a callable, or an object with `respond()`."""

    def __init__(self, impl: Any, source: str) -> None:
        """Wrap ``impl``; ``source`` names it in error messages."""
        respond = getattr(impl, "respond", None)
        if callable(respond):
            self._respond: Callable[..., Any] = respond
            self._reset: Callable[..., Any] | None = getattr(impl, "reset", None)
        elif callable(impl):
            self._respond, self._reset = impl, None
        else:
            raise TargetError(f"{source} is neither callable nor has a respond() method")
        self.source = source
        self._started = False

    async def respond(self, messages: Sequence[Message]) -> Reply:
        """Ask the agent for its next reply; exceptions from the agent propagate unchanged."""
        if not self._started:
            self._started = True
            if callable(self._reset):
                await _call(self._reset)
        raw = await _call(self._respond, to_protocol(messages))
        return parse_reply(raw, self.source)


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """Await an async callable; run a sync one in a worker thread."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args)
    result = await asyncio.to_thread(fn, *args)
    # Callables that are not coroutine functions may still return awaitables (partials, etc.).
    return await result if inspect.isawaitable(result) else result


def load_python_target(arg: str, options: TargetOptions) -> TargetFactory:
    """Load `FILE_OR_MODULE:CALLABLE` into a factory of per-episode PythonTargets.

    Raises:
        ConfigError: the spec is malformed, the file or module cannot be imported, or the
            name is missing or not usable as an agent.
    """
    flag = f"--target python:{arg}"
    obj = import_callable(arg, flag)
    where, _, name = arg.rpartition(":")
    source = f"{Path(where).name}:{name}"
    if isinstance(obj, type):
        if not (callable(getattr(obj, "respond", None)) or "__call__" in dir(obj)):
            raise ConfigError(f"{flag}: class {name} has no respond() method")
        return lambda session_id: PythonTarget(obj(), source=source)
    if not (callable(obj) or callable(getattr(obj, "respond", None))):
        raise ConfigError(
            f"{flag}: {name} is a {type(obj).__name__}, expected a function, a class "
            "or an object with respond()"
        )
    return lambda session_id: PythonTarget(obj, source=source)


def import_callable(arg: str, flag: str) -> Any:
    """The object named by `FILE_OR_MODULE:NAME`; ConfigError (starting with ``flag``) if not."""
    where, _, name = arg.rpartition(":")
    if not where or not name:
        raise ConfigError(f"{flag}: missing ':CALLABLE' part; {EXPECTED}")
    module = _import(where, flag)
    if not hasattr(module, name):
        public = [n for n in vars(module) if not n.startswith("_")]
        raise ConfigError(f"{flag}: {where} has no {name!r}{did_you_mean(name, public)}")
    return getattr(module, name)


def _import(where: str, flag: str) -> ModuleType:
    """Import a `.py` file by path, or a dotted module by name."""
    path = Path(where)
    if where.endswith(".py") or path.is_file():
        if not path.is_file():
            near = [p.name for p in path.parent.glob("*.py")] if path.parent.is_dir() else []
            raise ConfigError(f"{flag}: file not found: {where}{did_you_mean(path.name, near)}")
        return _import_file(path.resolve(), flag)
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        if exc.name == where or where.startswith(f"{exc.name}."):
            raise ConfigError(f"{flag}: no file or module named {where!r}") from exc
        raise ConfigError(f"{flag}: importing module {where} failed: {_one_line(exc)}") from exc
    except Exception as exc:
        raise ConfigError(f"{flag}: importing module {where} failed: {_one_line(exc)}") from exc


def _import_file(path: Path, flag: str) -> ModuleType:
    """Import a file under a name of its own, with its folder importable for sibling imports."""
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    name = f"_simulate_target_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{flag}: cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[name] = module  # before exec, so dataclasses and pickling can find it
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise ConfigError(f"{flag}: importing {path} failed: {_one_line(exc)}") from exc
    return module


def _one_line(exc: BaseException) -> str:
    """`Type: message` on a single line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
