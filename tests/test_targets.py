"""The three target forms against real agents: in-process Python, a local server, a subprocess."""

from __future__ import annotations

import asyncio
import os
import shlex
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from fakes.agent_server import AgentServer

from simulate.errors import ConfigError, TargetError
from simulate.schema import Message
from simulate.targets import Reply, Target, TargetOptions, load_python_target_class, load_target
from simulate.targets.command import CommandTargetFactory
from simulate.targets.http import HttpTargetFactory
from simulate.targets.python import PythonTarget

DATA = Path(__file__).parent / "data"
AGENT = DATA / "python_agent.py"
OPTIONS = TargetOptions(turn_timeout_s=5.0)


async def talk(target: Target, *texts: str) -> list[Reply]:
    """Play one user turn per text (after a system message the agent must not see)."""
    messages = [Message(role="system", content="secret instructions")]
    replies = []
    for text in texts:
        messages.append(Message(role="user", content=text))
        reply = await target.respond(messages)
        replies.append(reply)
        messages.append(Message(role="assistant", content=reply.reply))
    return replies


def assert_echo(reply: Reply, turn: int, text: str) -> None:
    assert reply.reply == f"turn {turn}: you said {text!r}"
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [("lookup", {"turn": turn})]


# --- python ---------------------------------------------------------------------------------


async def test_python_sync_function_runs_off_the_loop_thread() -> None:
    factory = load_target(f"python:{AGENT}:respond", OPTIONS)
    first, second = await talk(factory("s1"), "hello", "bye")
    assert_echo(first, 1, "hello")
    assert_echo(second, 2, "bye")
    assert first.context[0].startswith("thread ")
    assert first.context[0] != f"thread {threading.get_ident()}"


async def test_python_blocking_agent_does_not_block_the_loop() -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    replies = await talk(load_target(f"python:{AGENT}:slow", OPTIONS)("s1"), "hi")
    ticker.cancel()
    assert replies[0].reply == "done"
    assert ticks >= 10  # the agent slept 0.3 s in a thread while the loop kept ticking


async def test_python_async_function() -> None:
    first, second = await talk(load_target(f"python:{AGENT}:arespond", OPTIONS)("s1"), "a", "b")
    assert_echo(first, 1, "a")
    assert_echo(second, 2, "b")
    assert second.context == ["async"]


async def test_python_bare_string_reply() -> None:
    (reply,) = await talk(load_target(f"python:{AGENT}:plain", OPTIONS)("s1"), "hi")
    assert reply == Reply(reply="hello")


async def test_python_class_gets_fresh_instance_per_session_and_one_reset() -> None:
    factory = load_target(f"python:{AGENT}:CountingAgent", OPTIONS)
    a, b = factory("s1"), factory("s2")
    a1, a2 = await talk(a, "x", "y")
    (b1,) = await talk(b, "z")
    assert_echo(a2, 2, "y")
    assert a1.context == a2.context == ["instance 1 resets 1"]
    assert b1.context == ["instance 2 resets 1"]


async def test_python_target_class_loader_used_by_the_demo() -> None:
    class Agent:
        def __init__(self) -> None:
            self.turns = 0

        def reset(self) -> None:
            self.turns = 100

        async def respond(self, messages: list[dict]) -> dict:
            self.turns += 1
            return {"reply": f"{self.turns}: {messages[-1]['content']}", "end": True}

    factory = load_python_target_class(Agent)
    first, second = await talk(factory("s1"), "a", "b")
    (other,) = await talk(factory("s2"), "c")
    assert (first.reply, second.reply, other.reply) == ("101: a", "102: b", "101: c")
    assert first.end is True


