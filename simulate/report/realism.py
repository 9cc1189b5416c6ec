"""Realism: how far simulated users are from people, measured on the user side of conversations.

Two sides, each a list of conversations' user messages: the simulated (a run, or next-turn
replays) and the human (a reference set from `simulate import conversations`). Measures, each
with a bootstrap interval over conversations (resampled with replacement within a side):

    message length        words per user message: mean per side; Wasserstein distance and KS
    turns                 user messages per conversation: mean per side; Wasserstein distance
    lexical diversity     distinct-1 and distinct-2 per side; Jaccard overlap of the two
                          vocabularies; Jensen-Shannon divergence of the word distributions
    questions             share of user messages that ask something ("?" or a question opening)
    corrections           share with a self-repair ("actually", "I mean", "wait", "*fix")
    disclosure            share of a conversation's words in its opening (all at once = 1), and
                          of the facts it mentions (its scenario's known values) in the opening
    politeness, typos     share of messages with please/thanks; share of words that are one edit
                          from a common word of the pooled corpus and rare themselves
    endings               how the user's last message reads (closing, confirmation, question,
                          other) and who has the last word; total variation distance

and the discriminator (`report.discriminator`), whose ROC AUC is the headline. The result is a
typed `RealismReport`: `simulate realism --json` prints it, `RUN/realism.json` stores it, and the
run report and card show it. It holds no NaN: a figure that cannot be computed is null.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from simulate.authoring.drafts import POLITE
from simulate.errors import ConfigError, RunFolderError
from simulate.schema import Model, Scenario
from simulate.store import RunFolder, now_iso, write_atomic

REALISM_FILE = "realism.json"
CONFIDENCE = 0.95
RESAMPLES = 500
TYPO_KNOWN_COUNT = 3
"""A word seen this often in the pooled corpus is a known word, never a typo."""
TYPO_MIN_LENGTH = 4

WORD = re.compile(r"[a-z0-9']+")
QUESTION = re.compile(
    r"\?|^\s*(what|where|when|who|why|how|which|do|does|did|can|could|is|are|will|would|may|"
    r"should|have|has)\b",
    re.IGNORECASE,
)
REPAIR = re.compile(
    r"(?i)\b(actually|i mean|i meant|wait|scratch that|correction|make that|my bad|oops)\b|"
    r"^\s*\*\w|\bno,? (?:sorry|i meant|make it)\b"
)
CLOSING = re.compile(
    r"(?i)\b(thanks|thank you|thx|bye|goodbye|cheers|have a (?:nice|good|great)|that's all|"
    r"that is all|that's everything|perfect|awesome|great)\b"
)
CONFIRMATION = re.compile(
    r"(?i)^\W*(yes|yeah|yep|yup|sure|ok|okay|correct|right|looks (?:good|right|great)|"
    r"sounds (?:good|great)|that's (?:right|correct|it)|it is|that is)\b"
)
ENDINGS = ("closing", "confirmation", "question", "other")
Ending = Literal["closing", "confirmation", "question", "other"]


# --- the result --------------------------------------------------------------------------------


class Estimate(Model):
    """A figure with its bootstrap interval and the number of units it rests on."""

    value: float | None
    low: float | None = None
    high: float | None = None
    n: int = 0
    """Units behind the figure (conversations, messages or turns; the measure says which)."""

    @field_validator("value", "low", "high")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        return value if value is None or math.isfinite(value) else None


SHARE_MEASURES = (
    "question_rate",
    "repair_rate",
    "politeness_rate",
    "typo_rate",
    "opening_share",
    "facts_in_opening",
    "agent_last_word",
)
"""The measures that are shares of messages or conversations (shown as percentages)."""


class Measure(Model):
    """One measure on both sides, and how far apart they are."""

    id: str
    name: str
    what: str
    """What is counted, and over which units."""
    simulated: Estimate | None
    human: Estimate | None
    distance: Estimate | None = None
    """How far apart the sides are (`distance_kind`); for rates, simulated minus human."""
    distance_kind: (
        Literal["wasserstein", "ks", "jsd", "jaccard", "difference", "total_variation"] | None
    ) = None
    p_value: float | None = None
    """For the KS statistic: the two-sample test's p-value."""

    @field_validator("p_value")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        return value if value is None or math.isfinite(value) else None


