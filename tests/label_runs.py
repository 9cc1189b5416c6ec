"""Tiny hand-made run folders for labeling tests: two episodes with context and tool calls.

The persona, scenario and outcome carry sentinel strings that must never reach a judge.
"""

from __future__ import annotations

from pathlib import Path

from simulate.schema import Episode, Message, Outcome, Persona, Scenario, ToolCall
from simulate.store import ShardWriter, write_manifest

#: Strings only the persona, scenario and outcome hold; a judge request must contain none.
SENTINELS = (
    "Zelda Persona-Sentinel",
    "PERSONA-DESCRIPTION-SENTINEL",
    "GOAL-SENTINEL",
    "DESCRIPTION-SENTINEL",
    "CHECK-SENTINEL",
    "FORBIDDEN-SENTINEL",
    "TOOL-CHECK-SENTINEL",
    "JUDGE-CHECK-SENTINEL",
    "OUTCOME-SENTINEL",
)

PERSONA = Persona(
    id="zelda", name="Zelda Persona-Sentinel", description="PERSONA-DESCRIPTION-SENTINEL"
)
SCENARIO = Scenario(
    id="bags",
    description="DESCRIPTION-SENTINEL: questions about baggage",
    goal="GOAL-SENTINEL: the user learns the cabin bag limit",
    success={
        "must_mention": ["CHECK-SENTINEL"],
        "must_not_mention": ["FORBIDDEN-SENTINEL"],
        "must_call_tools": ["TOOL-CHECK-SENTINEL"],
        "judge": "JUDGE-CHECK-SENTINEL",
    },
)


def episode(episode_id: str, question: str, answer: str, follow_up: str) -> Episode:
    """A two-reply conversation: a looked-up answer with one tool call, then a plain reply."""
    return Episode(
        episode_id=episode_id,
        run_id="labels",
        persona_id=PERSONA.id,
        scenario_id=SCENARIO.id,
        trial=0,
        seed=0,
        persona=PERSONA.model_dump_json(),
        scenario=SCENARIO.model_dump_json(),
        messages=[
            Message(role="user", content=question),
            Message(
                role="assistant",
                content=answer,
                tool_calls=[
                    ToolCall(
                        name="search_policy",
                        arguments={"query": f"{episode_id} baggage"},
                        result={"passages": [f"{episode_id}: cabin bags up to 8 kg"]},
                    )
                ],
                context=[f"{episode_id}: cabin bags up to 8 kg"],
                latency_ms=12.5,
            ),
            Message(role="user", content=follow_up),
            Message(role="assistant", content="You're welcome!", latency_ms=3.0),
        ],
        outcome=Outcome(status="goal_reached", reason="OUTCOME-SENTINEL"),
        success=True,
        n_turns=2,
        duration_s=0.1,
        user="agenda",
        target="demo",
        created_at="2026-01-01T00:00:00+00:00",
    )


EPISODES = [
    episode("ep-a", "How heavy may my cabin bag be?", "Up to 8 kg.", "Thanks!"),
    episode("ep-b", "Can I take a bag on board?", "Yes, one bag up to 8 kg.", "Great."),
]


def write_run(run_dir: Path, episodes: list[Episode] | None = None) -> Path:
    """A run folder holding ``episodes`` (default: `EPISODES`)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(run_dir, {"simulate": "run", "run_id": "labels", "status": "complete"})
    writer = ShardWriter(run_dir)
    for row in EPISODES if episodes is None else episodes:
        writer.add(row)
    writer.flush()
    return run_dir


RUBRIC = """\
id: test
version: "1"
criteria:
  - id: resolved
    question: Did the agent answer the user's question?
    applies_to: episode
    examples:
      - {text: "user: hi\\nagent: hello", value: "no", why: nothing was asked}
  - id: grounded
    question: Is every claim in this reply supported by its context passages?
    applies_to: assistant_turn
  - id: polite
    question: How polite is this reply?
    kind: scale
    scale_min: 1
    scale_max: 5
    applies_to: assistant_turn
  - id: right_tool
    question: Was this the right tool with the right arguments?
    applies_to: tool_call
"""


def write_rubric(folder: Path) -> Path:
    """The test rubric: one criterion per unit kind, and a scale."""
    path = folder / "rubric.yaml"
    path.write_text(RUBRIC, encoding="utf-8")
    return path
