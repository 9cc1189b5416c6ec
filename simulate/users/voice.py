"""How one simulated person writes: greetings, please, casing, end punctuation, typos, repairs.

People differ in how they type, and one person is not the same in every message: some greet
and say please, some never end with a full stop, some start replies in lower case, some fix a
typo with "*word". A `Voice` holds one person's tendencies, drawn once per episode from the
persona's traits (politeness, verbosity, tone, expertise, typo_rate) with a little seeded
spread, so two people with the same traits do not type alike; `dress` applies it to one
message. Facts (values the scenario gives) are never misspelled or re-cased.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from simulate.schema import Traits
from simulate.users.wording import lower_first

#: Chance that a request greets first, by politeness.
GREETS = {"polite": 0.6, "neutral": 0.3, "rude": 0.05}
#: Chance that a request says please, by politeness.
PLEASE = {"polite": 0.7, "neutral": 0.35, "rude": 0.0}
#: Chance that a message keeps its closing full stop, by verbosity.
FULL_STOP = {"terse": 0.45, "normal": 0.7, "verbose": 0.85}
#: Chance that a reply (not the opening) starts in lower case, by verbosity.
LOWER = {"terse": 0.3, "normal": 0.2, "verbose": 0.08}
#: Chance that a warm message (a yes, a thanks) ends with "!", by tone.
EXCLAIM = {"friendly": 0.3, "anxious": 0.05, "calm": 0.05, "frustrated": 0.0, "angry": 0.0}
#: Chance that a message holds a typo its writer fixes ("lattte *latte"), by expertise.
REPAIR = {"novice": 0.03, "intermediate": 0.015, "expert": 0.01}
#: Chance that a request names things casually: in lower case ("a latte with oat milk"), in
#: everyday short words ("decaf").
CASUAL = 0.35
#: Chance that a person keeps the comma after a first "Yes", "Hi", "No" ("Yes, it is.").
COMMAS = 0.65
#: Where please goes: after "Can I" (this share of the requests that start so), else before
#: the closing mark, with a comma in this share.
PLEASE_INSIDE = 0.3
PLEASE_COMMA = 0.4
#: Messages this short lose their full stop and capital more often, by SHORT_SLACK.
SHORT_WORDS = 2
SHORT_SLACK = 0.1
SPREAD = 0.1
"""How far one person's tendencies stray from their traits' (uniform, either way)."""
_MIN_REPAIR_LETTERS = 4
_ASK = re.compile(r"^(?:can|could|may) i\b", re.IGNORECASE)
_LEAD_COMMA = re.compile(
    r"^((?:yes|yeah|yep|no|nope|ok|okay|sure)),(?= )",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Voice:
    """One person's writing tendencies, each a chance per message."""

    greets: float
    please: float
    full_stop: float
    lower: float
    exclaim: float
    repair: float
    commas: float
    casual: float
    typo_rate: float


def voice_of(traits: Traits, rng: random.Random) -> Voice:
    """A person's voice from their traits, spread a little by ``rng`` (the episode's seed)."""

    def spread(base: float) -> float:
        width = min(SPREAD, base / 2)  # a rare habit stays rare
        return min(1.0, max(0.0, base + rng.uniform(-width, width))) if base > 0 else 0.0

    heated = traits.tone in ("frustrated", "angry")
    return Voice(
        greets=spread(GREETS[traits.politeness]),
        please=spread(PLEASE[traits.politeness] - (0.15 if heated else 0.0)),
        full_stop=spread(FULL_STOP[traits.verbosity] - (0.15 if heated else 0.0)),
        lower=spread(LOWER[traits.verbosity]),
        exclaim=spread(EXCLAIM[traits.tone]),
        repair=spread(REPAIR[traits.expertise]) / 2,
        commas=spread(COMMAS + (0.2 if traits.verbosity == "verbose" else 0.0)),
        casual=spread(CASUAL - (0.2 if traits.expertise == "expert" else 0.0)),
        typo_rate=traits.typo_rate,
    )


