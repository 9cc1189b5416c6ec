"""The openai: target's tool loop and tools file, driven by ScriptedLLM."""

from __future__ import annotations

import pytest

from simulate.errors import ConfigError, TargetError
from simulate.llm.fake import ScriptedLLM
from simulate.llm.usage import MeteredLLM, episode_usage
from simulate.schema import Message, ToolCall
from simulate.targets.openai import (
    MAX_TOOL_ROUNDS,
    OpenAITarget,
    ToolSpec,
    load_handlers,
    load_tools,
)

TOOLS = [ToolSpec(name="lookup_order", result={"status": "shipped"})]


def user(text: str) -> Message:
    return Message(role="user", content=text)


async def test_tool_calls_are_answered_recorded_and_sent_back_to_the_model():
    llm = ScriptedLLM(
        [
            {"tool_calls": [{"id": "c1", "name": "lookup_order", "arguments": {"order": "A1"}}]},
            "Your order has shipped.",
        ]
    )
    target = OpenAITarget(MeteredLLM(llm, "target", "m"), "m", "You are a shop agent.", [TOOLS[0]])
    with episode_usage() as usage:  # the LLM layer counts the agent's calls for the episode
        reply = await target.respond([user("Where is my order A1?")])
    assert reply.reply == "Your order has shipped."
    assert reply.tool_calls == [
        ToolCall(
            id="c1", name="lookup_order", arguments={"order": "A1"}, result={"status": "shipped"}
        )
    ]
    second = llm.calls[1].messages
    assert [m.role for m in second] == ["system", "user", "assistant", "tool"]
    assert second[3].tool_call_id == "c1" and second[3].content == '{"status": "shipped"}'
    assert llm.calls[0].tools[0]["name"] == "lookup_order"
    assert usage[0].calls == 2 and usage[0].role == "target"


async def test_history_replays_earlier_tool_calls_in_the_vendor_order():
    llm = ScriptedLLM(["Anything else?"])
    target = OpenAITarget(llm, "m", "sys", [TOOLS[0]])
    earlier = Message(
        role="assistant",
        content="It shipped.",
        tool_calls=[ToolCall(id="c1", name="lookup_order", result={"status": "shipped"})],
    )
    await target.respond([user("Where?"), earlier, user("Thanks")])
    sent = llm.calls[0].messages
    assert [m.role for m in sent] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert sent[2].tool_calls[0].result is None  # results travel in the tool message only


async def test_handlers_compute_results_and_their_errors_go_back_to_the_model(tmp_path):
    (tmp_path / "shop_tools.py").write_text(
        "def refund(args):\n"
        "    if args['amount'] > 100:\n"
        "        raise ValueError('over the limit')\n"
        "    return {'refunded': args['amount']}\n"
    )
    tool = ToolSpec(name="refund", handler=f"python:{tmp_path / 'shop_tools.py'}:refund")
    handlers = load_handlers([tool])
    llm = ScriptedLLM(
        [
            {
                "tool_calls": [
                    {"id": "a", "name": "refund", "arguments": {"amount": 30}},
                    {"id": "b", "name": "refund", "arguments": {"amount": 300}},
                    {"id": "c", "name": "nope", "arguments": {}},
                ]
            },
            "Done.",
        ]
    )
    reply = await OpenAITarget(llm, "m", "sys", [tool], handlers).respond([user("refund")])
    results = [c.result for c in reply.tool_calls]
    assert results == [
        {"refunded": 30},
        {"error": "ValueError: over the limit"},
        {"error": "unknown tool 'nope'"},
    ]


async def test_a_model_that_never_stops_calling_tools_is_a_target_error():
    llm = ScriptedLLM([{"tool_calls": [{"name": "lookup_order"}]}] * MAX_TOOL_ROUNDS)
    with pytest.raises(TargetError, match="kept calling tools"):
        await OpenAITarget(llm, "m", "sys", [TOOLS[0]]).respond([user("hi")])


def test_tools_file_errors_name_the_file_and_the_tool(tmp_path):
    path = tmp_path / "tools.yaml"
    path.write_text("tools:\n  - name: ok\n  - name: bad\n    result: 1\n    handler: python:x:y\n")
    with pytest.raises(ConfigError, match=r"tools.yaml: tools\[1\] \('bad'\).*either `result`"):
        load_tools(str(path))
    path.write_text("tools:\n  - name: has space\n")
    with pytest.raises(ConfigError, match=r"tools\[0\].*name"):
        load_tools(str(path))
    path.write_text("tools: [\n")
    with pytest.raises(ConfigError, match=r"tools.yaml:\d+: YAML syntax error"):
        load_tools(str(path))
    path.write_text("tools:\n  - name: a\n  - name: a\n")
    with pytest.raises(ConfigError, match="duplicate tool name 'a'"):
        load_tools(str(path))
    with pytest.raises(ConfigError, match="handler 'shell:ls' must look like python:"):
        load_handlers([ToolSpec(name="t", handler="shell:ls")])


BOMB = "\n".join(
    [
        'a: &a ["x","x","x","x","x","x","x","x","x","x"]',
        *(
            f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]"
            for prev, name in zip("abcdef", "bcdefg", strict=True)
        ),
        "tools: *g",
    ]
)


def test_an_alias_bomb_in_a_tools_file_is_one_error_not_gigabytes(tmp_path):
    bomb = tmp_path / "tools.yaml"
    bomb.write_text(BOMB)
    with pytest.raises(ConfigError, match=r"tools.yaml:\d+: YAML error: this document expands"):
        load_tools(str(bomb))


def test_an_alias_bomb_in_an_llm_config_file_is_one_error(tmp_path):
    from simulate.llm.settings import LLMSettings

    bomb = tmp_path / "llm.yaml"
    bomb.write_text(BOMB.replace("tools:", "prices:"))
    with pytest.raises(ConfigError, match=r"llm.yaml:\d+: YAML error: this document expands"):
        LLMSettings.resolve(str(bomb))
