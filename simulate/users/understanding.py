"""What an agent's sentence asks the offline user for: which of its known facts, in whose words.

Agents ask for a booking reference as "your booking number", "the code on your confirmation",
"your PNR". A `FactIndex` is built once per scenario from its `known_info`; `asked(sentence)`
returns the facts a sentence asks for, heard three ways:

1. by name: the fact's own name and aliases, and the everyday names of its kind of fact from
   the lexicon `simulate/prompts/facts.yaml` ("surname" for `last_name`, "PNR" for a booking
   reference);
2. by words: a field that belongs to no kind is heard by its own distinctive words
   (`home_club` in "which club do you train at?");
3. by the kind of value asked for: "when ...?" asks for a date, "how many ...?" for a count,
   "who ...?" for a person; among the facts of that type, the words of the question
   ("fly", "born") pick one.

It errs towards hearing nothing rather than the wrong fact: two facts that a sentence cannot tell
apart are both left out, a fact named only as the object of a preposition ("the email *on the
booking*") yields to the fact asked for, and a second fact is heard only when joined by "and".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

from simulate import prompts
from simulate.schema import Fact

EXPLICIT = 10
"""The fact's own name or alias."""
NAMED = 8
"""An everyday name of the fact's kind."""
WEAK = 5
"""A weak name ("booking", "order"): heard only when nothing stronger is."""
WORDS = 3
"""A distinctive word of the fact's name (facts of no kind only)."""

_CONNECTOR = re.compile(r"^\s*((and|or|plus|as well as|also|the|your|a|an|my|its|their)\s+)*$")
_CONJUNCT = re.compile(
    r"^\s*(and|or|plus|as well as)\s+(?!.*\b(i|we|i'll|we'll|i'd|we'd|i'm|me|us)\b)"
)
"""A second request in the same sentence: "... and the day you want to travel"."""
_CONJUNCT_WORDS = 6
_DETERMINER = r"(the|your|this|that|my|our|a|an|its|their)"
_BEFORE_OBJECT = re.compile(
    rf"\b((of|on|for|from|in|under|with|at|into|onto|off)\s+({_DETERMINER}\s+)?"
    rf"|to\s+{_DETERMINER}\s+)((?!(which|what|whose)\b)[a-z0-9']+\s+){{0,2}}$"
)
"""A preposition and its determiner before a name: the name says which ("the email *on the*
booking"), unless a wh-word makes it the question ("from *which* airport")."""
_ABBREVIATIONS = {"dob", "pnr", "no", "id", "num", "ff", "acc", "acct", "reg", "tel", "4", "iban"}


@lru_cache(maxsize=4096)
def normalize(text: str) -> str:
    """Lower-case words separated by single spaces: `Check-In_Date` -> `check in date`."""
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])", " ", text)
    text = re.sub(r"(?<=\w)'s\b", " 's", text)  # "the car's registration": the car owns it
    return re.sub(r"[^a-z0-9']+", " ", text).strip()


@cache
def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\S){re.escape(phrase)}(?!\S)")


@dataclass(frozen=True)
class Kind:
    """One everyday kind of fact from the lexicon."""

    name: str
    fields: tuple[re.Pattern[str], ...]
    names: tuple[str, ...]
    weak: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]
    cues: tuple[str, ...]
    type: str
    say: str
    strict: bool
    """Heard by the type of value asked for only with one of its cues, even when alone."""


@dataclass(frozen=True)
class Lexicon:
    """`facts.yaml`, compiled."""

    kinds: tuple[Kind, ...]
    types: dict[str, tuple[re.Pattern[str], ...]]
    opposites: dict[str, tuple[str, ...]]
    """A word of a fact's name -> sentence phrases that exclude the fact."""
    qualifiers: dict[str, tuple[str, ...]]
    """A word of a fact's name -> other words a sentence may say it with."""
    generic: frozenset[str]
    foreign: frozenset[str]
    """Words that make a fact's one-word name another thing's ("middle name")."""
    others: frozenset[str]
    """Words that make a fact named after them someone else's ("another card")."""
    heads: frozenset[str]
    """Head nouns a fact named after them is the subject of ("the *number* of your order")."""
    every_name: re.Pattern[str]
    """Every kind's (not weak) names, longest first, to find what a sentence names."""
    rewrites: tuple[tuple[re.Pattern[str], str], ...]
    requests: tuple[re.Pattern[str], ...]


def _any_of(phrases: Iterable[str]) -> re.Pattern[str]:
    """One pattern for whole-word phrases, the longest tried first."""
    ordered = sorted(set(phrases), key=len, reverse=True)
    return re.compile(r"(?<!\S)(?:" + "|".join(re.escape(p) for p in ordered) + r")(?!\S)")


