"""A pydantic-ai agent as a user writes it, pointed at the test server."""

import os

from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

provider = OpenAIProvider(base_url=os.environ["SIMULATE_TEST_BASE_URL"], api_key="test-key")
agent = Agent(OpenAIChatModel("gpt-4o-mini", provider=provider), instructions="Help with orders.")


@agent.tool_plain
def lookup_order(order_number: str) -> dict:
    """Find an order by its number."""
    return {"status": "shipped", "order": order_number}
