"""The data contracts: personas, scenarios, episode specs, messages, episodes and outcomes.

Everything that touches disk is one of these pydantic models. Unknown fields are rejected so a
misspelled key in a YAML file is an error, not a silently ignored setting. Changing a shape here
means bumping ``SCHEMA_VERSION`` (it is written into every run manifest).
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

SCHEMA_VERSION = 3
"""Version of the run folder's contracts. 2: a typed manifest, `simulator_faults` on episodes,
`must_match` checks, adjudicator labels and imported reference rows; 3: usage rows of role
`agent` (the agent's own calls) with a cost per episode, each role's endpoint host in the
manifest, and episodes' `error_traceback` (older shards read with it empty)."""

Id = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")]


class Model(BaseModel):
    """Base for all contracts: unknown fields are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _scalars_to_str(value: Any) -> Any:
    """YAML reads `12345` and `2024-05-01` as int and date; facts are always text."""
    if isinstance(value, dict):
        return {
            k: v if isinstance(v, dict | list) or v is None else str(v) for k, v in value.items()
        }
    return value


# --- personas -------------------------------------------------------------------------------


class Traits(Model):
    """How a simulated user behaves. Every axis has a default, so a persona may name only some."""

    patience: Literal["low", "medium", "high"] = "medium"
    """How many turns without progress the user tolerates before giving up (2, 4, 6)."""
    expertise: Literal["novice", "intermediate", "expert"] = "intermediate"
    """How familiar the user is with the domain; novices use vaguer words."""
    tone: Literal["calm", "friendly", "frustrated", "angry", "anxious"] = "calm"
    """The mood of the user's messages."""
    verbosity: Literal["terse", "normal", "verbose"] = "normal"
    """How much the user writes around the facts."""
    politeness: Literal["rude", "neutral", "polite"] = "neutral"
    """Greetings, please and thanks, or their absence."""
    typo_rate: float = Field(0.0, ge=0.0, le=1.0)
    """Share of words that get a typo (seeded, so the same episode gets the same typos)."""
    language: str = Field("en", min_length=2, max_length=16)
    """Language the user writes in, as a BCP-47 tag (the offline simulator writes English)."""
    custom: dict[str, str] = Field(default_factory=dict)
    """User-defined trait axes (name -> level), kept for slicing reports."""


class Persona(Model):
    """Who the simulated user is."""

    id: Id
    """Unique id, used in episode ids and reports."""
    name: str = Field(min_length=1)
    """The user's name, as they would give it."""
    description: str = ""
    """A sentence or two about the person, for LLM users and for people reading transcripts."""
    traits: Traits = Field(default_factory=Traits)
    """Behaviour axes."""
    attributes: dict[str, str] = Field(default_factory=dict)
    """Facts the user knows about themselves (email, account number...), usable in scenarios."""
    tags: list[str] = Field(default_factory=list)
    """Free labels; `adversarial` makes the offline simulator insert attacks."""
    source: str | None = None
    """Where the persona comes from when it was imported or generated (e.g. `personahub`)."""
    license: str | None = None
    """The licence of that source (e.g. `CC-BY-NC-SA-4.0`), carried into dataset cards."""

    @field_validator("attributes", mode="before")
    @classmethod
    def _attributes_to_str(cls, value: Any) -> Any:
        return _scalars_to_str(value)


# --- scenarios ------------------------------------------------------------------------------


class Fact(Model):
    """A fact the user can share when asked, with the words an agent might use to ask for it."""

    value: str
    """What the user answers."""
    aliases: list[str] = Field(default_factory=list)
    """Other names for the fact ("booking code" for `booking_reference`)."""

    @field_validator("value", mode="before")
    @classmethod
    def _value_to_str(cls, value: Any) -> Any:
        return value if isinstance(value, str | dict | list) or value is None else str(value)


class SuccessChecks(Model):
    """What must be true of the conversation for the scenario to succeed."""

    must_mention: list[str] = Field(default_factory=list)
    """Phrases the agent must say at some point (case-insensitive); said inside a refusal or
    negation of the same clause ("I can't process a refund") they do not count."""
    must_not_mention: list[str] = Field(default_factory=list)
    """Phrases the agent must never say (leaked instructions, another customer's data)."""
    must_match: list[str] = Field(default_factory=list)
    """Regular expressions (Python, case-insensitive) that some agent reply must match."""
    must_not_match: list[str] = Field(default_factory=list)
    """Regular expressions (Python, case-insensitive) that no agent reply may match."""
    must_call_tools: list[str] = Field(default_factory=list)
    """Tools the agent must call."""
    judge: str | None = None
    """A free-text criterion for LLM judges (not checked by the offline simulator)."""

    @field_validator("must_match", "must_not_match")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for expression in value:
            try:
                re.compile(expression)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {expression!r} ({exc})") from None
        return value


class Scenario(Model):
    """What the simulated user wants and what they know."""

    id: Id
    """Unique id, used in episode ids and reports."""
    description: str = Field(min_length=1)
    """What the user wants, in the user's terms."""
    goal: str = Field(min_length=1)
    """What success is, for people and judges."""
    known_info: dict[str, Fact] = Field(default_factory=dict)
    """Facts the user may share when asked: name -> value, or name -> {value, aliases}."""
    unknown_info: list[str] = Field(default_factory=list)
    """Things the user does not know and must not invent."""
    instructions: list[str] = Field(default_factory=list)
    """How to behave: "insist on a refund", "refuse vouchers"."""
    opening: str | None = None
    """The first user message; the simulator writes one from `description` when absent."""
    script: list[str] = Field(default_factory=list)
    """Fixed user turns played first, before the simulator takes over."""
    max_turns: int | None = Field(None, ge=1, le=1000)
    """Overrides the run's --max-turns for this scenario."""
    success: SuccessChecks = Field(default_factory=SuccessChecks)
    """Checks that decide whether the goal was reached."""
    variables: dict[str, list[str]] = Field(default_factory=dict)
    """Template variables; the scenario expands to one copy per combination."""
    tags: list[str] = Field(default_factory=list)
    """Free labels for narrowing plans and slicing reports."""

    @field_validator("known_info", mode="before")
    @classmethod
    def _facts_from_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if isinstance(v, dict) else {"value": v} for k, v in value.items()}
        return value

    @field_validator("instructions", mode="before")
    @classmethod
    def _instructions_from_string(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


# --- episodes -------------------------------------------------------------------------------


class EpisodeSpec(Model):
    """One planned conversation: a persona, a rendered scenario, a trial number and a seed."""

    episode_id: str
    run_id: str
    persona: Persona
    scenario: Scenario
    trial: int = Field(ge=0)
    seed: int
    max_turns: int = Field(ge=1)


class ToolCall(Model):
    """A tool the agent called, with its arguments and, when the agent reports it, the result."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None
    result: Any = None


Role = Literal["system", "user", "assistant", "tool"]


class Message(Model):
    """One message of a conversation, in Simulate's own shape (converted to vendors' at edges)."""

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    """Tools the agent called in this turn; stored as a JSON string so the schema never varies."""
    tool_call_id: str | None = None
    """For role `tool`: the call this message answers."""
    context: list[str] = Field(default_factory=list)
    """Passages the agent says it used for this reply (retrieval), for faithfulness checks."""
    latency_ms: float | None = None
    """How long the agent took to produce this message."""

    @field_validator("tool_calls", mode="before")
    @classmethod
    def _tool_calls_from_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value else []
        return value

    @field_serializer("tool_calls", when_used="json")
    def _tool_calls_to_json(self, tool_calls: list[ToolCall]) -> str:
        return json.dumps([c.model_dump(exclude_none=True) for c in tool_calls], default=str)


class Status(StrEnum):
    """Why a conversation ended, and so whose fault a failure was."""

    GOAL_REACHED = "goal_reached"
    """The user got what they came for."""
    GAVE_UP = "gave_up"
    """The user ran out of patience: the agent's fault."""
    MAX_TURNS = "max_turns"
    """The turn limit came first: the agent's fault."""
    TARGET_ENDED = "target_ended"
    """The agent closed the conversation before the goal was reached."""
    TARGET_ERROR = "target_error"
    """The agent crashed, timed out or broke its protocol: infrastructure, not quality."""
    SIMULATOR_ERROR = "simulator_error"
    """The simulated user failed: the simulation's fault, not the agent's."""
    IMPORTED = "imported"
    """A real conversation brought in as reference data (`simulate import conversations`):
    nobody simulated it and nobody measured how it ended."""