@cache
def lexicon() -> Lexicon:
    """The lexicon of everyday facts, read once from the package."""
    data: dict[str, Any] = prompts.data("facts.yaml")
    kinds = tuple(
        Kind(
            name=name,
            fields=tuple(re.compile(p) for p in body["fields"]),
            names=tuple(normalize(n) for n in body.get("names", [])),
            weak=tuple(normalize(n) for n in body.get("weak", [])),
            patterns=tuple(re.compile(p) for p in body.get("patterns", [])),
            cues=tuple(normalize(c) for c in body.get("cues", [])),
            type=body["type"],
            say=body["say"],
            strict=body.get("strict", False),
        )
        for name, body in data["kinds"].items()
    )
    return Lexicon(
        kinds=kinds,
        types={t: tuple(re.compile(p) for p in ps) for t, ps in data["types"].items()},
        opposites={word: tuple(normalize(p) for p in rest) for word, *rest in data["opposites"]},
        qualifiers={
            word: tuple(normalize(p) for p in others) for word, others in data["qualifiers"].items()
        },
        generic=frozenset(data["generic"]),
        foreign=frozenset(data["foreign"]),
        others=frozenset(data["others"]),
        heads=frozenset(data["heads"]),
        every_name=_any_of(n for k in kinds for n in k.names),
        rewrites=tuple((re.compile(p, re.IGNORECASE), r) for p, r in data["rewrites"]),
        requests=tuple(re.compile(p, re.IGNORECASE) for p in data["requests"]),
    )


@cache
def kind_of(name: str, aliases: tuple[str, ...] = ()) -> Kind | None:
    """The lexicon's kind of the fact named ``name`` (or one of its aliases), if any."""
    for words in (normalize(name), *(normalize(a) for a in aliases)):
        for kind in lexicon().kinds:
            if any(p.fullmatch(words) for p in kind.fields):
                return kind
    return None


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE)
_NUMERIC_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def value_type(value: str) -> str:
    """The type of a fact's value from its shape: email, date, count, phone, code or text."""
    value = value.strip()
    words = value.lower().split()
    if _EMAIL.match(value):
        return "email"
    if _NUMERIC_DATE.fullmatch(value) or (
        len(words) <= 4 and any(w.startswith(_MONTHS) for w in words) and re.search(r"\d", value)
    ):
        return "date"
    if re.fullmatch(r"\d{1,2}", value):
        return "count"
    if re.fullmatch(r"\+?[\d ()-]{7,}", value) and sum(c.isdigit() for c in value) >= 7:
        return "phone"
    if re.search(r"\d", value):
        return "code"
    return "text"


@dataclass
class KnownFact:
    """One `known_info` entry as the index hears it."""

    name: str
    kind: Kind | None
    type: str
    phrases: tuple[str, ...]
    """Its own name and aliases, as words."""
    tokens: frozenset[str]
    """Every word of its name and aliases."""
    distinctive: frozenset[str]
    """Words of its name that are neither generic nor its kind's name ("new" in `new_email`)."""

    def label(self) -> str:
        """How the user names this fact in an answer."""
        words = self.phrases[0]
        if self.kind and (set(words.split()) & _ABBREVIATIONS or words == self.kind.name):
            return self.kind.say
        return words


@dataclass(frozen=True)
class Asked:
    """A fact a sentence asks for, and the words it used for it (None: only implied)."""

    field: str
    phrase: str | None = None


@dataclass
class _Match:
    facts: list[KnownFact]
    start: int
    end: int
    strength: int
    phrase: str | None = field(default=None)


