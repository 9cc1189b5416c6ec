"""The offline agenda simulator, played against tiny scripted agents."""

from __future__ import annotations

import re

import pytest

from simulate.runner import RunSettings, play_episode
from simulate.schema import Episode, Message, Persona, Scenario, SuccessChecks
from simulate.users import EpisodeState
from simulate.users.agenda import AgendaUser, add_typos
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


REFUSAL = "Sorry, I can't process a refund and I have no idea when anything will be delivered"


@pytest.mark.parametrize("politeness", ["polite", "neutral", "rude"])
async def test_a_refusal_is_not_thanked_and_the_user_pushes_on_then_gives_up(persona, politeness):
    from simulate.users.agenda import phrases

    scenario = Scenario(
        id="late_parcel",
        description="My parcel is late and I want a refund.",
        goal="A refund is issued.",
        success={"must_mention": ["refund", "deliver"]},
    )
    persona = persona.model_copy(
        update={"traits": persona.traits.model_copy(update={"politeness": politeness})}
    )
    closings = {c for bank in phrases()["closing"].values() for c in bank}
    for seed in range(6):
        episode = await play(persona, scenario, FunctionTarget(lambda m: REFUSAL), seed=seed)
        lines = user_lines(episode)
        assert episode.outcome.status == "gave_up" and not episode.success
        assert episode.outcome.failed_checks == [
            "must_mention: 'refund'",
            "must_mention: 'deliver'",
        ]
        assert not closings & set(lines)
        assert not any("thank you." in line.lower() for line in lines[1:-1]), lines
        goodbyes = [g.format(business="the shop") for g in phrases()["give_up"][politeness]]
        assert lines[-1] in goodbyes  # a parcel: the shop, not the airline
        assert len({line.lower() for line in lines}) == len(lines)  # it never repeats itself


async def test_a_user_told_to_insist_insists_on_a_refusal(persona, scenario):
    target = FunctionTarget(lambda m: "Unfortunately I am unable to issue any refund.")
    episode = await play(persona, scenario, target)
    assert any("refund" in line.lower() for line in user_lines(episode)[1:-1])
    assert episode.outcome.status == "gave_up"


# --- speaking as people do (issue 18, part 6) ----------------------------------------------

LATTE = Scenario(
    id="latte",
    description=(
        "I'd like to order a Latte that has three modifications: (a) iced (b) Oat milk and (c) "
        "Chocolate Sauce (in whatever order seems right)."
    ),
    goal="The latte is ordered.",
    known_info={"drink": "Latte", "milk": "Oat", "name": "Ana"},
    success={"must_call_tools": ["finish_order"]},
)


async def replies(scenario: Scenario, *agent: str, seed: int = 0, persona=None) -> list[str]:
    """The user's opening and its replies to ``agent``'s messages, one after another."""
    persona = persona or Persona(id="p", name="Pat Doe")
    spec = make_spec(persona, scenario, seed=seed)
    user, state, said = AgendaUser(spec), EpisodeState(spec=spec), []
    for text in ("", *agent):
        if text:
            state.messages.append(Message(role="assistant", content=text))
        turn = await user.next_turn(state)
        said.append(turn.content or "")
        state.messages.append(Message(role="user", content=turn.content or ""))
    return said


async def test_a_description_is_asked_for_in_a_persons_words_not_recited():
    openings = [(await replies(LATTE, seed=seed))[0] for seed in range(20)]
    for opening in openings:
        low = opening.lower()
        assert "latte" in low and "oat" in low and "chocolate" in low, opening
        assert not re.search(r"\(|modification|to order a latte that|whatever order", low), opening
    assert len(set(openings)) >= 15  # not one sentence for everyone
    assert any(o.endswith("?") for o in openings) and any("please" in o for o in openings)


async def test_a_written_opening_is_said_as_written():
    scenario = LATTE.model_copy(update={"opening": "Please move booking NW4K2P to 2026-03-14."})
    for seed in range(10):
        opening = (await replies(scenario, seed=seed))[0]
        assert "move booking NW4K2P to 2026-03-14" in opening


@pytest.mark.parametrize(
    "question",
    [
        "Is this order correct?",
        "Please check the screen and confirm your order is correct.",
        "Okay, does everything look okay here?",
        "is this right",
    ],
)
async def test_asked_whether_the_order_is_right_the_user_says_yes(question):
    for seed in range(8):
        reply = (await replies(LATTE, question, seed=seed))[1]
        low = reply.lower()
        assert re.match(r"(yes|yep|yeah|yup|that|it|looks|correct|perfect|everything|all)", low)
        assert "latte" not in low and "sorry" not in low, reply  # no restating the order


async def test_then_steps_are_said_in_order_before_the_confirmation():
    scenario = LATTE.model_copy(
        update={
            "instructions": [
                "Then: I want to ask what kind of syrup you have.",
                "Then: I want to confirm it's correct.",
            ]
        }
    )
    said = await replies(
        scenario, "Is this order correct?", "We have vanilla and hazelnut.", "Is it correct now?"
    )
    assert "what kind of syrup do you have" in said[1].lower()
    assert "latte" not in said[2].lower()  # the agent answered it: no restating the order
    assert re.match(r"(?i)(yes|yep|yeah|that|it|looks|correct|perfect|everything|all)", said[3])


async def test_anything_else_once_all_is_said_is_no_and_a_later_question_is_answered():
    said = await replies(LATTE, "Sure. And anything else?", "What name is it for?")
    assert re.search(r"(?i)that's (all|it|everything)", said[1]) and "latte" not in said[1]
    assert "Ana" in said[2]
    must_hear = LATTE.model_copy(update={"success": SuccessChecks(must_mention=["ready"])})
    asked = await replies(must_hear, "Sure. And anything else?")
    assert "that's all" not in asked[1].lower()  # it has not heard what it waits for
