"""`--target pydantic-ai:FILE:AGENT`: a pydantic-ai `Agent`, run with `agent.run`.

The conversation is pydantic-ai's message history (`all_messages()`), carried from turn to
turn; tool calls come from the turn's `ToolCallPart`s and `ToolReturnPart`s, tokens from the
run's usage.
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
    """Whether ``obj`` is a pydantic-ai agent."""
    from pydantic_ai import Agent

    return isinstance(obj, Agent)


class PydanticAITarget(FrameworkTarget):
    """One conversation with a pydantic-ai agent."""

    async def respond(self, messages: Sequence[Message]) -> Reply:
        """Run the agent on the user's newest message with the history so far."""
        text = newest_user_text(messages, self.source)
        result = await self.agent.run(text, message_history=self.history or None)
        self.history = result.all_messages()
        usage = result.usage
        if not hasattr(usage, "requests"):  # a method before pydantic-ai 2
            usage = usage()
        count_episode_usage(
            "target",
            _model_name(self.agent),
            usage.requests,
            usage.input_tokens or 0,
            usage.output_tokens or 0,
        )
        return Reply(reply=text_of(result.output), tool_calls=self._calls(result.new_messages()))

    def _calls(self, new_messages: Sequence[Any]) -> list[ToolCall]:
        """The turn's tool calls, each with what its tool returned."""
        from pydantic_ai.messages import ToolCallPart, ToolReturnPart

        calls: list[ToolCall] = []
        for message in new_messages:
            for part in message.parts:
                if isinstance(part, ToolCallPart):
                    (call,) = normalize_tool_calls(
                        [{"id": part.tool_call_id, "name": part.tool_name, "arguments": part.args}],
                        self.source,
                    )
                    calls.append(call)
                elif isinstance(part, ToolReturnPart):
                    attach_result(calls, part.tool_call_id, part.content)
        return calls


def _model_name(agent: Any) -> str:
    model = agent.model
    return str(getattr(model, "model_name", None) or model or "default")


make_target = PydanticAITarget