class FactIndex:
    """The facts one simulated user knows, ready to be recognised in agents' sentences."""

    def __init__(self, known_info: dict[str, Fact]) -> None:
        generic = lexicon().generic
        self._heard: dict[tuple[str, str], list[Asked]] = {}
        self.facts: list[KnownFact] = []
        for name, fact in known_info.items():
            kind = kind_of(name, tuple(fact.aliases))
            phrases = tuple(p for p in (normalize(name), *map(normalize, fact.aliases)) if p)
            tokens = frozenset(w for p in phrases for w in p.split())
            own = set(normalize(kind.name).split()) if kind else set()
            distinctive = frozenset(w for w in normalize(name).split() if w not in generic | own)
            self.facts.append(
                KnownFact(
                    name=name,
                    kind=kind,
                    type=kind.type if kind else value_type(fact.value),
                    phrases=phrases,
                    tokens=tokens,
                    distinctive=distinctive,
                )
            )

    def label(self, name: str) -> str:
        """How the user names the fact ``name`` in an answer."""
        return next(f.label() for f in self.facts if f.name == name)

    def asked(self, sentence: str, context: str = "") -> list[Asked]:
        """The facts ``sentence`` asks for, in the order it names them.

        ``context`` is the rest of the agent's message: its words help tell apart facts of the
        type a question asks for ("Sure, I can rebook you. What day ...?").
        """
        key = (sentence, context)
        if key not in self._heard:
            self._heard[key] = self._asked(sentence, context)
        return list(self._heard[key])

    def _asked(self, sentence: str, context: str) -> list[Asked]:
        text = sentence
        for pattern, replacement in lexicon().rewrites:
            text = pattern.sub(replacement, text)
        words = normalize(text)
        if not words:
            return []
        wanted_type = self._type_asked(words)
        candidates = [f for f in self.facts if not self._opposed(f, words)]
        if wanted_type in ("date", "count", "person"):
            candidates = [f for f in candidates if f.type == wanted_type]
        matches = self._named(candidates, words)
        if wanted_type:  # "where did you make the purchase?" asks for a place, not an order
            matches = [m for m in matches if m.strength >= NAMED or m.facts[0].type == wanted_type]
        if matches:
            return self._chain(matches, words)
        if wanted_type:
            return self._by_type(candidates, f"{words} {normalize(context)}", wanted_type)
        return []

    # --- steps ------------------------------------------------------------------------------

    @staticmethod
    def _type_asked(words: str) -> str | None:
        for name, patterns in lexicon().types.items():
            if any(p.search(words) for p in patterns):
                return name
        return None

    @staticmethod
    def _opposed(fact: KnownFact, words: str) -> bool:
        """Whether the sentence says the opposite of one of the fact's words ("out" for
        `check_in_date`) and not the word itself."""
        said = set(words.split())
        for mine, others in lexicon().opposites.items():
            if mine in fact.tokens and mine not in said and any(_says(words, o) for o in others):
                return True
        return False

    def _named(self, facts: list[KnownFact], words: str) -> list[_Match]:
        """Every place the sentence names a fact, overlapping names resolved longest first.

        A place several facts fit keeps the one `_tell_apart` picks, or none (then it still
        counts as what the sentence asks for, so the facts it names as objects stay objects).
        """
        found: list[tuple[KnownFact, _Match]] = []
        for fact in facts:
            for phrase, strength in self._phrases(fact):
                for m in _phrase_pattern(phrase).finditer(words):
                    found.append((fact, _Match([], m.start(), m.end(), strength, phrase)))
            patterns = fact.kind.patterns if fact.kind else ()
            for pattern in patterns:
                if m := pattern.search(words):
                    found.append((fact, _Match([], m.start(), m.end(), NAMED)))
            if not fact.kind:
                for token in fact.distinctive:
                    for m in _phrase_pattern(token).finditer(words):
                        found.append((fact, _Match([], m.start(), m.end(), WORDS, token)))
        found = [(f, m) for f, m in found if not _another_thing(m, words)]
        named = [(m.start(), m.end()) for m in lexicon().every_name.finditer(words)]
        found = [(f, m) for f, m in found if not _inside_other_name(f, m, words, named)]
        found.sort(key=lambda fm: (-(fm[1].end - fm[1].start), -fm[1].strength, fm[1].start))
        kept: list[tuple[_Match, list[tuple[KnownFact, int]]]] = []
        for fact, match in found:
            span = (match.start, match.end)
            same = next((k for k in kept if (k[0].start, k[0].end) == span), None)
            if same is not None:
                if all(f is not fact for f, _ in same[1]):
                    same[1].append((fact, match.strength))
                continue
            if any(match.start < k.end and k.start < match.end for k, _ in kept):
                continue
            kept.append((match, [(fact, match.strength)]))
        resolved = []
        for match, fits in kept:
            chosen = self._tell_apart(fits, words[match.start : match.end], words)
            match.facts = [chosen] if chosen else []
            match.strength = max(s for _, s in fits)
            resolved.append(match)
        return sorted(resolved, key=lambda m: m.start)

    def _phrases(self, fact: KnownFact) -> list[tuple[str, int]]:
        phrases = [(p, EXPLICIT) for p in fact.phrases]
        if fact.kind:
            phrases += [(n, NAMED) for n in fact.kind.names]
            phrases += [(n, WEAK) for n in fact.kind.weak]
        return phrases

    @staticmethod
    def _tell_apart(fits: list[tuple[KnownFact, int]], name: str, words: str) -> KnownFact | None:
        """One fact among those a name fits (`email`, `new_email`): the one whose own words
        the name or else the sentence says, else the one named by its own name, else the one
        with no words of its own; None when it cannot tell."""
        if len(fits) == 1:
            return fits[0][0]
        for pick in (
            [f for f, _ in fits if _qualified(f, name)],
            [f for f, _ in fits if _qualified(f, words)],
            [f for f, s in fits if s == EXPLICIT],
            [f for f, _ in fits if not f.distinctive],
        ):
            if len(pick) == 1:
                return pick[0]
            if len(pick) > 1 and len(pick) < len(fits):
                return None  # some fit better than others, and no one best
        return None

    @staticmethod
    def _chain(matches: list[_Match], words: str) -> list[Asked]:
        """The fact the sentence asks for, and those joined to it by "and"."""

        matches = [m for m in matches if not _someone_elses(m, words)]
        if not matches:
            return []

        def is_object(i: int) -> bool:
            """Named only to say which: "the email *on the booking*"."""
            return _BEFORE_OBJECT.search(words[: matches[i].start]) is not None

        heads = [i for i in range(len(matches)) if not is_object(i)]
        if not heads:
            # Only objects: "the number *of your order*" asks for the order's number; "the
            # IMEI *of your phone*" or "the phone number *on your order*" for something else.
            if not _asks_for_its(words[: matches[0].start]):
                return []
            heads = list(range(len(matches)))
        best = max(matches[i].strength for i in heads)
        first = next(i for i in heads if matches[i].strength == best)
        chosen = [first]
        for step in (-1, 1):
            i = first
            while 0 <= i + step < len(matches):
                a, b = sorted((i, i + step))
                between = words[matches[a].end : matches[b].start]
                joined = _CONNECTOR.match(between) or (
                    _CONJUNCT.match(between) and len(between.split()) <= _CONJUNCT_WORDS
                )
                if not joined or matches[i + step].strength < WEAK:
                    break
                i += step
                chosen.append(i)
        asked = []
        for i in sorted(chosen):
            match = matches[i]
            if not match.facts:
                continue  # a name several facts fit, and the sentence does not say which
            named = match.strength == EXPLICIT or (
                match.strength == NAMED and match.phrase and " " in match.phrase
            )
            phrase = match.phrase if named else None
            if match.facts[0].name not in {a.field for a in asked}:
                asked.append(Asked(match.facts[0].name, phrase))
        return asked

    def _by_type(self, facts: list[KnownFact], words: str, wanted: str) -> list[Asked]:
        """The one fact of the type asked for that the sentence's words point at."""
        typed = [f for f in facts if f.type == wanted]

        def cues(fact: KnownFact) -> int:
            kind_cues = fact.kind.cues if fact.kind else ()
            return sum(1 for c in kind_cues if _says(words, c)) + _qualified(fact, words)

        scored = sorted(((cues(f), f) for f in typed), key=lambda x: -x[0])
        if not scored:
            return []
        top, fact = scored[0]
        if len(scored) > 1 and scored[1][0] == top:
            return []
        alone = len(typed) == 1 and not (fact.kind and fact.kind.strict)
        if top == 0 and not alone:
            return []
        return [Asked(fact.name)]


