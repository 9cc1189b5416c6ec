"""Filling the offline user's phrase templates grammatically, with any fact name and domain.

A template says `My {fact} {is} {value}.` and gets `My booking reference is NW8BKW.` or
`My last four digits are 4242.`; `I don't know my {item}` gets the item without the article a
scenario wrote ("the tracking number"), and an item that is a clause ("whether it was
delayed") goes to a template for clauses. `{business}` is the scenario's kind of business
("the airline", "the shop"), inferred from its words, so a goodbye names no other business; a
template that needs a value the scenario lacks is never picked.

The words (determiners, domains) live in `simulate/prompts/agenda.yaml`, beside the phrase
banks they fill.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from simulate.schema import Scenario

_DETERMINERS = re.compile(
    r"^(?:(?:the|a|an|my|your|our|their|his|her|its|any|some|this|that|these|those)\s+)+",
    re.IGNORECASE,
)
_CLAUSE = re.compile(r"^(?:who|what|when|where|which|whether|if|how|why)\b", re.IGNORECASE)
_SINGULAR_ENDINGS = ("ss", "us", "is", "ous", "news", "series", "status", "address")
_VOWEL_SOUND_LETTERS = set("aefhilmnorsx")
"""Initials read as a word starting with a vowel sound: an FAQ, an SMS, an MRI."""
_PLACEHOLDER = re.compile(r"{(\w+)}")
_GREETING = re.compile(
    r"^(hi|hello|hey|good (morning|afternoon|evening))( there)?\b[,.!]*\s*", re.IGNORECASE
)
_KEEPS_CAPITAL = re.compile(r"(I|I'm|I've|I'd|I'll)\b")


def bare(phrase: str) -> str:
    """A noun phrase without its determiners, as words: `the_tracking-number` -> `tracking
    number`, `my PNR` -> `PNR`."""
    words = " ".join(phrase.replace("_", " ").split())
    return _DETERMINERS.sub("", words).strip()


def is_clause(phrase: str) -> bool:
    """Whether an `unknown_info` item is a clause ("whether the flight was delayed")."""
    return _CLAUSE.match(phrase.strip()) is not None


def is_plural(noun: str) -> bool:
    """Whether a noun phrase is plural, by its head: `last four digits`, `dates of travel`."""
    head = noun.split(" of ")[0].split()[-1] if noun.split() else ""
    low = head.lower()
    if not low.endswith("s") or low.endswith(_SINGULAR_ENDINGS) or len(low) <= 3:
        return False
    return not head.isupper()


def article(noun: str) -> str:
    """`a` or `an` for a noun phrase, by the sound it starts with."""
    word = noun.split()[0] if noun.split() else ""
    if not word:
        return "a"
    if word.isupper() and len(word) > 1:  # initials: "an FAQ", "a PNR"
        return "an" if word[0].lower() in _VOWEL_SOUND_LETTERS else "a"
    low = word.lower()
    if low.startswith(("uni", "use", "usu", "eu", "one", "once")):
        return "a"
    if low.startswith(("hour", "honest", "honour", "heir")):
        return "an"
    return "an" if low[0] in "aeiou" else "a"


def noun_forms(name: str, phrase: str) -> dict[str, str]:
    """The placeholders of one noun: `{name}` bare, `{a_name}` with its article, `{is}`."""
    noun = bare(phrase)
    plural = is_plural(noun)
    return {
        name: noun,
        f"a_{name}": noun if plural else f"{article(noun)} {noun}",
        "is": "are" if plural else "is",
    }


def request_forms(request: str) -> dict[str, str]:
    """`{request}` as written, `{request_bare}` without its greeting ("Hi, I need ..." -> "I
    need ..."), `{request_lower}` that with a lower-case first letter (but "I ...")."""
    bare_request = _GREETING.sub("", request).strip() or request
    bare_request = bare_request[:1].upper() + bare_request[1:]
    return {
        "request": request,
        "request_bare": bare_request,
        "request_lower": lower_first(bare_request),
    }


def lower_first(text: str) -> str:
    """The first letter in lower case, unless it starts a word that keeps its capital ("I",
    "PNR")."""
    if _KEEPS_CAPITAL.match(text) or text[1:2].isupper():
        return text
    return text[:1].lower() + text[1:]


def placeholders(template: str) -> set[str]:
    """The names a template needs."""
    return set(_PLACEHOLDER.findall(template))


def usable(templates: Iterable[str], values: dict[str, str]) -> list[str]:
    """The templates whose every placeholder has a value."""
    return [t for t in templates if placeholders(t) <= values.keys()]


def fill(template: str, values: dict[str, str]) -> str:
    """A template filled, with spacing tidied and the first letter a capital."""
    text = template.format(**values)
    text = re.sub(r"\s+([.,!?])", r"\1", " ".join(text.split()))
    return text[:1].upper() + text[1:]


def compile_domains(domains: dict[str, dict[str, Any]]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """agenda.yaml's `domains` (name -> {words, business}) as (business, words pattern) pairs."""
    return tuple(
        (
            body["business"],
            re.compile(r"\b(?:" + "|".join(re.escape(w) for w in body["words"]) + r")s?\b"),
        )
        for body in domains.values()
    )


def business(scenario: Scenario, domains: tuple[tuple[str, re.Pattern[str]], ...]) -> str | None:
    """The business a scenario is about ("the airline"), from the words of its description,
    goal, opening, known facts, tags and instructions; None when no domain's words are there
    or two domains tie. ``domains`` comes from `compile_domains`."""
    text = " ".join(
        [
            scenario.description,
            scenario.goal,
            scenario.opening or "",
            *scenario.known_info,
            *scenario.tags,
            *scenario.instructions,
        ]
    ).lower()
    text = re.sub(r"[_\-]+", " ", text)
    hits = Counter({name: len(words.findall(text)) for name, words in domains})
    ranked = hits.most_common(2)
    if not ranked or ranked[0][1] == 0 or (len(ranked) > 1 and ranked[1][1] == ranked[0][1]):
        return None
    return ranked[0][0]
