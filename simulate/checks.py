"""A scenario's success checks, evaluated on a transcript.

The offline simulator uses them to know when its goal is reached, the runner to record which
checks failed, and rule labelers to turn them into labels. Matching is case-insensitive
substring matching on what the agent said, and exact names for tools.
"""

from __future__ import annotations

from collections.abc import Sequence

from simulate.schema import Message, SuccessChecks


def agent_text(messages: Sequence[Message]) -> str:
    """Everything the agent said, case-folded, one reply per line."""
    return "\n".join(m.content for m in messages if m.role == "assistant").casefold()


def called_tools(messages: Sequence[Message]) -> set[str]:
    """Names of the tools the agent called."""
    return {call.name for m in messages if m.role == "assistant" for call in m.tool_calls}


def has_goal_checks(success: SuccessChecks) -> bool:
    """Whether the scenario says how to recognise the goal (mentions or tool calls)."""
    return bool(success.must_mention or success.must_call_tools)


def unmet_goal_checks(success: SuccessChecks, messages: Sequence[Message]) -> list[str]:
    """The `must_mention` and `must_call_tools` checks that do not hold yet."""
    said = agent_text(messages)
    tools = called_tools(messages)
    unmet = [f"must_mention: {p!r}" for p in success.must_mention if p.casefold() not in said]
    unmet += [f"must_call_tools: {t!r}" for t in success.must_call_tools if t not in tools]
    return unmet


def violated_checks(success: SuccessChecks, messages: Sequence[Message]) -> list[str]:
    """The `must_not_mention` phrases the agent said."""
    said = agent_text(messages)
    return [f"must_not_mention: {p!r}" for p in success.must_not_mention if p.casefold() in said]


def failed_checks(success: SuccessChecks, messages: Sequence[Message]) -> list[str]:
    """Every success check that does not hold on the whole transcript."""
    return unmet_goal_checks(success, messages) + violated_checks(success, messages)
