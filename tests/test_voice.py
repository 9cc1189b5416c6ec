"""How a simulated person types: tendencies from the persona's traits, applied per message, with
facts left as they are."""

from __future__ import annotations

import random
import re
from statistics import mean

from simulate.schema import Traits
from simulate.users.voice import Voice, add_please, add_typos, casually, dress, voice_of

PLAIN = Voice(
    greets=0, please=0, full_stop=1, lower=0, exclaim=0, repair=0, commas=1, casual=0, typo_rate=0
)


def voices(**traits: object) -> list[Voice]:
    return [voice_of(Traits(**traits), random.Random(seed)) for seed in range(40)]


def test_traits_set_the_tendencies_and_people_with_the_same_traits_differ_a_little():
    polite, rude = voices(politeness="polite"), voices(politeness="rude")
    assert mean(v.please for v in polite) > 0.5 > mean(v.please for v in rude) == 0
    assert mean(v.greets for v in polite) > mean(v.greets for v in rude)
    terse, verbose = voices(verbosity="terse"), voices(verbosity="verbose")
    assert mean(v.full_stop for v in terse) < mean(v.full_stop for v in verbose)
    assert len({round(v.full_stop, 3) for v in terse}) > 30  # a spread, not one value
    assert all(v.typo_rate == 0.2 for v in voices(typo_rate=0.2))


def test_dress_is_seeded_and_never_lower_cases_or_misspells_a_fact():
    voice = Voice(
        greets=0, please=0, full_stop=0, lower=1, exclaim=0, repair=0, commas=0, casual=0,
        typo_rate=1.0,
    )  # fmt: skip
    protected = {"a", "55021", "silva"}
    text = "A-55021 is the order number, Silva"
    first = dress(text, voice, random.Random(3), protected)
    assert first == dress(text, voice, random.Random(3), protected)
    assert first.startswith("A-55021") and first.endswith("Silva")
    assert first != text  # every other long word got a typo
    assert dress("Yes, it is.", voice, random.Random(0), set()) == "yes it is"


def test_an_opening_keeps_its_capital_and_a_warm_message_may_end_with_a_bang():
    loud = Voice(
        greets=0, please=0, full_stop=1, lower=1, exclaim=1, repair=0, commas=1, casual=0,
        typo_rate=0,
    )  # fmt: skip
    assert dress("Hi, can I get a latte?", loud, random.Random(0), set(), opening=True)[0] == "H"
    assert dress("Yes, thank you.", loud, random.Random(0), set(), warm=True) == "yes, thank you!"
    assert dress("Yes, thank you.", PLAIN, random.Random(0), set(), warm=True) == "Yes, thank you."


def test_a_self_repair_fixes_one_word_with_a_star():
    fixer = Voice(
        greets=0, please=0, full_stop=1, lower=0, exclaim=0, repair=1, commas=1, casual=0,
        typo_rate=0,
    )  # fmt: skip
    for seed in range(20):
        text = dress("Can I get a latte with oat milk.", fixer, random.Random(seed), {"oat"})
        typo, fixed = re.fullmatch(r"(.*) \*(\w+)", text).groups()
        assert fixed in {"latte", "with", "milk"} and fixed not in typo.split()


def test_longer_words_get_more_typos_but_the_rate_holds():
    text = " ".join(["word"] * 100 + ["something"] * 100)
    rng = random.Random(1)
    typed = [add_typos(text, 0.2, rng, set()).split() for _ in range(20)]
    short = mean(sum(w != "word" for w in t[:100]) for t in typed)
    long = mean(sum(w != "something" for w in t[100:]) for t in typed)
    assert long > 1.5 * short
    assert 30 < short + long < 50  # 20% of 200 words


def test_please_goes_inside_a_can_i_question_or_before_the_closing_mark():
    placed = {add_please("Can I get a latte?", random.Random(seed)) for seed in range(30)}
    assert placed == {
        "Can I please get a latte?",
        "Can I get a latte, please?",
        "Can I get a latte please?",
    }
    assert add_please("Please help.", random.Random(0)) == "Please help."
    assert add_please("I'd like a latte", random.Random(5)).endswith("please.")


def test_things_are_named_casually_but_names_are_kept():
    relaxed = Voice(
        greets=0, please=0, full_stop=1, lower=0, exclaim=0, repair=0, commas=1, casual=1,
        typo_rate=0,
    )  # fmt: skip
    short = {"decaffeinated": "decaf"}
    text = "a decaffeinated Latte with Oat milk for Silva"
    assert casually(text, relaxed, random.Random(0), short, {"silva"}) == (
        "a decaf latte with oat milk for Silva"
    )
    assert casually(text, PLAIN, random.Random(0), short, set()) == text
