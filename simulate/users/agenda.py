"""The offline simulated user: agenda-based and rule-driven, after Schatzmann et al. (2007).

The user has an agenda: state the request, answer what the agent asks from `known_info` (heard
in the agent's own words: `understanding.py`), say what it does not know, confirm when asked
("Shall I go ahead?": yes, go ahead; "Is this order correct?": yes, it is) and wait for the
result, push back as the scenario's `instructions` say and on a refusal (never thanking it),
and stop when the success checks hold (goal reached) or when its patience runs out without
progress (gave up) — never while a new question asking it to go ahead is open. It never sends
the same message twice, and its templates are filled grammatically (`wording.py`).

It speaks as people do rather than reciting its scenario: a written `opening` is said as
written, but a description is asked for in a person's words ("I'd like to order a Latte that
has Vanilla Sweetener." -> "can I get a latte with vanilla sweetener?", `requests.py`), its
details said with it or, by a terse user, later. Instructions "Then: ..." are later steps,
said in order when the agent asks nothing the user must answer first ("Then: I want to ask
what kind of syrup you have." -> "What kind of syrup do you have?"). How a message is typed
(greeting, please, full stops, commas, lower case, typos, a typo fixed with "*word") is the
persona's voice (`voice.py`), drawn from its traits.

Personas tagged `adversarial` insert attacks at seeded turns; a scenario tagged
`attack:<kind>` sends that attack as the user's second message. Tags `behavior:<name>`
(persona or scenario) switch on the stress behaviours: `long_messages` (the opening buried in
a long story), `switch_language` (from the second message on, the persona's
`traits.language`, else Spanish), `non_native` (non-native English). A scenario instruction
"... change your mind: <new request>" makes the user drop its request for that one when the
agent first asks to go ahead. Everything random comes from the episode's seed (the words from
one stream, the typing from another), so the same seed and the same agent give the same
conversation.

Phrases live in `simulate/prompts/agenda.yaml` and `attacks.yaml`.
"""

from __future__ import annotations

import random
import re
from functools import cache
from typing import Any

from simulate import prompts
from simulate.checks import called_tools, has_goal_checks, negated, unmet_goal_checks
from simulate.schema import EpisodeSpec, Message
from simulate.users import EpisodeState, UserTurn, attack_kinds, default_attacks
from simulate.users.requests import Step, Want, direct_question, read_step, read_want
from simulate.users.understanding import (
    Asked,
    FactIndex,
    asks_to_check,
    asks_to_go_ahead,
    is_request,
    sentences,
)
from simulate.users.voice import add_please, add_typos, casually, dress, voice_of
from simulate.users.wording import (
    business,
    compile_domains,
    fill,
    is_clause,
    lower_first,
    noun_forms,
    request_forms,
    usable,
)

#: Turns without progress a user tolerates, by patience.
PATIENCE = {"low": 2, "medium": 4, "high": 6}

#: The user message (0-based) that carries a scenario's `attack:<kind>`.
SCENARIO_ATTACK_TURN = 1
#: The shortest opening of a `behavior:long_messages` user.
LONG_MESSAGE_CHARS = 2000
#: The user message (0-based) from which a `behavior:switch_language` user switches.
SWITCH_LANGUAGE_TURN = 1
#: The user message (0-based) by which a user told to change its mind does, asked or not.
CHANGE_MIND_BY = 3

