"""Framework adapters against the real frameworks and the local OpenAI-compatible server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from simulate.errors import ConfigError
from simulate.llm.usage import episode_usage
from simulate.runner import RunSettings, play_episode
from simulate.schema import Message
from simulate.targets import load_target
from simulate.users.agenda import AgendaUser
from tests.conftest import make_spec
from tests.fakes.openai_server import FakeOpenAIServer, Fault

APPS = Path(__file__).parent / "data" / "frameworks"
SPECS = {
    "agents": f"agents:{APPS / 'agents_app.py'}:agent",
    "pydantic-ai": f"pydantic-ai:{APPS / 'pydantic_ai_app.py'}:agent",
    "langgraph": f"langgraph:{APPS / 'langgraph_app.py'}:graph",
}
# One loop for the module: frameworks keep async clients across agents (LangChain caches its
# httpx client process-wide), which a loop per test would leave bound to a closed loop.
one_loop = pytest.mark.asyncio(loop_scope="module")
LOOKUP = {"tool_calls": [{"name": "lookup_order", "arguments": {"order_number": "A1"}}]}


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def model(server, monkeypatch):
    """The test server, fresh, where the apps' module-level clients point."""
    server.reset()
    monkeypatch.setenv("SIMULATE_TEST_BASE_URL", server.base_url)
    return server


@one_loop
@pytest.mark.parametrize("kind", SPECS)
async def test_adapter_records_tool_calls_and_results_and_keeps_the_history(kind, model):
    target = load_target(SPECS[kind])("episode-1")
    model.queue(LOOKUP, "Order A1 has shipped.", "You are welcome.")
    opening = Message(role="user", content="Where is my order A1?")
    with episode_usage() as usage:
        first = await target.respond([opening])
        history = [opening, Message(role="assistant", content=first.reply)]
        second = await target.respond([*history, Message(role="user", content="Thanks!")])
    assert first.reply == "Order A1 has shipped."
    (call,) = first.tool_calls
    assert call.name == "lookup_order"
    assert call.arguments == {"order_number": "A1"}
    assert call.result == {"status": "shipped", "order": "A1"}
    assert second.reply == "You are welcome."
    assert second.tool_calls == []
    # The second turn's model request carries the first turn, its tool call and result included.
    sent = [m for m in model.requests[-1].body["messages"] if m["role"] != "system"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"]
    assert sent[0]["content"] == "Where is my order A1?" and sent[-1]["content"] == "Thanks!"
    # The agent's own tokens count toward the episode, as the target's.
    (row,) = usage
    assert row.role == "target" and row.model == "gpt-4o-mini" and row.calls == 3
    assert row.prompt_tokens > 0 and row.completion_tokens > 0


FAILURES = {
    # the model calls a tool the agent does not have: the SDK raises ModelBehaviorError
    "agents": (
        {"tool_calls": [{"name": "no_such_tool", "arguments": {}}]},
        ("ModelBehaviorError",),
    ),
    "pydantic-ai": (Fault.server_error(400), ("ModelHTTPError", "ModelRequestRejectedError")),
    "langgraph": (Fault.server_error(400), ("BadRequestError", "OpenAIInvalidRequestError")),
}


@one_loop
@pytest.mark.parametrize("kind", SPECS)
async def test_a_framework_exception_is_a_target_error_with_its_traceback(
    kind, model, persona, scenario
):
    reply, errors = FAILURES[kind]
    model.queue(reply)
    spec = make_spec(persona, scenario)
    target = load_target(SPECS[kind])(spec.episode_id)
    episode = await play_episode(spec, AgendaUser(spec), target, RunSettings())
    assert episode.outcome.status == "target_error"
    assert episode.outcome.reason.startswith(errors)
    assert episode.error_traceback.startswith("Traceback (most recent call last)")
    assert episode.outcome.reason.partition(":")[0] in episode.error_traceback
    framework_file = {"agents": "agents", "pydantic-ai": "pydantic_ai", "langgraph": "lang"}[kind]
    assert f"/{framework_file}" in episode.error_traceback  # the framework's own frames


@pytest.mark.parametrize("kind", SPECS)
def test_without_the_framework_the_flag_says_what_to_install(kind, monkeypatch):
    module = {"agents": "agents", "pydantic-ai": "pydantic_ai", "langgraph": "langgraph"}[kind]
    monkeypatch.setitem(sys.modules, module, None)  # what an absent package looks like
    with pytest.raises(ConfigError) as caught:
        load_target(SPECS[kind])
    assert f"pip install 'simulate[{kind}]'" in str(caught.value)
    assert str(caught.value).startswith(f"--target {kind}:")


@pytest.mark.parametrize("kind", SPECS)
def test_an_object_of_the_wrong_kind_is_refused(kind, tmp_path):
    app = tmp_path / "app.py"
    app.write_text("def agent(messages):\n    return 'hi'\n")
    with pytest.raises(ConfigError, match="is a function, expected"):
        load_target(f"{kind}:{app}:agent")
