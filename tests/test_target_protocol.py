"""The forgiving protocol: every reply shape accepted or refused, the history an agent gets
back (its own tool calls and results), session ids, and sync agents' threads."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from simulate.errors import TargetError
from simulate.runner import RunSettings, play_episode, run_episodes
from simulate.schema import Message, ToolCall
from simulate.store import RunFolder, ShardWriter
from simulate.targets import load_target, parse_reply, to_protocol
from simulate.users.agenda import AgendaUser
from tests.conftest import make_spec

LOOKUP = ToolCall(id="call_9", name="lookup", arguments={"order": "A1"}, result={"ok": True})


@pytest.mark.parametrize(
    "raw",
    [
        # Simulate's shape, arguments as an object or as a JSON string
        {
            "reply": "done",
            "tool_calls": [
                {
                    "id": "call_9",
                    "name": "lookup",
                    "arguments": {"order": "A1"},
                    "result": {"ok": True},
                }
            ],
        },
        {
            "reply": "done",
            "tool_calls": [
                {
                    "id": "call_9",
                    "name": "lookup",
                    "arguments": '{"order": "A1"}',
                    "result": {"ok": True},
                }
            ],
        },
        # OpenAI's wrapper inside Simulate's reply (the result beside it)
        {
            "reply": "done",
            "tool_calls": [
                {
                    "id": "call_9",
                    "type": "function",
                    "result": {"ok": True},
                    "function": {"name": "lookup", "arguments": '{"order": "A1"}'},
                }
            ],
        },
        # the turn as OpenAI messages: the call, its tool result, the final text
        [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"order": "A1"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_9", "content": '{"ok": true}'},
            {"role": "assistant", "content": "done"},
        ],
    ],
    ids=["simulate", "json-string-arguments", "openai-wrapper", "openai-messages"],
)
def test_every_tool_call_shape_is_recorded_the_same(raw) -> None:
    assert parse_reply(raw, "agent").model_dump() == {
        "reply": "done",
        "tool_calls": [LOOKUP.model_dump()],
        "context": [],
        "end": False,
    }


def test_an_openai_chat_completion_message_and_a_whole_completion() -> None:
    import openai.types.chat as chat

    message = {
        "role": "assistant",
        "content": "done",
        "tool_calls": [
            {
                "id": "call_9",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"order": "A1"}'},
            }
        ],
    }
    completion = {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
    }
    expected = [ToolCall(id="call_9", name="lookup", arguments={"order": "A1"})]
    for raw in (
        message,
        completion,
        chat.ChatCompletion.model_validate(completion),
        chat.ChatCompletion.model_validate(completion).choices[0].message,
    ):
        reply = parse_reply(raw, "agent")
        assert (reply.reply, reply.tool_calls) == ("done", expected)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (
            {"reply": "x", "tool_calls": [{"name": "f", "arguments": "{not json"}]},
            "tool_calls.0.arguments: not valid JSON",
        ),
        (
            {"reply": "x", "tool_calls": [{"name": "f", "arguments": "[1, 2]"}]},
            "tool_calls.0.arguments: expected an object of arguments, got list",
        ),
        (
            {"reply": "x", "tool_calls": [{"arguments": {}}]},
            "tool_calls.0.name: a tool call needs a name",
        ),
        (
            {"reply": "x", "tool_calls": [{"type": "function", "function": "lookup"}]},
            "tool_calls.0.function: expected an object",
        ),
        (
            {"reply": "x", "tool_calls": [{"type": "custom", "function": {"name": "f"}}]},
            "tool_calls.0.type: only 'function' calls, got 'custom'",
        ),
        (
            {"reply": "x", "tool_calls": [{"function": {"name": "f", "args": {}}}]},
            "tool_calls.0.function: unknown key 'args'",
        ),
        ({"reply": "x", "tool_calls": ["lookup"]}, "tool_calls.0: expected an object, got str"),
        ({"reply": "x", "tool_calls": {"name": "f"}}, "tool_calls: expected a list, got dict"),
        (
            {"reply": "x", "tool_calls": [{"name": "f", "colour": 1}]},
            "tool_calls.0.colour: Extra inputs are not permitted",
        ),
        (
            [{"role": "user", "content": "hi"}],
            "messages.0: expected an assistant or tool message in OpenAI's shape",
        ),
        (
            [{"role": "tool", "tool_call_id": "nope", "content": "1"}],
            "messages.0: a tool result for unknown call 'nope'",
        ),
        ({"choices": []}, "choices: a chat completion needs at least one choice"),
        ({"text": "wrong key"}, "text: Extra inputs are not permitted"),
        (42, "expected a string, an object with 'reply', or an OpenAI chat message, got int"),
    ],
)
def test_a_shape_that_is_not_accepted_says_what_is_wrong(raw, reason) -> None:
    with pytest.raises(TargetError) as caught:
        parse_reply(raw, "my_agent.py:respond")
    assert str(caught.value).startswith(f"my_agent.py:respond replied out of protocol: {reason}")


def test_the_history_is_openai_messages_with_tool_calls_and_results() -> None:
    messages = [
        Message(role="system", content="never sent"),
        Message(role="user", content="Where is A1?"),
        Message(
            role="assistant",
            content="It shipped.",
            tool_calls=[ToolCall(name="lookup", arguments={"order": "A1"}, result={"ok": True})],
        ),
        Message(role="user", content="Thanks"),
    ]
    assert to_protocol(messages) == [
        {"role": "user", "content": "Where is A1?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_2_0",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"order": "A1"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_2_0", "content": '{"ok": true}'},
        {"role": "assistant", "content": "It shipped."},
        {"role": "user", "content": "Thanks"},
    ]


STATELESS_AGENT = '''
import json

def respond(messages):
    """Looks the order up once, then answers from its own earlier tool result."""
    results = [json.loads(m["content"]) for m in messages if m["role"] == "tool"]
    if not results:  # the first turn: the turn as OpenAI messages, call, result and text
        return [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "lookup_order", "arguments": '{"order_number": "12345"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": '{"status": "shipped"}'},
            {"role": "assistant", "content": "What would you like to know about it?"},
        ]
    assert results == [{"status": "shipped"}], results  # its own lookup came back
    calls = [m for m in messages if m.get("tool_calls")]
    assert calls[0]["tool_calls"][0]["function"]["name"] == "lookup_order"
    return "Your order 12345 has shipped; the refund has been issued."
'''


async def test_a_stateless_agent_receives_its_own_earlier_tool_results(
    tmp_path: Path, persona, scenario
) -> None:
    agent = tmp_path / "stateless.py"
    agent.write_text(STATELESS_AGENT)
    spec = make_spec(persona, scenario)
    target = load_target(f"python:{agent}:respond")(spec.episode_id)
    episode = await play_episode(spec, AgendaUser(spec), target, RunSettings())
    assert episode.outcome.status != "target_error", episode.outcome.reason
    replies = [m for m in episode.messages if m.role == "assistant"]
    assert len(replies) >= 2  # the second reply ran the agent's assertions
    assert replies[0].tool_calls == [
        ToolCall(
            id="c1",
            name="lookup_order",
            arguments={"order_number": "12345"},
            result={"status": "shipped"},
        )
    ]


SESSION_AGENT = """
seen = []

