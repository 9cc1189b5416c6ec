"""An OpenAI Agents SDK agent as a user writes it, pointed at the test server."""

import os

from agents import Agent, OpenAIChatCompletionsModel, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

set_tracing_disabled(True)
client = AsyncOpenAI(base_url=os.environ["SIMULATE_TEST_BASE_URL"], api_key="test-key")


@function_tool
def lookup_order(order_number: str) -> dict:
    """Find an order by its number."""
    return {"status": "shipped", "order": order_number}


agent = Agent(
    name="support",
    instructions="You help customers with their orders.",
    tools=[lookup_order],
    model=OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=client),
)
