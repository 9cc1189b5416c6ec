"""How strong a suite's success checks are: every scenario played against agents that should fail.

`simulate validate --probe` plays each scenario, with each persona, by the offline agenda user
against four built-in counterfactual agents that never do the task:

- `refuser`: refuses everything, naming the scenario's `must_mention` phrases only inside
  refusals ("Sorry, I can't do that: no refund.");
- `staller`: answers every message with another question;
- `echo`: repeats the user's last message;
- `parrot`: says every `must_mention` phrase at once, plainly, and calls no tool.

A scenario that any of them passes (an episode that counts as a success) has checks that a
useless agent can meet; each is listed with the agent, the persona and why. The suite score is
the share of scenario x counterfactual pairs that fail, as they should.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from simulate.checks import called_tools, has_goal_checks, mentioned_at
from simulate.runner import RunSettings, play_episode
from simulate.schema import Episode, EpisodeSpec, Message, Scenario
from simulate.targets import Reply
from simulate.users.agenda import AgendaUser

_REFUSALS = (
    "Sorry, I can't do that: no {phrase}.",
    "Unfortunately {phrase} is not possible.",
    "I'm unable to help with {phrase}.",
    "I cannot offer {phrase}, I'm afraid.",
)
_STALLS = (
    "Could you tell me a bit more about that?",
    "What exactly would you like me to do?",
    "Can you describe the problem in more detail?",
    "Is there anything else you can tell me about it?",
    "Could you put that another way?",
)


def _turn(messages: Sequence[Message]) -> int:
    return sum(1 for m in messages if m.role == "user")


class RefusingAgent:
    """Refuses everything; the scenario's `must_mention` phrases appear only inside refusals."""

    def __init__(self, scenario: Scenario) -> None:
        self.phrases = scenario.success.must_mention

    async def respond(self, messages: Sequence[Message]) -> Reply:
        """A refusal naming every required phrase, the negation form turning with the turn."""
        if not self.phrases:
            return Reply(reply="Sorry, I can't help with that.")
        turn = _turn(messages)
        said = [
            _REFUSALS[(turn + i) % len(_REFUSALS)].format(phrase=p)
            for i, p in enumerate(self.phrases)
        ]
        return Reply(reply=" ".join(said))


class StallingAgent:
    """Answers every message with another question."""

    def __init__(self, scenario: Scenario) -> None:
        del scenario

    async def respond(self, messages: Sequence[Message]) -> Reply:
        """The next question of a fixed round."""
        return Reply(reply=_STALLS[(_turn(messages) - 1) % len(_STALLS)])


class EchoAgent:
    """Repeats the user's last message."""

    def __init__(self, scenario: Scenario) -> None:
        del scenario

    async def respond(self, messages: Sequence[Message]) -> Reply:
        """The user's last words, back."""
        last = next((m.content for m in reversed(messages) if m.role == "user"), "")
        return Reply(reply=last)


class ParrotAgent:
    """Says every `must_mention` phrase at once, plainly, and does nothing (no tool call)."""

    def __init__(self, scenario: Scenario) -> None:
        self.phrases = scenario.success.must_mention

    async def respond(self, messages: Sequence[Message]) -> Reply:
        """All the required phrases in one affirmative reply."""
        if not self.phrases:
            return Reply(reply="Sure, all done.")
        return Reply(reply="Sure, all done: " + "; ".join(self.phrases) + ".")


#: Counterfactual agent name -> class built from the scenario under probe.
COUNTERFACTUALS = {
    "refuser": RefusingAgent,
    "staller": StallingAgent,
    "echo": EchoAgent,
    "parrot": ParrotAgent,
}


@dataclass(frozen=True)
class Weakness:
    """A scenario a counterfactual agent passed, and why."""

    scenario_id: str
    agent: str
    persona_id: str
    episode_id: str
    why: str


@dataclass
class ProbeResult:
    """What `probe` found: pairs played, pairs that failed as they should, and the weak ones."""

    scenarios: list[str]
    agents: list[str]
    episodes: int = 0
    weaknesses: list[Weakness] = field(default_factory=list)

    @property
    def pairs(self) -> int:
        """Scenario x counterfactual pairs."""
        return len(self.scenarios) * len(self.agents)

    @property
    def failing(self) -> int:
        """Pairs no counterfactual episode passed: the checks caught the useless agent."""
        return self.pairs - len({(w.scenario_id, w.agent) for w in self.weaknesses})

    @property
    def score(self) -> float:
        """Share of pairs that fail, as they should (1.0 for an empty suite)."""
        return self.failing / self.pairs if self.pairs else 1.0


async def probe(specs: Sequence[EpisodeSpec], agents: Sequence[str] = ()) -> ProbeResult:
    """Play every spec against every counterfactual agent (all four unless named).

    A pair is weak at its first episode that counts as a success; its other personas are not
    played.
    """
    names = list(agents or COUNTERFACTUALS)
    scenarios = list(dict.fromkeys(spec.scenario.id for spec in specs))
    result = ProbeResult(scenarios=scenarios, agents=names)
    weak: set[tuple[str, str]] = set()
    for name in names:
        for spec in specs:
            if (spec.scenario.id, name) in weak:
                continue
            agent = COUNTERFACTUALS[name](spec.scenario)
            episode = await play_episode(spec, AgendaUser(spec), agent, RunSettings())
            result.episodes += 1
            if episode.success:
                weak.add((spec.scenario.id, name))
                result.weaknesses.append(
                    Weakness(
                        scenario_id=spec.scenario.id,
                        agent=name,
                        persona_id=spec.persona.id,
                        episode_id=episode.episode_id,
                        why=explain(spec.scenario, episode),
                    )
                )
    return result


def explain(scenario: Scenario, episode: Episode) -> str:
    """Why a useless agent's episode passed: which checks held, and on what words."""
    success = scenario.success
    if not has_goal_checks(success):
        return (
            "the scenario has no must_mention, must_match or must_call_tools check, so the "
            "offline user judged the goal reached from the agent's words alone"
        )
    reasons = []
    for phrase in success.must_mention:
        at = mentioned_at(episode.messages, phrase)
        if at:
            said = " ".join(episode.messages[at[0]].content.split())
            said = said if len(said) <= 80 else said[:79] + "…"
            reasons.append(f"must_mention {phrase!r} held on {said!r}")
    if success.must_match:
        reasons.append("every must_match expression matched")
    if not success.must_call_tools:
        reasons.append("no must_call_tools check, so nothing had to be done")
    elif called_tools(episode.messages):
        reasons.append("the tools were called")
    return "; ".join(reasons)
