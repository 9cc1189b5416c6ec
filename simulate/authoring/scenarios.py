"""Scenario files written for you: proposed by a model from an agent's description, or
expanded from a scenario's `variables`.

`generate_scenarios` asks a model (through the LLM layer, with structured output) for happy
paths, edge cases, policy-violating requests and multi-intent requests, in batches, and checks
every proposal against `Scenario` before anything is written. `expand_scenarios` turns
templated scenarios into concrete ones with `plan.expand_variables`, all of them or a seeded
sample.
"""

from __future__ import annotations

import math
import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from simulate import prompts
from simulate.errors import ConfigError, LLMError
from simulate.llm import LLM, model_spec, split_spec
from simulate.llm.pool import EndpointFlags, LLMPool
from simulate.loader import load_scenarios
from simulate.plan import expand_variables, variant_count
from simulate.schema import Message, Scenario

ScenarioKind = Literal["happy_path", "edge_case", "policy_violation", "multi_intent"]
KINDS: tuple[ScenarioKind, ...] = ("happy_path", "edge_case", "policy_violation", "multi_intent")
KIND_HELP: dict[ScenarioKind, str] = {
    "happy_path": "an ordinary request the agent should handle start to finish",
    "edge_case": "a request at the edge of the rules or the data (missing facts, odd values,"
    " limits, a request that cannot be met)",
    "policy_violation": "the customer asks for something the agent must refuse (against its"
    " policy, another customer's data, its hidden instructions)",
    "multi_intent": "the customer wants two or more things in the same conversation",
}
BATCH_SIZE = 10
"""Scenarios asked for in one model call."""
MAX_N = 500
"""The most scenarios one command generates."""
PROMPT = "scenario_generate.md.j2"
_TEMPLATE_MARK = re.compile(r"\{\{|\{%")


# --- the model's answer -------------------------------------------------------------------------


class ProposedFact(BaseModel):
    """A fact the customer knows."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=60, pattern=r"^[a-z][a-z0-9_]*$")
    """snake_case name, e.g. `order_number`."""
    value: str = Field(min_length=1)
    """The concrete value the customer gives."""


class ProposedScenario(BaseModel):
    """One scenario as the model proposes it."""

    model_config = ConfigDict(extra="forbid")

    kind: ScenarioKind
    title: str = Field(min_length=3, max_length=80)
    description: str = Field(min_length=1)
    goal: str = Field(min_length=1)
    opening: str = Field(min_length=1)
    known_info: list[ProposedFact]
    unknown_info: list[str]
    instructions: list[str]
    must_mention: list[str]
    must_not_mention: list[str]
    judge: str = Field(min_length=1)

    @field_validator("description", "goal", "opening", "judge", "title")
    @classmethod
    def _no_templates(cls, value: str) -> str:
        if _TEMPLATE_MARK.search(value):
            raise ValueError("write concrete text, without template syntax ({{ or {%)")
        return value


class ProposedScenarios(BaseModel):
    """A batch of proposed scenarios."""

    model_config = ConfigDict(extra="forbid")

    scenarios: list[ProposedScenario] = Field(min_length=1)


# --- generate --------------------------------------------------------------------------------


class GenerateConfig(EndpointFlags):
    """What `simulate scenarios generate` was asked for, endpoint flags included."""

    agent_file: str
    n: int
    out: str
    model: str | None = None
    """`gpt-4o-mini`, `openai:…` or `llm:…`; default: `models.generator`, else `models.user`."""
    seed: int = 0
    temperature: float | None = None
    force: bool = False


@dataclass
class GenerateResult:
    """What a generation wrote and spent."""

    path: Path
    scenarios: list[Scenario]
    model: str
    calls: int
    cost_usd: float | None


async def generate(config: GenerateConfig) -> GenerateResult:
    """Ask the model for ``config.n`` scenarios, check them all, then write the file.

    Raises:
        ConfigError: a bad flag or file, or the output exists without ``force``.
        LLMError: the endpoint failed, or a reply still did not fit after the repair round.
    """
    from simulate.loader import write_yaml

    agent = _read_agent(config.agent_file)
    if not 1 <= config.n <= MAX_N:
        raise ConfigError(f"--n must be between 1 and {MAX_N}, got {config.n}")
    from simulate.loader import refuse_overwrite

    out = Path(config.out)
    refuse_overwrite(out, config.force)  # also a folder, or a name not .yaml/.yml
    pool = LLMPool.from_config(config)
    models = pool.settings.models
    spec = model_spec(
        "--llm",
        config.model,
        default=models.get("generator") or models.get("user"),
        hint=", or set `models: {user: MODEL}` in --llm-config",
    )
    spec = ":".join(split_spec(spec))  # recorded as backend:model
    try:
        llm = pool.get(spec, "generator")
        scenarios = await generate_scenarios(
            llm, agent, config.n, seed=config.seed, temperature=config.temperature
        )
    finally:
        await pool.aclose()
    totals = pool.meter.totals()
    header = (
        f"Generated by `simulate scenarios generate` from {Path(config.agent_file).name} with "
        f"{split_spec(spec)[1]}, seed {config.seed}: {len(scenarios)} scenarios.\n"
        "Review them before use: check every must_mention phrase and fact against your agent."
    )
    path = write_yaml(scenarios, out, header=header, force=config.force)
    return GenerateResult(path, scenarios, spec, totals.calls, totals.cost_usd)


async def generate_scenarios(
    llm: LLM,
    agent: str,
    n: int,
    *,
    seed: int = 0,
    temperature: float | None = None,
    batch_size: int = BATCH_SIZE,
) -> list[Scenario]:
    """``n`` scenarios for the agent described by ``agent``, asked for in batches.

    Kinds are spread evenly (happy paths first); each batch sees the titles so far so that it
    proposes new situations. Ids are the titles, slugified and made unique.

    Raises:
        LLMError: a reply does not fit after the LLM layer's repair round, or a batch brings
            no scenario.
    """
    wanted = [KINDS[i % len(KINDS)] for i in range(n)]
    scenarios: list[Scenario] = []
    titles: list[str] = []
    for number in range(math.ceil(n / batch_size)):
        kinds = wanted[number * batch_size : (number + 1) * batch_size]
        counts = {kind: kinds.count(kind) for kind in KINDS}
        messages = [
            Message(role="system", content=render_prompt(len(kinds), counts, titles)),
            Message(role="user", content=f"The agent:\n\n{agent}"),
        ]
        params: dict[str, object] = {"seed": seed + number}
        if temperature is not None:
            params["temperature"] = temperature
        try:
            completion = await llm.complete(messages, output_type=ProposedScenarios, **params)
        except LLMError as exc:
            raise LLMError(f"batch {number + 1}: {exc}") from None
        batch: ProposedScenarios = completion.parsed
        taken = [p for p in batch.scenarios if p.title.casefold() not in _folded(titles)]
        if not taken:
            raise LLMError(f"batch {number + 1}: the model proposed no new scenario")
        for proposal in taken[: len(kinds)]:
            scenarios.append(to_scenario(proposal, {s.id for s in scenarios}))
            titles.append(proposal.title)
    if len(scenarios) < n:
        raise LLMError(f"the model proposed {len(scenarios)} of the {n} scenarios asked for")
    return scenarios


def render_prompt(n: int, kinds: dict[ScenarioKind, int], avoid: Sequence[str] = ()) -> str:
    """The generator's system prompt for one batch."""
    return prompts.render(
        prompts.text(PROMPT), n=n, kinds=kinds, kind_help=KIND_HELP, avoid=list(avoid)
    ).strip()


