"""Simulator faults: what went wrong in an episode through the simulated user, not the agent.

Every finished episode is checked, whoever played the user (offline, LLM or scripted), and
each fault is recorded with the user message it is in and the evidence:

- `broke_role`: the user talks like an assistant ("How can I help you?", "As an AI ...",
  "User:" / "Assistant:" labels) — phrases in `simulate/prompts/assistant_phrases.yaml`;
- `invented_fact`: the user states a fact (an e-mail, a code, a long number, a date) that is
  neither in the scenario's `known_info`, the persona, the scenario's own text nor anything said
  before in the conversation;
- `revealed_checks`: the user says what the success checks look for (a required tool's name, a
  required phrase of two words or more, a forbidden one of three, one with digits, a run of the
  goal's or judge's words) when nothing it was given nor the agent said it first, or talks of
  checks and scenarios;
- `repeated_itself`: a user message of four words or more is an earlier one word for word;
- `ended_at_confirmation`: the user ended the conversation while the agent's last message asked
  to go ahead, without waiting for the result (leaving a question it already answered once,
  asked again, is not a fault: the agent is looping).

A faulted episode is one whose verdict may be the simulator's doing; the report gives the goal
rate with and without them, and `simulate run --resimulate-faults N` plays them again.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from simulate import prompts
from simulate.schema import EpisodeSpec, Message, Outcome, SimulatorFault, Status
from simulate.users.understanding import FactIndex, asks_to_go_ahead, sentences

MIN_REPEAT_WORDS = 4
"""Shorter user messages ("yes", "thanks", "ok") repeat naturally and are not counted."""
MIN_QUOTED_WORDS = 8
"""A run of this many words of the goal or judge text, said by the user, reveals it."""
EVIDENCE_CHARS = 160

_ROLE_LABEL = re.compile(r"(?im)^\s*(user|assistant|customer|agent|system)\s*:")
_META = re.compile(
    r"\b(must_mention|must_not_mention|must_call_tools|must_match|must_not_match|"
    r"success checks?|success criteria|test scenario|this scenario|my scenario|"
    r"simulated user|as the user|the user's goal|my goal is to get you to)\b",
    re.IGNORECASE,
)
_FACTS = re.compile(
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # e-mail
    r"|\b\d{4}-\d{1,2}-\d{1,2}\b|\b\d{1,2}[./]\d{1,2}[./]\d{2,4}\b"  # dates
    r"|\+?\d[\d ()-]{5,}\d"  # phone and long numbers
    r"|\b(?=[A-Za-z0-9-]*\d)(?=[A-Za-z0-9-]*[A-Z])[A-Z0-9][A-Za-z0-9-]{3,}\b"  # codes
)


@functools.cache
def assistant_phrases() -> tuple[str, ...]:
    """The phrases that make a user message sound like an assistant, case-folded."""
    return tuple(str(p).casefold() for p in prompts.data("assistant_phrases.yaml")["phrases"])


def _folded(text: str) -> str:
    """Letters, digits and @ only, case-folded: how facts are compared."""
    return re.sub(r"[^\w@]+", "", text.casefold())


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EVIDENCE_CHARS else text[: EVIDENCE_CHARS - 1] + "…"


def _given(spec: EpisodeSpec) -> list[str]:
    """Everything the simulated user was given: its persona and its side of the scenario."""
    persona, scenario = spec.persona, spec.scenario
    return [
        persona.name,
        persona.description,
        *persona.attributes.values(),
        scenario.description,
        scenario.opening or "",
        *scenario.instructions,
        *scenario.script,
        *(f.value for f in scenario.known_info.values()),
        *scenario.unknown_info,
    ]


def _said_before(messages: Sequence[Message], turn: int) -> list[str]:
    """What was said before message ``turn``, tool calls and their results included."""
    said = []
    for message in messages[:turn]:
        said.append(message.content)
        said += [f"{c.name} {c.arguments} {c.result}" for c in message.tool_calls]
        said += message.context
    return said


def detect_faults(
    spec: EpisodeSpec, messages: Sequence[Message], outcome: Outcome
) -> list[SimulatorFault]:
    """Every simulator fault in a finished episode, in the order of its messages."""
    given = _given(spec)
    success = spec.scenario.success
    # A checked phrase the user says is a revealed check, not an invented fact.
    given_folded = _folded(" ".join([*given, *success.must_mention, *success.must_not_mention]))
    faults: list[SimulatorFault] = []
    seen: dict[str, int] = {}
    for turn, message in enumerate(messages):
        if message.role != "user":
            continue
        before = _said_before(messages, turn)
        faults += _broke_role(turn, message.content)
        faults += _invented(turn, message.content, given_folded + _folded(" ".join(before)))
        faults += _revealed(turn, message.content, spec, given, before)
        key = " ".join(_words(message.content))
        if len(key.split()) >= MIN_REPEAT_WORDS and key in seen:
            faults.append(
                SimulatorFault(
                    kind="repeated_itself",
                    turn=turn,
                    evidence=f"same as message {seen[key]}: {_excerpt(message.content)!r}",
                )
            )
        seen.setdefault(key, turn)
    faults += _ended_at_confirmation(spec, messages, outcome)
    return faults


def _broke_role(turn: int, text: str) -> list[SimulatorFault]:
    low = text.casefold()
    found = [p for p in assistant_phrases() if p in low]
    if label := _ROLE_LABEL.search(text):
        found.append(label.group(0).strip())
    if not found:
        return []
    return [SimulatorFault(kind="broke_role", turn=turn, evidence=f"said {found[0]!r}")]


def _invented(turn: int, text: str, known: str) -> list[SimulatorFault]:
    for match in _FACTS.finditer(text):
        fact = match.group(0).strip()
        if _folded(fact) and _folded(fact) not in known:
            return [
                SimulatorFault(
                    kind="invented_fact",
                    turn=turn,
                    evidence=f"stated {fact!r}, which the user was not given and nobody said",
                )
            ]
    return []


def _revealed(
    turn: int, text: str, spec: EpisodeSpec, given: list[str], before: list[str]
) -> list[SimulatorFault]:
    success = spec.scenario.success
    low = text.casefold()
    heard = " ".join([*given, *before]).casefold()

    def fault(why: str) -> list[SimulatorFault]:
        return [SimulatorFault(kind="revealed_checks", turn=turn, evidence=why)]

    if meta := _META.search(text):
        return fault(f"talked about the checks: {meta.group(0)!r}")
    for tool in success.must_call_tools:
        if re.search(rf"(?<!\w){re.escape(tool.casefold())}(?!\w)", low) and tool not in heard:
            return fault(f"named the required tool {tool!r}")
    # Common words are not a giveaway ("pet"; "shut up" from a user told to insult): a
    # required phrase of two words or more, a forbidden one of three, an identifier are.
    phrases = [
        p
        for p in [*success.must_not_mention, *success.must_mention]
        if re.search(r"[\d_@]", p) or len(p.split()) >= (3 if p in success.must_not_mention else 2)
    ]
    for phrase in phrases:
        if phrase.casefold() in low and phrase.casefold() not in heard:
            return fault(f"said the checked phrase {phrase!r}")
    for source in (spec.scenario.goal, success.judge or ""):
        if run := _shared_run(text, source, heard):
            return fault(f"quoted the success criteria: {run!r}")
    return []


def _shared_run(text: str, source: str, heard: str) -> str | None:
    """A run of MIN_QUOTED_WORDS words of ``source`` in ``text`` that ``heard`` does not have."""
    said, words = " ".join(_words(text)), _words(source)
    heard_words = " ".join(_words(heard))
    for i in range(len(words) - MIN_QUOTED_WORDS + 1):
        run = " ".join(words[i : i + MIN_QUOTED_WORDS])
        if run in said and run not in heard_words:
            return run
    return None


def _ended_at_confirmation(
    spec: EpisodeSpec, messages: Sequence[Message], outcome: Outcome
) -> list[SimulatorFault]:
    """The user ended the conversation while the agent's last message asked to go ahead."""
    if outcome.status not in (Status.GOAL_REACHED, Status.GAVE_UP):
        return []
    last_agent = next((m for m in reversed(messages) if m.role == "assistant"), None)
    if last_agent is None:
        return []
    index = FactIndex(spec.scenario.known_info)

    def go_aheads(message: Message) -> list[str]:
        return [
            s
            for s in sentences(message.content)
            if asks_to_go_ahead(s) and not index.asked(s, message.content)
        ]

    asking = go_aheads(last_agent)
    # A question asked and answered before, and asked again, may be left: the agent loops.
    answered = {
        " ".join(_words(s))
        for i, m in enumerate(messages)
        if m.role == "assistant" and m is not last_agent and i + 1 < len(messages)
        for s in go_aheads(m)
    }
    asking = [s for s in asking if " ".join(_words(s)) not in answered]
    if not asking:
        return []
    turn = len(messages) - 1 if messages[-1].role == "user" else messages.index(last_agent)
    return [
        SimulatorFault(
            kind="ended_at_confirmation",
            turn=turn,
            evidence=f"ended ({outcome.status.value}) when asked {_excerpt(asking[-1])!r}",
        )
    ]
