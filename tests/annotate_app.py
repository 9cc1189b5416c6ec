"""A live `simulate annotate` app for tests: a real uvicorn server on 127.0.0.1 in a thread."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import uvicorn

from simulate.annotate.server import AnnotateApp, Settings, open_socket
from simulate.schema import Episode
from tests.label_runs import episode, write_run


def ten_episodes() -> list[Episode]:
    """Ten two-reply conversations, each with one tool call."""
    return [
        episode(f"ep-{i:02d}", f"Question {i}: how heavy may my bag be?", f"Up to {i} kg.", "Ok.")
        for i in range(10)
    ]


def make_run(folder: Path, episodes: list[Episode] | None = None) -> Path:
    """A run folder of ``episodes`` (default: ten)."""
    return write_run(folder, episodes if episodes is not None else ten_episodes())


class LiveApp:
    """`AnnotateApp` served by uvicorn on a free port of 127.0.0.1 until `stop()`."""

    def __init__(self, settings: Settings) -> None:
        self.app = AnnotateApp(settings)
        sock = open_socket("127.0.0.1", 0)
        settings.port = sock.getsockname()[1]
        self.settings = settings
        self.server = uvicorn.Server(
            uvicorn.Config(self.app.asgi(), log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[sock])), daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the annotate server did not start")
            time.sleep(0.02)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def url(self) -> str:
        return self.app.url()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