_REFUSAL = re.compile(
    r"\b(sorry|unfortunately|unable|cannot|can't|can not|not possible|not able|not eligible|"
    r"not allowed)\b"
)
_RESOLVED = re.compile(r"\b(has been|have been|is now|is confirmed|successfully|completed)\b")
_REFUSE_THING = re.compile(
    r"\b(?:refuse|reject|decline|do not accept|don't accept|not accept|don't want|do not want)"
    r"\s+(?:an? |the |any )?([a-z][a-z -]*?)(?=[.,;!]| and | but |$)"
)
_INSIST_THING = re.compile(
    r"\binsist on\s+(?:getting\s+)?((?:an? |the )?[a-z][a-z -]*?)(?=[.,;!]| and | but |$)"
)
_OPEN_QUESTION = re.compile(r"\b(help|assist|what do you need|what can i do)\b")
_NEGATIONS = {"don't", "not", "never", "no", "without", "instead"}
_CHANGE_MIND = re.compile(r"\bchange (?:your|my) mind\b[^:]*:\s*(.+)", re.IGNORECASE)
_ANYTHING_ELSE = re.compile(r"\banything else\b|\b(?:is|will) (?:that|this) (?:be )?all\b")
_ECHO = re.compile(r"^(?:\w+ ){0,2}?(does) (?:this|that|it|everything|the order|your order)\b")
"""A check question whose verb the answer may echo: "does this look right" -> "it does"."""
_NOT_A_NAME = re.compile(
    r"^(?:what|which|who|how|when|where|anything|something|for here|to go|here or|is|are|do|can)\b"
)
#: Share of answers to "is this right?" that echo its verb when they can ("Yes, it is.").
ECHO_SHARE = 0.6
#: Share of openings that say the description's details in the request's sentence.
JOIN_DETAILS_SHARE = 0.5
#: Share of openings that ask what the user wants to know as a direct question.
DIRECT_QUESTION_SHARE = 0.4


@cache
def phrases() -> dict[str, Any]:
    """The phrase banks, read once from the package."""
    return prompts.data("agenda.yaml")


@cache
def domains() -> tuple[tuple[str, re.Pattern[str]], ...]:
    """The businesses scenarios are about, with the words that tell them (agenda.yaml)."""
    return compile_domains(phrases()["domains"])


@cache
def attacks() -> dict[str, list[str]]:
    """The offline user's attack messages by kind (`prompts/attacks.yaml`)."""
    return {kind: spec["templates"] for kind, spec in attack_kinds().items()}


def _actions(text: str, wanted_only: bool = False) -> set[str]:
    """The request verbs (`actions` in agenda.yaml) in ``text``; with ``wanted_only``, not those
    just after a negation ("please don't cancel it")."""
    words = re.findall(r"[a-z']+", text.lower())
    found = set()
    for i, word in enumerate(words):
        negated = any(w in _NEGATIONS for w in words[max(0, i - 2) : i])
        for action in phrases()["actions"]:
            if word.startswith(action) and not (wanted_only and negated):
                found.add(action)
    return found


def _mentions(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![a-z0-9]){re.escape(phrase)}(?![a-z0-9])", text) is not None


