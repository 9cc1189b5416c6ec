"""Python targets: an agent that is a function, a class or an object in this process.

`--target python:FILE_OR_MODULE:CALLABLE` names a `.py` file or a dotted module and, in it, a
function (shared by every episode), a class (one fresh instance per episode), or an object with
`respond()`. Functions and `respond()` take the protocol's message dicts and return a protocol
reply (see `targets.protocol`); functions that take a `session_id` argument get the episode's.
Sync code runs on a daemon thread per call, so a blocking agent stalls neither the other
episodes nor the process's exit; `async def` code runs under the loop watchdog
(`targets.watchdog`), so one that blocks the event loop still ends within `--turn-timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import importlib
import importlib.util
import inspect
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from simulate.errors import ConfigError, TargetError, did_you_mean
from simulate.schema import Message
from simulate.targets import Reply, TargetFactory, TargetOptions, parse_reply, to_protocol, watchdog

EXPECTED = "expected python:FILE_OR_MODULE:CALLABLE, e.g. python:agent.py:respond"


class PythonTarget:
    """An in-process agent for one conversation: a callable, or an object with `respond()`."""

    def __init__(
        self, impl: Any, source: str, session_id: str = "", turn_timeout_s: float = 30.0
    ) -> None:
        """Wrap ``impl``; ``source`` names it in error messages; functions that take a
        ``session_id`` argument are given ``session_id``; an async agent that blocks the event
        loop for ``turn_timeout_s`` is interrupted (`targets.watchdog`)."""
        respond = getattr(impl, "respond", None)
        if callable(respond):
            self._respond: Callable[..., Any] = respond
            self._reset: Callable[..., Any] | None = getattr(impl, "reset", None)
        elif callable(impl):
            self._respond, self._reset = impl, None
        else:
            raise TargetError(f"{source} is neither callable nor has a respond() method")
        self.source = source
        self.turn_timeout_s = turn_timeout_s
        self._extra = {"session_id": session_id} if _takes(self._respond, "session_id") else {}
        self._started = False

    async def respond(self, messages: Sequence[Message]) -> Reply:
        """Ask the agent for its next reply. Its exceptions propagate unchanged, except that
        `SystemExit` and `KeyboardInterrupt` become TargetErrors: an agent's `sys.exit()` ends
        its own episode, never the run."""
        try:
            if not self._started:
                self._started = True
                if callable(self._reset):
                    await _call(self._reset, limit_s=self.turn_timeout_s)
            raw = await _call(
                self._respond, to_protocol(messages), limit_s=self.turn_timeout_s, **self._extra
            )
        except watchdog.LoopBlocked as exc:
            raise TargetError(f"{self.source}: {exc}") from exc
        except (SystemExit, KeyboardInterrupt) as exc:
            what = type(exc).__name__ + (f"({exc.code!r})" if isinstance(exc, SystemExit) else "")
            raise TargetError(f"{self.source} raised {what}") from exc
        return parse_reply(raw, self.source)


def _takes(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` accepts a keyword argument ``name`` (by name or through **kwargs)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.kind is p.VAR_KEYWORD or (p.name == name and p.kind is not p.POSITIONAL_ONLY)
        for p in parameters
    )


async def _call(fn: Callable[..., Any], *args: Any, limit_s: float, **kwargs: Any) -> Any:
    """Await an async callable under the loop watchdog; run a sync one on a thread."""
    if inspect.iscoroutinefunction(fn):
        with watchdog.guarding(limit_s):
            return await fn(*args, **kwargs)
    result = await in_thread(fn, *args, **kwargs)
    # Callables that are not coroutine functions may still return awaitables (partials, etc.).
    if inspect.isawaitable(result):
        with watchdog.guarding(limit_s):
            return await result
    return result


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking call on a thread of its own and await its result.

    Each call gets a fresh daemon thread, so as many sync agents run at once as the runner
    lets episodes run (`--concurrency`: the default executor's handful of threads would cap
    them), and an agent that never returns neither holds up other episodes nor, being a
    daemon, keeps the process alive at exit (`asyncio.to_thread`'s threads are joined).
    Context variables reach the call, as with `asyncio.to_thread`.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # the turn timed out and was cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        try:
            result, error = context.run(fn, *args, **kwargs), None
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: the agent's
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="simulate-agent", daemon=True).start()
    return await future


def load_python_target(arg: str, options: TargetOptions) -> TargetFactory:
    """Load `FILE_OR_MODULE:CALLABLE` into a factory of per-episode PythonTargets.

    Raises:
        ConfigError: the spec is malformed, the file or module cannot be imported, or the
            name is missing or not usable as an agent.
    """
    flag = f"--target python:{arg}"
    obj = import_callable(arg, flag)
    where, _, name = arg.rpartition(":")
    return python_factory(obj, f"{Path(where).name}:{name}", options, flag)


def python_factory(
    obj: Any, source: str, options: TargetOptions, flag: str = "target"
) -> TargetFactory:
    """A factory of PythonTargets for a function or an object with `respond()` (shared by
    every episode) or a class (one instance per episode).

    Raises:
        ConfigError: ``obj`` is none of those (the message starts with ``flag``).
    """
    name = source.rpartition(":")[2]
    if isinstance(obj, type):
        if not (callable(getattr(obj, "respond", None)) or "__call__" in dir(obj)):
            raise ConfigError(f"{flag}: class {name} has no respond() method")
        return lambda session_id: PythonTarget(obj(), source, session_id, options.turn_timeout_s)
    if not (callable(obj) or callable(getattr(obj, "respond", None))):
        raise ConfigError(
            f"{flag}: {name} is a {type(obj).__name__}, expected a function, a class "
            "or an object with respond()"
        )
    return lambda session_id: PythonTarget(obj, source, session_id, options.turn_timeout_s)


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
