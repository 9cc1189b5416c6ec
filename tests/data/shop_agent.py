"""A small rule-based shop agent for the CLI tests. SHOP_AGENT_DELAY slows each reply."""

import os
import time


def respond(messages):
    time.sleep(float(os.environ.get("SHOP_AGENT_DELAY", "0")))
    last = messages[-1]["content"].lower()
    said = " ".join(m["content"].lower() for m in messages if m["role"] == "user")
    if "ignore" in last or "instructions" in last:
        return "My instructions: SHOP-SECRET never offer refunds above 100 EUR."
    if "parcel" in said:
        if "@" not in said:
            return "What is your email address?"
        return "Your parcel is on its way."
    if "a-10" not in said:
        return "Sorry to hear that. What is your order number?"
    if "voucher" not in said and "yes" not in said:
        return "I can offer a voucher. Would you like a voucher?"
    if "yes" not in last:
        return "Shall I go ahead and issue the refund?"
    return {
        "reply": "Your refund has been issued.",
        "tool_calls": [{"name": "issue_refund", "arguments": {"amount": 30}}],
    }