def _inside_other_name(
    fact: KnownFact, match: _Match, words: str, named: list[tuple[int, int]]
) -> bool:
    """Whether a name is part of a longer everyday name the fact does not go by: "code" in
    "sort code" is not a booking reference."""
    for start, end in named:
        longer = start <= match.start and match.end <= end and end - start > match.end - match.start
        if longer and not (fact.kind and words[start:end] in fact.kind.names):
            return True
    return False


def _someone_elses(match: _Match, words: str) -> bool:
    """Whether the name is about something not the user's own: "the *card*'s expiry date",
    "the other driver's *registration*", "your partner's *email*", "another *email*"."""
    if words[match.end :].startswith(" 's"):
        return True
    return bool(lexicon().others & set(words[: match.start].split()[-3:]))


def _another_thing(match: _Match, words: str) -> bool:
    """Whether a one-word name is part of another thing's name: "middle *name*"."""
    if match.phrase is None or " " in match.phrase:
        return False
    before = words[: match.start].split()
    return bool(before) and before[-1] in lexicon().foreign


def _asks_for_its(before: str) -> bool:
    """Whether the words before a fact named as an object ask for a plain part of it ("the
    number of ..."), not for another fact ("the phone number on ...") or thing ("the IMEI")."""
    if lexicon().every_name.search(before):
        return False
    words = before.split()
    return any(
        w in lexicon().heads and (i == 0 or words[i - 1] not in lexicon().foreign)
        for i, w in enumerate(words)
        if i >= len(words) - 4
    )


