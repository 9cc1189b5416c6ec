"""Personas and scenarios drafted from real conversations, to bootstrap a suite from logs.

Offline and rule-based: a scenario per sampled conversation (its task when the source gives one,
else the opening as the request, facts the user gave when the agent asked for them, the tools the
agent called as success checks), and personas from how the people wrote (how long their
messages are, whether they say please or thanks, how often they misspell). With a model
(`draft_with_llm`), each sampled conversation is read by the model, which proposes the scenario
and the persona with structured output through the LLM layer.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulate import prompts
from simulate.authoring.conversations import (
    TASK_FROM_CONVERSATION,
    RealConversation,
    ReferenceSource,
)
from simulate.errors import LLMError, RunStopped
from simulate.llm import LLM, model_spec, split_spec
from simulate.llm.pool import EndpointFlags, LLMPool
from simulate.loader import write_yaml
from simulate.runner import run_bounded
from simulate.schema import Message, Persona, Scenario, Traits

MAX_DESCRIPTION = 300
TERSE_WORDS = 6
"""Users writing at most this many words a message on average draft as `terse`."""
VERBOSE_WORDS = 20
"""Users writing at least this many words a message on average draft as `verbose`."""
POLITE = re.compile(r"(?i)\b(please|pls|thanks?|thank you|thx|cheers|appreciate)\b")
PROMPT = "draft_scenario.md.j2"

_QUESTION_FOR = re.compile(
    r"(?i)\b(?:what(?:'s| is)|may i have|can i (?:get|have)|could you (?:give|tell|provide)|"
    r"please (?:provide|give|enter|share|tell me))\s+(?:me\s+)?(?:your|the)\s+"
    r"([a-z][a-z ]{1,30}?)(?=[?,.!]|\s+(?:for|so|please|to)\b|$)"
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CODE = re.compile(r"\b(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{4,}\b")
_MAX_ANSWER_WORDS = 6


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40] or "fact"


def _clean(text: str, limit: int = MAX_DESCRIPTION) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def facts_given(messages: Sequence[Message]) -> dict[str, str]:
    """Facts the user gave: a short answer to the agent's "what is your X?" (name: X), and
    e-mail addresses and reference codes said anywhere (first of each)."""
    facts: dict[str, str] = {}
    asked: str | None = None
    for message in messages:
        if message.role == "assistant":
            found = _QUESTION_FOR.findall(message.content)
            asked = _slug(found[-1]) if found else None
            continue
        if message.role != "user":
            continue
        text = message.content.strip()
        if asked and text and len(text.split()) <= _MAX_ANSWER_WORDS:
            facts.setdefault(asked, text.rstrip(".!"))
        if email := _EMAIL.search(text):
            facts.setdefault("email", email.group(0))
        if (code := _CODE.search(text)) and code.group(0) not in facts.values():
            facts.setdefault("reference", code.group(0))
        asked = None
    return facts


def draft_task(messages: Sequence[Message], conversation_id: str) -> Scenario:
    """A scenario drafted from one conversation: its opening as the request and first message,
    the facts the user gave, the tools the agent called as success checks.

    Tagged `task:from-conversation`: its opening is the person's own words, so next-turn replay
    skips the first turn of such a conversation.
    """
    users = [m.content for m in messages if m.role == "user" and m.content.strip()]
    opening = _clean(users[0]) if users else "Hello."
    tools = list(
        dict.fromkeys(c.name for m in messages if m.role == "assistant" for c in m.tool_calls)
    )
    ident = re.sub(r"[^A-Za-z0-9_.:\-]+", "-", f"conv-{conversation_id}").strip("-")[:200]
    return Scenario(
        id=ident or "conv",
        description=opening,
        goal=f"The agent handles the request: {_clean(opening, 160)}",
        opening=opening,
        known_info=facts_given(messages),
        success={"must_call_tools": tools[-3:]},
        tags=["drafted", TASK_FROM_CONVERSATION],
    )


# --- suites ------------------------------------------------------------------------------------


def sample_conversations(
    conversations: Sequence[RealConversation], n: int, seed: int = 0
) -> list[RealConversation]:
    """``n`` conversations spread over their kinds (Taskmaster template, else all one kind),
    drawn with ``seed``: round-robin over the kinds, in a seeded order within each."""
    rng = random.Random(seed)
    by_kind: dict[str, list[RealConversation]] = defaultdict(list)
    for conversation in conversations:
        by_kind[conversation.meta.get("scenario") or ""].append(conversation)
    queues = []
    for kind in sorted(by_kind):
        members = list(by_kind[kind])
        rng.shuffle(members)
        queues.append(members)
    chosen: list[RealConversation] = []
    while len(chosen) < n and any(queues):
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(queue.pop())
    return chosen


def draft_scenarios(conversations: Sequence[RealConversation]) -> list[Scenario]:
    """One scenario per conversation: its task when the source gave one (with the person's real
    opening as `opening`), else one drafted from the conversation; ids made unique."""
    scenarios: list[Scenario] = []
    taken: set[str] = set()
    for conversation in conversations:
        users = [m.content for m in conversation.messages if m.role == "user"]
        if conversation.task is not None:
            scenario = conversation.task.model_copy(
                update={"opening": _clean(users[0]) if users else None}
            )
        else:
            scenario = draft_task(conversation.messages, conversation.conversation_id)
        scenario = scenario.model_copy(update={"id": _unique(scenario.id, taken)})
        scenarios.append(Scenario.model_validate(scenario.model_dump()))
    return scenarios


def _unique(ident: str, taken: set[str]) -> str:
    candidate, n = ident, 2
    while candidate in taken:
        candidate, n = f"{ident}_{n}", n + 1
    taken.add(candidate)
    return candidate


@dataclass
class WritingStyle:
    """How one person wrote, as draft personas group people."""

    verbosity: Literal["terse", "normal", "verbose"]
    politeness: Literal["neutral", "polite"]


def writing_style(messages: Sequence[Message]) -> WritingStyle:
    """The verbosity and politeness of a conversation's user messages."""
    texts = [m.content for m in messages if m.role == "user"]
    words = sum(len(t.split()) for t in texts) / max(1, len(texts))
    verbosity: Literal["terse", "normal", "verbose"] = (
        "terse" if words <= TERSE_WORDS else "verbose" if words >= VERBOSE_WORDS else "normal"
    )
    polite = any(POLITE.search(t) for t in texts)
    return WritingStyle(verbosity, "polite" if polite else "neutral")