async def test_python_dotted_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "simulate_test_dotted_agent.py").write_text(
        "def respond(messages):\n    return {'reply': 'from a module', 'context': ['doc 1']}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "simulate_test_dotted_agent", raising=False)
    factory = load_target("python:simulate_test_dotted_agent:respond", OPTIONS)
    (reply,) = await talk(factory("s1"), "hi")
    assert reply == Reply(reply="from a module", context=["doc 1"])


async def test_python_agent_exceptions_propagate_unchanged() -> None:
    with pytest.raises(RuntimeError, match="agent exploded"):
        await talk(load_target(f"python:{AGENT}:broken", OPTIONS)("s1"), "hi")


async def test_python_reply_out_of_protocol_is_a_target_error() -> None:
    with pytest.raises(TargetError, match=r"python_agent\.py:wrong_type replied out of protocol"):
        await talk(load_target(f"python:{AGENT}:wrong_type", OPTIONS)("s1"), "hi")


async def test_python_object_without_respond_is_a_target_error() -> None:
    with pytest.raises(TargetError, match="neither callable"):
        PythonTarget(42, source="answer")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("python:agent.py", "--target python:agent.py: missing ':CALLABLE' part"),
        (f"python:{DATA}/nope.py:respond", f"file not found: {DATA}/nope.py"),
        (f"python:{DATA}/python_agnt.py:respond", "(did you mean 'python_agent.py'?)"),
        (f"python:{AGENT}:respnd", "has no 'respnd' (did you mean 'respond'?)"),
        (f"python:{AGENT}:NOT_CALLABLE", "NOT_CALLABLE is a int, expected a function"),
        (f"python:{AGENT}:NoRespond", "class NoRespond has no respond() method"),
        ("python:no_such_module_xyz:respond", "no file or module named 'no_such_module_xyz'"),
    ],
)
def test_python_bad_specs(spec: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_target(spec, OPTIONS)
    assert expected in str(info.value)
    assert str(info.value).startswith(f"--target {spec}")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import not_installed_dep_xyz\n", "ModuleNotFoundError: No module named"),
        ("def respond(:\n    pass\n", "SyntaxError"),
        ("raise SystemExit(2)\n", "SystemExit: 2"),
        ("raise RuntimeError('bad\\nconfig')\n", "RuntimeError: bad config"),
    ],
)
def test_python_file_that_fails_to_import(tmp_path: Path, source: str, expected: str) -> None:
    path = tmp_path / "bad_agent.py"
    path.write_text(source)
    with pytest.raises(ConfigError) as info:
        load_target(f"python:{path}:respond", OPTIONS)
    message = str(info.value)
    assert f"importing {path} failed: {expected}" in message
    assert "\n" not in message


def test_python_module_that_fails_to_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "simulate_test_broken_mod.py").write_text("import not_installed_dep_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="importing module simulate_test_broken_mod failed: "):
        load_target("python:simulate_test_broken_mod:respond", OPTIONS)


# --- http -----------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[AgentServer]:
    with AgentServer() as agent_server:
        yield agent_server


@pytest.fixture
async def http(server: AgentServer) -> AsyncIterator[HttpTargetFactory]:
    factory = HttpTargetFactory(server.url, OPTIONS)
    yield factory
    await factory.aclose()


async def test_http_two_turns_two_sessions(server: AgentServer, http: HttpTargetFactory) -> None:
    a1, a2 = await talk(http("s-a"), "hello", "bye")
    (b1,) = await talk(http("s-b"), "hi")
    assert_echo(a1, 1, "hello")
    assert_echo(a2, 2, "bye")
    assert a2.context == ["session s-a"]
    assert b1.context == ["session s-b"]
    assert [r["session_id"] for r in server.requests] == ["s-a", "s-a", "s-b"]
    assert server.requests[1]["messages"] == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": a1.reply},
        {"role": "user", "content": "bye"},
    ]


async def test_http_via_load_target_with_a_string_reply(server: AgentServer) -> None:
    server.reply = lambda request: "just text"
    factory = load_target(server.url, OPTIONS)
    assert isinstance(factory, HttpTargetFactory)
    try:
        (reply,) = await talk(factory("s1"), "hi")
    finally:
        await factory.aclose()
    assert reply == Reply(reply="just text")


