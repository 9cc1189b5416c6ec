"""Next-turn replay: the simulated user writes the next user turn of real conversations.

For each conversation of a reference set, the simulated user (offline agenda or an LLM user,
from the `users` factory) gets the person's task as its scenario and, at every user turn that
follows an agent message (and the opening), the real conversation up to that turn; what it
writes is compared with what the person wrote there: the same realism measures and
discriminator as `realism`, plus whether it discloses the same facts (the task's known values)
in the same turns. No agent is needed: the agent's side is the recorded one.

One simulator plays each conversation through its turns in order, so an offline user keeps its
bookkeeping (facts given, confirmations) as it would in a run, while always seeing the real
history. Openings of conversations whose task was drafted from the conversation itself are not
replayed: that task holds the person's opening.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulate.authoring.conversations import TASK_FROM_CONVERSATION
from simulate.errors import ConfigError, LLMError, RunStopped
from simulate.llm.pool import EndpointFlags, LLMPool
from simulate.report.realism import (
    CONFIDENCE,
    RESAMPLES,
    Conversation,
    Estimate,
    RealismReport,
    Replay,
    ReplayExample,
    Side,
    compare_sides,
    discriminator_of,
    mentions,
    side_of,
)
from simulate.runner import run_bounded
from simulate.schema import EpisodeSpec, Message, Persona, Scenario, Usage
from simulate.store import RunFolder, now_iso
from simulate.users import EpisodeState, UserFactory

EXAMPLES = 8
REPLAY_PERSONA = Persona(
    id="replay", name="Customer", description="A customer (next-turn replay of a real log)."
)
"""The persona every replayed conversation is played with: default traits."""


@dataclass
class ReplayTurn:
    """One replayed position: the person's turn there and what the simulator wrote."""

    conversation_id: str
    turn_index: int
    agent: str
    human: str
    simulated: str | None
    ended: bool
    error: str | None
    facts: list[str]


@dataclass
class ReferenceConversation:
    """A reference conversation with the task its simulated user plays."""

    conversation_id: str
    messages: list[Message]
    task: Scenario


def reference_conversations(reference_dir: str | Path) -> list[ReferenceConversation]:
    """The conversations of a reference (or run) folder that have a task to replay."""
    found = []
    for episode in RunFolder.open(reference_dir).episodes():
        try:
            task = Scenario.model_validate_json(episode.scenario)
        except ValueError:
            continue
        found.append(ReferenceConversation(episode.episode_id, list(episode.messages), task))
    return found


def replay_positions(conversation: ReferenceConversation) -> list[int]:
    """Indexes of the user turns to replay: the opening (unless the task holds it) and every
    user turn right after an agent message."""
    positions = []
    spoken = conversation.messages
    drafted = TASK_FROM_CONVERSATION in conversation.task.tags
    for i, message in enumerate(spoken):
        if message.role != "user" or not message.content.strip():
            continue
        previous = next((m for m in reversed(spoken[:i]) if m.role in ("user", "assistant")), None)
        if (previous is None and not drafted) or (
            previous is not None and previous.role == "assistant"
        ):
            positions.append(i)
    return positions


