"""Every phrase template of the offline user renders grammatically with any fact name and
domain: no "the the", no "my the", agreement with plurals, goodbyes that name no other
business, no doubled greetings."""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import product

import pytest

from simulate.runner import RunSettings, play_episode
from simulate.schema import Persona, Scenario
from simulate.users import EpisodeState
from simulate.users.agenda import AgendaUser, domains, phrases
from simulate.users.requests import read_want
from simulate.users.wording import (
    article,
    bare,
    business,
    fill,
    is_clause,
    is_plural,
    noun_forms,
    placeholders,
    request_forms,
    usable,
)
from tests.conftest import make_spec
from tests.toy_agents import FunctionTarget

#: Fact names as scenario writers write them: keys, articles, possessives, plurals, initials.
NAMES = [
    "booking_reference",
    "the tracking number",
    "the_tracking_number",
    "my booking reference",
    "Your email",
    "an order id",
    "PNR",
    "e-mail",
    "last four digits",
    "dates of travel",
    "passport numbers",
    "flight number",
    "new_date",
    "DOB",
    "address",
    "iban",
    "any voucher",
    "a refund",
    "upgrade",
]
CLAUSES = ["whether the flight was delayed", "when the parcel was sent", "which seat I booked"]
REQUESTS = [
    "Hi, I need to move my flight to another day.",
    "Hello, my order never arrived.",
    "I'd like to cancel my booking, please.",
    "my kettle leaks and I want a refund",
    "Good morning! Can you check my bill?",
]
#: What scenario descriptions say users want, read into the {want...} placeholders.
WANTS = [
    "I'd like to order a Latte that has three modifications: (a) iced (b) Oat milk.",
    "I want to cancel my booking.",
    "I want to know what kinds of milk you have.",
    "I want to ask about the ingredients of a(n) Americano.",
    "I'd like the details of my booking.",
    "Move my flight to another day.",
    "I need to find out whether my parcel was sent.",
    "I want to ask about the baggage allowance.",
]
BUSINESSES = [None, "the airline", "the shop", "the bank", "the hotel", "the insurer"]
VALUES = ["NW8BKW", "2026-03-14", "ana@example.com"]

_DETERMINER = r"(the|a|an|my|your|our|their|any|some)"
_BROKEN = [
    (re.compile(rf"\b{_DETERMINER}\s+{_DETERMINER}\b", re.IGNORECASE), "two determiners"),
    (re.compile(r"\b(\w+)\s+\1\b", re.IGNORECASE), "a doubled word"),
    (re.compile(r"\b(hello|hi)\b[,.!]?\s+(hello|hi)\b", re.IGNORECASE), "two greetings"),
    (re.compile(r"\s[.,!?]"), "a space before punctuation"),
    (re.compile(r"\s{2,}"), "two spaces"),
    (re.compile(r"[{}]"), "a placeholder left"),
    (re.compile(r"\ban\s+[bcdfgjklpqrstvwz][a-z]", re.IGNORECASE), "'an' before a consonant"),
]
# Plural subject with a singular verb (and the reverse), for the facts above.
_AGREEMENT = re.compile(
    r"\b(digits|numbers|dates of travel)\s+is\b|\b(reference|number|email|date)\s+are\b"
)

#: Banks that are not sentences: verbs, rewrite rules, domain words, lead-ins.
NOT_TEMPLATES = {"actions", "non_native", "domains", "again", "languages"}


def english_templates() -> Iterator[tuple[str, str]]:
    for bank, body in phrases().items():
        if bank in NOT_TEMPLATES:
            continue
        if isinstance(body, dict):
            for key, templates in body.items():
                for template in templates:
                    yield f"{bank}.{key}", template
        else:
            for template in body:
                yield bank, template


def every_value_set() -> Iterator[dict[str, str]]:
    """Every fact name with every business; requests and values taken in turn."""
    for i, (name, shop) in enumerate(product(NAMES, BUSINESSES)):
        request, value = REQUESTS[i % len(REQUESTS)], VALUES[i % len(VALUES)]
        values = {**request_forms(request), "value": value, "pushback": request}
        values |= want_values(i)
        for key in ("fact", "item", "thing"):
            values |= noun_forms(key, name)
        if shop:
            values["business"] = shop
        yield values


def want_values(i: int) -> dict[str, str]:
    """Every {want...} placeholder, from the descriptions of WANTS read in turn from ``i``."""
    found: dict[str, str] = {}
    for description in WANTS[i % len(WANTS) :] + WANTS:
        want = read_want(description)
        for key, value in (
            ("want", want.verb_phrase),
            ("want_thing", want.thing),
            ("want_clause", want.clause),
            ("want_topic", want.topic),
        ):
            if value:
                found.setdefault(key, value)
    return found


def problems(text: str) -> list[str]:
    found = [why for pattern, why in _BROKEN if pattern.search(text)]
    if _AGREEMENT.search(text):
        found.append("no agreement")
    if not text[:1].isupper() and not text[:1].isdigit() and text[:1] not in "¿¡":
        found.append("no capital")
    return found


