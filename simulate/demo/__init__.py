"""The bundled demo: Northwind Air's support agent with its example personas and scenarios.

`simulate demo` plays `personas/*.yaml` x `scenarios/*.yaml` against `agent.DemoAgent`,
offline. The agent is decent for calm users and has a few weaknesses on purpose (listed in
`agent`), so the stress personas have something to find.
"""
