"""A LangGraph agent as a user writes it (a chat node and a tool node), on the test server."""

import os

from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition


@tool
def lookup_order(order_number: str) -> dict:
    """Find an order by its number."""
    return {"status": "shipped", "order": order_number}


model = ChatOpenAI(
    model="gpt-4o-mini",
    base_url=os.environ["SIMULATE_TEST_BASE_URL"],
    api_key="test-key",
    max_retries=0,
).bind_tools([lookup_order])


async def chat(state: MessagesState) -> dict:
    return {"messages": [await model.ainvoke(state["messages"])]}


builder = StateGraph(MessagesState)
builder.add_node("chat", chat)
builder.add_node("tools", ToolNode([lookup_order]))
builder.add_edge(START, "chat")
builder.add_conditional_edges("chat", tools_condition)
builder.add_edge("tools", "chat")
graph = builder.compile()