#: Outcomes that say nothing about the agent's quality and so are left out of its rates.
NOT_AGENT_FAULT = frozenset({Status.TARGET_ERROR, Status.SIMULATOR_ERROR})
#: The same statuses as text, sorted: what the goal rate's denominator leaves out.
NOT_RATED: tuple[str, ...] = tuple(sorted(s.value for s in NOT_AGENT_FAULT))


def is_rated(status: Status | str) -> bool:
    """Whether an episode that ended so counts for or against the agent: the goal rate's
    denominator is every episode not ended by a target or simulator error."""
    return str(status) not in NOT_RATED


class Outcome(Model):
    """How an episode ended, and which success checks did not hold."""

    status: Status
    reason: str = ""
    failed_checks: list[str] = Field(default_factory=list)
    """Success checks that did not hold at the end, e.g. `must_not_mention: 'PROMPT-7'`."""


FaultKind = Literal[
    "broke_role", "invented_fact", "revealed_checks", "repeated_itself", "ended_at_confirmation"
]


class SimulatorFault(Model):
    """A fault of the simulated user's, not the agent's, found in one of its turns."""

    kind: FaultKind
    """broke_role, invented_fact, revealed_checks, repeated_itself or ended_at_confirmation."""
    turn: int
    """Index in `messages` of the user message at fault (the last message for an ending)."""
    evidence: str
    """What gave it away: the phrase, the fact, the earlier message."""