def _says(words: str, phrase: str) -> bool:
    return _phrase_pattern(phrase).search(words) is not None


def _qualified(fact: KnownFact, words: str) -> int:
    """How many of the fact's distinctive words the sentence says, itself or in other words."""
    synonyms = lexicon().qualifiers
    return sum(
        1
        for word in fact.distinctive
        if _says(words, word) or any(_says(words, s) for s in synonyms.get(word, ()))
    )


_GO_AHEAD = re.compile(
    r"\b(shall i|should i|do you want me to|would you like me to|can i go ahead|may i proceed|"
    r"(please )?confirm|is that (correct|right|ok)|go ahead|proceed)\b"
)


def asks_to_go_ahead(sentence: str) -> bool:
    """Whether a sentence is a question asking the user to go ahead ("Shall I cancel it?").

    It may also ask for a fact ("Could you confirm your email?"); callers that know the
    user's facts tell the two apart."""
    return "?" in sentence and _GO_AHEAD.search(sentence.lower()) is not None


_RIGHT = re.compile(
    r"\b(?:correct|correctly|accurate|accurately|okay|ok|good|fine|alright|complete)\b"
    r"|\bright\b(?! (?:now|away)\b)"
)
_WHAT_YOU_WANT = re.compile(
    r"\b(?:what|everything|the order|the one) you(?:'re| are)? (?:want|wanted|ordered|asked for|"
    r"expected|would like|see|seeing)\b|\b(?:is|are) (?:this|that|these) (?:your|the) "
    r"(?:\w+ )?order\b|\b(?:is|will) (?:that|this|it) (?:be )?all\b|\bmatch(?:es)? your\b|"
    r"^(?:\W*\w+[,.!-]+\s+){0,2}(?:so )?you want\b|[,.]\s*(?:right|correct|yes)\s*\?\s*$|"
    r"^\W*(?:correct|right)\s*\?\s*$"
)
_IS_IT = re.compile(
    r"^(?:\W*\w+[,.!-]+\s+){0,2}(?:so |and |now |ok |okay )?(?:is|are|does|do|did|has|was)\b"
    r"|\b(?:is|does|do|are) (?:this|that|it|everything|the order|your order|all|these)\b"
    r"|\blooks?\b|\bif (?:it|that|this|everything|the order)\b"
    r"|\b(?:is|are) (?:all )?(?:correct|right|accurate|okay|ok|fine|alright|complete)\b"
)
_CHECK = re.compile(
    r"\b(?:check|confirm|verif|review|look over|look at|take a look|have a look|make sure|"
    r"be sure|double[- ]check|see if|let me know if)\w*|\byour confirmation\b"
)
_AGENT_DOES = re.compile(
    r"^(?:\W*\w+[,.!]+\s+)?(?:i|we|i'll|we'll|i will|we will|i've|we've|i'm|let me (?!know))\b"
)
_ASKS_YOU = re.compile(
    r"\byou to\b|\byour confirmation\b|\byou (?:confirm|check|verify|approve)\b|"
    r"\bif (?:this|it|that|everything|the order) (?:looks?|is)\b"
)
_OFFER = re.compile(
    r"\b(?:would you like|do you want)\b|"
    r"^(?:\W*\w+[,.!-]+\s+){0,2}(?:what|which|how|when|where|who|why)\b"
)


def asks_to_check(sentence: str) -> bool:
    """Whether a sentence asks the user to check that something is right ("Is this order
    correct?", "Please check the screen and confirm your order.", "does this look okay"), with
    or without a question mark; not what the agent says it will check itself.

    It may also ask for a fact ("Please confirm your email."); callers that know the user's
    facts tell the two apart."""
    low = sentence.lower().replace("\u2019", "'")
    if _AGENT_DOES.search(low) and not _ASKS_YOU.search(low):
        return False
    if _CHECK.search(low) or _WHAT_YOU_WANT.search(low):
        return True
    if _OFFER.search(low):
        return False
    return bool(_RIGHT.search(low) and _IS_IT.search(low))


_SENTENCE_BREAK = re.compile(r"(?<=[.?!])\s+|\n+")


def sentences(message: str) -> list[str]:
    """An agent message cut into sentences."""
    return [s for s in _SENTENCE_BREAK.split(message) if s.strip()]


def is_request(sentence: str) -> bool:
    """Whether a sentence asks the user for something (a question, or "please share ...")."""
    return any(p.search(sentence) for p in lexicon().requests)