class Giveaway(Model):
    """A feature of the discriminator: an n-gram and how much it leans to one side."""

    feature: str
    kind: Literal["word", "char"]
    weight: float
    """Logistic-regression coefficient: positive leans simulated, negative human."""
    simulated_share: float
    """Share of simulated turns containing it."""
    human_share: float
    """Share of human turns containing it."""


class Discriminator(Model):
    """The classifier that tells simulated from human user turns."""

    auc: Estimate
    """Cross-validated ROC AUC (0.5: indistinguishable; 1.0: always told apart), n = turns."""
    folds: int
    simulated_turns: int
    human_turns: int
    giveaways: list[Giveaway]
    """What gives the simulator away most (features leaning simulated), strongest first."""
    human_tells: list[Giveaway]
    """What people write that the simulator does not (features leaning human)."""
    method: str = (
        "TF-IDF of word 1-2-grams and character 2-4-grams, logistic regression, "
        "cross-validated with folds grouped by conversation; interval: bootstrap over "
        "conversations"
    )


class EndingShare(Model):
    """Share of conversations whose user's last message reads one way."""

    kind: Ending
    simulated: Estimate
    human: Estimate


class Side(Model):
    """One side of the comparison."""

    path: str
    conversations: int
    user_messages: int
    user: str | None = None
    """The simulated user's spec (simulated side)."""
    source: str | None = None
    """Where the conversations come from (reference side)."""
    license: str | None = None


class ReplayExample(Model):
    """One replayed turn: the agent's message before it, the person's turn, the simulator's."""

    conversation_id: str
    turn_index: int
    agent: str
    human: str
    simulated: str | None
    ended: bool


class Replay(Model):
    """Next-turn replay figures: the simulator wrote the next user turn of real prefixes."""

    user: str
    positions: int
    """User turns replayed."""
    produced: int
    """Of those, how many the simulator answered with a message."""
    ended: Estimate
    """Share of positions where the simulator ended the conversation while the person went on."""
    errors: int
    """Positions where the simulator failed (counted, not compared)."""
    skipped_openings: int
    """Openings not replayed: their task was drafted from the conversation, so holds them."""
    same_facts: Estimate
    """Share of turns disclosing exactly the facts the person disclosed in that turn."""
    fact_recall: Estimate
    """Of the facts people disclosed in a turn, the share the simulator disclosed too."""
    fact_precision: Estimate
    """Of the facts the simulator disclosed in a turn, the share the person disclosed too."""
    examples: list[ReplayExample] = Field(default_factory=list)


class RealismReport(Model):
    """Everything `simulate realism` measured: the result written to `RUN/realism.json`."""

    version: int = 1
    mode: Literal["run", "replay"]
    created_at: str
    simulated: Side
    reference: Side
    discriminator: Discriminator
    measures: list[Measure]
    endings: list[EndingShare]
    replay: Replay | None = None
    confidence: float = CONFIDENCE
    resamples: int = RESAMPLES
    seed: int = 0
    notes: list[str] = Field(default_factory=list)

    def measure(self, measure_id: str) -> Measure:
        """The measure with this id."""
        return next(m for m in self.measures if m.id == measure_id)


# --- the sides ------------------------------------------------------------------------------------


@dataclass
class Conversation:
    """The user side of one conversation, as the measures see it."""

    conversation_id: str
    user_messages: list[str]
    facts: list[str] = field(default_factory=list)
    """Values the user knew (its scenario's `known_info`), to see when they are disclosed."""
    agent_last: bool = False
    """Whether the agent had the last word."""


def conversations_of(folder: str | Path) -> list[Conversation]:
    """The conversations of a run or reference folder, user side.

    Raises:
        RunFolderError: not a run folder, or no conversations with user messages.
    """
    found = []
    for episode in RunFolder.open(folder).episodes():
        spoken = [m for m in episode.messages if m.role in ("user", "assistant") and m.content]
        users = [m.content for m in spoken if m.role == "user"]
        if not users:
            continue
        found.append(
            Conversation(
                episode.episode_id,
                users,
                facts=scenario_facts(episode.scenario),
                agent_last=bool(spoken) and spoken[-1].role == "assistant",
            )
        )
    if not found:
        raise RunFolderError(f"{str(folder)!r} holds no conversation with a user message")
    return found


