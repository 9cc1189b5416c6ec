"""A scenario's success checks, evaluated on a transcript.

The offline simulator uses them to know when its goal is reached, the runner to record which
checks failed, and rule labelers to turn them into labels. Matching is case-insensitive, on
what the agent said:

- `must_mention` phrases count only when said, not refused or denied: a phrase inside a
  negation of its own clause ("I can't process a *refund*", "no *refund* is possible", "a
  *refund* is not possible", "unable to *deliver*", "*non-refundable*" for `refundable`) does
  not count; the same phrase said plainly elsewhere does.
- `must_not_mention` phrases count wherever they appear (a leak is a leak, negated or not).
- `must_match` / `must_not_match` are regular expressions searched in each agent reply.
- `must_call_tools` are exact tool names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

from simulate.schema import Message, SuccessChecks

_CLAUSE_BREAK = re.compile(
    r"[.;:!?\n]+|,|\s+-\s+|\b(?:but|however|although|though|whereas|yet|instead)\b"
    r"|\band\b(?=\s+(?:i|we|you|it|they|he|she|this|that|there|the|your|a|an|my|our|anything|"
    r"everything|nothing)\b)"
)
"""Where a clause ends: punctuation, a contrast ("but"), or "and" before a new subject."""

_NEGATION_BEFORE = re.compile(
    r"\b(?:not|no|never|cannot|can ?not|unable|impossible|nothing|none|neither|nor|without|"
    r"refuse[sd]?|declined?|den(?:y|ied|ies)|no longer|ineligible)\b|n't\b|\bnon[- ]?$"
)
"""A negation before the phrase, in its clause: "can't", "no", "unable to", "non-"."""

_NEGATION_AFTER = re.compile(
    r"^\W*(?:[\w'-]+\W+){0,3}?"
    r"(?:(?:is|are|was|were|will|would|can|could|has|have|had|does|do|did|shall|should)"
    r"(?:\s+not|n't|\s+never)\b|(?:isn't|aren't|wasn't|weren't|won't|can't|cannot|hasn't|"
    r"haven't|doesn't|don't|didn't)\b|\b(?:impossible|unavailable|ineligible|denied|declined|"
    r"refused|rejected|not possible|not available|not allowed|out of the question)\b)"
)
"""A denial after the phrase, in its clause: "a refund *is not possible*"."""


def _raw_replies(messages: Sequence[Message]) -> list[tuple[int, str]]:
    return [(i, m.content) for i, m in enumerate(messages) if m.role == "assistant"]


def agent_replies(messages: Sequence[Message]) -> list[tuple[int, str]]:
    """(index in ``messages``, case-folded text) of every agent reply."""
    return [(i, text.casefold()) for i, text in _raw_replies(messages)]


def called_tools(messages: Sequence[Message]) -> set[str]:
    """Names of the tools the agent called."""
    return {call.name for m in messages if m.role == "assistant" for call in m.tool_calls}


def _clause_around(text: str, start: int, end: int) -> tuple[str, str]:
    """The text of the clause before and after ``text[start:end]``."""
    before_breaks = [m.end() for m in _CLAUSE_BREAK.finditer(text, 0, start)]
    clause_start = before_breaks[-1] if before_breaks else 0
    after = _CLAUSE_BREAK.search(text, end)
    clause_end = after.start() if after else len(text)
    return text[clause_start:start], text[end:clause_end]


def negated(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is said inside a negation or refusal of its own clause."""
    before, after = _clause_around(text, start, end)
    return _NEGATION_BEFORE.search(before) is not None or _NEGATION_AFTER.search(after) is not None


def says(text: str, phrase: str) -> bool:
    """Whether ``text`` says ``phrase`` (case-insensitive) at least once outside a negation."""
    text, phrase = text.casefold(), phrase.casefold()
    if not phrase:
        return True
    start = text.find(phrase)
    while start != -1:
        if not negated(text, start, start + len(phrase)):
            return True
        start = text.find(phrase, start + 1)
    return False


@cache
def pattern(expression: str) -> re.Pattern[str]:
    """A `must_match` / `must_not_match` expression, compiled case-insensitively."""
    return re.compile(expression, re.IGNORECASE)


def mentioned_at(messages: Sequence[Message], phrase: str) -> list[int]:
    """Indexes of the agent replies that say ``phrase``, not inside a negation."""
    return [i for i, text in agent_replies(messages) if says(text, phrase)]


def contained_at(messages: Sequence[Message], phrase: str) -> list[int]:
    """Indexes of the agent replies that contain ``phrase`` at all (case-insensitive)."""
    folded = phrase.casefold()
    return [i for i, text in agent_replies(messages) if folded in text]


def matched_at(messages: Sequence[Message], expression: str) -> list[int]:
    """Indexes of the agent replies in which the regular expression ``expression`` matches."""
    compiled = pattern(expression)
    return [i for i, text in _raw_replies(messages) if compiled.search(text)]


def called_at(messages: Sequence[Message], tool: str) -> list[int]:
    """Indexes of the agent replies that called the tool ``tool``."""
    return [
        i
        for i, m in enumerate(messages)
        if m.role == "assistant" and any(c.name == tool for c in m.tool_calls)
    ]


def has_goal_checks(success: SuccessChecks) -> bool:
    """Whether the scenario says how to recognise the goal (mentions, matches or tool calls)."""
    return bool(success.must_mention or success.must_match or success.must_call_tools)


def unmet_goal_checks(success: SuccessChecks, messages: Sequence[Message]) -> list[str]:
    """The `must_mention`, `must_match` and `must_call_tools` checks that do not hold yet."""
    tools = called_tools(messages)
    unmet = [f"must_mention: {p!r}" for p in success.must_mention if not mentioned_at(messages, p)]
    unmet += [f"must_match: {p!r}" for p in success.must_match if not matched_at(messages, p)]
    unmet += [f"must_call_tools: {t!r}" for t in success.must_call_tools if t not in tools]
    return unmet


def violated_checks(success: SuccessChecks, messages: Sequence[Message]) -> list[str]:
    """The `must_not_mention` phrases the agent said and `must_not_match` expressions that
    matched."""
    violated = [
        f"must_not_mention: {p!r}" for p in success.must_not_mention if contained_at(messages, p)
    ]
    violated += [
        f"must_not_match: {p!r}" for p in success.must_not_match if matched_at(messages, p)
    ]
    return violated


def failed_checks(success: SuccessChecks, messages: Sequence[Message]) -> list[str]:
    """Every success check that does not hold on the whole transcript."""
    return unmet_goal_checks(success, messages) + violated_checks(success, messages)