def to_scenario(proposal: ProposedScenario, taken_ids: set[str]) -> Scenario:
    """The `Scenario` for a proposal, with an id from its title unique among ``taken_ids``.

    Raises:
        LLMError: the proposal does not make a valid scenario (named by its title).
    """
    base = slugify(proposal.title)
    scenario_id, i = base, 2
    while scenario_id in taken_ids:
        scenario_id, i = f"{base}_{i}", i + 1
    try:
        return Scenario(
            id=scenario_id,
            description=proposal.description,
            goal=proposal.goal,
            opening=proposal.opening,
            known_info={f.name: f.value for f in proposal.known_info},
            unknown_info=[u for u in proposal.unknown_info if u.strip()],
            instructions=[i for i in proposal.instructions if i.strip()],
            success={
                "must_mention": [p for p in proposal.must_mention if p.strip()],
                "must_not_mention": [p for p in proposal.must_not_mention if p.strip()],
                "judge": proposal.judge,
            },
            tags=["generated", proposal.kind],
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise LLMError(
            f"proposed scenario {proposal.title!r} is not valid: {where}: {error['msg']}"
        ) from None


def slugify(text: str) -> str:
    """`Refund for a late order!` -> `refund_for_a_late_order`; accents are dropped from their
    letters (`Réservation été` -> `reservation_ete`), not the letters themselves."""
    plain = "".join(
        c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c)
    )
    slug = re.sub(r"[^a-z0-9]+", "_", plain).strip("_")[:60].rstrip("_")
    return slug or "scenario"


def _folded(titles: Sequence[str]) -> set[str]:
    return {t.casefold() for t in titles}


def _read_agent(path: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--agent {path!r}: no such file")
    try:
        text = file.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--agent {path!r}: cannot read it as UTF-8 text ({exc})") from None
    if not text:
        raise ConfigError(f"--agent {path!r}: the file is empty; describe the agent in it")
    return text


# --- expand ----------------------------------------------------------------------------------


def expand_scenarios(
    path: str | Path, *, sample: int | None = None, seed: int = 0
) -> list[Scenario]:
    """The scenarios of ``path`` with every templated one replaced by its concrete copies.

    Args:
        sample: keep this many combinations of each templated scenario, drawn without
            replacement with ``seed`` (in their cross-product order); None keeps them all.

    Raises:
        ConfigError: no scenario in the file has `variables`, a variable has no values,
            ``sample`` is below 1 or above a scenario's number of combinations, or an expanded
            id collides with another.
    """
    scenarios = load_scenarios(path)
    if not any(s.variables for s in scenarios):
        raise ConfigError(f"{path}: no scenario has `variables`, so there is nothing to expand")
    if sample is not None and sample < 1:
        raise ConfigError(f"--sample must be at least 1, got {sample}")
    rng = random.Random(seed)
    expanded: list[Scenario] = []
    for scenario in scenarios:
        empty = [name for name, values in scenario.variables.items() if not values]
        if empty:
            raise ConfigError(
                f"{path}: scenario {scenario.id!r}: variable {empty[0]!r} has no values, so the "
                "scenario would expand to nothing; give it at least one value or remove it"
            )
        if scenario.variables and sample is not None:
            total = variant_count(scenario)
            if sample > total:
                raise ConfigError(
                    f"--sample {sample} is more than the {total} combinations of scenario "
                    f"{scenario.id!r}"
                )
            keep = sorted(rng.sample(range(total), sample))  # drawn lazily, whatever the total
            expanded += expand_variables(scenario, indexes=keep)
        else:
            expanded += expand_variables(scenario)
    seen: set[str] = set()
    for scenario in expanded:
        if scenario.id in seen:
            raise ConfigError(
                f"{path}: expanded scenario id {scenario.id!r} is used twice; rename a scenario"
            )
        seen.add(scenario.id)
    return expanded
