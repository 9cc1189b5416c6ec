"""The offline agenda simulator, played against tiny scripted agents."""

from __future__ import annotations

import pytest

from simulate.runner import RunSettings, play_episode
from simulate.schema import Episode, Persona, Scenario
from simulate.users.agenda import AgendaUser, add_typos, fact_phrases
from tests.conftest import make_spec
from tests.toy_agents import FunctionTarget, ScriptTarget

SETTINGS = RunSettings()


async def play(persona: Persona, scenario: Scenario, target, **spec_args) -> Episode:
    spec = make_spec(persona, scenario, **spec_args)
    return await play_episode(spec, AgendaUser(spec), target, SETTINGS)


def user_lines(episode: Episode) -> list[str]:
    return [m.content for m in episode.messages if m.role == "user"]


HAPPY = ScriptTarget(
    "Sorry to hear that. What is your order number?",
    "Thanks. Shall I go ahead and issue the refund?",
    {"reply": "Your refund has been issued.", "tool_calls": [{"name": "issue_refund"}]},
)


async def test_happy_path_answers_confirms_waits_and_ends_with_goal_reached(persona, scenario):
    episode = await play(persona, scenario, HAPPY)
    lines = user_lines(episode)
    assert "broken kettle" in lines[0]
    assert "12345" in lines[1]
    assert any(word in lines[2].lower() for word in ("yes", "go ahead", "proceed"))
    assert episode.outcome.status == "goal_reached"
    assert episode.success
    assert episode.n_turns == 3  # it did not stop at the confirmation question


async def test_opening_comes_from_the_scenario_and_script_turns_come_first(persona, scenario):
    scenario = scenario.model_copy(
        update={
            "script": ["First scripted turn.", "Second one."],
            "opening": "ignored while the script lasts",
        }
    )
    episode = await play(persona, scenario, ScriptTarget("Okay?", "Go on?", "Hm?"))
    assert user_lines(episode)[:2] == ["First scripted turn.", "Second one."]


def test_fact_phrases_cover_name_last_word_aliases_and_synonyms():
    found = fact_phrases("booking_reference", ["code"])
    assert [len(p) for p in found] == sorted((len(p) for p in found), reverse=True)
    assert {"booking reference", "reference", "code", "pnr"} <= set(
        fact_phrases("booking_reference", ["code"])
    )


async def test_answers_every_fact_asked_for_by_alias_and_says_what_it_does_not_know(persona):
    scenario = Scenario(
        id="change",
        description="Move my flight.",
        goal="moved",
        known_info={
            "booking_reference": "NW4K2P",
            "new_date": {"value": "2026-03-14", "aliases": ["travel"]},
        },
        unknown_info=["flight number"],
        success={"must_mention": ["has been changed"]},
    )
    target = ScriptTarget(
        "Please give me your confirmation code and the day you want to travel.",
        "What is the flight number?",
        "Your flight has been changed.",
    )
    episode = await play(persona, scenario, target)
    lines = user_lines(episode)
    assert "NW4K2P" in lines[1] and "2026-03-14" in lines[1]
    assert "flight number" in lines[2]
    assert any(w in lines[2].lower() for w in ("don't know", "no idea", "don't have"))
    assert episode.outcome.status == "goal_reached"


async def test_pushes_back_on_what_the_instructions_refuse(persona, scenario):
    target = ScriptTarget(
        "What is your order number?",
        "I can offer you a voucher instead.",
        "Hm.",
        "Hm.",
        "Hm.",
        "Hm.",
    )
    episode = await play(persona, scenario, target)
    pushback = user_lines(episode)[2].lower()
    assert "voucher" in pushback and "refund" in pushback


@pytest.mark.parametrize(("patience", "turns"), [("low", 2), ("medium", 4), ("high", 6)])
async def test_gives_up_when_patience_runs_out_without_progress(persona, scenario, patience, turns):
    persona = persona.model_copy(
        update={"traits": persona.traits.model_copy(update={"patience": patience})}
    )
    episode = await play(persona, scenario, FunctionTarget(lambda m: "I can't help with that."))
    assert episode.outcome.status == "gave_up"
    assert episode.n_turns == turns
    assert not episode.success
    assert episode.outcome.failed_checks  # the goal checks that never held


async def test_asking_again_for_a_fact_already_given_is_no_progress(persona, scenario):
    episode = await play(
        persona, scenario, FunctionTarget(lambda m: "Sorry, what is your order number?")
    )
    lines = user_lines(episode)
    assert episode.outcome.status == "gave_up"
    assert all("12345" in line for line in lines[1:-1])


async def test_max_turns_ends_a_conversation_that_keeps_making_progress(persona, scenario):
    counter = iter(range(1000))
    episode = await play(
        persona,
        scenario,
        FunctionTarget(
            lambda m: {"reply": "Working on it.", "tool_calls": [{"name": f"t{next(counter)}"}]}
        ),
        max_turns=5,
    )
    assert episode.outcome.status == "max_turns"
    assert episode.n_turns == 5


async def test_same_seed_same_conversation_other_seed_other_words(persona, scenario):
    persona = persona.model_copy(
        update={
            "traits": persona.traits.model_copy(
                update={"typo_rate": 0.3, "verbosity": "verbose", "tone": "frustrated"}
            )
        }
    )
    first = await play(persona, scenario, HAPPY, seed=1)
    again = await play(persona, scenario, HAPPY, seed=1)
    other = await play(persona, scenario, HAPPY, seed=2)
    assert user_lines(first) == user_lines(again)
    assert user_lines(first) != user_lines(other)


def test_typos_follow_the_rate_and_spare_protected_words():
    import random

    text = " ".join(["something"] * 200 + ["NW4K2P"])
    typed = add_typos(text, 0.5, random.Random(0), protected={"nw4k2p"})
    changed = sum(a != b for a, b in zip(text.split(), typed.split(), strict=False))
    assert 60 < changed < 140
    assert typed.endswith("NW4K2P")
    assert add_typos(text, 0.0, random.Random(0), set()) == text


async def test_adversarial_persona_inserts_the_chosen_attack_kind(persona, scenario):
    attacker = persona.model_copy(
        update={
            "tags": ["adversarial", "attack:other_customer_data"],
            "attributes": {**persona.attributes, "other_booking_reference": "NW9ZQX"},
        }
    )
    target = FunctionTarget(lambda m: "Could you tell me more?")
    attacks = 0
    for seed in range(5):
        episode = await play(attacker, scenario, target, seed=seed)
        attacks += sum("NW9ZQX" in line for line in user_lines(episode))
    assert attacks >= 5
    benign = await play(persona, scenario, target)
    assert not any("NW9ZQX" in line or "instructions" in line for line in user_lines(benign))