class Usage(Model):
    """Tokens spent by one role on one model."""

    role: Literal["user", "target", "agent", "judge", "generator"]
    """`target`: a model Simulate plays as the agent (`--target openai:`); `agent`: the agent's
    own calls through the model proxy (`--agent-llm-proxy`). Both are the agent's share."""
    model: str
    calls: int = 0
    """Completions, cached ones included."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    """USD, None when a model has no known price. In an episode's row: what its calls cost at
    list price, cached or not (so a replay gives the same row); in a session's: what was spent."""


class Episode(Model):
    """One recorded conversation: one row of the run's dataset."""

    episode_id: str
    run_id: str
    persona_id: str
    scenario_id: str
    trial: int
    seed: int
    persona: str
    """The persona as a JSON string, so the Arrow schema never varies."""
    scenario: str
    """The rendered scenario as a JSON string."""
    messages: list[Message]
    outcome: Outcome
    success: bool
    """Goal reached and every success check held: the figure rates are made of."""
    n_turns: int
    """Agent replies in the conversation."""
    usage: list[Usage] = Field(default_factory=list)
    duration_s: float
    user: str
    """The simulated user's spec, e.g. `agenda`."""
    target: str
    """The agent's spec, e.g. `python:agent.py:respond`."""
    created_at: str
    """When the episode finished, ISO 8601 UTC."""
    simulator_faults: list[SimulatorFault] = Field(default_factory=list)
    """Faults of the simulated user found in this episode (empty in run folders written
    before they were recorded)."""

    @field_validator("simulator_faults", mode="before")
    @classmethod
    def _no_faults_recorded(cls, value: Any) -> Any:
        return [] if value is None else value

    error_traceback: str | None = None
    """The traceback of the exception that ended the episode (an agent's crash), credentials
    redacted; None when no exception did. The one-line reason is in `outcome.reason`."""


# --- labels and rubrics -----------------------------------------------------------------------

LabelerKind = Literal["rule", "judge", "human", "adjudicator"]
"""Who labeled; `adjudicator`: a person deciding a unit other people disagreed on."""


class Label(Model):
    """One judgement of one unit (an episode, an agent reply, or a tool call) on one criterion."""

    episode_id: str
    criterion: str
    """The rubric criterion (or rule) id."""
    turn_index: int | None = None
    """Index in `messages` of the judged agent reply; None for the whole episode."""
    tool_call_index: int | None = None
    """For tool-call units: which call of that reply."""
    value: str
    """The answer: `yes`/`no`, a scale point as text, or a category; empty: the labeler
    withdrew their earlier answer for the unit (an undo in the annotation app)."""
    score: float | None = None
    """The value as a number where it has one (1/0 for binary, the scale point)."""
    passed: bool | None = None
    """Whether the value is a pass under the criterion; None when it has no pass/fail."""
    rationale: str = ""
    labeler: str
    """Who labeled: `rule:must_mention`, `judge:gpt-4o-mini`, `human:ana`, `adjudicator:lead`."""
    labeler_kind: LabelerKind
    rubric: str | None = None
    """`<rubric id>@<version>` the label answers; None for rule labels."""
    samples: int | None = None
    """For judges asked several times: how many answers the majority was taken from."""
    spread: float | None = None
    """Share of those answers that disagreed with the majority (0 = unanimous)."""
    created_at: str

    @property
    def key(self) -> LabelKey:
        """The slot this label fills; a labeler fills each slot once (a later answer replaces)."""
        return (
            self.episode_id,
            self.criterion,
            self.turn_index,
            self.tool_call_index,
            self.labeler,
            self.rubric,
        )


