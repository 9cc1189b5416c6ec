"""The reply logic shared by the test agents (and a sibling import for python: targets)."""


def make_reply(messages: list[dict], who: str) -> dict:
    """Echo the last user message with the turn number, one tool call and one context line."""
    turn = sum(1 for m in messages if m["role"] == "user")
    return {
        "reply": f"turn {turn}: you said {messages[-1]['content']!r}",
        "tool_calls": [{"name": "lookup", "arguments": {"turn": turn}}],
        "context": [who],
    }