def _seed(conversation_id: str, seed: int) -> int:
    digest = hashlib.sha256(f"{seed}\0{conversation_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


async def replay_conversation(
    conversation: ReferenceConversation, make_user: UserFactory, seed: int = 0
) -> list[ReplayTurn]:
    """The simulator's turn at every replayed position of one conversation."""
    positions = replay_positions(conversation)
    agent_turns = sum(1 for m in conversation.messages if m.role == "assistant")
    spec = EpisodeSpec(
        episode_id=f"replay-{conversation.conversation_id}",
        run_id="replay",
        persona=REPLAY_PERSONA,
        scenario=conversation.task,
        trial=0,
        seed=_seed(conversation.conversation_id, seed),
        max_turns=max(12, agent_turns + 2),
    )
    user = make_user(spec)
    facts = [f.value for f in conversation.task.known_info.values() if len(f.value.strip()) >= 2]
    turns = []
    for index in positions:
        prefix = conversation.messages[:index]
        agent = next((m.content for m in reversed(prefix) if m.role == "assistant"), "")
        simulated, ended, error = None, False, None
        try:
            move = await user.next_turn(EpisodeState(spec=spec, messages=list(prefix)))
            simulated = (move.content or "").strip() or None
            ended = move.done
        except (RunStopped, asyncio.CancelledError):
            raise
        except (LLMError, ValueError) as exc:
            error = str(exc) or type(exc).__name__
        turns.append(
            ReplayTurn(
                conversation.conversation_id,
                index,
                agent,
                conversation.messages[index].content,
                simulated,
                ended,
                error,
                facts,
            )
        )
    return turns


async def replay_all(
    conversations: Sequence[ReferenceConversation],
    make_user: UserFactory,
    *,
    seed: int = 0,
    concurrency: int = 8,
) -> list[ReplayTurn]:
    """Every conversation replayed, ``concurrency`` at a time, in the conversations' order."""
    replayed: dict[int, list[ReplayTurn]] = {}

    async def one(item: tuple[int, ReferenceConversation]) -> None:
        index, conversation = item
        replayed[index] = await replay_conversation(conversation, make_user, seed)

    await run_bounded(enumerate(conversations), one, concurrency=concurrency)
    return [turn for index in range(len(conversations)) for turn in replayed[index]]


async def replay(
    reference_dir: str | Path,
    user: str,
    *,
    limit: int | None = None,
    temperature: float | None = None,
    concurrency: int = 8,
    resamples: int = RESAMPLES,
    seed: int = 0,
    endpoint: EndpointFlags | None = None,
) -> tuple[RealismReport, list[Usage]]:
    """Replay the reference set's user turns with ``user`` (`agenda` or `llm:MODEL`) and
    measure them against the people's; with the models' usage.

    Raises:
        ConfigError: another kind of user, or no conversation with a task to replay.
    """
    from simulate import users
    from simulate.authoring.conversations import TASK_FROM_CONVERSATION

    if users.parse_user(user)[0] not in ("agenda", "llm"):
        raise ConfigError(f"--user {user!r}: replay plays agenda or llm:MODEL")
    conversations = reference_conversations(reference_dir)[: limit or None]
    if not conversations:
        raise ConfigError(f"{reference_dir}: no conversation with a task to replay")
    pool = LLMPool.from_config(endpoint or EndpointFlags()) if users.needs_llm(user) else None
    try:
        make_user = users.load_user(
            user,
            users.UserOptions(get_llm=pool.get if pool else None, temperature=temperature),
        )
        turns = await replay_all(conversations, make_user, seed=seed, concurrency=concurrency)
    finally:
        if pool is not None:
            await pool.aclose()
    skipped = sum(1 for c in conversations if TASK_FROM_CONVERSATION in c.task.tags)
    report = replay_report(
        reference_dir, turns, user, skipped_openings=skipped, resamples=resamples, seed=seed
    )
    return report, pool.meter.as_usage_list() if pool else []


def _sides(turns: Sequence[ReplayTurn]) -> tuple[list[Conversation], list[Conversation]]:
    """The replayed turns as two sides of conversations: the simulator's and the people's."""
    simulated: dict[str, Conversation] = {}
    human: dict[str, Conversation] = {}
    for turn in turns:
        if turn.error is not None:
            continue
        key = turn.conversation_id
        human.setdefault(key, Conversation(key, [], facts=turn.facts)).user_messages.append(
            turn.human
        )
        if turn.simulated:
            simulated.setdefault(key, Conversation(key, [], facts=turn.facts)).user_messages.append(
                turn.simulated
            )
    return list(simulated.values()), list(human.values())


def _disclosure(
    turns: Sequence[ReplayTurn], resamples: int, confidence: float, seed: int
) -> dict[str, Estimate]:
    """Same facts, recall and precision of the facts disclosed per turn, with bootstrap
    intervals over conversations."""
    rows: dict[str, list[tuple[int, int, int, int, int]]] = {}
    for turn in turns:
        if turn.error is not None or not turn.facts:
            continue
        said = {f for f in turn.facts if mentions(turn.human, f)}
        sim = {f for f in turn.facts if turn.simulated and mentions(turn.simulated, f)}
        rows.setdefault(turn.conversation_id, []).append(
            (int(said == sim), 1, len(said & sim), len(said), len(sim))
        )
    if not rows:
        empty = Estimate(value=None, n=0)
        return {"same": empty, "recall": empty, "precision": empty}
    sums = np.asarray([np.sum(v, axis=0) for v in rows.values()], dtype=float)
    n = len(sums)
    rng = np.random.default_rng(seed)
    weights = np.vstack([np.ones((1, n)), rng.multinomial(n, np.full(n, 1 / n), size=resamples)])

    def estimate(num: int, den: int) -> Estimate:
        with np.errstate(invalid="ignore", divide="ignore"):
            values = (weights @ sums[:, num]) / (weights @ sums[:, den])
        point = values[0]
        rest = values[1:][np.isfinite(values[1:])]
        if not np.isfinite(point):
            return Estimate(value=None, n=int(sums[:, den].sum()))
        tail = (1 - confidence) / 2 * 100
        low, high = np.percentile(rest, [tail, 100 - tail]) if rest.size > 1 else (None, None)
        return Estimate(
            value=float(point),
            low=None if low is None else float(low),
            high=None if high is None else float(high),
            n=int(sums[:, den].sum()),
        )

    return {"same": estimate(0, 1), "recall": estimate(2, 3), "precision": estimate(2, 4)}


def replay_report(
    reference_dir: str | Path,
    turns: Sequence[ReplayTurn],
    user: str,
    *,
    skipped_openings: int,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> RealismReport:
    """The realism report of a replay: measures and discriminator on the replayed turns."""
    simulated, human = _sides(turns)
    measures, endings = compare_sides(
        simulated, human, resamples=resamples, confidence=confidence, seed=seed
    )
    produced = [t for t in turns if t.error is None]
    ended = np.asarray([float(t.ended) for t in produced])
    disclosure = _disclosure(turns, resamples, confidence, seed)
    from simulate.stats import wilson_interval

    ended_low, ended_high = wilson_interval(int(ended.sum()), len(ended), confidence)
    rng = random.Random(seed)
    shown = rng.sample(list(produced), min(EXAMPLES, len(produced)))
    reference = side_of(reference_dir, human)
    return RealismReport(
        mode="replay",
        created_at=now_iso(),
        simulated=Side(
            path=f"replay of {reference_dir}",
            conversations=len(simulated),
            user_messages=sum(len(c.user_messages) for c in simulated),
            user=user,
        ),
        reference=reference,
        discriminator=discriminator_of(
            simulated, human, seed=seed, resamples=resamples, confidence=confidence
        ),
        measures=measures,
        endings=endings,
        replay=Replay(
            user=user,
            positions=len(turns),
            produced=sum(1 for t in produced if t.simulated),
            ended=Estimate(
                value=float(ended.mean()) if len(ended) else None,
                low=ended_low if len(ended) else None,
                high=ended_high if len(ended) else None,
                n=len(ended),
            ),
            errors=sum(1 for t in turns if t.error is not None),
            skipped_openings=skipped_openings,
            same_facts=disclosure["same"],
            fact_recall=disclosure["recall"],
            fact_precision=disclosure["precision"],
            examples=[
                ReplayExample.model_validate(t, from_attributes=True)
                for t in sorted(shown, key=lambda t: (t.conversation_id, t.turn_index))
            ],
        ),
        confidence=confidence,
        resamples=resamples,
        seed=seed,
        notes=[
            "Next-turn replay: each simulated turn answers the real conversation up to it; "
            "the human side is the person's turn at the same positions.",
            "Turns per conversation and endings compare replayed positions, not whole "
            "conversations: the simulator ends early only where it said it was done.",
            "Intervals: percentile bootstrap over conversations (distances are never below 0, "
            "so near 0 their interval can sit above the value); the ended share: Wilson.",
        ],
    )
