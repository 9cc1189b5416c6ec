"""What the offline user asks for, read from a scenario's description (a writer's note) and its
"Then: ..." instructions, in the words a person would use."""

from __future__ import annotations

import pytest

from simulate.users.requests import Step, clean, direct_question, read_step, read_want


@pytest.mark.parametrize(
    ("note", "thing"),
    [
        ("I'd like to order a Chai latte.", "a Chai latte"),
        ("I'd like to order a Americano.", "an Americano"),
        ("I'd like to order a latte that has chocolate sauce.", "a latte with chocolate sauce"),
        (
            "I'd like to order a Latte that has three modifications: (a) iced (b) Oat milk and "
            "(c) Chocolate Sauce (in whatever order seems right).",
            "an iced Latte with Oat milk and Chocolate Sauce",
        ),
        (
            "I'd like to order a Cappuccino with these two modifications: (a) decaf and (b) has "
            "Caramel Sauce.",
            "a decaf Cappuccino with Caramel Sauce",
        ),
        (
            "I'd like to order the Espresso and specify two things: it's a double and I want "
            "whole milk.",
            "a double Espresso with whole milk",
        ),
        ("I'd like to order a Mocha, but decaffeinated.", "a decaffeinated Mocha"),
        (
            'I\'d like to order this: Cortado, oat milk. "a oat (milk) Cortado" or "a Cortado '
            'with oat milk", etc.',
            "a Cortado with oat milk",
        ),
        ("I'd like the details of my booking.", "the details of my booking"),
        ("Hi, I want a refund for my broken kettle.", "a refund for my broken kettle"),
    ],
)
def test_a_thing_to_get_is_named_as_people_name_it_with_no_writers_punctuation(note, thing):
    want = read_want(note)
    assert want.thing == thing
    assert not any(mark in want.thing for mark in "():\"'") or "'s" in want.thing


def test_later_sentences_are_details_said_as_a_person_would():
    want = read_want(
        "I'd like to order two of these: Cortado. However, for one of me I want Oat milk while "
        "for the other I want Non-Fat milk."
    )
    assert want.thing == "two Cortados"
    assert want.details == ("One with Oat milk and one with Non-Fat milk.",)
    to_go = read_want(
        'I\'d like to order a Double Cortado with Almond milk. I want to specify it is a "To go" '
        "order."
    )
    assert to_go.thing == "a Double Cortado with Almond milk to go" and to_go.details == ()


@pytest.mark.parametrize(
    ("note", "field", "value"),
    [
        ("I want to cancel my booking.", "verb_phrase", "cancel my booking"),
        ("Move my flight to another day.", "verb_phrase", "move my flight to another day"),
        ("I want to know what kinds of milk you have.", "clause", "what kinds of milk you have"),
        (
            "I want to ask about the ingredients of a(n) Americano.",
            "topic",
            "the ingredients of an Americano",
        ),
        ("I want to ask you a question related question.", "verb_phrase", "ask you a question"),
    ],
)
def test_what_the_user_wants_done_or_to_know(note, field, value):
    assert getattr(read_want(note), field) == value


def test_a_note_that_only_greets_and_one_that_fits_no_frame():
    assert read_want("I want to start with a polite hello.").greets
    odd = read_want("My parcel never came (order 55).")
    assert (odd.thing, odd.verb_phrase, odd.clause, odd.topic) == (None, None, None, None)
    assert odd.said == "My parcel never came."


def test_cleaning_drops_enumerations_parentheses_and_quotes_but_keeps_apostrophes():
    assert clean("I'd like a(n) Espresso (a double) and mention 'no foam'.") == (
        "I'd like an Espresso, no foam."
    )


@pytest.mark.parametrize(
    ("instruction", "step"),
    [
        ("Then: I want to answer yes.", Step("confirm")),
        ("Then: I want to confirm details are right.", Step("confirm")),
        (
            "Then: I want to ask what kind of syrup you have.",
            Step("say", "What kind of syrup do you have?"),
        ),
        (
            "Then: I want to ask you to show the menu to me again.",
            Step("say", "Can you show me the menu again?"),
        ),
        (
            "Then: I want to say no, then ask you what kinds of tea you have.",
            Step("say", "What kinds of tea do you have?", no=True),
        ),
        ("Then: I want to say I want to add vanilla.", Step("say", "I want to add vanilla.")),
        ("Refuse a voucher and insist on a refund.", None),
    ],
)
def test_then_instructions_are_later_steps_in_the_users_words(instruction, step):
    assert read_step(instruction) == step


@pytest.mark.parametrize(
    ("clause", "question"),
    [
        ("what kind of syrup you have", "What kind of syrup do you have?"),
        ("if you have oat milk", "Do you have oat milk?"),
        ("whether I can bring my dog", "Can I bring my dog?"),
        ("what time it opens", "What time does it open?"),
    ],
)
def test_an_indirect_question_becomes_a_direct_one(clause, question):
    assert direct_question(clause) == question