def respond(messages, session_id):
    seen.append((session_id, len(messages)))
    return f"session {session_id}"
"""


async def test_stateful_functions_that_take_session_id_get_it(tmp_path: Path) -> None:
    agent = tmp_path / "sessions.py"
    agent.write_text(SESSION_AGENT)
    factory = load_target(f"python:{agent}:respond")
    first, second = factory("episode-a"), factory("episode-b")
    user = [Message(role="user", content="hi")]
    assert (await first.respond(user)).reply == "session episode-a"
    assert (await second.respond(user)).reply == "session episode-b"


COUNTING_AGENT = """
import threading, time

lock = threading.Lock()
now = 0
peak = 0

def respond(messages):
    global now, peak
    with lock:
        now += 1
        peak = max(peak, now)
    time.sleep(0.3)
    with lock:
        now -= 1
    return "The refund has been issued."
"""


async def test_sync_agents_run_as_many_at_once_as_the_concurrency(
    tmp_path: Path, persona, scenario
) -> None:
    from simulate.plan import build_plan

    agent = tmp_path / "counting.py"
    agent.write_text(COUNTING_AGENT)
    factory = load_target(f"python:{agent}:respond")
    specs = build_plan([persona], [scenario], run_id="t", trials=32, max_turns=1)
    settings = RunSettings(concurrency=32, stop_after_errors=0)
    await run_episodes(specs, AgendaUser, factory, ShardWriter(tmp_path / "run"), settings)
    module = next(
        m for n, m in __import__("sys").modules.items() if n.startswith("_simulate_target_counting")
    )
    assert module.peak > 6, module.peak  # the default executor would cap it near 6
    assert module.peak >= 16
    assert RunFolder(tmp_path / "run").count() == 32


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("import sys\n    sys.exit(3)", "raised SystemExit(3)"),
        ("raise KeyboardInterrupt", "raised KeyboardInterrupt"),
    ],
)
@pytest.mark.parametrize("flavour", ["def", "async def"])
async def test_an_agent_that_exits_or_interrupts_ends_only_its_episode(
    tmp_path: Path, persona, scenario, body: str, reason: str, flavour: str
) -> None:
    agent = tmp_path / "quitter.py"
    agent.write_text(f"{flavour} respond(messages):\n    {body}\n")
    from simulate.plan import build_plan

    specs = build_plan([persona], [scenario], run_id="t", trials=3, max_turns=2)
    stored = []
    await run_episodes(
        specs,
        AgendaUser,
        load_target(f"python:{agent}:respond"),
        ShardWriter(tmp_path / "run"),
        RunSettings(stop_after_errors=0),
        stored.append,
    )
    assert len(stored) == 3  # the run went on after the first episode's exit
    for episode in stored:
        assert episode.outcome.status == "target_error"
        assert episode.outcome.reason == f"TargetError: quitter.py:respond {reason}"
        assert "quitter.py" in episode.error_traceback  # the agent's own frame


def test_a_reply_over_the_size_limit_is_a_target_error(persona, scenario) -> None:
    from tests.toy_agents import FunctionTarget

    spec = make_spec(persona, scenario)
    target = FunctionTarget(lambda messages: "x" * 101)
    settings = RunSettings(max_reply_chars=100)
    episode = asyncio.run(play_episode(spec, AgendaUser(spec), target, settings))
    assert episode.outcome.status == "target_error"
    assert episode.outcome.reason == (
        "TargetError: the reply has 101 characters, over --max-reply-chars 100"
    )
    assert episode.error_traceback is None  # Simulate's own check: the reason says it all


def test_threads_of_sync_agents_are_daemons() -> None:
    from simulate.targets.python import in_thread

    names = []

    def work() -> str:
        names.append((threading.current_thread().name, threading.current_thread().daemon))
        return json.dumps("ok")

    assert asyncio.run(in_thread(work)) == '"ok"'
    assert names == [("simulate-agent", True)]


def test_report_html_embeds_at_most_a_slice_of_a_huge_reply(tmp_path: Path) -> None:
    from simulate.report.figures import build_report
    from simulate.report.html import render_report
    from simulate.simulation import RunConfig, run_sync

    agent = tmp_path / "verbose.py"
    agent.write_text("def respond(messages):\n    return 'blah ' * 40_000\n")
    shop = Path(__file__).parent / "data" / "shop"
    config = RunConfig(
        personas=[str(shop / "personas.yaml")],
        scenarios=[str(shop / "scenarios.yaml")],
        target=f"python:{agent}:respond",
        max_turns=1,
        max_reply_chars=1_000_000,
        out=str(tmp_path / "run"),
    )
    run_sync(config)
    stored = next(RunFolder(tmp_path / "run").episodes())
    assert len(stored.messages[1].content) == 200_000  # the run keeps it all
    html = render_report(build_report(tmp_path / "run"))
    assert "[195,000 more characters: simulate show RUN --episode ID]" in html
    assert len(html) < 6 * 5_000 * 3 + 200_000  # six episodes, a clipped reply each