LabelKey = tuple[str, str, int | None, int | None, str, str | None]
"""(episode_id, criterion, turn_index, tool_call_index, labeler, rubric): one label's slot."""


class MergedLabel(Model):
    """The label a golden set keeps for one unit, and where it came from."""

    episode_id: str
    criterion: str
    turn_index: int | None = None
    tool_call_index: int | None = None
    value: str | None
    """The majority value of the deciding kind; None when the unit is disputed."""
    score: float | None = None
    passed: bool | None = None
    kind: LabelerKind
    """The labeler kind that decided (the first of the precedence that labeled the unit)."""
    source: list[str]
    """Labelers behind the value (all labelers of the deciding kind when disputed)."""
    disputed: bool = False
    """The deciding kind had no strict majority (two people differ, a tie)."""

    @property
    def unit(self) -> tuple[str, str, int | None, int | None]:
        return (self.episode_id, self.criterion, self.turn_index, self.tool_call_index)


class Example(Model):
    """A worked example for a criterion, shown to judges and annotators."""

    text: str
    """An excerpt: a reply, a tool call, or a short conversation."""
    value: str
    """The right answer for it."""
    why: str = ""


class Criterion(Model):
    """One question of a rubric."""

    id: Id
    question: str = Field(min_length=1)
    """What the judge or annotator answers, e.g. "Is every claim supported by the context?"."""
    kind: Literal["binary", "scale", "category"] = "binary"
    applies_to: Literal["episode", "assistant_turn", "tool_call"] = "episode"
    scale_min: int | None = None
    """For `scale`: the lowest point."""
    scale_max: int | None = None
    """For `scale`: the highest point."""
    pass_at: float | None = None
    """For `scale`: points at or above this pass (default: the upper half)."""
    options: list[str] = Field(default_factory=list)
    """For `category`: the answers allowed."""
    passing: list[str] = Field(default_factory=list)
    """For `category`: the options that count as a pass (none: the criterion has no pass)."""
    examples: list[Example] = Field(default_factory=list)

    @field_validator("options", "passing")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("options must be distinct")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Criterion:
        if self.kind == "scale" and (
            self.scale_min is None or self.scale_max is None or self.scale_min >= self.scale_max
        ):
            raise ValueError("a scale criterion needs scale_min < scale_max")
        if self.kind == "category" and len(self.options) < 2:
            raise ValueError("a category criterion needs at least two options")
        if not set(self.passing) <= set(self.options):
            raise ValueError("passing must be among options")
        return self

    def allowed_values(self) -> list[str]:
        """Every answer this criterion accepts, as text."""
        if self.kind == "binary":
            return ["yes", "no"]
        if self.kind == "scale":
            assert self.scale_min is not None and self.scale_max is not None
            return [str(v) for v in range(self.scale_min, self.scale_max + 1)]
        return list(self.options)

    def judge_value(self, value: str) -> tuple[float | None, bool | None]:
        """The score and pass of an answer (which must be one of `allowed_values()`)."""
        if self.kind == "binary":
            return (1.0, True) if value == "yes" else (0.0, False)
        if self.kind == "scale":
            assert self.scale_min is not None and self.scale_max is not None
            threshold = (
                self.pass_at
                if self.pass_at is not None
                else ((self.scale_min + self.scale_max) / 2)
            )
            return float(value), float(value) >= threshold
        return None, (value in self.passing) if self.passing else None


class Rubric(Model):
    """Criteria to label runs with, versioned so labels say which wording they answer."""

    id: Id
    version: str = "1"
    description: str = ""
    criteria: list[Criterion] = Field(min_length=1)

    @property
    def ref(self) -> str:
        """`id@version`, stored on every label made with this rubric."""
        return f"{self.id}@{self.version}"

    @field_validator("criteria")
    @classmethod
    def _unique_ids(cls, criteria: list[Criterion]) -> list[Criterion]:
        ids = [c.id for c in criteria]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"duplicate criterion id {repeated[0]!r}")
        return criteria


# --- the run manifest -------------------------------------------------------------------------


class Record(BaseModel):
    """Base of the manifest's parts: keys this version does not know are kept, not refused,
    so a manifest written by another version reads and rewrites without losing anything."""

    model_config = ConfigDict(extra="allow")


class PlanRecord(Record):
    """The plan a run folder holds: its size and a fingerprint of everything that shapes it."""

    episodes: int = 0
    fingerprint: str | None = None