async def test_http_500(server: AgentServer, http: HttpTargetFactory) -> None:
    server.mode = "error"
    with pytest.raises(TargetError) as info:
        await talk(http("s1"), "hi")
    assert str(info.value) == (
        f"HTTP 500 from {server.url}: Internal Server Error: the agent fell over"
    )


async def test_http_body_that_is_not_json(server: AgentServer, http: HttpTargetFactory) -> None:
    server.mode = "garbage"
    with pytest.raises(TargetError, match=r"body that is not JSON: '<html>not json</html>'"):
        await talk(http("s1"), "hi")


async def test_http_reply_out_of_protocol(server: AgentServer, http: HttpTargetFactory) -> None:
    server.reply = lambda request: {"reply": ["not", "text"]}
    with pytest.raises(TargetError, match="replied out of protocol: reply"):
        await talk(http("s1"), "hi")


async def test_http_timeout(server: AgentServer) -> None:
    server.mode, server.delay_s = "slow", 1.0
    factory = HttpTargetFactory(server.url, TargetOptions(turn_timeout_s=0.2))
    start = time.monotonic()
    try:
        with pytest.raises(TargetError, match=r"no reply from .* within 0\.2s"):
            await talk(factory("s1"), "hi")
    finally:
        await factory.aclose()
    assert time.monotonic() - start < 0.9


async def test_http_connection_refused() -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/chat"
    factory = HttpTargetFactory(url, OPTIONS)
    with pytest.raises(TargetError, match=f"cannot connect to {url}"):
        await talk(factory("s1"), "hi")
    await factory.aclose()
    await factory.aclose()  # twice is fine


@pytest.mark.parametrize("url", ["http://", "http://[::1", "ftp://example.com/chat"])
def test_http_invalid_url(url: str) -> None:
    with pytest.raises(ConfigError, match="--target"):
        HttpTargetFactory(url, OPTIONS)


# --- cmd ------------------------------------------------------------------------------------


def agent_command(*flags: str) -> str:
    return shlex.join([sys.executable, str(DATA / "jsonl_agent.py"), *flags])


def pid_of(reply: Reply) -> int:
    return int(reply.context[0].rsplit(" ", 1)[1])


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
async def make_cmd() -> AsyncIterator[Callable[..., CommandTargetFactory]]:
    factories: list[CommandTargetFactory] = []

    def make(command: str, **kwargs: object) -> CommandTargetFactory:
        options = TargetOptions(turn_timeout_s=kwargs.pop("timeout", 5.0))  # type: ignore[arg-type]
        factories.append(CommandTargetFactory(command, options, **kwargs))  # type: ignore[arg-type]
        return factories[-1]

    yield make
    for factory in factories:
        await factory.aclose()


async def test_cmd_two_turns_two_sessions(make_cmd: Callable[..., CommandTargetFactory]) -> None:
    factory = make_cmd(agent_command())
    a1, a2 = await talk(factory("s-a"), "hello", "bye")
    (b1,) = await talk(factory("s-b"), "hi")
    assert_echo(a1, 1, "hello")
    assert_echo(a2, 2, "bye")
    assert a1.context[0].startswith("session s-a pid ")
    assert b1.context[0].startswith("session s-b pid ")
    assert pid_of(a1) == pid_of(a2) != pid_of(b1)  # one process per session


async def test_cmd_via_load_target() -> None:
    factory = load_target(f"cmd:{agent_command()}", OPTIONS)
    assert isinstance(factory, CommandTargetFactory)
    try:
        (reply,) = await talk(factory("s1"), "hi")
    finally:
        await factory.aclose()
    assert_echo(reply, 1, "hi")
    assert not is_running(pid_of(reply))  # the factory stopped the session it made


async def test_cmd_aclose_stops_the_process_and_is_idempotent(
    make_cmd: Callable[..., CommandTargetFactory],
) -> None:
    target = make_cmd(agent_command())("s1")
    await target.aclose()  # before any turn: nothing to stop
    target = make_cmd(agent_command())("s1")
    (reply,) = await talk(target, "hi")
    assert is_running(pid_of(reply))
    await target.aclose()
    assert not is_running(pid_of(reply))
    await target.aclose()
    with pytest.raises(TargetError, match="closed"):
        await talk(target, "again")


