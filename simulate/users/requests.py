"""What the offline user asks for, in a person's words rather than a scenario writer's.

A scenario's `description` is a note about what the user wants ("I'd like to order a Latte that
has three modifications: (a) iced (b) Oat milk ..."); people do not recite such notes, they
ask ("can I get an iced latte with oat milk?"). `read_want` takes the note apart: the writer's
punctuation (parentheses, enumerations, quotes, "etc." examples) goes, and the first sentence
becomes what the user wants done (`verb_phrase`: "cancel my booking"), what it wants to get
(`thing`: "a latte with oat milk"), what it wants to know (`clause`: "what kinds of milk you
have") or a topic to ask about; later sentences are details, said with it or later.

A scenario's instructions may hold later steps of the conversation, written "Then: I want to
ask what kind of syrup you have." (as `simulate import conversations` writes a Taskmaster
writer's hints): `read_step` turns each into what the user says at that point ("What kind of
syrup do you have?"), a no followed by that, or a confirmation to give when asked.

The words that tell these apart (verbs of getting and of learning) live in
`simulate/prompts/agenda.yaml` under `wants`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

from simulate import prompts
from simulate.users.wording import article

_GREETING = re.compile(
    r"^(?:hi|hello|hey|good (?:morning|afternoon|evening))(?: there)?\b[,.!]*\s*", re.IGNORECASE
)
_WANT = re.compile(
    r"^(?:i(?:'d| would) (?:like|love)|i (?:really )?(?:want|need|wish)|i'm (?:looking|hoping)"
    r"|i am (?:looking|hoping))(?P<to> to)?\s+(?P<rest>.+)$",
    re.IGNORECASE,
)
_ENUMERATION = re.compile(
    r"\b(?:a|an) (?P<head>[\w%-]+(?: [\w%-]+)?) (?:that has|that have|with) "
    r"(?:these |the following )?(?:\w+ )?"
    r"(?:modifications?|changes?|extras?|things?|options?)\s*:\s*"
    r"(?P<items>\((?:a|1)\).*?)(?=\s*\(in |\.|$)",
    re.IGNORECASE,
)
_ENUMERATOR = re.compile(r"\s*\((?:[a-h]|[ivx]{1,4}|\d)\)\s*(?:has\s+)?", re.IGNORECASE)
_PARENTHESIS = re.compile(r"\s*\([^()]*\)")
_AN = re.compile(r"\ba\(n\)\s+(\S+)", re.IGNORECASE)
_QUOTE = re.compile(r"(?<![A-Za-z])['\"“”‘’]|['\"“”‘’](?![A-Za-z])")
_EXAMPLES = re.compile(r"\b(?:etc|e\.g|i\.e|for example|for instance)\b", re.IGNORECASE)
_HAS = re.compile(r"\b(?:that|which) (?:has|have|comes with|contains)\b", re.IGNORECASE)
_LIST_INTRO = re.compile(
    r"\bwith (?:these |the following )?(?:\w+ )?(?:modifications?|changes?|extras?|things?|"
    r"options?|details?)\s*:\s*",
    re.IGNORECASE,
)
_SAY_VERB = re.compile(
    r"\s*\band (?:specify|mention|say|note|add a note|include the (?:instruction|note) of)"
    r"(?:\s+that|\s+\w+ things?\s*:)?\s+",
    re.IGNORECASE,
)
_SAY_SENTENCE = re.compile(
    r"^i (?:want|would like|'d like|need) to (?:specify|mention|say|note)(?: that)?\s+",
    re.IGNORECASE,
)
_COUNT_OF = re.compile(
    r"\b(two|three|four|five|2|3|4|5) of (?:these|this|them|those)\s*:\s*([^.,;]+)", re.IGNORECASE
)
_RELATED = re.compile(r"\b(\w+) related (?=\1\b)", re.IGNORECASE)
"""A topic left unfilled in a task template: "a question related question"."""
_LIST_OF = re.compile(
    r"\b(?:two|three|four|2|3|4) (?:different |separate )?(?:drinks|things|items|orders)\s*:\s*",
    re.IGNORECASE,
)
_THIS_COLON = re.compile(r"\b(?:this|these|the following)\s*:\s*", re.IGNORECASE)
_SPLICE = re.compile(r",\s+(?=(?:it's|it is|i want|i'd|i need|i would|and i)\b)", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_GREET = re.compile(
    r"^(?:start with|begin with|open with|say|start by saying) (?:a |an )?(?:\w+ )?"
    r"(?:hello|hi|greeting)\b",
    re.IGNORECASE,
)
_AND_I = re.compile(r",? and (?=i (?:want|would like|'d like)\b)", re.IGNORECASE)
_IT_IS_ONE = re.compile(r"^it(?:'s| is) (?:a |an )?([a-z-]+)$", re.IGNORECASE)
_IT_IS_KIND = re.compile(r"^it(?:'s| is) (?:a |an )?(.+?) order$", re.IGNORECASE)
_I_WANT = re.compile(r"^i (?:want|would like|'d like) (.+)$", re.IGNORECASE)
_FOR_EACH = re.compile(
    r"^for one,? i want (.+?),? (?:while|and|but) (?:for )?the other(?:,? i want)? (.+)$",
    re.IGNORECASE,
)
_BUT_ADJECTIVE = re.compile(r"^(?:a|an) ([^,]+), but ([a-z]+)$")
_COMMA_NOUN = re.compile(r"^((?:a|an|the|one) [^,]+), ([a-z0-9%-]+(?: [a-z]+)?)$", re.IGNORECASE)
_OF_ME = re.compile(r"\b(one|each|the other) of (?:me|us)\b", re.IGNORECASE)
_CLAUSE_START = re.compile(r"^(?:what|which|where|when|who|whether|if|how|why)\b", re.IGNORECASE)
_STEP = re.compile(r"^\s*then\s*[:,]\s*(.+)$", re.IGNORECASE | re.DOTALL)
_STEP_CONFIRM = re.compile(
    r"^(?:i want to |i'd like to )?(?:answer|say|reply) (?:yes|ok|okay)\b|"
    r"^(?:i want to |i'd like to )?confirm\b",
    re.IGNORECASE,
)
_STEP_NO = re.compile(r"^(?:i want to |i'd like to )?say no\b[,.;]*\s*(?:then|and then|and)?\s*")
_STEP_ASK_TO = re.compile(
    r"^(?:i want to |i'd like to )?ask (?:you|the agent|the barista|them)? ?to (.+)$",
    re.IGNORECASE,
)
_STEP_ASK = re.compile(
    r"^(?:i want to |i'd like to )?(?:ask|know|find out)(?: you| the agent| them)?"
    r"(?: about)? (.+)$",
    re.IGNORECASE,
)
_STEP_SAY = re.compile(
    r"^(?:i want to |i'd like to )?(?:say|tell (?:you|them))(?: that)? (.+)$", re.IGNORECASE
)
_TO_ME = re.compile(r"\b(show|give|send|tell|read|bring) (the [\w ]+?|it|that|them) to me\b")
_AUXILIARIES = {"is", "are", "was", "were", "can", "could", "will", "would", "should", "do", "does"}
_SUBJECTS = {"you", "i", "we", "they", "it", "he", "she"}


@cache
def want_words() -> dict[str, frozenset[str]]:
    """Verbs that tell what a user wants (agenda.yaml): `get` a thing (`order` it), `learn`
    something, and the request verbs (`actions`) an imperative note starts with."""
    data = prompts.data("agenda.yaml")
    return {
        "get": frozenset(data["wants"]["get"]),
        "order": frozenset(data["wants"]["order"]),
        "learn": frozenset(data["wants"]["learn"]),
        "actions": frozenset(data["actions"]),
    }


@dataclass(frozen=True)
class Want:
    """What a scenario's user wants, in parts a person can say it with."""

    said: str
    """The first sentence without the writer's punctuation: said as is when nothing else fits."""
    verb_phrase: str | None = None
    """What the user wants done: "cancel my booking"."""
    thing: str | None = None
    """What the user wants to get: "a latte with oat milk"."""
    clause: str | None = None
    """What the user wants to know, as a clause: "what kinds of milk you have"."""
    topic: str | None = None
    """What the user wants to ask about: "the ingredients of a cold brew"."""
    details: tuple[str, ...] = field(default=())
    """Later sentences of the note: said with the request or when there is room."""
    greets: bool = False
    """Whether all the user means to open with is a hello ("start with a polite hello")."""
    orders: bool = False
    """Whether the thing is ordered or bought (not "the details of my booking")."""