class RecordedConfig(Record):
    """The run's settings as recorded (specs redacted); every field a reader relies on."""

    personas: list[str] = Field(default_factory=list)
    scenarios: list[str] = Field(default_factory=list)
    user: str | None = None
    target: str | None = None
    trials: int | None = None
    seed: int | None = None
    max_turns: int | None = None
    system_prompt: str | None = None
    tools: str | None = None


class RunCounts(Record):
    """Episodes stored in the folder, by outcome."""

    planned: int | None = None
    stored: int = 0
    by_status: dict[str, int] = Field(default_factory=dict)
    successes: int = 0


class SessionRecord(Record):
    """What the latest `simulate run` session did."""

    played: int = 0
    skipped_already_stored: int = 0
    duration_s: float = 0.0
    goal_rate: float | None = None
    faulted: int = 0
    """Episodes kept with simulator faults."""
    discarded_attempts: int = 0
    """Attempts set aside by `--resimulate-faults` (in `discarded/`)."""
    model_usage: list[Usage] = Field(default_factory=list)
    engine: Literal["local", "ray"] = "local"
    """Where the session played: this process, or a Ray cluster (`--engine`)."""
    workers: dict[str, int] | None = None
    """With `--engine ray`: episodes stored by each worker (w0, w1...)."""


class LLMRecord(Record):
    """The models a run used: endpoint host (never credentials), prompt hashes, totals."""

    endpoint: str | None = None
    """The shared endpoint's host."""
    endpoints: dict[str, str] = Field(default_factory=dict)
    """Each role's endpoint host (user, agent, judge, generator): never a key or a path."""
    agent_proxy: str | None = None
    """The agent's model proxy (`--agent-llm-proxy`): its local base URL, never its token."""
    agent_calls_run_wide: int = 0
    """Agent calls through the proxy that named no episode: in the totals, in no row."""
    cache: bool = True
    replay_only: bool = False
    prompt_hashes: dict[str, str] = Field(default_factory=dict)
    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None


class LabelingRecord(Record):
    """One labeling session (rules and judges) or import of people's labels."""

    at: str | None = None
    rules: list[str] = Field(default_factory=list)
    limits: dict[str, Any] | None = None
    rubrics: list[str] = Field(default_factory=list)
    criteria: list[str] = Field(default_factory=list)
    judge: str | None = None
    samples: int | None = None
    prompt_hashes: dict[str, str] | None = None
    written: int = 0
    skipped: int = 0
    failed: int = 0
    stopped_because: str | None = None
    model_usage: list[Usage] = Field(default_factory=list)
    endpoints: dict[str, str] = Field(default_factory=dict)
    """The endpoint host of each role that called a model (the judge's)."""


class SourceRecord(Record):
    """Where a reference set's conversations come from (`simulate import conversations`)."""

    source: str = ""
    license: str = ""
    attribution: str = ""
    """What the licence asks to be said wherever the data goes (CC BY)."""
    file: str = ""
    format: str = ""


class ReferenceRecord(Record):
    """What a reference set holds beyond its rows."""

    conversations: int = 0
    user_messages: int = 0
    tasks_drafted_from_conversations: int = 0
    pii_masked: bool = False


RunState = Literal["running", "complete", "stopped", "interrupted"]


class Manifest(Record):
    """`manifest.json`: what a run folder holds and how it was made (never secrets).

    Every field has a default, so manifests written by older versions (or by hand, in tests)
    read; unknown keys are kept.
    """

    simulate: Literal["run", "reference"] = "run"
    """`reference` for a set of real conversations (`simulate import conversations`)."""
    schema_version: int = 1
    """`SCHEMA_VERSION` of the writer; 1 for manifests from before it was typed."""
    run_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    status: RunState | None = None
    """`running` while a session plays; `interrupted` when it was killed or cancelled."""
    stopped_because: str | None = None
    """Why the last session stopped early (a spent budget, a replay miss)."""
    resumed: int = 0
    """How many times the run was resumed."""
    config: RecordedConfig = Field(default_factory=RecordedConfig)
    plan: PlanRecord = Field(default_factory=PlanRecord)
    environment: dict[str, Any] = Field(default_factory=dict)
    """Versions of Python, the platform and the libraries that shape the data."""
    counts: RunCounts | None = None
    last_session: SessionRecord | None = None
    llm: LLMRecord | None = None
    labeling: list[LabelingRecord] = Field(default_factory=list)
    source: SourceRecord | None = None
    """For reference sets: where the conversations come from."""
    reference: ReferenceRecord | None = None

    @property
    def planned(self) -> int | None:
        """Episodes the plan holds, when the manifest says."""
        return (self.counts.planned if self.counts else None) or self.plan.episodes or None
