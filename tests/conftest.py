"""Shared fixtures: tiny personas and scenarios, and a helper to build episode specs."""

from __future__ import annotations

import pytest

from simulate.plan import build_plan
from simulate.schema import EpisodeSpec, Persona, Scenario


@pytest.fixture
def persona() -> Persona:
    return Persona(
        id="ana",
        name="Ana Silva",
        traits={"patience": "medium"},
        attributes={"order_number": "12345", "email": "ana@example.com"},
    )


@pytest.fixture
def scenario() -> Scenario:
    return Scenario(
        id="refund",
        description="I want a refund for my broken kettle.",
        goal="A refund is issued.",
        known_info={"order_number": "{{ persona.attributes.order_number }}"},
        unknown_info=["purchase date"],
        instructions=["Refuse a voucher and insist on a refund."],
        success={"must_mention": ["refund has been issued"], "must_call_tools": ["issue_refund"]},
    )


def make_spec(
    persona: Persona, scenario: Scenario, *, seed: int = 0, max_turns: int = 12, trial: int = 0
) -> EpisodeSpec:
    """The spec of one episode of ``persona`` x ``scenario``, rendered as the planner does."""
    specs = build_plan(
        [persona], [scenario], run_id="test", seed=seed, max_turns=max_turns, trials=trial + 1
    )
    return specs[trial]