def clean(note: str) -> str:
    """A writer's note without its list punctuation: enumerations, parentheses, quotes,
    "a(n)", "that has", "N of these: X"."""
    text = note.replace("’", "'").replace("‘", "'")
    text = _AN.sub(lambda m: f"{article(m.group(1))} {m.group(1)}", text)
    text = _ENUMERATION.sub(_listed, text)
    text = _ENUMERATOR.sub(" ", text)
    text = _PARENTHESIS.sub("", text)
    text = _QUOTE.sub("", text)
    text = _RELATED.sub("", text)
    text = _HAS.sub("with", text)
    text = _LIST_INTRO.sub("with ", text)
    text = _SAY_VERB.sub(", ", text)
    text = _COUNT_OF.sub(lambda m: f"{m.group(1)} {_plural(m.group(2).strip())}", text)
    text = _LIST_OF.sub("", text)
    text = _THIS_COLON.sub("", text)
    text = _OF_ME.sub(r"\1", text)
    text = re.sub(r":\s*,", ":", text)
    text = re.sub(r"\s*,\s*(?:,\s*)+", ", ", text)
    text = re.sub(r"\s+([.,!?;:])", r"\1", " ".join(text.split()))
    return text.strip(" ,")


def _listed(match: re.Match[str]) -> str:
    """A thing with an enumerated list of changes, as people say it: one-word items before it
    ("iced", "decaf"), the others after "with": "an iced Latte with Oat milk and Caramel"."""
    items = [
        re.sub(r"^(?:(?:and|has|have|with)\s+)+|\s+and$", "", item.strip(" ,"), flags=re.IGNORECASE)
        for item in _ENUMERATOR.split(match.group("items"))
    ]
    items = [i for i in items if i]
    before = [i for i in items if re.fullmatch(r"[a-z-]+", i)]
    after = [i for i in items if i not in before]
    head = " ".join([*before, match.group("head")])
    text = f"{article(head)} {head}"
    if after:
        text += " with " + (
            " and ".join([", ".join(after[:-1]), after[-1]]) if len(after) > 1 else after[0]
        )
    return text