async def test_cmd_terminates_a_process_that_outlives_its_stdin(
    make_cmd: Callable[..., CommandTargetFactory],
) -> None:
    target = make_cmd(agent_command("--linger"), grace_s=10.0)("s1")
    (reply,) = await talk(target, "hi")
    start = time.monotonic()
    await asyncio.wait_for(target.aclose(), 15.0)
    assert time.monotonic() - start < 2.0  # SIGTERM, not the grace running out
    assert not is_running(pid_of(reply))


async def test_cmd_kills_a_process_that_ignores_sigterm(
    make_cmd: Callable[..., CommandTargetFactory],
) -> None:
    target = make_cmd(agent_command("--linger", "--ignore-term"), grace_s=0.2)("s1")
    (reply,) = await talk(target, "hi")
    start = time.monotonic()
    await asyncio.wait_for(target.aclose(), 5.0)
    assert time.monotonic() - start < 2.0
    assert not is_running(pid_of(reply))


async def test_cmd_crash_mid_conversation(make_cmd: Callable[..., CommandTargetFactory]) -> None:
    target = make_cmd(agent_command("--crash-on-turn", "2"))("s1")
    messages = [Message(role="user", content="one")]
    assert_echo(await target.respond(messages), 1, "one")
    messages += [Message(role="assistant", content="ok"), Message(role="user", content="two")]
    with pytest.raises(TargetError) as info:
        await target.respond(messages)
    message = str(info.value)
    assert "exited with code 3" in message
    assert "last stderr line: 'boom: crashed on turn 2'" in message
    with pytest.raises(TargetError, match="exited with code 3"):
        await target.respond(messages)  # stays broken


async def test_cmd_process_that_exits_at_once(
    make_cmd: Callable[..., CommandTargetFactory],
) -> None:
    script = "import sys; sys.stderr.write('no config found\\n'); sys.exit(2)"
    target = make_cmd(shlex.join([sys.executable, "-c", script]))("s1")
    with pytest.raises(
        TargetError, match=r"exited with code 2; last stderr line: 'no config found'"
    ):
        await talk(target, "hi")


async def test_cmd_garbage_line(make_cmd: Callable[..., CommandTargetFactory]) -> None:
    target = make_cmd(agent_command("--garbage"))("s1")
    with pytest.raises(TargetError) as info:
        await talk(target, "hi")
    message = str(info.value)
    assert "wrote a line that is not JSON: 'hello, I am not JSON'" in message
    assert "last stderr line: 'got turn 1'" in message


async def test_cmd_timeout(make_cmd: Callable[..., CommandTargetFactory]) -> None:
    target = make_cmd(agent_command("--sleep", "3"), timeout=0.3)("s1")
    with pytest.raises(TargetError, match=r"no reply within 0\.3s"):
        await talk(target, "hi")


async def test_cmd_cancelled_turn_breaks_the_session(
    make_cmd: Callable[..., CommandTargetFactory],
) -> None:
    target = make_cmd(agent_command("--sleep", "0.5"))("s1")
    messages = [Message(role="user", content="hi")]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(target.respond(messages), 0.1)  # as the runner does
    await asyncio.sleep(0.6)  # the late reply is now waiting on stdout
    with pytest.raises(TargetError, match="interrupted"):
        await target.respond(messages)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("cmd:", "--target cmd: empty command"),
        ("cmd:   ", "--target cmd: empty command"),
        ("cmd:no-such-program-xyz --port 1", "program 'no-such-program-xyz' not found"),
        ('cmd:python "unclosed', "cannot split the command: No closing quotation"),
    ],
)
def test_cmd_bad_commands(spec: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_target(spec, OPTIONS)
    assert expected in str(info.value)