def scenario_facts(scenario_json: str) -> list[str]:
    """The known fact values of a stored scenario (empty when it has none or is not one)."""
    try:
        scenario = Scenario.model_validate_json(scenario_json)
    except ValueError:
        return []
    return [f.value for f in scenario.known_info.values() if len(f.value.strip()) >= 2]


def mentions(text: str, value: str) -> bool:
    """Whether ``text`` says ``value`` (case-insensitive, as a whole word or phrase)."""
    pattern = rf"(?<![\w]){re.escape(value.strip().casefold())}(?![\w])"
    return re.search(pattern, text.casefold()) is not None


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits, apostrophes)."""
    return WORD.findall(text.lower())


def ending_of(conversation: Conversation) -> Ending:
    """How the user's last message reads: closing, confirmation, question or other."""
    last = conversation.user_messages[-1]
    if CLOSING.search(last):
        return "closing"
    if CONFIRMATION.search(last):
        return "confirmation"
    if QUESTION.search(last):
        return "question"
    return "other"


def typo_words(counts: Counter[str]) -> set[str]:
    """Words of a corpus that look misspelled: rare (seen fewer than TYPO_KNOWN_COUNT times),
    at least TYPO_MIN_LENGTH letters, and one edit (delete, swap, replace, insert) from a known
    word. Without a dictionary, the corpus itself says what is common."""
    known = {w for w, n in counts.items() if n >= TYPO_KNOWN_COUNT}
    letters = "abcdefghijklmnopqrstuvwxyz"
    typos = set()
    for word, n in counts.items():
        if n >= TYPO_KNOWN_COUNT or len(word) < TYPO_MIN_LENGTH or not word.isalpha():
            continue
        splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
        edits = {a + b[1:] for a, b in splits if b}
        edits |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
        edits |= {a + c + b[1:] for a, b in splits if b for c in letters}
        edits |= {a + c + b for a, b in splits for c in letters}
        if (edits - {word}) & known:
            typos.add(word)
    return typos


# --- measuring --------------------------------------------------------------------------------


@dataclass
class _Columns:
    """Per-conversation counts of one side, so a bootstrap resample is a weighted sum."""

    conversations: list[Conversation]
    words_per_message: np.ndarray
    message_conversation: np.ndarray
    turns: np.ndarray
    counts: dict[str, np.ndarray]
    unigrams: object  # scipy.sparse matrix, conversations x vocabulary
    bigrams: object
    ending: list[Ending]


def _columns(
    conversations: Sequence[Conversation], vocabulary: dict[str, int], bigrams: dict[str, int]
) -> _Columns:
    from scipy import sparse

    rows, cols, rows2, cols2 = [], [], [], []
    lengths, owner = [], []
    counts: dict[str, list[float]] = {
        k: []
        for k in (
            "messages",
            "questions",
            "repairs",
            "polite",
            "words",
            "opening_words",
            "facts_mentioned",
            "facts_in_opening",
            "agent_last",
        )
    }
    for c, conversation in enumerate(conversations):
        tokens_per = [words(m) for m in conversation.user_messages]
        for tokens in tokens_per:
            lengths.append(len(tokens))
            owner.append(c)
            for token in tokens:
                rows.append(c)
                cols.append(vocabulary[token])
            for pair in pairwise(tokens):
                rows2.append(c)
                cols2.append(bigrams[" ".join(pair)])
        messages = conversation.user_messages
        mentioned = [f for f in conversation.facts if any(mentions(m, f) for m in messages)]
        counts["messages"].append(len(messages))
        counts["questions"].append(sum(bool(QUESTION.search(m)) for m in messages))
        counts["repairs"].append(sum(bool(REPAIR.search(m)) for m in messages))
        counts["polite"].append(sum(bool(POLITE.search(m)) for m in messages))
        counts["words"].append(sum(len(t) for t in tokens_per))
        counts["opening_words"].append(len(tokens_per[0]))
        counts["facts_mentioned"].append(len(mentioned))
        counts["facts_in_opening"].append(sum(mentions(messages[0], f) for f in mentioned))
        counts["agent_last"].append(float(conversation.agent_last))
    n = len(conversations)
    ones = np.ones(len(rows))
    unigram = sparse.csr_matrix((ones, (rows, cols)), shape=(n, max(1, len(vocabulary))))
    bigram = sparse.csr_matrix(
        (np.ones(len(rows2)), (rows2, cols2)), shape=(n, max(1, len(bigrams)))
    )
    return _Columns(
        conversations=list(conversations),
        words_per_message=np.asarray(lengths, dtype=float),
        message_conversation=np.asarray(owner, dtype=int),
        turns=np.asarray(counts["messages"], dtype=float),
        counts={k: np.asarray(v, dtype=float) for k, v in counts.items()},
        unigrams=unigram,
        bigrams=bigram,
        ending=[ending_of(c) for c in conversations],
    )