def draft_personas(
    conversations: Sequence[RealConversation], source: str, license: str | None = None
) -> list[Persona]:
    """One persona per writing style seen (verbosity x politeness), most common first, each
    saying how many of the real people wrote that way."""
    styles = Counter(
        (s.verbosity, s.politeness) for s in (writing_style(c.messages) for c in conversations)
    )
    total = sum(styles.values())
    personas = []
    for (verbosity, politeness), count in styles.most_common():
        manners = "says please or thanks" if politeness == "polite" else "no please or thanks"
        personas.append(
            Persona(
                id=f"real-{verbosity}-{politeness}",
                name=f"{verbosity.capitalize()} {politeness} customer",
                description=(
                    f"Writes like {count} of the {total} people in the logs ({count / total:.0%}):"
                    f" {verbosity} messages, {manners}."
                ),
                traits=Traits(verbosity=verbosity, politeness=politeness),
                tags=["drafted"],
                source=source,
                license=license,
            )
        )
    return personas


# --- with a model --------------------------------------------------------------------------------


class DraftFact(BaseModel):
    """A fact the customer knows."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=60, pattern=r"^[a-z][a-z0-9_]*$")
    value: str = Field(min_length=1)


class DraftPersona(BaseModel):
    """The person behind the conversation, as the model reads them."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(min_length=1, description="One or two sentences on who they are.")
    verbosity: Literal["terse", "normal", "verbose"]
    politeness: Literal["rude", "neutral", "polite"]
    tone: Literal["calm", "friendly", "frustrated", "angry", "anxious"]
    patience: Literal["low", "medium", "high"]
    expertise: Literal["novice", "intermediate", "expert"]


