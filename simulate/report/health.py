"""Simulator health: how the simulated users behaved, so a bad agent can be told from a bad
simulation.

Per persona and overall: user message length and its spread, lexical diversity (distinct-1 and
distinct-2), how often a user repeated itself within an episode, how often a user sounded like an
assistant (phrases in `prompts/assistant_phrases.yaml`), and the share of episodes ended by the
simulator's own errors. Computed with polars lazily over the run's shards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from simulate.schema import Model
from simulate.stats import Rate
from simulate.store import RunFolder
from simulate.users.faults import MIN_REPEAT_WORDS, assistant_phrases

FLAG_REPEAT_RATE = 0.10
"""Share of user messages that repeat an earlier one in the episode above which a persona is
flagged: a user stuck in a loop, or an agent that never moves on."""

FLAG_ASSISTANT_RATE = 0.02
"""Share of user messages that sound like an assistant above which a persona is flagged."""

FLAG_SIMULATOR_ERRORS = 0.05
"""Share of episodes ended by simulator errors above which a persona is flagged."""

EXAMPLE_KINDS = ("repeated", "assistant_like")
EXAMPLE_CHARS = 160
"""Example user messages are cut to this many characters (the report's excerpt length)."""


class Spread(Model):
    """Mean and standard deviation of a length, over ``n`` messages."""

    mean: float | None
    sd: float | None
    n: int


class Ratio(Model):
    """distinct-n: distinct n-grams over all n-grams."""

    value: float | None
    distinct: int
    n: int


class HealthRow(Model):
    """One persona's (or the whole run's) simulator-health figures."""

    persona_id: str
    episodes: int
    user_messages: int
    words: Spread
    chars: Spread
    distinct_1: Ratio
    distinct_2: Ratio
    repeat_rate: Rate
    episodes_with_repeat: Rate
    assistant_like_rate: Rate
    simulator_error_share: Rate
    flags: list[str]
    """What looks wrong: `repeats itself`, `sounds like an assistant`, `simulator errors`."""


class HealthExample(Model):
    """A flagged user message (cut to `EXAMPLE_CHARS`)."""

    episode_id: str
    persona_id: str
    turn_index: int
    content: str


class Thresholds(Model):
    repeat_rate: float
    assistant_like_rate: float
    simulator_error_share: float
    min_repeat_words: int


class HealthReport(Model):
    """Simulator health per persona and overall (`simulator_health`)."""

    overall: HealthRow
    per_persona: list[HealthRow]
    examples: dict[str, list[HealthExample]]
    """`repeated` and `assistant_like` -> a few flagged user messages."""
    thresholds: Thresholds
    note: str


def _rate(hits: int, n: int) -> Rate:
    return Rate.wilson(hits, n, empty="no messages")


def scan_user_messages(run_dir: str | Path) -> pl.LazyFrame:
    """One row per simulated-user message: episode, persona, index in `messages`, content,
    its words, whether it repeats an earlier message of the episode, and whether it sounds
    like an assistant."""
    normalized = (
        pl.col("content")
        .str.to_lowercase()
        .str.replace_all(r"[^\p{L}\p{N}]+", " ")
        .str.strip_chars()
    )
    return (
        RunFolder(run_dir)
        .scan_episodes()
        .select(
            "episode_id",
            "persona_id",
            "messages",
            pl.int_ranges(pl.col("messages").list.len()).alias("turn_index"),
        )
        .explode(["messages", "turn_index"])
        .filter(pl.col("messages").struct.field("role") == "user")
        .select(
            "episode_id",
            "persona_id",
            "turn_index",
            pl.col("messages").struct.field("content").fill_null("").alias("content"),
        )
        .with_columns(normalized.alias("normalized"))
        .with_columns(
            pl.when(pl.col("normalized") == "")
            .then(pl.lit([], dtype=pl.List(pl.String)))
            .otherwise(pl.col("normalized").str.split(" "))
            .alias("words")
        )
        .with_columns(
            pl.col("words").list.len().alias("n_words"),
            pl.col("content").str.len_chars().alias("n_chars"),
        )
        .with_columns(
            (
                ~pl.col("normalized").is_first_distinct().over("episode_id")
                & (pl.col("n_words") >= MIN_REPEAT_WORDS)
            ).alias("repeated"),
            pl.col("content")
            .str.to_lowercase()
            .str.contains_any(list(assistant_phrases()))
            .alias("assistant_like"),
        )
    )


def _distinct(words: pl.LazyFrame, by: list[str]) -> pl.LazyFrame:
    """distinct-1 and distinct-2 (distinct n-grams over all n-grams) of user words, per ``by``."""
    exploded = words.select(*by, "msg", "words").explode("words").drop_nulls("words")
    unigram_aggs = [
        pl.col("words").n_unique().alias("distinct_unigrams"),
        pl.len().alias("unigrams"),
    ]
    bigram_aggs = [pl.col("bigram").n_unique().alias("distinct_bigrams"), pl.len().alias("bigrams")]
    pairs = (
        exploded.with_columns(
            pl.col("words").shift(-1).alias("next"), pl.col("msg").shift(-1).alias("next_msg")
        )
        .filter(pl.col("next_msg") == pl.col("msg"))
        .with_columns((pl.col("words") + " " + pl.col("next")).alias("bigram"))
    )
    if not by:
        return pl.concat(
            [exploded.select(unigram_aggs), pairs.select(bigram_aggs)], how="horizontal"
        )
    unigrams = exploded.group_by(by).agg(unigram_aggs)
    return unigrams.join(pairs.group_by(by).agg(bigram_aggs), on=by, how="left")


def _message_aggs() -> list[pl.Expr]:
    return [
        pl.len().alias("user_messages"),
        pl.col("n_words").mean().alias("words_mean"),
        pl.col("n_words").std().alias("words_sd"),
        pl.col("n_chars").mean().alias("chars_mean"),
        pl.col("n_chars").std().alias("chars_sd"),
        pl.col("repeated").sum().alias("repeats"),
        pl.col("assistant_like").sum().alias("assistant_like"),
        pl.col("episode_id").filter(pl.col("repeated")).n_unique().alias("episodes_with_repeat"),
    ]


def simulator_health(run_dir: str | Path, examples: int = 3) -> HealthReport:
    """Simulator-health figures per persona and overall.

    Each persona row carries message length (words and characters: mean, sd), distinct-1 and
    distinct-2, the repeat rate and assistant-like rate of user messages and the share of
    episodes ended by simulator errors (each with a Wilson interval and n), and `flags` naming
    what looks wrong. `examples` lists a few user messages behind each flag.
    """
    messages = scan_user_messages(run_dir).with_columns(pl.int_range(pl.len()).alias("msg"))
    episodes = (
        RunFolder(run_dir)
        .scan_episodes()
        .group_by("persona_id")
        .agg(
            pl.len().alias("episodes"),
            (pl.col("status") == "simulator_error").sum().alias("simulator_errors"),
        )
    )
    queries = [
        episodes,
        messages.group_by("persona_id").agg(_message_aggs()),
        _distinct(messages, ["persona_id"]),
        messages.select(_message_aggs()),
        _distinct(messages, []),
        *(_examples(messages, kind, examples) for kind in EXAMPLE_KINDS),
    ]
    per_episode, per_message, distinct, overall_messages, overall_distinct, *found = pl.collect_all(
        queries
    )
    per_persona = (
        per_episode.join(per_message, on="persona_id", how="left")
        .join(distinct, on="persona_id", how="left")
        .sort("persona_id")
    )
    overall = {
        **overall_messages.row(0, named=True),
        **overall_distinct.row(0, named=True),
        "episodes": int(per_episode["episodes"].sum()),
        "simulator_errors": int(per_episode["simulator_errors"].sum()),
    }
    return HealthReport(
        overall=_health_row("all", overall),
        per_persona=[_health_row(r["persona_id"], r) for r in per_persona.to_dicts()],
        examples={
            kind: [HealthExample(**row) for row in frame.to_dicts()]
            for kind, frame in zip(EXAMPLE_KINDS, found, strict=True)
        },
        thresholds=Thresholds(
            repeat_rate=FLAG_REPEAT_RATE,
            assistant_like_rate=FLAG_ASSISTANT_RATE,
            simulator_error_share=FLAG_SIMULATOR_ERRORS,
            min_repeat_words=MIN_REPEAT_WORDS,
        ),
        note=(
            "repeats: a user message equal to an earlier one of the same episode after "
            f"lower-casing and dropping punctuation, {MIN_REPEAT_WORDS}+ words; assistant-like: "
            "contains a phrase from simulate/prompts/assistant_phrases.yaml"
        ),
    )


def _health_row(persona_id: str, row: dict[str, Any]) -> HealthRow:
    """One persona's (or the whole run's) figures, with rates, intervals and flags."""
    n_messages = int(row.get("user_messages") or 0)
    n_episodes = int(row["episodes"])
    repeat_rate = _rate(int(row.get("repeats") or 0), n_messages)
    assistant_like = _rate(int(row.get("assistant_like") or 0), n_messages)
    errors = _rate(int(row["simulator_errors"]), n_episodes)
    flags = []
    if (repeat_rate.value or 0) > FLAG_REPEAT_RATE:
        flags.append("repeats itself")
    if (assistant_like.value or 0) > FLAG_ASSISTANT_RATE:
        flags.append("sounds like an assistant")
    if (errors.value or 0) > FLAG_SIMULATOR_ERRORS:
        flags.append("simulator errors")
    return HealthRow(
        persona_id=persona_id,
        episodes=n_episodes,
        user_messages=n_messages,
        words=Spread(mean=row.get("words_mean"), sd=row.get("words_sd"), n=n_messages),
        chars=Spread(mean=row.get("chars_mean"), sd=row.get("chars_sd"), n=n_messages),
        distinct_1=_ratio(row.get("distinct_unigrams"), row.get("unigrams")),
        distinct_2=_ratio(row.get("distinct_bigrams"), row.get("bigrams")),
        repeat_rate=repeat_rate,
        episodes_with_repeat=_rate(int(row.get("episodes_with_repeat") or 0), n_episodes),
        assistant_like_rate=assistant_like,
        simulator_error_share=errors,
        flags=flags,
    )


def _ratio(distinct: int | None, total: int | None) -> Ratio:
    return Ratio(
        value=(distinct or 0) / total if total else None, distinct=distinct or 0, n=total or 0
    )


def _examples(messages: pl.LazyFrame, kind: str, limit: int) -> pl.LazyFrame:
    """A few user messages flagged ``kind``, one per episode: episode, persona, turn, text."""
    return (
        messages.filter(pl.col(kind))
        .sort(["persona_id", "episode_id", "turn_index"])
        .unique(subset="episode_id", keep="first", maintain_order=True)
        .head(limit)
        .select(
            "episode_id",
            "persona_id",
            "turn_index",
            # An excerpt: the whole message is in the transcript (a stress-test user writes
            # thousands of characters).
            pl.when(pl.col("content").str.len_chars() > EXAMPLE_CHARS)
            .then(pl.col("content").str.slice(0, EXAMPLE_CHARS - 1) + "…")
            .otherwise(pl.col("content"))
            .alias("content"),
        )
    )