def add_typos(text: str, rate: float, rng: random.Random, protected: set[str]) -> str:
    """Misspell about ``rate`` of the words, leaving the ``protected`` ones (facts) intact.

    Longer words are mistyped more often (each letter is a chance to slip): a word's chance is
    ``rate`` times its length over the mean length of the message's words that may be
    mistyped, so the share of misspelled words stays ``rate``."""
    if rate <= 0:
        return text
    typable = [
        len(w) for w in re.findall(r"[A-Za-z]+", text) if len(w) >= 4 and w.lower() not in protected
    ]
    if not typable:
        return text
    mean = sum(typable) / len(typable)

    def misspell(match: re.Match[str]) -> str:
        word = match.group(0)
        if word.lower() in protected or len(word) < 4 or rng.random() >= rate * len(word) / mean:
            return word
        return _misspelled(word, rng)

    return re.sub(r"[A-Za-z]+", misspell, text)


def _misspelled(word: str, rng: random.Random) -> str:
    """One typo in ``word``: two letters swapped, one dropped or one doubled."""
    i = rng.randrange(1, len(word) - 1)
    op = rng.choice(("swap", "drop", "double"))
    if op == "swap" and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == "drop":
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def casually(
    text: str, voice: Voice, rng: random.Random, short: dict[str, str], keep: set[str]
) -> str:
    """``text`` named casually, some of the time: Title-case words in lower case ("a Latte" ->
    "a latte") and words in their everyday short form (``short``: "decaffeinated" -> "decaf"),
    except the words in ``keep`` (names)."""
    if rng.random() >= voice.casual:
        return text

    def relax(match: re.Match[str]) -> str:
        word = match.group(0)
        if word.lower() in keep:
            return word
        word = short.get(word.lower(), word)
        return word.lower() if re.fullmatch(r"[A-Z][a-z]+", word) else word

    return re.sub(r"[A-Za-z]+", relax, text)


def add_please(text: str, rng: random.Random) -> str:
    """``text`` with please: after "Can I" ("Can I please get ..."), or before its closing mark
    with or without a comma; unchanged when it says please already."""
    if re.search(r"\bplease\b", text, re.IGNORECASE):
        return text
    ask = _ASK.match(text)
    where = rng.random()
    if ask and where < PLEASE_INSIDE:
        return f"{ask.group(0)} please{text[ask.end() :]}"
    body = text.rstrip(".!?")
    comma = "," if where < PLEASE_COMMA else ""
    return f"{body}{comma} please{text[len(body) :] or '.'}"


def dress(
    text: str,
    voice: Voice,
    rng: random.Random,
    protected: set[str],
    *,
    opening: bool = False,
    warm: bool = False,
    firm: bool = False,
) -> str:
    """One message in the person's voice: its closing full stop kept or dropped, "!" on a warm
    one, the comma after a first "Yes" dropped and a lower-case start (neither on the opening
    nor on a ``firm`` message, a no to going ahead: "No, don't do that."), typos and, rarely,
    one fixed with "*word"."""
    if warm and text.endswith(".") and rng.random() < voice.exclaim:
        text = text[:-1] + "!"
    short = len(text.split()) <= SHORT_WORDS  # "Yes", "yes it is": typed fast
    full_stop = voice.full_stop - (SHORT_SLACK if short else 0.0)
    if text.endswith(".") and not text.endswith("..") and rng.random() >= full_stop:
        text = text[:-1]
    if rng.random() >= voice.commas and not firm:
        text = _LEAD_COMMA.sub(r"\1", text)
    first = re.match(r"\w+", text)
    fact_first = first is not None and first.group(0).lower() in protected  # "A-55021" stays
    keep = opening or firm
    if not keep and rng.random() < voice.lower + (SHORT_SLACK / 2 if short else 0.0):
        text = text if fact_first else lower_first(text)
    text = add_typos(text, voice.typo_rate, rng, protected)
    if rng.random() < voice.repair:
        text = _repaired(text, rng, protected)
    return text


def _repaired(text: str, rng: random.Random, protected: set[str]) -> str:
    """``text`` with one word misspelled and fixed after it, as people do: "lattte *latte"."""
    words = [
        m
        for m in re.finditer(r"[A-Za-z]+", text)
        if len(m.group(0)) >= _MIN_REPAIR_LETTERS and m.group(0).lower() not in protected
    ]
    if not words:
        return text
    word = rng.choice(words)
    typo = _misspelled(word.group(0), rng)
    return f"{text[: word.start()]}{typo}{text[word.end() :]} *{word.group(0)}"