def _plural(noun: str) -> str:
    return noun if noun.lower().endswith("s") else f"{noun}s"


def _sentences(text: str) -> list[str]:
    """The sentences of a note, writer's examples ("... etc.") left out."""
    return [s.strip() for s in _SENTENCE.split(text) if s.strip() and not _EXAMPLES.search(s)]


def read_want(note: str) -> Want:
    """Take a scenario's description (or opening) apart into what a person would say."""
    sentences = _sentences(clean(note)) or [note.strip()]
    first = _GREETING.sub("", sentences[0]).strip() or sentences[0]
    details = tuple(_detail(s) for s in sentences[1:])
    bare = first.rstrip(".!").strip()
    words = want_words()
    match = _WANT.match(bare)
    if match is None:
        verb = bare.split()[0].lower() if bare.split() else ""
        if verb in words["actions"]:  # an imperative note: "Move my flight."
            return Want(said=first, verb_phrase=_first_person(bare), details=details)
        return Want(said=first, details=details)
    rest = match.group("rest").strip()
    if not match.group("to"):  # "I'd like a latte", "I need help with ..."
        rest, tail = _split_clause(rest)
        details = (*tail, *details)
        if rest.split()[0].lower() in ("a", "an", "the", "one", "two", "some", "my"):
            return _thing_want(first, rest, details)
        return Want(said=first, details=details)
    rest, tail = _split_clause(rest)
    details = (*tail, *details)
    verb, _, obj = rest.partition(" ")
    verb = verb.lower()
    if verb in words["get"] and obj:
        return _thing_want(first, obj, details, orders=verb in words["order"])
    if verb in words["learn"] and obj:
        obj = re.sub(r"^(?:out|you|from you)\s+", "", obj)
        if obj.lower().startswith("about "):
            return Want(said=first, topic=obj[6:], details=details)
        if _CLAUSE_START.match(obj):
            return Want(said=first, clause=obj, details=details)
    if _GREET.match(rest):
        return Want(said=first, greets=True, details=details)
    return Want(said=first, verb_phrase=_first_person(rest), details=details)


def _thing_want(said: str, thing: str, details: tuple[str, ...], orders: bool = False) -> Want:
    """A want to get a thing, with the details that describe it folded in: "the Espresso" and
    "It's a double and I want whole milk" -> "a double Espresso with whole milk"."""
    thing = _tidy_thing(_article_for(thing))
    rest = []
    for detail in (p for d in details for p in _AND_I.split(d)):
        bare = detail.strip().rstrip(".!")
        if match := _IT_IS_ONE.match(bare):
            word = match.group(1).lower()
            head = re.sub(r"^(?:a|an|the|one)\s+", "", thing, flags=re.IGNORECASE)
            thing = f"{article(word)} {word} {head}" if head != thing else f"{word} {thing}"
        elif match := _IT_IS_KIND.match(bare):
            thing = f"{thing} {match.group(1).lower()}"
        elif match := _I_WANT.match(bare):
            joiner = " and " if " with " in thing else " with "
            thing = f"{thing}{joiner}{match.group(1)}"
        elif match := _FOR_EACH.match(bare):
            rest.append(_each(match))
        else:
            rest.append(detail)
    return Want(said=said, thing=thing, details=tuple(rest), orders=orders)


def _each(match: re.Match[str]) -> str:
    """ "For one I want oat milk while for the other I want 2% milk" -> "One with oat milk and
    one with 2% milk."."""
    parts = []
    for item in (match.group(1), match.group(2)):
        item = item.strip(" ,.")
        if item.lower() == "not":
            parts.append("one not")
        elif re.fullmatch(r"[a-z-]+", item):
            parts.append(f"one {item}")
        else:
            parts.append(f"one with {item}")
    return f"{parts[0][:1].upper()}{parts[0][1:]} and {parts[1]}."