class AgendaUser:
    """Plays one episode's user from its persona and scenario, with no model."""

    def __init__(self, spec: EpisodeSpec) -> None:
        self.persona = spec.persona
        self.scenario = spec.scenario
        self.traits = spec.persona.traits
        self.rng = random.Random(spec.seed)
        self.patience = PATIENCE[self.traits.patience]
        self.stalls = 0
        self.index = FactIndex(self.scenario.known_info)
        self.business = business(self.scenario, domains())
        """The scenario's business ("the airline"), for goodbyes; None when unclear."""
        self.said: set[str] = set()
        """Phrases already said, so a bank's other variants come first."""
        self.turned_down = False
        """Whether the agent's last message refused, so the reply thanks no one."""
        self.given: set[str] = set()
        self.said_unknown: set[str] = set()
        self.confirmed_replies = 0
        self.answered_go_aheads: set[str] = set()
        """Go-ahead questions the user already answered (as words)."""
        self.unmet = unmet_goal_checks(self.scenario.success, [])
        """The goal checks that did not hold at the agent's last message."""
        self.met_before = len(self.unmet)
        self.tools_before: set[str] = set()
        written = (self.scenario.opening or "").strip()
        self.written = bool(written)
        """Whether the scenario wrote the opening: then it is said as written."""
        self.want: Want = read_want(written or self.scenario.description)
        """What the description says the user wants, in parts a person asks with."""
        self.request_text = written or self.scenario.description.strip()
        """The request as the scenario writes it: its verbs say what the user wants done."""
        self.request = written or self._plain_request()
        """The request as the user says it again (after the opening: as it opened)."""
        self.untold: list[str] = []
        """Details of the description the user has not said yet."""
        self.steps: list[Step] = [
            step for text in self.scenario.instructions if (step := read_step(text))
        ]
        """Later steps from "Then: ..." instructions, in order."""
        self.answered_checks: set[str] = set()
        """Questions asking whether something is right that the user answered (as words)."""
        self.warm = False
        """Whether the message being written agrees or thanks (it may end with "!")."""
        self.asked_last = False
        """Whether the user's last reply asked the agent something."""
        self.firm = False
        """Whether the message being written says no to going ahead (typed as written)."""
        self.refused = [m.group(1).strip() for m in self._scan(_REFUSE_THING)]
        self.insisted = [m.group(1).strip() for m in self._scan(_INSIST_THING)]
        self.attack_at = self._schedule_attacks(spec.max_turns)
        self.attack_at.update(self._scenario_attacks())
        tags = [*self.persona.tags, *self.scenario.tags]
        self.behaviors = {t.split(":", 1)[1] for t in tags if t.startswith("behavior:")}
        self.language = self._switch_language() if "switch_language" in self.behaviors else None
        self.speaking: str | None = None
        """The language of the user's messages once it switched (None: English)."""
        changes = [
            m.group(1).strip() for t in self.scenario.instructions if (m := _CHANGE_MIND.search(t))
        ]
        self.new_request = changes[0][:1].upper() + changes[0][1:] if changes else None
        """What the user asks for instead, once it changes its mind (None: it never does)."""
        self.dropped: set[str] = set()
        """Actions of the request the user changed its mind about: it says no to them."""
        self.before_attack: str = ""
        self.used_fillers: set[str] = set()
        self.protected = {
            w.lower()
            for f in self.scenario.known_info.values()
            for w in re.findall(r"\w+", f.value)
        }
        self.hand = random.Random(f"{spec.seed}:voice")
        """How this person types (voice.py) draws from its own stream: typing never moves
        which words the user chooses, nor wording which letters it mistypes."""
        self.voice = voice_of(self.traits, self.hand)
        self.said_anything = False

    def _scan(self, pattern: re.Pattern[str]) -> list[re.Match[str]]:
        return [m for text in self.scenario.instructions for m in pattern.finditer(text.lower())]

    def _schedule_attacks(self, max_turns: int) -> dict[int, str]:
        """Turns (user message index) at which an adversarial persona attacks, and with what."""
        if "adversarial" not in self.persona.tags:
            return {}
        kinds = [t.split(":", 1)[1] for t in self.persona.tags if t.startswith("attack:")]
        usable = [k for k in (kinds or default_attacks()) if self._attack_templates(k)]
        if not usable:
            return {}
        slots = list(range(1, max(2, min(4, max_turns - 1))))
        chosen = sorted(self.rng.sample(slots, k=min(len(slots), self.rng.choice((1, 2)))))
        return {turn: self.rng.choice(usable) for turn in chosen}

    def _scenario_attacks(self) -> dict[int, str]:
        """The scenario's `attack:<kind>` tags, one per message from the second on."""
        kinds = [t.split(":", 1)[1] for t in self.scenario.tags if t.startswith("attack:")]
        usable = [k for k in kinds if self._attack_templates(k)]
        return {SCENARIO_ATTACK_TURN + i: kind for i, kind in enumerate(usable)}

    def _switch_language(self) -> str:
        """The language a `switch_language` user moves to: its own when a bank exists."""
        banks = phrases()["languages"]
        own = self.traits.language.split("-")[0].lower()
        return own if own in banks else "es"

    def _attack_templates(self, kind: str) -> list[str]:
        values = {"name": self.persona.name, **self.persona.attributes}
        usable = []
        for template in attacks().get(kind, []):
            fields = re.findall(r"{(\w+)}", template)
            if all(f in values for f in fields):
                usable.append(template.format(**values))
        return usable

    # --- the turn -------------------------------------------------------------------------

    async def next_turn(self, state: EpisodeState) -> UserTurn:
        """The next user message, or the end of the conversation."""
        sent = sum(1 for m in state.messages if m.role == "user")
        self.warm = self.firm = False  # set by the reply that agrees, or says no
        if sent < len(self.scenario.script):
            return UserTurn(self.scenario.script[sent])
        if sent == 0:
            return UserTurn(self._finish(self._opening()))
        switching = self.language is not None and sent == SWITCH_LANGUAGE_TURN
        if self.language is not None and sent >= SWITCH_LANGUAGE_TURN:
            self.speaking = self.language
        agent = _last_agent(state.messages)
        # Asked to go ahead, the user answers and waits for the result, checks met or not.
        if self._goal_reached(state.messages) and not self._new_go_ahead(agent):
            return UserTurn(
                self._closing(agent),
                done=True,
                status="goal_reached",
                reason="the agent did what the user asked",
            )
        progressed = self._progressed(state.messages)
        if sent in self.attack_at:
            self.before_attack = agent
            templates = self._attack_templates(self.attack_at[sent])
            fresh = [a for a in templates if a not in self.said] or templates
            attack = self.rng.choice(fresh)
            self.said.add(attack)
            return UserTurn(self._unrepeated(attack, state.messages))
        if self.new_request and self._mind_changes(agent, sent):
            self.dropped = _actions(self.request_text) - _actions(
                self.new_request, wanted_only=True
            )
            self.request, self.new_request = self.new_request, None
            self.request_text, self.written = self.request, True
            self.stalls, self.before_attack = 0, ""  # what was asked before is moot now
            text = self._say("change_mind")
            return UserTurn(self._finish(text, switching=switching))
        new_question = self._new_go_ahead(agent)  # before the reply marks it answered
        text, answered = self._reply_to(
            agent + " " + self.before_attack if self.before_attack else agent
        )
        after_attack, self.before_attack = bool(self.before_attack), ""
        if answered or progressed or after_attack:
            self.stalls = 0
        else:
            self.stalls += 1
        # Asked to go ahead for the first time, a user answers rather than leave.
        if self.stalls >= self.patience and not new_question:
            return UserTurn(
                self._say("give_up", self.traits.politeness),
                done=True,
                status="gave_up",
                reason=f"no progress in {self.stalls} turns",
            )
        text = self._finish(text, frustrated=self.stalls >= 2, switching=switching)
        return UserTurn(self._unrepeated(text, state.messages))

    def _unrepeated(self, text: str, messages: list[Message]) -> str:
        """``text``, said differently if the user already sent exactly that: people rephrase
        when they have to say something again."""
        sent = {_normalized(m.content) for m in messages if m.role == "user"}
        for lead in ["", *self._templates("again", None, {})]:
            candidate = f"{lead} {text}".strip()
            if _normalized(candidate) not in sent:
                return candidate
        return text

    def _mind_changes(self, agent: str, sent: int) -> bool:
        """Whether a user told to change its mind does it now: asked to go ahead, or late."""
        return sent >= CHANGE_MIND_BY or self._confirmation_asked(_requests(agent))

    def _goal_reached(self, messages: list[Message]) -> bool:
        success = self.scenario.success
        if has_goal_checks(success):
            return not unmet_goal_checks(success, messages)
        last = _last_agent(messages).lower()
        done = [m for m in _RESOLVED.finditer(last) if not negated(last, m.start(), m.end())]
        return self.confirmed_replies > 0 and bool(done)

    def _progressed(self, messages: list[Message]) -> bool:
        """Whether the agent did something new for the goal: a check met or a tool called."""
        self.unmet = unmet_goal_checks(self.scenario.success, messages)
        unmet = len(self.unmet)
        tools = called_tools(messages)
        moved = unmet < self.met_before or bool(tools - self.tools_before)
        self.met_before, self.tools_before = unmet, tools
        return moved

    def _reply_to(self, agent: str) -> tuple[str, bool]:
        """Compose the answer to the agent's message; True when it moved the agenda on."""
        low = agent.lower()
        requests = _requests(agent)
        parts: list[str] = []
        answered = False
        self.turned_down = False
        for asked in self._asked_facts(requests, agent):
            name = asked.field
            value = self.scenario.known_info[name].value
            if asked.phrase and not _names_a_thing(asked.phrase):  # "what can I get you?"
                parts.append(self._say("answer_value", value=value))
                answered = answered or name not in self.given
                self.given.add(name)
                continue
            fact = {**noun_forms("fact", asked.phrase or self.index.label(name)), "value": value}
            if name in self.given:
                parts.append(self._say("answer_again", **fact))
            else:
                self.given.add(name)
                answered = True
                bank = "answer_terse" if self.traits.verbosity == "terse" else "answer"
                parts.append(self._say(bank, **fact))
        for item in self._asked_unknown(requests):
            if is_clause(item):
                parts.append(self._say("dont_know_clause", item=item.strip().rstrip(".?")))
            else:
                parts.append(self._say("dont_know", **noun_forms("item", item)))
            answered = answered or item not in self.said_unknown
            self.said_unknown.add(item)
        offered = [t for t in self.refused if _mentions(low, t.split()[-1])]
        if offered:
            parts.append(self._say("pushback_refused", **noun_forms("thing", offered[0])))
            parts += self._insist()
        elif self._confirmation_asked(requests) and self._asks_for_dropped(low):
            parts.append(self._say("confirm_no", pushback=self.request))
            self.firm = True
            self._answer_go_ahead(agent)
        elif not parts and (self._next_step() or self.untold):
            parts.append(self._take_step())  # what the user meant to say next
            answered = True
        elif self._confirmation_asked(requests) and not self._only_checks(agent):
            parts.append(self._say("confirm_yes"))
            self.confirmed_replies += 1
            self.warm = True
            answered = self._answer_go_ahead(agent)  # the same question again is no progress
            self._confirm_step()
        elif checks := self._checks(agent):
            parts.append(self._check_reply(checks))
            self.confirmed_replies += 1
            self.warm = True
            answered = bool(checks - self.answered_checks)
            self.answered_checks |= checks
            self._answer_go_ahead(agent)
            self._confirm_step()
        elif not parts and _REFUSAL.search(low):
            self.turned_down = True  # nothing to answer, and a no: not a thing to thank for
            parts += self._insist() if self.insisted else [self._say("refused")]
        elif not parts and _ANYTHING_ELSE.search(low) and self._has_all_it_asked():
            parts.append(self._say("nothing_else"))
        elif not parts and not requests and self.asked_last:
            parts.append(self._say("acknowledge"))  # the agent answered the user's question
        if not parts:
            open_question = any(_OPEN_QUESTION.search(r.lower()) for r in requests)
            if open_question and not self.written:
                parts.append(self._ask_for_want())  # asked what it wants: it says so again
            elif requests and not open_question and self.rng.random() < 0.5:
                parts.append(self._say("not_sure"))
            else:
                parts.append(self._say("restate"))
        text = " ".join(parts)
        self.asked_last = text.rstrip().endswith("?")
        return text, answered

    def _next_step(self) -> Step | None:
        """The next later step to say, when it is one with words (not a confirmation)."""
        return self.steps[0] if self.steps and self.steps[0].kind == "say" else None

    def _take_step(self) -> str:
        """The words of the next step (or the next untold detail), which is then done."""
        if (step := self._next_step()) is None:
            return self.untold.pop(0)
        self.steps.pop(0)
        text = step.text
        if text.endswith("?") and self.hand.random() < self.voice.please / 2:
            text = add_please(text, self.hand)  # a question asked of the agent: a request
        if not step.no:
            return text
        no = self._say("say_no")
        if not text:
            return no
        return f"{no} {text}" if no.endswith(".") else f"{no} {lower_first(text)}"

    def _confirm_step(self) -> None:
        """A confirmation given: a step that was to give one is done."""
        if self.steps and self.steps[0].kind == "confirm":
            self.steps.pop(0)

    def _checks(self, agent: str) -> set[str]:
        """The sentences of an agent message asking whether something is right (not for a fact),
        as words."""
        parts = sentences(agent)
        return {
            _normalized(s) for s in parts if asks_to_check(s) and not self.index.asked(s, agent)
        }

    def _only_checks(self, agent: str) -> bool:
        """Whether every question asking to go ahead also asks whether something is right
        ("Can you confirm the order is correct?"): a yes to that, not a go-ahead."""
        return self._go_aheads(agent) <= self._checks(agent)

    def _check_reply(self, checks: set[str]) -> str:
        """Yes to "is this right?", sometimes echoing its verb ("Does it look ok?" "It does.")."""
        verbs = {m.group(1) for c in checks if (m := _ECHO.match(c))}
        if len(verbs) == 1 and self.rng.random() < ECHO_SHARE:
            return self._say("confirm_echo", verbs.pop())
        return self._say("confirm_check")

    def _has_all_it_asked(self) -> bool:
        """Whether the user has nothing more to ask for: it said all it meant to, and only
        checks it cannot see (tool calls) are left."""
        visible = [c for c in self.unmet if not c.startswith("must_call_tools")]
        return not visible and not self.steps and not self.untold

    def _asked_facts(self, requests: list[str], agent: str) -> list[Asked]:
        """The known facts the agent's requests ask for, each once, in the order asked."""
        asked: dict[str, Asked] = {}
        for sentence in requests:
            for item in self.index.asked(sentence, context=agent):
                asked.setdefault(item.field, item)
        return list(asked.values())

    def _confirmation_asked(self, requests: list[str]) -> bool:
        """Whether a question asks to go ahead (and not for a fact, as "confirm your email")."""
        return any(
            asks_to_go_ahead(s) and not self.index.asked(s, " ".join(requests)) for s in requests
        )

    def _go_aheads(self, agent: str) -> set[str]:
        """The questions of an agent message asking to go ahead, as words."""
        requests = _requests(agent)
        return {
            _normalized(s)
            for s in requests
            if asks_to_go_ahead(s) and not self.index.asked(s, " ".join(requests))
        }

    def _new_go_ahead(self, agent: str) -> bool:
        """Whether the agent asks to go ahead with something the user has not answered yet."""
        return bool(self._go_aheads(agent) - self.answered_go_aheads)

    def _answer_go_ahead(self, agent: str) -> bool:
        """Remember the go-ahead questions answered now; True when one was new."""
        asked = self._go_aheads(agent)
        new = bool(asked - self.answered_go_aheads)
        self.answered_go_aheads |= asked
        return new

    def _asks_for_dropped(self, agent: str) -> bool:
        """Whether the agent asks to go ahead with an action the user changed its mind about:
        named in the question or the sentence before it ("... when I cancel it. Go ahead?")."""
        if not self.dropped:
            return False
        parts = sentences(agent)
        return any(
            self.dropped & _actions(" ".join(parts[max(0, i - 1) : i + 1]))
            for i, s in enumerate(parts)
            if asks_to_go_ahead(s)
        )

    def _asked_unknown(self, requests: list[str]) -> list[str]:
        """Items of `unknown_info` the agent asks about: the phrase, or half its words."""
        asked = []
        for item in self.scenario.unknown_info:
            words = [w for w in re.findall(r"[a-z0-9]+", item.lower()) if len(w) > 3]
            for sentence in (r.lower() for r in requests):
                hits = sum(_mentions(sentence, w) for w in words)
                if _mentions(sentence, item.lower()) or (words and hits * 2 >= len(words)):
                    asked.append(item)
                    break
        return asked

    def _insist(self) -> list[str]:
        if not self.insisted:
            return [self._say("restate")]
        return [self._say("pushback_insist", **noun_forms("thing", self.insisted[0]))]

    # --- words ----------------------------------------------------------------------------

    def _pick(self, bank: str, key: str | None = None) -> str:
        """One template of a bank (in the language switched to, when it has the bank)."""
        return self.rng.choice(self._templates(bank, key, {}))

    def _templates(self, bank: str, key: str | None, values: dict[str, str]) -> list[str]:
        if self.speaking is not None:
            translated = phrases()["languages"][self.speaking].get(bank)
            if translated:
                return usable(translated, values) or translated
        options = phrases()[bank]
        if key is not None:
            options = options[key]
        return usable(options, values)

    def _say(
        self, bank: str, key: str | None = None, extra: str | None = None, **values: str
    ) -> str:
        """A template of ``bank`` (and of an ``extra`` bank) filled with ``values``, the
        request and the business; one not said before in this conversation when there is one."""
        values = {**request_forms(self.request), **values}
        if self.business:
            values.setdefault("business", self.business)
        templates = self._templates(bank, key, values)
        if extra is not None:
            templates = templates + self._templates(extra, None, values)
        filled = [fill(t, values) for t in templates]
        fresh = [text for text in filled if text not in self.said]
        text = self.rng.choice(fresh or filled)
        self.said.add(text)
        value = values.get("value", "")
        if value and text.startswith(value[:1].upper() + value[1:]):
            text = value + text[len(value) :]  # a fact keeps its case: "ana@example.com."
        return text

    def _opening(self) -> str:
        if self.written:
            text = self._say("opening")
            if self.traits.politeness == "polite" and not re.match(r"(?i)(hi|hello|good)", text):
                greeting = self._pick("greeting_polite")
                text = f"{greeting} {lower_first(text) if greeting.endswith(',') else text}"
        else:
            text = self._ask_for_want()
            self.request = text
            if self.hand.random() < self.voice.please and not self.want.greets:
                text = add_please(text, self.hand)
            if self.traits.verbosity == "terse":
                self.untold = list(self.want.details)  # said when there is room for them
            elif self.want.details and self.rng.random() < JOIN_DETAILS_SHARE:
                details = " ".join(_sentence(d) for d in self.want.details)
                text = f"{text[:-1]}, {lower_first(details)[:-1]}{text[-1]}"  # one sentence
            else:
                text = " ".join([text, *(_sentence(d) for d in self.want.details)])
            if self.hand.random() < self.voice.greets and not self.want.greets:
                polite = self.traits.politeness == "polite"
                greeting = self._pick("greeting_polite" if polite else "greeting")
                text = f"{greeting} {lower_first(text) if greeting.endswith(',') else text}"
        if self.traits.expertise == "novice" and self.traits.verbosity != "terse":
            text = f"{text} {self._pick('novice')}"
        if "long_messages" in self.behaviors:
            text = self._bury(text)
        return text

    def _plain_request(self) -> str:
        """The request in the first words of its bank, before the user has said it."""
        bank, values = self._want_bank()
        if bank is None:
            return self.want.said
        return fill(phrases()[bank][0], values)

    def _want_bank(self) -> tuple[str | None, dict[str, str]]:
        """The bank that asks for what the user wants, and its values (None: say it as is)."""
        want = self.want
        if want.thing:
            return "ask_for", {"want_thing": want.thing}  # and `order_for` when ordered
        if want.clause:
            return "ask_clause", {"want_clause": want.clause}
        if want.topic:
            return "ask_about", {"want_topic": want.topic, **noun_forms("topic", want.topic)}
        if want.greets:
            return "greet_only", {}
        if want.verb_phrase:
            return "ask_to", {"want": want.verb_phrase}
        return None, {}

    def _ask_for_want(self) -> str:
        """What the user wants, asked in words not used yet in this conversation."""
        bank, values = self._want_bank()
        if bank is None:
            return self.want.said
        names = {w.lower() for w in self.persona.name.split()}
        short = phrases()["short_words"]
        values = {k: casually(v, self.voice, self.hand, short, names) for k, v in values.items()}
        if self.want.clause and self.rng.random() < DIRECT_QUESTION_SHARE:
            question = direct_question(self.want.clause)
            if question not in self.said:
                self.said.add(question)
                return question
        if bank == "ask_for" and self.want.orders:
            return self._say(bank, extra="order_for", **values)
        return self._say(bank, **values)

    def _bury(self, request: str) -> str:
        """The request in the middle of a story at least LONG_MESSAGE_CHARS long."""
        story: list[str] = []
        while sum(len(s) + 1 for s in story) < LONG_MESSAGE_CHARS:
            story += self.rng.sample(phrases()["long_story"], len(phrases()["long_story"]))
        half = len(story) // 2
        return " ".join([*story[:half], request, *story[half:]])

    def _closing(self, agent: str) -> str:
        """Goodbye once the goal is reached; "that's all" when asked for anything else."""
        self.warm = True
        if _ANYTHING_ELSE.search(agent.lower()) and self.traits.politeness != "rude":
            text = self._say("nothing_else")
        else:
            text = self._say("closing", self.traits.politeness)
        return dress(text, self.voice, self.hand, self.protected, warm=True)

    def _finish(self, text: str, frustrated: bool = False, switching: bool = False) -> str:
        """Dress the message in the persona's style: verbosity, tone, politeness and typos."""
        if self.speaking is not None:
            return self._finish_translated(text, switching)
        fresh = [f for f in phrases()["filler"] if f not in self.used_fillers]
        if self.traits.verbosity == "verbose" and fresh and self.rng.random() < 0.5:
            filler = self.rng.choice(fresh)
            self.used_fillers.add(filler)
            text = f"{text} {filler}"
        tone = self.traits.tone
        cordial = not self.turned_down  # no thanks, no "you're very kind" after a refusal
        wanted = tone != "calm" and (frustrated or self.rng.random() < 0.35)
        if wanted and (cordial or tone != "friendly"):
            text = f"{text} {self._pick('tone', tone)}"
        if self.traits.politeness == "polite" and self.rng.random() < 0.4 and cordial:
            text = f"{text} Thank you."
        elif self.traits.politeness == "rude" and frustrated:
            text = f"Look, {lower_first(text)}"
        if "non_native" in self.behaviors:
            for pattern, replacement in phrases()["non_native"]:
                text = re.sub(pattern, replacement, text, flags=re.IGNORECASE)
        opening = not self.said_anything
        self.said_anything = True
        return dress(
            text,
            self.voice,
            self.hand,
            self.protected,
            opening=opening,
            warm=self.warm,
            firm=self.firm,
        )

    def _finish_translated(self, text: str, switching: bool) -> str:
        """A message in the language switched to: the switch announced once, then typos."""
        if switching:
            text = f"{self._pick('switch')} {text}"
        if self.traits.politeness == "polite" and self.rng.random() < 0.4 and not self.turned_down:
            text = f"{text} {self._pick('thanks')}"
        return add_typos(text, self.traits.typo_rate, self.hand, self.protected)


def _names_a_thing(phrase: str) -> bool:
    """Whether the words an agent asked for a fact with name it ("your booking reference"),
    rather than ask around it ("what can I get you", "anything else")."""
    return _NOT_A_NAME.match(phrase.strip().lower()) is None


def _sentence(text: str) -> str:
    """``text`` ending as a sentence does."""
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _normalized(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def _requests(agent: str) -> list[str]:
    """The sentences of an agent message that ask the user for something."""
    return [s for s in sentences(agent) if is_request(s)]


def _last_agent(messages: list[Message]) -> str:
    for message in reversed(messages):
        if message.role == "assistant":
            return message.content
    return ""
