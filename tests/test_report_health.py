"""Simulator health: planted bad simulated users are flagged, figures match hand counts."""

from __future__ import annotations

import math

import pytest
from test_report_figures import make_episode, write_planted_run

from simulate.report.health import assistant_phrases, simulator_health
from simulate.stats import wilson_interval


def persona_row(health: dict, persona_id: str) -> dict:
    return next(r for r in health["per_persona"] if r["persona_id"] == persona_id)


@pytest.fixture
def health(tmp_path):
    looping = [
        ("user", "I still need my refund please."),
        ("assistant", "Can you tell me your booking?"),
        ("user", "I STILL need my refund, please!"),
        ("assistant", "What is your booking?"),
        ("user", "i still need my refund please"),
        ("assistant", "Sorry?"),
    ]
    confused = [
        ("user", "Hello! How can I help you today?"),
        ("assistant", "I want to change my flight."),
        ("user", "Sure, what is the date?"),
        ("assistant", "Tomorrow."),
    ]
    normal = [
        ("user", "yes"),
        ("assistant", "Anything else?"),
        ("user", "yes"),
        ("assistant", "What else?"),
        ("user", "Where is my bag from flight NW12?"),
        ("assistant", "It is in Oslo."),
    ]
    episodes = [
        make_episode("looper", "s", 0, messages=looping),
        make_episode("looper", "s", 1, messages=looping[:2]),
        make_episode("confused", "s", 0, messages=confused),
        make_episode("normal", "s", 0, messages=normal),
        make_episode("normal", "s", 1, messages=normal, status="simulator_error"),
    ]
    return simulator_health(write_planted_run(tmp_path / "run", episodes)).model_dump()


def test_a_repeating_user_is_flagged(health):
    looper = persona_row(health, "looper")
    # 4 user messages; the 2nd and 3rd repeat the 1st after case and punctuation are dropped
    assert (looper["repeat_rate"]["count"], looper["repeat_rate"]["n"]) == (2, 4)
    assert (looper["repeat_rate"]["low"], looper["repeat_rate"]["high"]) == pytest.approx(
        wilson_interval(2, 4)
    )
    assert (looper["episodes_with_repeat"]["count"], looper["episodes_with_repeat"]["n"]) == (1, 2)
    assert "repeats itself" in looper["flags"]
    assert health["examples"]["repeated"][0]["turn_index"] == 2


def test_short_replies_repeating_are_not_counted(health):
    normal = persona_row(health, "normal")
    assert normal["repeat_rate"]["count"] == 0
    assert "repeats itself" not in normal["flags"]


def test_an_assistant_like_user_is_flagged(health):
    confused = persona_row(health, "confused")
    assert (confused["assistant_like_rate"]["count"], confused["assistant_like_rate"]["n"]) == (
        1,
        2,
    )
    assert confused["flags"] == ["sounds like an assistant"]
    assert persona_row(health, "looper")["assistant_like_rate"]["count"] == 0
    example = health["examples"]["assistant_like"][0]
    assert (example["persona_id"], example["turn_index"]) == ("confused", 0)


def test_simulator_errors_share_per_persona(health):
    normal = persona_row(health, "normal")
    assert (normal["simulator_error_share"]["count"], normal["simulator_error_share"]["n"]) == (
        1,
        2,
    )
    assert "simulator errors" in normal["flags"]
    assert health["overall"]["simulator_error_share"]["value"] == pytest.approx(1 / 5)


def test_message_length_and_lexical_diversity(health):
    confused = persona_row(health, "confused")
    # "Hello! How can I help you today?" (7 words), "Sure, what is the date?" (5 words)
    assert confused["words"]["mean"] == pytest.approx(6.0)
    assert confused["words"]["sd"] == pytest.approx(math.sqrt(2))
    assert confused["chars"]["mean"] == pytest.approx((32 + 23) / 2)
    # 12 words, all distinct; 10 bigrams within messages (none across them), all distinct
    assert (confused["distinct_1"]["distinct"], confused["distinct_1"]["n"]) == (12, 12)
    assert (confused["distinct_2"]["distinct"], confused["distinct_2"]["n"]) == (10, 10)
    normal = persona_row(health, "normal")
    # per episode: yes, yes, where is my bag from flight nw12 -> 9 words, 8 distinct, twice
    assert (normal["distinct_1"]["distinct"], normal["distinct_1"]["n"]) == (8, 18)
    assert (normal["distinct_2"]["distinct"], normal["distinct_2"]["n"]) == (6, 12)
    assert health["overall"]["user_messages"] == 4 + 2 + 6


def test_the_phrase_list_is_a_data_file():
    phrases = assistant_phrases()
    assert "how can i help you" in phrases and "as an ai" in phrases
    assert all(p == p.casefold() for p in phrases)


def test_example_messages_are_excerpts(tmp_path):
    # A stress-test user writes thousands of characters; the example beside a flag is an
    # excerpt (the whole message stays in the transcript), so the report's list stays short.
    long = "please help me " + "x" * 5000
    episodes = [
        make_episode("ana", "s", t, messages=[("user", long), ("assistant", "?"), ("user", long)])
        for t in range(2)
    ]
    health = simulator_health(write_planted_run(tmp_path / "run", episodes)).model_dump()
    (example, *_) = health["examples"]["repeated"]
    assert len(example["content"]) == 160 and example["content"].endswith("…")
    assert long.startswith(example["content"][:-1])