def _split_clause(text: str) -> tuple[str, tuple[str, ...]]:
    """A request and the clause spliced onto it with a comma ("the latte, it's a single"), which
    people say as a sentence of its own."""
    match = _SPLICE.search(text)
    if match is None:
        return text, ()
    tail = text[match.end() :].strip()
    return text[: match.start()].strip(), (tail[:1].upper() + tail[1:],)


def _first_person(verb_phrase: str) -> str:
    """A verb phrase as the user says it: lower-case verb, no full stop."""
    text = verb_phrase.rstrip(".!").strip()
    return text[:1].lower() + text[1:]


def _tidy_thing(thing: str) -> str:
    """A thing to get as people name it: "a Mocha, but decaffeinated" -> "a decaffeinated
    Mocha", "a Cortado, oat milk" -> "a Cortado with oat milk"."""
    if match := _BUT_ADJECTIVE.match(thing):
        head = f"{match.group(2)} {match.group(1)}"
        return f"{article(head)} {head}"
    if match := _COMMA_NOUN.match(thing):
        joiner = "and" if " with " in match.group(1) else "with"
        return f"{match.group(1)} {joiner} {match.group(2)}"
    return thing


def _article_for(thing: str) -> str:
    """A thing to get with the right article ("a Americano" -> "an Americano"), or "a"/"an"
    when the note gave it none ("Cortado, oat milk")."""
    first, _, rest = thing.partition(" ")
    if first.lower() in ("a", "an") and rest:
        return f"{article(rest)} {rest}"
    determiners = ("the", "one", "two", "three", "four", "some", "my", "your", "any")
    if first.lower() in determiners or first.isdigit():
        return thing
    return f"{article(thing)} {thing}"


def _detail(sentence: str) -> str:
    """A later sentence of the note as the user says it ("I want to specify it is a to go
    order." -> "it is a to go order")."""
    text = _SAY_SENTENCE.sub("", sentence)
    text = re.sub(r"^(?:however|also|and|but),?\s+", "", text, flags=re.IGNORECASE)
    return text[:1].upper() + text[1:]


# --- later steps ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One later step of the conversation from a scenario's "Then: ..." instruction."""

    kind: Literal["confirm", "say"]
    """`confirm`: agree when asked; `say`: say ``text`` at the next turn with room for it."""
    text: str = ""
    no: bool = False
    """Whether the user first says no (to what the agent offered)."""


def read_step(instruction: str) -> Step | None:
    """The step an instruction "Then: ..." describes; None for other instructions."""
    match = _STEP.match(instruction)
    if match is None:
        return None
    body = clean(match.group(1)).rstrip(".!").strip()
    if _STEP_CONFIRM.match(body):
        return Step("confirm")
    no = _STEP_NO.match(body.lower())
    if no:
        body = body[no.end() :]
    text = _utterance(body)
    if not text:
        return Step("confirm") if not no else Step("say", "", no=True)
    return Step("say", text, no=bool(no))


def _utterance(body: str) -> str:
    """What a step says, in the user's words: a question for "ask ...", the words for "say
    ..."."""
    if match := _STEP_ASK_TO.match(body):
        action = _TO_ME.sub(r"\1 me \2", match.group(1))  # "show the menu to me" -> "show me"
        return f"Can you {action}?"
    if match := _STEP_ASK.match(body):
        return direct_question(match.group(1))
    if match := _STEP_SAY.match(body):
        said = match.group(1)
        return said[:1].upper() + said[1:] + "."
    return ""


def direct_question(clause: str) -> str:
    """An indirect question as a direct one: "what kind of syrup you have" -> "What kind of
    syrup do you have?", "if you have oat milk" -> "Do you have oat milk?"."""
    words = clause.rstrip("?.! ").split()
    if not words:
        return ""
    low = [w.lower() for w in words]
    if low[0] in ("if", "whether"):
        words, low = words[1:], low[1:]
        head: list[str] = []
    else:
        head = []
    for i, word in enumerate(low):
        if word in _SUBJECTS and i + 1 < len(words):
            verb = low[i + 1]
            subject = words[i]
            before, after = words[:i], words[i + 2 :]
            if verb in _AUXILIARIES:
                question = [*before, words[i + 1], subject, *after]
            else:
                does = "does" if word in ("it", "he", "she") else "do"
                base = verb[:-1] if does == "does" and verb.endswith("s") else verb
                question = [*before, does, subject, base, *after]
            text = " ".join([*head, *question])
            return text[:1].upper() + text[1:] + "?"
    text = " ".join(words)
    return text[:1].upper() + text[1:] + "?"
