"""`--target agents:FILE:AGENT`: an OpenAI Agents SDK `Agent`, run with `Runner.run`.

The conversation is the SDK's input list (`RunResult.to_input_list()`), carried from turn to
turn; tool calls come from the run's `ToolCallItem`s and `ToolCallOutputItem`s, tokens from
`context_wrapper.usage`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from simulate.llm.usage import count_episode_usage
from simulate.schema import Message, ToolCall
from simulate.targets import Reply
from simulate.targets.frameworks import FrameworkTarget, newest_user_text, text_of
from simulate.targets.protocol import attach_result, normalize_tool_calls


def accepts(obj: Any) -> bool:
    """Whether ``obj`` is an Agents SDK agent."""
    from agents import Agent

    return isinstance(obj, Agent)


class AgentsSdkTarget(FrameworkTarget):
    """One conversation with an Agents SDK agent."""

    async def respond(self, messages: Sequence[Message]) -> Reply:
        """Run the agent on the conversation so far plus the user's newest message."""
        from agents import Runner

        text = newest_user_text(messages, self.source)
        result = await Runner.run(self.agent, [*self.history, {"role": "user", "content": text}])
        self.history = result.to_input_list()
        usage = result.context_wrapper.usage
        count_episode_usage(
            "target",
            _model_name(self.agent),
            usage.requests,
            usage.input_tokens,
            usage.output_tokens,
        )
        return Reply(reply=text_of(result.final_output), tool_calls=self._calls(result.new_items))

    def _calls(self, items: Sequence[Any]) -> list[ToolCall]:
        """The run's function calls, each with its output."""
        from agents import ToolCallItem, ToolCallOutputItem

        calls: list[ToolCall] = []
        for item in items:
            raw = item.raw_item
            if isinstance(item, ToolCallItem) and getattr(raw, "type", "") == "function_call":
                (call,) = normalize_tool_calls(
                    [{"id": raw.call_id, "name": raw.name, "arguments": raw.arguments}],
                    self.source,
                )
                calls.append(call)
            elif isinstance(item, ToolCallOutputItem):
                call_id = raw.get("call_id") if isinstance(raw, dict) else None
                attach_result(calls, call_id, item.output)
        return calls


def _model_name(agent: Any) -> str:
    """The agent's model as text: a name, or the model object's `model`."""
    model = agent.model
    return str(getattr(model, "model", None) or model or "default")


make_target = AgentsSdkTarget