def test_every_english_template_renders_grammatically_with_any_fact_name_and_business():
    checked = 0
    for bank, template in english_templates():
        for values in every_value_set():
            if not usable([template], values):
                assert "business" in placeholders(template), (bank, template)
                continue
            text = fill(template, values)
            assert not problems(text), (bank, template, text, problems(text))
            checked += 1
    assert checked > 3_000


def test_every_translated_template_fills_every_placeholder():
    for language, banks in phrases()["languages"].items():
        for bank, templates in banks.items():
            for template, values in product(templates, list(every_value_set())[:40]):
                text = fill(template, values)
                assert "{" not in text and "}" not in text, (language, bank, text)
                assert not re.search(r"\s{2,}|\s[.,!?]", text), (language, bank, text)


def test_clause_items_have_their_own_template_and_read_as_clauses():
    assert all(is_clause(c) for c in CLAUSES) and not any(is_clause(n) for n in NAMES)
    for template, clause in product(phrases()["dont_know_clause"], CLAUSES):
        text = fill(template, {"item": clause})
        assert not problems(text), text
        assert f"my {clause}" not in text and f"the {clause}" not in text


@pytest.mark.parametrize(
    ("phrase", "noun", "a_noun", "verb"),
    [
        ("the tracking number", "tracking number", "a tracking number", "is"),
        ("my_booking_reference", "booking reference", "a booking reference", "is"),
        ("an order id", "order id", "an order id", "is"),
        ("last four digits", "last four digits", "last four digits", "are"),
        ("dates of travel", "dates of travel", "dates of travel", "are"),
        ("address", "address", "an address", "is"),
        ("PNR", "PNR", "a PNR", "is"),
        ("FAQ", "FAQ", "an FAQ", "is"),
        ("upgrade", "upgrade", "an upgrade", "is"),
        ("user name", "user name", "a user name", "is"),
        ("hour slot", "hour slot", "an hour slot", "is"),
    ],
)
def test_noun_forms_drop_the_writers_article_and_agree(phrase, noun, a_noun, verb):
    assert noun_forms("thing", phrase) == {"thing": noun, "a_thing": a_noun, "is": verb}


def test_articles_and_plurals_follow_sound_and_head():
    assert [article(w) for w in ("refund", "email", "voucher", "SMS", "one-way ticket")] == [
        "a",
        "an",
        "a",
        "an",
        "a",
    ]
    assert is_plural("bags") and is_plural("dates of travel") and not is_plural("address")
    assert bare("  The  my_order ") == "order"


DOMAIN_SCENARIOS = {
    "the airline": ("I need to move my flight to another day.", {"booking_reference": "NW8BKW"}),
    "the shop": ("My order never arrived and the parcel tracking shows nothing.", {}),
    "the bank": ("My debit card was charged twice; please check the bank transfer.", {}),
    "the hotel": ("I want to change my hotel room for the second night of my stay.", {}),
    "the insurer": ("I need to make a claim on my car insurance policy.", {}),
    None: ("I have a question.", {}),
}


@pytest.mark.parametrize("expected", list(DOMAIN_SCENARIOS), ids=str)
def test_the_business_comes_from_the_scenario_and_none_when_unclear(expected):
    description, known = DOMAIN_SCENARIOS[expected]
    scenario = Scenario(id="s", description=description, goal="done", known_info=known)
    assert business(scenario, domains()) == expected


async def test_goodbyes_name_the_scenarios_business_and_no_other():
    others = {b for b in BUSINESSES if b}
    stalling = FunctionTarget(lambda m: "Could you tell me more about that?")
    for expected, (description, known) in DOMAIN_SCENARIOS.items():
        scenario = Scenario(
            id="s",
            description=description,
            goal="done",
            known_info=known,
            success={"must_mention": ["all done"]},
        )
        for seed in range(12):
            persona = Persona(id="p", name="Pat", traits={"patience": "low"})
            spec = make_spec(persona, scenario, seed=seed)
            episode = await play_episode(spec, AgendaUser(spec), stalling, RunSettings())
            goodbye = episode.messages[-1].content
            assert episode.outcome.status == "gave_up"
            named = {b for b in others if b.split()[-1] in goodbye}
            assert named <= ({expected} if expected else set()), (expected, goodbye)


async def test_an_opening_that_greets_is_not_greeted_twice():
    scenario = Scenario(
        id="s",
        description="d",
        goal="g",
        opening="Hi, my order never arrived.",
        success={"must_mention": ["all done"]},
    )
    for seed, politeness in product(range(20), ("polite", "neutral")):
        persona = Persona(id="p", name="Pat", traits={"politeness": politeness})
        spec = make_spec(persona, scenario, seed=seed)
        user = AgendaUser(spec)
        opening = (await user.next_turn(EpisodeState(spec=spec))).content or ""
        assert not problems(opening), opening
        assert len(re.findall(r"\b(hi|hello|good morning)\b", opening, re.IGNORECASE)) <= 1
