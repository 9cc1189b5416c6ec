"""The loop watchdog: an `async def` agent that blocks the event loop still ends its turn.

asyncio's timeouts fire only when the loop gets control back. An `async def` agent that calls
blocking code (`time.sleep`, a sync HTTP client, a long computation) never gives it back, so
`--turn-timeout` could not fire and the run would hang. While such an agent is awaited (inside
`guarding()`), a heartbeat on the loop stamps the time every 0.1 s; a watchdog thread that sees
no beat for longer than the turn timeout sends SIGUSR1 to the main thread, whose handler raises
`LoopBlocked` in the agent's code if the task then running is a guarded one (anything else
blocking the loop is left alone). The agent's turn ends as `target_error`.

What a blocking async agent gets: its episode ends once it has blocked the loop for the turn
timeout (Python code is interrupted between two bytecodes, a blocking system call such as a
sleep or a socket read at once; C code that holds on past signals only when it returns), and
every other episode in flight stalls while it blocks, so their turns may time out as well.
Write such an agent as a plain `def` (it then runs on a thread of its own) or await
non-blocking calls. The watchdog works where signals can reach the loop: a loop in the main
thread on a POSIX system (the CLI, scripts, pytest); elsewhere it does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

BEAT_S = 0.1
"""How often the loop's heartbeat stamps the time while an async agent is awaited."""
RESIGNAL_S = 1.0
"""How long the watchdog waits before signalling a loop that is still blocked again."""
_SIGNAL = getattr(signal, "SIGUSR1", None)


class LoopBlocked(BaseException):
    """Raised inside an async agent that blocked the event loop past the turn timeout.

    A BaseException, so an agent's own `except Exception` does not swallow it.
    """


class _Watch:
    """The state shared by the guarded tasks, the heartbeat, the handler and the thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.guarded: dict[asyncio.Task[Any], float] = {}
        """Tasks awaiting an async agent -> seconds they may block the loop."""
        self.beat = time.monotonic()
        self.thread: threading.Thread | None = None
        self.heartbeat: asyncio.TimerHandle | None = None
        self.previous_handler: Any = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin beating and watching (the first guarded task of a while)."""
        self.beat = time.monotonic()
        self.previous_handler = signal.signal(_SIGNAL, self.on_signal)  # type: ignore[arg-type]
        self.heartbeat = loop.call_later(BEAT_S, self.tick, loop)
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(
                target=self.watch, args=(threading.main_thread().ident,), daemon=True
            )
            self.thread.name = "simulate-watchdog"
            self.thread.start()

    def stop(self) -> None:
        """Stop beating and put the previous signal handler back (no guarded task is left)."""
        if self.heartbeat is not None:
            self.heartbeat.cancel()
            self.heartbeat = None
        signal.signal(_SIGNAL, self.previous_handler)  # type: ignore[arg-type]

    def tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self.beat = time.monotonic()
        self.heartbeat = loop.call_later(BEAT_S, self.tick, loop)

    def watch(self, main_thread: int) -> None:
        """The watchdog thread: signal the main thread while the loop is blocked too long."""
        signalled = 0.0
        while True:
            time.sleep(BEAT_S)
            with self.lock:
                if not self.guarded:
                    self.thread = None
                    return
                limit = min(self.guarded.values())
            now = time.monotonic()
            if now - self.beat > limit and now - signalled > RESIGNAL_S:
                signalled = now
                signal.pthread_kill(main_thread, _SIGNAL)  # type: ignore[arg-type]

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """In the main thread: interrupt the running task if it awaits a blocking agent."""
        with contextlib.suppress(RuntimeError):  # no loop running: not ours to act on
            task = asyncio.current_task()
            limit = self.guarded.get(task) if task is not None else None
            if limit is not None and time.monotonic() - self.beat > limit:
                raise LoopBlocked(
                    f"the agent blocked the event loop for more than {limit:g}s "
                    "(--turn-timeout): an async def agent calling blocking code"
                )


_watch = _Watch()


@contextlib.contextmanager
def guarding(limit_s: float) -> Iterator[None]:
    """Watch the loop while the body awaits an async agent; see the module docstring."""
    task = asyncio.current_task()
    usable = (
        _SIGNAL is not None
        and task is not None
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return
    assert task is not None
    with _watch.lock:
        first = not _watch.guarded
        _watch.guarded[task] = limit_s
        if first:
            _watch.start(asyncio.get_running_loop())
    try:
        yield
    finally:
        with _watch.lock:
            _watch.guarded.pop(task, None)
            if not _watch.guarded:
                _watch.stop()