def _index(sides: Sequence[Sequence[Conversation]]) -> tuple[dict[str, int], dict[str, int]]:
    vocabulary: dict[str, int] = {}
    bigrams: dict[str, int] = {}
    for side in sides:
        for conversation in side:
            for message in conversation.user_messages:
                tokens = words(message)
                for token in tokens:
                    vocabulary.setdefault(token, len(vocabulary))
                for pair in pairwise(tokens):
                    bigrams.setdefault(" ".join(pair), len(bigrams))
    return vocabulary, bigrams


def _weights(n: int, size: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap weights of one side's ``n`` conversations: row 0 is the sample itself (all
    ones), rows 1.. count how often each conversation was drawn in a resample of ``size``."""
    drawn = rng.multinomial(size, np.full(n, 1 / n), size=resamples)
    return np.vstack([np.ones((1, n)), drawn]).astype(float)


def _estimate(
    values: np.ndarray, n: int, confidence: float, *, matched: bool | None = None
) -> Estimate:
    """Row 0 is the point value, the other rows give a percentile interval.

    ``matched`` marks figures that depend on how much text they see (distinct-n, overlap,
    divergence), which a resample with repeated conversations lowers: True (sides resampled to
    equal size) takes the resamples' median as the value; False (sides of equal size) keeps the
    sample's value and shifts the interval by the resamples' bias; None is a plain figure.
    """
    rest = values[1:][np.isfinite(values[1:])]
    point = float(np.median(rest)) if matched and rest.size else float(values[0])
    if not math.isfinite(point):
        return Estimate(value=None, n=n)
    if rest.size < 2:
        return Estimate(value=point, n=n)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(rest, [tail, 100 - tail])
    if matched is False:
        bias = float(np.median(rest)) - point
        low, high = low - bias, high - bias
    return Estimate(value=point, low=float(low), high=float(high), n=n)


def _ratio(weights: np.ndarray, num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ num) / (weights @ den)


def _distinct(weights: np.ndarray, grams) -> np.ndarray:  # type: ignore[no-untyped-def]
    totals = np.asarray((grams.T @ weights.T).T)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (totals > 0).sum(axis=1) / totals.sum(axis=1)


def _jsd(p_counts: np.ndarray, q_counts: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of count rows."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p = p_counts / p_counts.sum(axis=1, keepdims=True)
        q = q_counts / q_counts.sum(axis=1, keepdims=True)
        m = (p + q) / 2
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=1)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=1)
    return (kl_p + kl_q) / 2


def _weighted_wasserstein(
    a: np.ndarray, a_weights: np.ndarray, b: np.ndarray, b_weights: np.ndarray
) -> np.ndarray:
    from scipy.stats import wasserstein_distance

    out = []
    for wa, wb in zip(a_weights, b_weights, strict=True):
        if wa.sum() == 0 or wb.sum() == 0:
            out.append(np.nan)
        else:
            out.append(wasserstein_distance(a, b, wa, wb))
    return np.asarray(out)


def compare_sides(
    simulated: Sequence[Conversation],
    human: Sequence[Conversation],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> tuple[list[Measure], list[EndingShare]]:
    """Every measure on both sides, with bootstrap intervals over conversations.

    Raises:
        ConfigError: a side has no conversation.
    """
    if not simulated or not human:
        raise ConfigError("realism needs conversations with user messages on both sides")
    vocabulary, bigram_index = _index([simulated, human])
    sim = _columns(simulated, vocabulary, bigram_index)
    hum = _columns(human, vocabulary, bigram_index)
    rng = np.random.default_rng(seed)
    n_s, n_h = len(simulated), len(human)
    ws, wh = _weights(n_s, n_s, resamples, rng), _weights(n_h, n_h, resamples, rng)
    # Distinct-n, vocabulary overlap and divergence depend on how much text they see: both
    # sides are resampled to the smaller side's number of conversations for them (sides of
    # equal size keep their own values).
    size = min(n_s, n_h)
    ws_eq, wh_eq = _weights(n_s, size, resamples, rng), _weights(n_h, size, resamples, rng)
    unequal = n_s != n_h

    def both(
        make: Callable[[_Columns, np.ndarray], np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray]:
        return make(sim, ws), make(hum, wh)

    def rate(num: str, den: str) -> Callable[[_Columns, np.ndarray], np.ndarray]:
        return lambda side, w: _ratio(w, side.counts[num], side.counts[den])

    def per_message(side: _Columns, w: np.ndarray) -> np.ndarray:
        return w[:, side.message_conversation]

    measures: list[Measure] = []

    def add(
        ident: str,
        name: str,
        what: str,
        pair: tuple[np.ndarray, np.ndarray] | None,
        units: tuple[int, int],
        distance: np.ndarray | None = None,
        kind: str | None = None,
        p_value: float | None = None,
        matched: bool | None = None,
    ) -> None:
        if distance is None and pair is not None:
            distance, kind = pair[0] - pair[1], "difference"

        def estimate(values: np.ndarray | None, n: int) -> Estimate | None:
            return None if values is None else _estimate(values, n, confidence, matched=matched)

        measures.append(
            Measure(
                id=ident,
                name=name,
                what=what,
                simulated=estimate(None if pair is None else pair[0], units[0]),
                human=estimate(None if pair is None else pair[1], units[1]),
                distance=estimate(distance, min(units)),
                distance_kind=kind,  # type: ignore[arg-type]
                p_value=p_value,
            )
        )

    messages = (len(sim.words_per_message), len(hum.words_per_message))
    lengths = both(
        lambda s, w: (per_message(s, w) @ s.words_per_message) / per_message(s, w).sum(1)
    )
    add(
        "message_words",
        "message length",
        "words per user message (mean); distance: Wasserstein between the distributions",
        lengths,
        messages,
        _weighted_wasserstein(
            sim.words_per_message,
            per_message(sim, ws),
            hum.words_per_message,
            per_message(hum, wh),
        ),
        "wasserstein",
    )
    from scipy.stats import ks_2samp

    ks = ks_2samp(sim.words_per_message, hum.words_per_message)
    add(
        "message_words_ks",
        "message length (KS)",
        "largest gap between the two cumulative distributions of words per message",
        None,
        messages,
        np.asarray([ks.statistic]),
        "ks",
        float(ks.pvalue),
    )
    turns = both(lambda s, w: (w @ s.turns) / w.sum(1))
    add(
        "turns",
        "turns per conversation",
        "user messages per conversation (mean); distance: Wasserstein",
        turns,
        (n_s, n_h),
        _weighted_wasserstein(sim.turns, ws, hum.turns, wh),
        "wasserstein",
    )
    equal = f" (on resamples of {size} conversations a side)" if unequal else ""
    add(
        "distinct_1",
        "distinct-1",
        "distinct words over all words of user messages" + equal,
        (_distinct(ws_eq, sim.unigrams), _distinct(wh_eq, hum.unigrams)),
        (n_s, n_h),
        matched=unequal,
    )
    add(
        "distinct_2",
        "distinct-2",
        "distinct word pairs over all word pairs within user messages" + equal,
        (_distinct(ws_eq, sim.bigrams), _distinct(wh_eq, hum.bigrams)),
        (n_s, n_h),
        matched=unequal,
    )
    sim_words = np.asarray((sim.unigrams.T @ ws_eq.T).T)  # type: ignore[attr-defined]
    hum_words = np.asarray((hum.unigrams.T @ wh_eq.T).T)  # type: ignore[attr-defined]
    with np.errstate(invalid="ignore", divide="ignore"):
        jaccard = ((sim_words > 0) & (hum_words > 0)).sum(1) / (
            (sim_words > 0) | (hum_words > 0)
        ).sum(1)
    add(
        "vocabulary_overlap",
        "vocabulary overlap",
        "Jaccard overlap of the words each side uses (1 = the same vocabulary)" + equal,
        None,
        (n_s, n_h),
        jaccard,
        "jaccard",
        matched=unequal,
    )
    add(
        "word_jsd",
        "word distribution divergence",
        "Jensen-Shannon divergence of the word frequencies (base 2; 0 = the same, 1 = disjoint)"
        + equal,
        None,
        (n_s, n_h),
        _jsd(sim_words, hum_words),
        "jsd",
        matched=unequal,
    )
    for ident, name, what, num in (
        (
            "question_rate",
            "questions asked",
            "share of user messages asking something",
            "questions",
        ),
        (
            "repair_rate",
            "corrections and self-repairs",
            "share of user messages correcting themselves (actually, I mean, wait, *fix)",
            "repairs",
        ),
        ("politeness_rate", "politeness", "share of user messages with please or thanks", "polite"),
    ):
        add(ident, name, what, both(rate(num, "messages")), messages)
    pooled_counts = (
        np.asarray(sim.unigrams.sum(0)).ravel() + np.asarray(hum.unigrams.sum(0)).ravel()
    )  # type: ignore[attr-defined]
    pooled = Counter({w: int(pooled_counts[i]) for w, i in vocabulary.items()})
    typos = typo_words(pooled)
    is_typo = np.zeros(max(1, len(vocabulary)))
    for word in typos:
        is_typo[vocabulary[word]] = 1
    typo_counts = {
        "sim": sim.unigrams @ is_typo,  # type: ignore[operator]
        "hum": hum.unigrams @ is_typo,  # type: ignore[operator]
    }
    add(
        "typo_rate",
        "typos",
        "share of words that look misspelled (rare, one edit from a common word of both sides)",
        (
            _ratio(ws, typo_counts["sim"], sim.counts["words"]),
            _ratio(wh, typo_counts["hum"], hum.counts["words"]),
        ),
        (int(sim.counts["words"].sum()), int(hum.counts["words"].sum())),
    )
    add(
        "opening_share",
        "disclosure: words in the opening",
        "share of a conversation's user words written in its first message (1 = all at once)",
        both(rate("opening_words", "words")),
        (n_s, n_h),
    )
    with_facts = (
        int((sim.counts["facts_mentioned"] > 0).sum()),
        int((hum.counts["facts_mentioned"] > 0).sum()),
    )
    add(
        "facts_in_opening",
        "disclosure: facts in the opening",
        "of the known facts a user mentions, the share mentioned in the first message",
        both(rate("facts_in_opening", "facts_mentioned")),
        with_facts,
    )
    ones = (np.ones(n_s), np.ones(n_h))
    add(
        "agent_last_word",
        "the agent has the last word",
        "share of conversations whose last message is the agent's",
        (
            _ratio(ws, sim.counts["agent_last"], ones[0]),
            _ratio(wh, hum.counts["agent_last"], ones[1]),
        ),
        (n_s, n_h),
    )
    shares: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for kind in ENDINGS:
        is_kind = (
            np.asarray([e == kind for e in sim.ending], dtype=float),
            np.asarray([e == kind for e in hum.ending], dtype=float),
        )
        shares[kind] = (_ratio(ws, is_kind[0], ones[0]), _ratio(wh, is_kind[1], ones[1]))
    total_variation = sum(np.abs(s - h) for s, h in shares.values()) / 2
    add(
        "endings",
        "how conversations end",
        "total variation distance between the kinds of last user message "
        "(closing, confirmation, question, other)",
        None,
        (n_s, n_h),
        np.asarray(total_variation),
        "total_variation",
    )
    endings = [
        EndingShare(
            kind=kind,  # type: ignore[arg-type]
            simulated=_estimate(shares[kind][0], n_s, confidence),
            human=_estimate(shares[kind][1], n_h, confidence),
        )
        for kind in ENDINGS
    ]
    return measures, endings


def discriminator_of(
    simulated: Sequence[Conversation],
    human: Sequence[Conversation],
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> Discriminator:
    """The discriminator trained on the user turns of both sides (see `report.discriminator`)."""
    from simulate.report.discriminator import discriminate

    def turns(side: Sequence[Conversation]) -> tuple[list[str], list[str]]:
        texts = [m for c in side for m in c.user_messages if m.strip()]
        groups = [c.conversation_id for c in side for m in c.user_messages if m.strip()]
        return texts, groups

    sim_texts, sim_groups = turns(simulated)
    hum_texts, hum_groups = turns(human)
    found = discriminate(
        sim_texts,
        sim_groups,
        hum_texts,
        hum_groups,
        seed=seed,
        resamples=resamples,
        confidence=confidence,
    )
    return Discriminator(
        auc=Estimate(
            value=found.auc,
            low=found.low,
            high=found.high,
            n=found.simulated_turns + found.human_turns,
        ),
        folds=found.folds,
        simulated_turns=found.simulated_turns,
        human_turns=found.human_turns,
        giveaways=[Giveaway(**vars(f)) for f in found.giveaways],
        human_tells=[Giveaway(**vars(f)) for f in found.human_tells],
    )


def side_of(folder: str | Path, conversations: Sequence[Conversation]) -> Side:
    """What the report says of a run or reference folder."""
    manifest = RunFolder.open(folder).manifest
    return Side(
        path=str(folder),
        conversations=len(conversations),
        user_messages=sum(len(c.user_messages) for c in conversations),
        user=manifest.config.user,
        source=manifest.source.source if manifest.source else None,
        license=manifest.source.license if manifest.source else None,
    )


def measure_realism(
    run_dir: str | Path,
    reference_dir: str | Path,
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> RealismReport:
    """How far the simulated users of ``run_dir`` are from the people of ``reference_dir``.

    Raises:
        RunFolderError: a folder is not a run or reference folder, or has no user messages.
        ConfigError: too few conversations for the discriminator.
    """
    simulated = conversations_of(run_dir)
    human = conversations_of(reference_dir)
    measures, endings = compare_sides(
        simulated, human, resamples=resamples, confidence=confidence, seed=seed
    )
    return RealismReport(
        mode="run",
        created_at=now_iso(),
        simulated=side_of(run_dir, simulated),
        reference=side_of(reference_dir, human),
        discriminator=discriminator_of(
            simulated, human, seed=seed, resamples=resamples, confidence=confidence
        ),
        measures=measures,
        endings=endings,
        confidence=confidence,
        resamples=resamples,
        seed=seed,
        notes=[
            "Intervals: percentile bootstrap over conversations, each side resampled on its own; "
            "distances are never below 0, so near 0 their interval can sit above the value.",
            "Typos are judged against the pooled corpus (no dictionary): a rare word one edit "
            "from a common one.",
        ],
    )


def save_realism(report: RealismReport, path: str | Path) -> Path:
    """Write the report as JSON (atomically: a temporary file renamed into place)."""
    return write_atomic(path, report.model_dump_json(indent=2) + "\n")


def load_realism(run_dir: str | Path) -> RealismReport | None:
    """The run's `realism.json`, or None when it has none.

    Raises:
        RunFolderError: the file exists but is not a realism report.
    """
    path = Path(run_dir) / REALISM_FILE
    if not path.is_file():
        return None
    try:
        return RealismReport.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as err:
        first = str(err).splitlines()[0]
        raise RunFolderError(f"{path}: not a realism report ({first})") from None


def realism_json(report: RealismReport) -> str:
    """The report as JSON, no NaN (figures that cannot be computed are null)."""
    return json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False, allow_nan=False)
