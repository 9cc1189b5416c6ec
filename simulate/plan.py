"""The plan: personas x scenarios x trials, narrowed by filters, each with its seed and id.

Deterministic: the same inputs and seed give the same specs in the same order. Scenario text
is rendered here, per persona, from its Jinja2 templates (`{{ persona.attributes.email }}`).
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

import jinja2
import jinja2.meta

from simulate.errors import ConfigError, did_you_mean
from simulate.prompts import MAX_RENDERED_CHARS, LimitedSandbox
from simulate.schema import EpisodeSpec, Persona, Scenario

_TEMPLATES = LimitedSandbox(undefined=jinja2.StrictUndefined, autoescape=False)
#: Fields that identify a scenario or drive expansion, never rendered.
_NOT_RENDERED = {"id", "variables", "tags", "max_turns"}
_EXPRESSION = re.compile(r"\{\{.*?\}\}", re.DOTALL)


def episode_id(run_id: str, persona_id: str, scenario_id: str, trial: int) -> str:
    """A stable id for one conversation of a run: 16 hex digits."""
    key = "\x1f".join([run_id, persona_id, scenario_id, str(trial)])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def episode_seed(run_seed: int, persona_id: str, scenario_id: str, trial: int) -> int:
    """The seed of one conversation, from the run seed and the conversation's identity.

    The run name is left out on purpose: the same seed replays the same conversations under
    another run name.
    """
    key = "\x1f".join([str(run_seed), persona_id, scenario_id, str(trial)])
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") >> 1


MAX_VARIANTS = 10_000
"""Combinations one templated scenario may expand to in full (`--sample` draws from more)."""
MAX_EPISODES = 100_000
"""The default ceiling of a plan's size (`--max-episodes`): plans are counted before built."""


def variant_count(scenario: Scenario) -> int:
    """How many concrete scenarios ``scenario``'s `variables` expand to (1 without any)."""
    return math.prod(len(values) for values in scenario.variables.values())


def expand_variables(
    scenario: Scenario, *, indexes: Sequence[int] | None = None, limit: int = MAX_VARIANTS
) -> list[Scenario]:
    """One scenario per combination of its `variables`, with ids that tell them apart.

    Args:
        indexes: only these combinations (positions in the cross product's order); the others
            are never built, so a sample of a huge product costs only the sample.
        limit: refuse to build more than this many.
    """
    if not scenario.variables:
        return [scenario]
    names = list(scenario.variables)
    where = f"scenario {scenario.id!r}"
    for name in names:
        if not scenario.variables[name]:
            raise ConfigError(f"{where}: variables.{name}: has no values; give at least one")
    total = variant_count(scenario)
    chosen = range(total) if indexes is None else indexes
    if len(chosen) > limit:
        raise ConfigError(
            f"{where}: its variables expand to {total:,} scenarios, more than {limit:,}; "
            "draw some with `simulate scenarios expand --sample N` or use fewer values"
        )
    expanded = []
    for index in chosen:
        values = _combination(scenario.variables, names, index)
        bindings = dict(zip(names, values, strict=True))
        slug = "-".join(_slug(v) for v in values)
        data = scenario.model_dump()
        data.update(id=f"{scenario.id}.{slug}", variables={})
        context = {"vars": bindings, **bindings}
        rendered = _render(data, context, where, only=set(bindings))
        rendered["tags"] = [
            _render({"tag": tag}, context, where)["tag"] if "{{" in tag else tag
            for tag in scenario.tags
        ]
        expanded.append(Scenario.model_validate(rendered | {"variables": {}}))
    ids = [s.id for s in expanded]
    if len(set(ids)) != len(ids):
        expanded = [
            s.model_copy(update={"id": f"{scenario.id}.{i}"})
            for i, s in zip(chosen, expanded, strict=True)
        ]
    return expanded


def _combination(variables: dict[str, list[str]], names: list[str], index: int) -> list[str]:
    """The values at position ``index`` of the variables' cross product (itertools order)."""
    values = []
    for name in reversed(names):
        index, position = divmod(index, len(variables[name]))
        values.append(variables[name][position])
    return values[::-1]


