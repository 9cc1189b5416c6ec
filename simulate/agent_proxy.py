"""`simulate run --agent-llm-proxy`: one run's model proxy, and the agent pointed at it.

The proxy (`llm.proxy.ModelProxy`) starts before the target is loaded, so that a `python:`
agent whose module makes its OpenAI client at import reads `OPENAI_BASE_URL` and
`OPENAI_API_KEY` pointing at it: they are set in this process for the length of the run and put
back afterwards. A `cmd:` agent gets them in its environment, its base URL naming its episode
(one process per episode). An `http:` agent runs on its own: the address is given to the caller
(printed, and written to the manifest), and its key is `SIMULATE_PROXY_TOKEN`, set by the user.

Targets are watched: when the proxy could not answer an agent's call in a way that must stop the
run (a replay miss, a spent budget), the episode that made it stops the run (exit 3) instead of
being stored with the agent's error; a resume plays it again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from simulate.errors import ConfigError
from simulate.llm.pool import LLMPool
from simulate.llm.proxy import ModelProxy
from simulate.llm.usage import Sessions
from simulate.schema import Message
from simulate.targets import Reply, Target, TargetFactory

TOKEN_VARIABLE = "SIMULATE_PROXY_TOKEN"
"""Sets the proxy's token, for an agent started before the run (an `http:` target)."""


@dataclass
class AgentProxy:
    """The proxy of a run, as its target sees it."""

    proxy: ModelProxy
    _raised: set[tuple[int, str | None]] = field(default_factory=set)
    """(stop, episode) pairs already raised: each suspect episode stops once per stop."""

    @property
    def base_url(self) -> str:
        """The proxy's base URL, with calls counted for the run as a whole."""
        return self.proxy.base_url

    def env_for(self, session_id: str) -> dict[str, str]:
        """The environment of one episode's agent process: its own base URL, and the token."""
        return {
            "OPENAI_BASE_URL": self.proxy.session_url(session_id),
            "OPENAI_API_KEY": self.proxy.token,
        }

    def watch(self, make_target: TargetFactory) -> TargetFactory:
        """Targets that stop the run when their agent's call could not be answered."""
        return lambda session_id: WatchedTarget(make_target(session_id), session_id, self)

    def raise_stop(self, session_id: str | None = None) -> None:
        """Raise the first run-stopping failure that ``session_id``'s agent may have met; with
        None, the first one no episode has raised yet (the run must still stop on it)."""
        for index, stop in enumerate(self.proxy.stops):
            if session_id is None:
                if any(raised == index for raised, _ in self._raised):
                    continue
            elif session_id not in stop.episodes or (index, session_id) in self._raised:
                continue
            self._raised.add((index, session_id))
            raise stop.error


class WatchedTarget:
    """A target whose turns end in the run's stop once a call of its agent had to stop it."""

    def __init__(self, target: Target, session_id: str, proxy: AgentProxy) -> None:
        self.target = target
        self.session_id = session_id
        self._proxy = proxy

    async def respond(self, messages: Sequence[Message]) -> Reply:
        """The target's reply; the run's stop instead, when this turn's calls needed one."""
        try:
            reply = await self.target.respond(messages)
        except Exception:
            self._proxy.raise_stop(self.session_id)  # the agent failed because of it
            raise
        self._proxy.raise_stop(self.session_id)
        return reply

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)  # aclose() and whatever else the target has


@contextlib.asynccontextmanager
async def agent_proxy(
    pool: LLMPool, sessions: Sessions, *, port: int = 0, agent_elsewhere: bool = False
) -> AsyncIterator[AgentProxy]:
    """Serve the agent's model proxy for the block, with this process's environment pointed
    at it.

    Args:
        agent_elsewhere: the agent is not started by Simulate (`http:`), so its key must be
            one the user knows: `SIMULATE_PROXY_TOKEN` (a made-up one is never printed).

    Raises:
        ConfigError: the agent's upstream needs a key and has none, the port is taken, or an
            agent started elsewhere has no SIMULATE_PROXY_TOKEN to use.
    """
    upstream = pool.settings.for_role("agent")
    if not upstream.replay_only:
        upstream.client_key()  # no key for api.openai.com: say so before anything is played
    token = os.environ.get(TOKEN_VARIABLE) or None
    if agent_elsewhere and token is None:
        raise ConfigError(
            f"--agent-llm-proxy with an http: agent: set {TOKEN_VARIABLE} to a key of your"
            " choosing and start the agent with OPENAI_API_KEY set to it and OPENAI_BASE_URL="
            "http://127.0.0.1:PORT/v1 (fix PORT with --agent-llm-proxy-port)"
        )
    async with ModelProxy(pool, sessions, port=port, token=token) as proxy:
        with set_environ({"OPENAI_BASE_URL": proxy.base_url, "OPENAI_API_KEY": proxy.token}):
            yield AgentProxy(proxy)


@contextlib.contextmanager
def set_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block; put back what was there after."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