class Draft(BaseModel):
    """A scenario and a persona drafted from one real conversation."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=3, max_length=80)
    description: str = Field(min_length=1, description="What the customer wants, in their words.")
    goal: str = Field(min_length=1, description="What success is, for people and judges.")
    opening: str = Field(min_length=1, description="The customer's first message, in their style.")
    known_info: list[DraftFact]
    unknown_info: list[str]
    instructions: list[str] = Field(description="How the customer behaves in the conversation.")
    persona: DraftPersona


def draft_prompt() -> str:
    """The system prompt of the model that drafts from a conversation."""
    return prompts.render(prompts.text(PROMPT))


def transcript(messages: Sequence[Message]) -> str:
    """A conversation as plain text for a model: `customer:` and `agent:` lines."""
    who = {"user": "customer", "assistant": "agent"}
    return "\n".join(
        f"{who[m.role]}: {m.content}" for m in messages if m.role in who and m.content.strip()
    )


async def draft_with_llm(
    llm: LLM,
    conversations: Sequence[RealConversation],
    *,
    source: str,
    seed: int = 0,
    concurrency: int = 4,
) -> tuple[list[Persona], list[Scenario]]:
    """A persona and a scenario per conversation, proposed by the model (one call each).

    Raises:
        LLMError: a reply did not fit after the LLM layer's repair round, or made an invalid
            scenario (naming the conversation).
    """
    system = draft_prompt()
    drafts: dict[int, Draft] = {}

    async def one(item: tuple[int, RealConversation]) -> None:
        index, conversation = item
        messages = [
            Message(role="system", content=system),
            Message(role="user", content=transcript(conversation.messages)),
        ]
        try:
            completion = await llm.complete(messages, output_type=Draft, seed=seed + index)
        except LLMError as exc:
            if isinstance(exc, RunStopped):
                raise
            raise LLMError(f"conversation {conversation.conversation_id}: {exc}") from None
        drafts[index] = completion.parsed

    await run_bounded(enumerate(conversations), one, concurrency=concurrency)
    personas: list[Persona] = []
    scenarios: list[Scenario] = []
    taken_personas: set[str] = set()
    taken_scenarios: set[str] = set()
    for index, conversation in enumerate(conversations):
        draft = drafts[index]
        base = _slug(draft.title)
        persona_id = _unique(f"drafted-{base}", taken_personas)
        try:
            personas.append(
                Persona(
                    id=persona_id,
                    name=draft.title,
                    description=draft.persona.description,
                    traits=Traits(**draft.persona.model_dump(exclude={"description"})),
                    tags=["drafted"],
                    source=source,
                )
            )
            scenarios.append(
                Scenario(
                    id=_unique(base, taken_scenarios),
                    description=draft.description,
                    goal=draft.goal,
                    opening=draft.opening,
                    known_info={f.name: f.value for f in draft.known_info},
                    unknown_info=[u for u in draft.unknown_info if u.strip()],
                    instructions=[i for i in draft.instructions if i.strip()],
                    tags=["drafted", f"persona:{persona_id}"],
                )
            )
        except ValidationError as exc:
            error = exc.errors()[0]
            raise LLMError(
                f"conversation {conversation.conversation_id}: the draft is not valid: "
                f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
            ) from None
    return personas, scenarios


@dataclass
class DraftFiles:
    """What `write_drafts` wrote, and what drafting by a model cost."""

    scenario_file: Path
    persona_file: Path
    scenarios: int
    personas: int
    model: str | None = None
    calls: int = 0
    cost_usd: float | None = None


async def write_drafts(
    conversations: Sequence[RealConversation],
    origin: ReferenceSource,
    out_file: str | Path,
    *,
    n: int,
    seed: int = 0,
    model: str | None = None,
    force: bool = False,
    endpoint: EndpointFlags | None = None,
) -> DraftFiles:
    """Draft scenarios into ``out_file`` and personas into `OUT.personas.yaml` from ``n`` of the
    conversations: by rules, offline, or by ``model`` (one structured call each)."""
    chosen = sample_conversations(conversations, n, seed)
    result = DraftFiles(Path(out_file), Path(out_file), 0, 0)
    how = "rule-based, offline"
    if model:
        spec = ":".join(split_spec(model_spec("--llm", model)))  # recorded as backend:model
        pool = LLMPool.from_config(endpoint or EndpointFlags())
        try:
            personas, scenarios = await draft_with_llm(
                pool.get(spec, "generator"), chosen, source=origin.source, seed=seed
            )
        finally:
            await pool.aclose()
        totals = pool.meter.totals()
        how = f"drafted by {spec}"
        result.model, result.calls, result.cost_usd = spec, totals.calls, totals.cost_usd
    else:
        scenarios = draft_scenarios(chosen)
        personas = draft_personas(conversations, origin.source, origin.license)
    scenario_file = Path(out_file)
    persona_file = scenario_file.with_name(f"{scenario_file.stem}.personas{scenario_file.suffix}")
    header = (
        f"Drafted by `simulate import conversations --draft-scenarios` ({how}) from "
        f"{len(chosen)} of {len(conversations)} conversations, seed {seed}.\n"
        f"Source: {origin.source}\nLicence of the source: {origin.license}"
        + (f"\nAttribution: {origin.attribution}" if origin.attribution else "")
        + "\nReview before use: check every fact and success check against your agent."
    )
    write_yaml(scenarios, scenario_file, header=header, force=force)
    write_yaml(personas, persona_file, header=header, force=force)
    result.scenario_file, result.persona_file = scenario_file, persona_file
    result.scenarios, result.personas = len(scenarios), len(personas)
    return result