def _slug(value: str) -> str:
    """A variable's value as part of an id: `São Paulo` -> `Sao_Paulo`; text with no Latin
    letters or digits (`東京`) becomes a short hash of itself."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", value) if not unicodedata.combining(c))
    slug = re.sub(r"[^A-Za-z0-9]+", "_", plain).strip("_")[:24]
    return slug or "v" + hashlib.sha256(value.encode()).hexdigest()[:6]


def render_scenario(scenario: Scenario, persona: Persona) -> Scenario:
    """The scenario with every template in its text rendered for ``persona``."""
    context = {"persona": persona.model_dump()}
    where = f"scenario {scenario.id!r} for persona {persona.id!r}"
    return Scenario.model_validate(_render(scenario.model_dump(), context, where))


@functools.lru_cache(maxsize=1024)
def _compiled(text: str) -> jinja2.Template:
    """``text`` compiled once: compiling costs about 1 ms, rendering a few microseconds."""
    return _TEMPLATES.from_string(text)


def _render(
    data: dict[str, Any], context: dict[str, Any], where: str, only: set[str] | None = None
) -> dict[str, Any]:
    """``data`` with its templates rendered; with ``only``, just the `{{ }}` expressions that use
    those names (`variables`), leaving the rest (`{{ persona.name }}`) for the per-persona pass."""

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, str) and ("{{" in value or "{%" in value):
            kept: list[str] = []
            if only is not None:
                value = _EXPRESSION.sub(lambda m: _defer(m.group(0), context, only, kept), value)
            try:
                text = _compiled(value).render(context)
            except (jinja2.TemplateError, OverflowError) as exc:
                raise ConfigError(f"{where}: {path}: template error: {exc}") from exc
            if len(text) > MAX_RENDERED_CHARS:
                raise ConfigError(
                    f"{where}: {path}: the template made {len(text):,} characters, more than "
                    f"{MAX_RENDERED_CHARS:,}"
                )
            for i, expression in enumerate(kept):
                text = text.replace(f"\x00{i}\x00", expression)
            return text
        if isinstance(value, dict):
            return {k: walk(v, f"{path}.{k}" if path else k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    return {k: v if k in _NOT_RENDERED else walk(v, k) for k, v in data.items()}


def _defer(expression: str, context: dict[str, Any], names: set[str], kept: list[str]) -> str:
    """A placeholder for ``expression`` when it needs more than the variables ``names``.

    One that uses only variables renders now. One that mixes both
    (`{{ persona.attributes[field] }}`) is kept for the per-persona pass with the variables'
    values bound in front of it (`{% set field = "email" %}`).
    """
    try:
        used = jinja2.meta.find_undeclared_variables(_TEMPLATES.parse(expression))
    except jinja2.TemplateSyntaxError:
        return expression  # rendering reports it, with the field's path
    bound = used & (names | {"vars"})
    if bound and used <= names | {"vars"}:
        return expression
    settings = "".join(
        "{% set " + name + " = " + json.dumps(context[name]) + " %}" for name in sorted(bound)
    )
    kept.append(settings + expression)
    return f"\x00{len(kept) - 1}\x00"


def _select(items: Sequence[Any], patterns: Sequence[str], flag: str) -> list[Any]:
    """Items whose id matches one of the glob ``patterns`` (all when none are given)."""
    if not patterns:
        return list(items)
    ids = [item.id for item in items]
    for pattern in patterns:
        if not fnmatch.filter(ids, pattern):
            raise ConfigError(f"{flag} {pattern!r} matches nothing{did_you_mean(pattern, ids)}")
    return [item for item in items if any(fnmatch.fnmatchcase(item.id, p) for p in patterns)]


def build_plan(
    personas: Sequence[Persona],
    scenarios: Sequence[Scenario],
    *,
    run_id: str,
    trials: int = 1,
    seed: int = 0,
    max_turns: int = 12,
    persona_filter: Sequence[str] = (),
    scenario_filter: Sequence[str] = (),
    tags: Sequence[str] = (),
    max_episodes: int = MAX_EPISODES,
) -> list[EpisodeSpec]:
    """Every (persona, scenario, trial) to play, in a fixed order, each with its seed.

    Args:
        persona_filter: glob patterns of persona ids to keep (`--persona`).
        scenario_filter: glob patterns of scenario ids to keep (`--scenario`).
        tags: keep pairs where the persona or the scenario has one of these tags (`--tag`).
        max_episodes: refuse a plan of more episodes (counted before anything is built).
    """
    if trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    chosen_personas = _select(personas, persona_filter, "--persona")
    selected = _select(scenarios, scenario_filter, "--scenario")
    wanted = set(tags)
    planned = trials * sum(
        variant_count(s)
        for p in chosen_personas
        for s in selected
        if not wanted or wanted & (set(p.tags) | set(s.tags)) or any("{{" in x for x in s.tags)
    )
    if planned > max_episodes:
        raise ConfigError(
            f"the plan holds {planned:,} episodes, more than --max-episodes {max_episodes:,}; "
            "narrow it (--persona, --scenario, --tag, fewer --trials or variable values) "
            "or raise --max-episodes"
        )
    chosen_scenarios = [s for scenario in selected for s in expand_variables(scenario)]
    specs = []
    for persona in chosen_personas:
        for scenario in chosen_scenarios:
            if wanted and not wanted & (set(persona.tags) | set(scenario.tags)):
                continue
            rendered = render_scenario(scenario, persona)
            for trial in range(trials):
                specs.append(
                    EpisodeSpec(
                        episode_id=episode_id(run_id, persona.id, scenario.id, trial),
                        run_id=run_id,
                        persona=persona,
                        scenario=rendered,
                        trial=trial,
                        seed=episode_seed(seed, persona.id, scenario.id, trial),
                        max_turns=scenario.max_turns or max_turns,
                    )
                )
    if not specs:
        known = sorted({t for item in [*personas, *scenarios] for t in item.tags})
        raise ConfigError(
            f"--tag {', '.join(tags)} leaves no episode to play; tags in use: {', '.join(known)}"
        )
    return specs
