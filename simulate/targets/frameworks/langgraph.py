"""`--target langgraph:FILE:GRAPH`: a compiled LangGraph graph whose state has `messages`.

A graph with a checkpointer keeps the conversation itself, one thread per episode
(`thread_id` = the session id), and is sent only the new user message; a graph without one
is sent the messages it returned last turn plus the new one. Tool calls come from the turn's
`AIMessage.tool_calls` and `ToolMessage`s, tokens from `usage_metadata`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from simulate.errors import TargetError
from simulate.llm.usage import count_episode_usage
from simulate.schema import Message, ToolCall
from simulate.targets import Reply
from simulate.targets.frameworks import FrameworkTarget, newest_user_text
from simulate.targets.protocol import attach_result, json_or_text, normalize_tool_calls


def accepts(obj: Any) -> bool:
    """Whether ``obj`` is a compiled graph (anything with `ainvoke` and `get_graph`)."""
    return callable(getattr(obj, "ainvoke", None)) and callable(getattr(obj, "get_graph", None))


class LangGraphTarget(FrameworkTarget):
    """One conversation with a LangGraph graph (the `agent`), one checkpointer thread."""

    async def respond(self, messages: Sequence[Message]) -> Reply:
        """Invoke the graph with the new user message; read the turn's new messages."""
        from langchain_core.messages import AIMessage, HumanMessage

        sent = HumanMessage(newest_user_text(messages, self.source))
        keeps_own = getattr(self.agent, "checkpointer", None) is not None
        before = [] if keeps_own else self.history
        state = await self.agent.ainvoke(
            {"messages": [*before, sent]}, {"configurable": {"thread_id": self.session_id}}
        )
        returned = state.get("messages") if isinstance(state, dict) else None
        if not isinstance(returned, list):
            raise TargetError(f"{self.source}: the graph's state has no `messages` list")
        self.history = returned
        new = returned[_index_after(returned, sent) :]
        for message in new:
            usage = getattr(message, "usage_metadata", None)
            if isinstance(message, AIMessage) and usage:
                model = message.response_metadata.get("model_name") or "default"
                count_episode_usage(
                    "target",
                    str(model),
                    1,
                    usage.get("input_tokens", 0),
                    usage.get("output_tokens", 0),
                )
        replies = [m for m in new if isinstance(m, AIMessage)]
        return Reply(reply=_text(replies[-1]) if replies else "", tool_calls=self._calls(new))

    def _calls(self, new: Sequence[Any]) -> list[ToolCall]:
        """The turn's tool calls, each with its ToolMessage's content."""
        from langchain_core.messages import AIMessage, ToolMessage

        calls: list[ToolCall] = []
        for message in new:
            if isinstance(message, AIMessage):
                calls += normalize_tool_calls(
                    [
                        {"id": c.get("id"), "name": c["name"], "arguments": c.get("args") or {}}
                        for c in message.tool_calls
                    ],
                    self.source,
                )
            elif isinstance(message, ToolMessage):
                attach_result(calls, message.tool_call_id, json_or_text(message.content))
        return calls


def _index_after(messages: list[Any], sent: Any) -> int:
    """Where the turn's new messages start: after the last user message, the one just sent."""
    from langchain_core.messages import HumanMessage

    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], HumanMessage) and messages[index].content == sent.content:
            return index + 1
    return len(messages)


def _text(message: Any) -> str:
    """A message's text (a property in langchain-core 1.x, a callable str before)."""
    return str(message.text)


make_target = LangGraphTarget
