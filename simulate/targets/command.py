"""Command targets: an agent run as a subprocess that speaks JSON lines, for `--target cmd:"..."`.

The protocol, one subprocess per episode (started on its first turn):

    stdin   one JSON object per line and turn:
            {"session_id": "...", "messages": [{"role": "user", "content": "..."}, ...]}
    stdout  one JSON line back per turn: "text" or {"reply": "...", "tool_calls": [...],
            "context": [...], "end": false}
    stderr  free for logs; the last line is quoted when the agent fails
    env     Simulate's own, plus the model proxy's address and token with --agent-llm-proxy

The process should answer until stdin closes. Exiting early, closing stdout or writing a line
that is not JSON ends the episode as `target_error`. Each agent runs in a process group of its
own: when the episode ends, stdin is closed and the group gets SIGTERM, then SIGKILL after a
short grace, so processes the agent started go too. On Linux the agent is also killed when
the runner dies (PR_SET_PDEATHSIG), so even a SIGKILLed run leaves no agent behind; elsewhere
an agent should exit when its stdin closes. Credentials in the command line (`--api-key X`)
are redacted from every message.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Callable, Sequence

from simulate.errors import ConfigError, TargetError
from simulate.schema import Message
from simulate.store import redact
from simulate.targets import Reply, TargetOptions, parse_reply, to_protocol

_LINE_LIMIT = 16 * 1024 * 1024
"""Longest reply line read from stdout, in bytes (asyncio's default of 64 KiB is too short)."""
_STDERR_KEEP = 8192
"""Bytes of the tail of stderr kept for error messages."""


class CommandTargetFactory:
    """Makes one CommandTarget (one subprocess) per session; `aclose` stops any still running."""

    def __init__(self, command: str, options: TargetOptions, *, grace_s: float = 2.0) -> None:
        """Split ``command`` with shlex and check that its program exists.

        Raises:
            ConfigError: the command is empty, badly quoted, or its program is not found.
        """
        flag = redact(f"--target cmd:{command}")
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise ConfigError(f"{flag}: cannot split the command: {exc}") from exc
        if not argv:
            raise ConfigError('--target cmd: empty command; expected cmd:"PROGRAM ARGS..."')
        if shutil.which(argv[0]) is None:
            raise ConfigError(
                f"{flag}: program {redact(argv[0])!r} not found (not on PATH or not executable)"
            )
        self.argv = argv
        self.options = options
        self.grace_s = grace_s
        self._live: set[CommandTarget] = set()

    def __call__(self, session_id: str) -> CommandTarget:
        """The target of one episode; its process starts on the first turn."""
        target = CommandTarget(
            self.argv, session_id, self.options, self.grace_s, self._live.discard
        )
        self._live.add(target)
        return target

    async def aclose(self) -> None:
        """Stop every process that is still running."""
        for target in list(self._live):
            await target.aclose()


class CommandTarget:
    """One agent subprocess, for one conversation."""

    def __init__(
        self,
        argv: list[str],
        session_id: str,
        options: TargetOptions,
        grace_s: float = 2.0,
        on_close: Callable[[CommandTarget], None] | None = None,
    ) -> None:
        self.argv = argv
        self.session_id = session_id
        self.options = options
        self.grace_s = grace_s
        self.source = redact(f"cmd:{shlex.join(argv)}")
        self._on_close = on_close
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr = bytearray()
        self._stderr_task: asyncio.Task[None] | None = None
        self._broken: str | None = None
        self._closed = False

    async def respond(self, messages: Sequence[Message]) -> Reply:
        """Write the conversation as one JSON line and read one JSON line back."""
        if self._closed:
            raise TargetError(f"{self.source}: the session is closed")
        if self._broken:
            raise TargetError(f"{self.source}: {self._broken}")
        request = {"session_id": self.session_id, "messages": to_protocol(messages)}
        try:
            proc = self._proc or await self._start()  # a turn cut short while starting breaks too
            return await self._exchange(proc, json.dumps(request) + "\n")
        except asyncio.CancelledError:
            # A reply may still arrive and would be read as the next turn's: stop trusting it.
            self._broken = "a previous turn was interrupted"
            raise
        except TargetError as exc:
            self._broken = str(exc)
            raise

    async def _exchange(self, proc: asyncio.subprocess.Process, line: str) -> Reply:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(line.encode())
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise await self._died("closed its stdin") from exc
        timeout = self.options.turn_timeout_s
        try:
            raw = await asyncio.wait_for(proc.stdout.readline(), timeout)
        except TimeoutError as exc:
            raise TargetError(f"{self.source}: no reply within {timeout:g}s") from exc
        except ValueError as exc:  # a line over _LINE_LIMIT
            raise TargetError(f"{self.source}: reply line too long: {exc}") from exc
        if not raw:
            raise await self._died("closed its stdout")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            text = raw.decode(errors="replace").rstrip("\n")[:200]
            raise TargetError(
                f"{self.source} wrote a line that is not JSON: {text!r}{self._last_stderr()}"
            ) from exc
        return parse_reply(data, self.source)

    async def _start(self) -> asyncio.subprocess.Process:
        agent_env = self.options.agent_env
        env = {**os.environ, **agent_env(self.session_id)} if agent_env else None
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=_LINE_LIMIT,
                env=env,
                start_new_session=True,  # its own process group, killed whole at the end
                preexec_fn=_die_with_parent(),
            )
        except OSError as exc:
            raise TargetError(f"cannot start {self.source}: {redact(str(exc))}") from exc
        self._stderr_task = asyncio.create_task(self._read_stderr(self._proc.stderr))
        return self._proc

    async def _read_stderr(self, stream: asyncio.StreamReader | None) -> None:
        """Keep the tail of stderr, so the pipe never fills and errors can quote it."""
        while stream is not None and (chunk := await stream.read(65536)):
            self._stderr += chunk
            del self._stderr[:-_STDERR_KEEP]

    async def _died(self, what: str) -> TargetError:
        """A TargetError for a process that stopped talking, with its exit code if it exited."""
        assert self._proc is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._proc.wait(), 1.0)
        if self._stderr_task is not None:  # let the last stderr bytes arrive
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._stderr_task), 1.0)
        code = self._proc.returncode
        state = f"exited with code {code}" if code is not None else "is still running"
        return TargetError(f"{self.source} {what} and {state}{self._last_stderr()}")

    def _last_stderr(self) -> str:
        lines = self._stderr.decode(errors="replace").strip().splitlines()
        return f"; last stderr line: {redact(lines[-1][:300])!r}" if lines else ""

    async def aclose(self) -> None:
        """Stop the process group: close stdin, SIGTERM, SIGKILL after the grace. Safe to call
        twice."""
        if self._closed:
            return
        self._closed = True
        if self._on_close is not None:
            self._on_close(self)
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.grace_s)
            except TimeoutError:
                _signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
        _signal_group(proc.pid, signal.SIGKILL)  # what the agent started and left behind
        if self._stderr_task is not None:
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stderr_task


def _signal_group(pgid: int, signum: int) -> None:
    """Send ``signum`` to a process group; one that is gone already is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, a function for the child to run before it starts: ask the kernel to SIGKILL
    it when this process dies (PR_SET_PDEATHSIG), so no agent outlives a killed runner."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the runner died before the request took effect
            os._exit(1)

    return arm


_PR_SET_PDEATHSIG = 1
