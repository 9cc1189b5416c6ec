"""Persona generation: trait axes covered pairwise or sampled, Faker filling each persona's facts
in its locale, and optionally an LLM writing each one a backstory and a way of speaking.

    axes = trait_axes(["en_US", "de_DE"], read_traits("traits.yaml"))
    personas = generate_personas(axes, n=60, seed=3, coverage="pairwise")
    personas = (await enrich_personas(personas, EnrichConfig(model="gpt-4o-mini"))).personas

Built-in axes are the `Traits` fields (patience, expertise, tone, verbosity, politeness,
typo_rate), `intent` (cooperative, confused, adversarial) and `locale` (the `--locale` values;
it sets `traits.language`). A traits file narrows built-in axes and adds new ones; new axes and
`intent` land in `traits.custom` (the LLM user's prompt lists them, reports slice by them), and
`intent: adversarial` also tags the persona `adversarial`, so the offline user inserts attacks.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, Field

from simulate import prompts
from simulate.errors import ConfigError, LLMError, RunStopped, did_you_mean
from simulate.llm import model_spec
from simulate.llm.pool import EndpointFlags
from simulate.loader import refuse_overwrite, write_yaml
from simulate.runner import run_bounded
from simulate.schema import Message, Persona, Traits, Usage

Coverage = Literal["pairwise", "random"]
COVERAGES: tuple[str, ...] = get_args(Coverage)

GENERATED_LICENSE = "CC0-1.0"
"""Generated personas are synthetic (Faker's made-up data, our templates): no rights reserved."""

#: Traits fields that are axes with a closed set of levels, in the order they are written.
LITERAL_AXES = ("patience", "expertise", "tone", "verbosity", "politeness")
#: Default levels of the numeric typo_rate axis: none, the odd typo, many.
TYPO_LEVELS = ("0.0", "0.03", "0.08")
INTENTS = ("cooperative", "confused", "adversarial")
#: Axes a traits file may not name: set by flags or not axes at all.
RESERVED = {"locale": "--locale", "language": "--locale", "custom": None}

#: Locale languages whose names Faker writes family name first.
FAMILY_FIRST = {"ja", "zh", "ko", "hu", "vi"}

_AXIS_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


# --- axes -------------------------------------------------------------------------------------


def builtin_axes() -> dict[str, list[str]]:
    """The built-in trait axes and their levels (locale aside: that one comes from --locale)."""
    axes = {a: list(get_args(Traits.model_fields[a].annotation)) for a in LITERAL_AXES}
    return {**axes, "typo_rate": list(TYPO_LEVELS), "intent": list(INTENTS)}


def read_traits(path: str | Path) -> dict[str, list[str]]:
    """Read a traits file: `axes:` mapping each axis to its list of levels.

    A built-in axis (patience, tone... typo_rate as numbers 0 to 1) takes a subset of its
    levels; any other name is a user-defined axis with free text levels.

    Raises:
        ConfigError: one line naming the file, line and axis: unknown built-in level, empty
            or duplicate levels, wrong types, a reserved or misspelt axis name.
    """
    from simulate.loader import _yaml_documents, read_text

    shown = str(path)
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--traits: no such file: {shown!r}")
    documents = _yaml_documents(read_text(file, shown), shown)
    node = documents[0][1] if documents else None
    expected = "expected `axes:` mapping each trait axis to a list of levels"
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{_at(shown, node)}: {expected}")
    top = {key.value: (key, value) for key, value in node.value}
    for name, (key, _) in top.items():
        if name != "axes":
            raise ConfigError(
                f"{_at(shown, key)}: unknown key {name!r}{did_you_mean(str(name), ['axes'])}; "
                f"{expected}"
            )
    if "axes" not in top:
        raise ConfigError(f"{shown}: no `axes:`; {expected}")
    axes_node = top["axes"][1]
    if not isinstance(axes_node, yaml.MappingNode) or not axes_node.value:
        raise ConfigError(f"{_at(shown, axes_node)}: `axes:` is empty or not a mapping; {expected}")
    builtin = builtin_axes()
    axes: dict[str, list[str]] = {}
    for key, value in axes_node.value:
        name = str(key.value)
        where = f"{_at(shown, key)}: axis {name!r}"
        _check_axis_name(name, where, builtin, axes)
        if not isinstance(value, yaml.SequenceNode):
            raise ConfigError(f"{where}: expected a list of levels, e.g. [low, high]")
        if not value.value:
            raise ConfigError(f"{where}: the list of levels is empty")
        levels: list[str] = []
        for item in value.value:
            spot = f"{_at(shown, item)}: axis {name!r}"
            if not isinstance(item, yaml.ScalarNode) or item.tag.endswith(":null"):
                raise ConfigError(f"{spot}: a level must be a word or a number, not a list or map")
            level = _level(name, item.value.strip(), spot, builtin)
            if level in levels:
                raise ConfigError(f"{spot}: duplicate level {item.value!r}")
            levels.append(level)
        axes[name] = levels
    return axes


def _check_axis_name(
    name: str, where: str, builtin: dict[str, list[str]], seen: dict[str, list[str]]
) -> None:
    if name in RESERVED:
        flag = RESERVED[name]
        fix = f"; it is set by {flag}" if flag else ""
        raise ConfigError(f"{where}: not an axis a traits file can set{fix}")
    if not _AXIS_NAME.match(name):
        raise ConfigError(
            f"{where}: axis names are letters, digits and '_', starting with a letter"
        )
    if name not in builtin:
        close = difflib.get_close_matches(name, list(builtin), n=1, cutoff=0.8)
        if close:
            raise ConfigError(
                f"{where}: looks like the built-in axis {close[0]!r}; fix the spelling, or "
                f"give a user-defined axis a name further from it"
            )
    if name in seen:
        raise ConfigError(f"{where}: duplicate axis")


def _level(axis: str, value: str, where: str, builtin: dict[str, list[str]]) -> str:
    """A level checked against its built-in axis; typo_rate levels as canonical numbers."""
    if not value:
        raise ConfigError(f"{where}: empty level")
    if axis == "typo_rate":
        try:
            rate = float(value)
        except ValueError:
            rate = -1.0
        if not 0.0 <= rate <= 1.0:
            raise ConfigError(
                f"{where}: level {value!r} is not a share between 0 and 1 (e.g. 0.05)"
            )
        return str(rate)
    if axis in builtin and value not in builtin[axis]:
        choices = ", ".join(builtin[axis])
        raise ConfigError(
            f"{where}: unknown level {value!r}{did_you_mean(value, builtin[axis])}; "
            f"choose from: {choices}"
        )
    return value


def _at(shown: str, node: yaml.Node | None) -> str:
    return f"{shown}:{node.start_mark.line + 1}" if node is not None else shown


def check_locales(locale: str | Sequence[str]) -> list[str]:
    """Faker locales from a comma-separated string or a list, checked, in order, once each.

    Raises:
        ConfigError: empty, or a locale Faker does not know (with the closest ones it does).
    """
    from faker.config import AVAILABLE_LOCALES

    names = [p.strip() for p in locale.split(",")] if isinstance(locale, str) else list(locale)
    names = [n for n in names if n]
    if not names:
        raise ConfigError("--locale is empty; give a Faker locale such as en_US")
    for name in names:
        if name not in AVAILABLE_LOCALES:
            fixed = name.replace("-", "_")
            close = did_you_mean(fixed, AVAILABLE_LOCALES) or did_you_mean(name, AVAILABLE_LOCALES)
            raise ConfigError(
                f"unknown locale {name!r}{close}; Faker knows: {', '.join(AVAILABLE_LOCALES)}"
            )
    return list(dict.fromkeys(names))


def trait_axes(
    locales: Sequence[str], given: dict[str, list[str]] | None = None
) -> dict[str, list[str]]:
    """Every axis of a generation: `locale`, the built-ins (narrowed by ``given``), then
    ``given``'s own axes in file order."""
    axes: dict[str, list[str]] = {"locale": list(locales), **builtin_axes()}
    for name, levels in (given or {}).items():
        axes[name] = list(levels)
    return axes


# --- covering arrays --------------------------------------------------------------------------


def covering_array(levels: Sequence[int], seed: int, *, candidates: int = 24) -> list[list[int]]:
    """Rows of level indices in which every pair of levels of any two columns occurs.

    A seeded greedy construction after AETG (Cohen et al., 1997): each row starts from the
    level left in the most uncovered pairs, fills the other columns in a random order with the
    level that covers the most new pairs, and the best of ``candidates`` such rows is kept.
    Deterministic for a given ``seed``; the array is small, not always the smallest possible.
    """
    k = len(levels)
    if any(n < 1 for n in levels):
        raise ValueError("every column needs at least one level")
    if k < 2:
        return [[a] for a in range(levels[0])] if k else [[]]
    rng = random.Random(f"covering:{seed}")
    uncovered = {
        (i, a, j, b)
        for i in range(k)
        for j in range(i + 1, k)
        for a in range(levels[i])
        for b in range(levels[j])
    }

    def is_new(i: int, a: int, j: int, b: int) -> bool:
        return ((i, a, j, b) if i < j else (j, b, i, a)) in uncovered

    rows: list[list[int]] = []
    while uncovered:
        count: dict[tuple[int, int], int] = {}
        for i, a, j, b in uncovered:
            count[i, a] = count.get((i, a), 0) + 1
            count[j, b] = count.get((j, b), 0) + 1
        most = max(count.values())
        starts = sorted(key for key, c in count.items() if c == most)
        best: list[int] = []
        best_new = -1
        for _ in range(candidates):
            col, level = rng.choice(starts)
            row = [-1] * k
            row[col] = level
            fixed = [col]
            order = [c for c in range(k) if c != col]
            rng.shuffle(order)
            new = 0
            for c in order:
                gains = [sum(is_new(c, v, f, row[f]) for f in fixed) for v in range(levels[c])]
                top = max(gains)
                row[c] = rng.choice([v for v, g in enumerate(gains) if g == top])
                fixed.append(c)
                new += top
            if new > best_new:
                best, best_new = row, new
        rows.append(best)
        uncovered -= {(i, best[i], j, best[j]) for i in range(k) for j in range(i + 1, k)}
    return rows


def pairwise_rows(axes: dict[str, list[str]], seed: int) -> list[dict[str, str]]:
    """The covering array of ``axes`` as level combinations (axis -> level)."""
    names = list(axes)
    rows = covering_array([len(axes[a]) for a in names], seed)
    return [{a: axes[a][row[i]] for i, a in enumerate(names)} for row in rows]


def plan_traits(
    axes: dict[str, list[str]], n: int, *, seed: int, coverage: Coverage = "pairwise"
) -> list[dict[str, str]]:
    """``n`` level combinations: a pairwise covering array first (for `pairwise`), then seeded
    random ones, avoiding repeats while unused combinations remain.

    Raises:
        ConfigError: ``n`` is below 1, or too small to cover every pair (names the smallest).
    """
    if coverage not in COVERAGES:
        raise ConfigError(
            f"unknown --coverage {coverage!r}{did_you_mean(coverage, COVERAGES)}; "
            f"choose from: {', '.join(COVERAGES)}"
        )
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    rows = pairwise_rows(axes, seed) if coverage == "pairwise" else []
    if len(rows) > n:
        varied = sum(1 for levels in axes.values() if len(levels) > 1)
        raise ConfigError(
            f"--n {n} is too small to cover every pair of levels of {varied} varied axes: the "
            f"smallest --n that works is {len(rows)} (found by a greedy construction; the "
            f"theoretical minimum may be lower); give --n {len(rows)} or more, fewer axes or "
            f"levels, or --coverage random"
        )
    names = list(axes)
    product = prod(len(axes[a]) for a in names)
    used = {tuple(r[a] for a in names) for r in rows}
    rng = random.Random(f"fill:{seed}")
    while len(rows) < n:
        combo = tuple(rng.choice(axes[a]) for a in names)
        if combo in used and len(used) < product:
            continue
        used.add(combo)
        rows.append(dict(zip(names, combo, strict=True)))
    return rows


# --- personas ---------------------------------------------------------------------------------


def generate_personas(
    axes: dict[str, list[str]],
    n: int,
    *,
    seed: int = 0,
    coverage: Coverage = "pairwise",
) -> list[Persona]:
    """``n`` personas over ``axes`` (see `trait_axes`), with Faker facts in their locale.

    Persona ``i`` (from 1) has the id `gen-<seed>-<i>` and its own Faker seed, drawn from
    ``seed`` and ``i``: same arguments, same personas.

    Raises:
        ConfigError: bad ``n`` or ``coverage``, or ``n`` too small for pairwise coverage.
    """
    if "locale" not in axes:
        raise ValueError("axes need a `locale` axis (see trait_axes)")
    check_locales(axes["locale"])
    combos = plan_traits(axes, n, seed=seed, coverage=coverage)
    width = len(str(n))
    fakers: dict[str, Any] = {}
    source = generated_source(seed)
    seen: set[str] = set()
    personas = []
    for index, combo in enumerate(combos, start=1):
        persona_id = f"gen-{seed}-{index:0{width}d}"
        salt = 0
        while True:  # identical personas would need identical Faker draws: draw again if so
            persona = _persona(persona_id, combo, _seed(seed, index, salt), fakers, source)
            fingerprint = json.dumps(persona.model_dump(exclude={"id"}), sort_keys=True)
            if fingerprint not in seen:
                break
            salt += 1
        seen.add(fingerprint)
        personas.append(persona)
    return personas


def generated_source(seed: int) -> str:
    """The `source` of generated personas: the command, Faker's version and the seed."""
    from faker import VERSION

    return f"simulate personas generate (Faker {VERSION}, seed {seed})"


def _seed(seed: int, index: int, salt: int) -> int:
    text = f"{seed}:{index}" + (f":{salt}" if salt else "")
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _persona(
    persona_id: str, combo: dict[str, str], seed: int, fakers: dict[str, Any], source: str
) -> Persona:
    from faker import Faker

    locale = combo["locale"]
    language = locale.split("_")[0]
    fake = fakers.setdefault(locale, Faker(locale))
    fake.seed_instance(seed)
    name, attributes = contact_details(fake, language)
    attributes |= {
        "date_of_birth": local_date(
            fake.date_between_dates(dt.date(1945, 1, 1), dt.date(2006, 12, 31)), locale
        ),
        "account_number": fake.numerify("########"),
        "order_number": fake.bothify("??-######", letters="ABCDEFGHJKLMNPQRSTUVWXYZ"),
        "order_date": local_date(
            fake.date_between_dates(dt.date(2025, 1, 1), dt.date(2025, 12, 31)), locale
        ),
    }
    country = country_name(locale)
    if country:
        attributes["country"] = country
    custom = {a: v for a, v in combo.items() if a not in Traits.model_fields and a != "locale"}
    traits = Traits.model_validate(
        {
            **{a: combo[a] for a in LITERAL_AXES},
            "typo_rate": float(combo["typo_rate"]),
            "language": language,
            "custom": custom,
        }
    )
    tags = ["generated", f"locale:{locale}"]
    if custom.get("intent") == "adversarial":
        tags.append("adversarial")
    return Persona(
        id=persona_id,
        name=name,
        description=describe(name, country, traits),
        traits=traits,
        attributes=attributes,
        tags=tags,
        source=source,
        license=GENERATED_LICENSE,
    )


def contact_details(fake: Any, language: str) -> tuple[str, dict[str, str]]:
    """A name as its locale writes it, and first and last name, email, phone and address."""
    first, last = fake.first_name(), fake.last_name()
    name = f"{last} {first}" if language in FAMILY_FIRST else f"{first} {last}"
    return name, {
        "first_name": first,
        "last_name": last,
        "email": _email(first, last, fake),
        "phone": fake.phone_number(),
        "address": ", ".join(fake.address().splitlines()),
    }


def _email(first: str, last: str, fake: Any) -> str:
    """An address at a reserved example domain, made of the name where it has Latin letters."""

    def ascii_part(text: str) -> str:
        plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
        return re.sub(r"[^a-z]", "", plain.lower())

    first_part, last_part = ascii_part(first), ascii_part(last)
    local = (
        f"{first_part}.{last_part}{fake.random_int(1, 99)}"
        if first_part and last_part
        else fake.user_name()
    )
    return f"{local}@{fake.safe_domain_name()}"


_BIDI_CONTROLS = dict.fromkeys(
    map(ord, "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
)
"""Invisible direction marks CLDR puts in some formats (Arabic: `20\u200f/07\u200f/1972`)."""


def local_date(day: dt.date, locale: str) -> str:
    """``day`` as the locale writes it (CLDR's medium format: `Mar 4, 1985`, `04.03.1985`),
    without invisible direction marks: a persona's facts are what a person types."""
    from babel.core import UnknownLocaleError
    from babel.dates import format_date

    for name in (locale, locale.split("_")[0]):
        try:
            return format_date(day, "medium", locale=name).translate(_BIDI_CONTROLS)
        except (UnknownLocaleError, ValueError):
            continue
    return day.isoformat()


_EXPERTISE = {
    "novice": "new to the product and its jargon",
    "intermediate": "reasonably familiar with the product",
    "expert": "an expert who knows the domain's terms",
}
_PATIENCE = {
    "low": "gives up quickly when the agent does not help",
    "medium": "gives the agent a fair chance",
    "high": "keeps trying for a long time",
}
_INTENT = {
    "cooperative": "wants the problem solved",
    "confused": "is not quite sure what they need",
    "adversarial": "also tries to get the agent to break its rules",
}
_VERBOSITY = {
    "terse": "writes in few words",
    "normal": "writes plainly",
    "verbose": "writes at length",
}
_POLITENESS = {"rude": "rude", "neutral": "matter-of-fact", "polite": "polite"}


def country_name(locale: str) -> str | None:
    """The English name of a locale's country (`de_DE` -> Germany), None when it has none."""
    from babel import Locale

    _, _, territory = locale.partition("_")
    return Locale("en").territories.get(territory) if territory else None


def describe(name: str, country: str | None, traits: Traits) -> str:
    """A sentence or two about the persona, made from its traits."""
    custom = dict(traits.custom)
    intent = custom.pop("intent", None)
    what = [_EXPERTISE[traits.expertise], _PATIENCE[traits.patience]]
    if intent:
        what.append(_INTENT.get(intent, f"intent: {intent}"))
    typos = (
        ""
        if traits.typo_rate == 0
        else ", with the odd typo"
        if traits.typo_rate < 0.05
        else ", with many typos"
    )
    text = (
        f"{name}{f' ({country})' if country else ''}: {', '.join(what[:-1])} and {what[-1]}. "
        f"Sounds {traits.tone} and {_POLITENESS[traits.politeness]}, "
        f"{_VERBOSITY[traits.verbosity]}{typos}."
    )
    if custom:
        text += (
            " " + "; ".join(f"{axis.replace('_', ' ')}: {v}" for axis, v in custom.items()) + "."
        )
    return text


def generation_header(command: str, personas: Sequence[Persona], seed: int) -> str:
    """The comment header of a generated persona file: what made it, its source and licence."""
    return (
        f"Generated by `{command}`: {len(personas)} personas.\n"
        f"Source: {generated_source(seed)}; names and facts are Faker's synthetic data, "
        "no real person's.\n"
        f"Licence: {GENERATED_LICENSE}."
    )


# --- LLM enrichment ---------------------------------------------------------------------------


class PersonaStory(BaseModel):
    """What the LLM writes for one persona."""

    backstory: str = Field(
        min_length=20,
        max_length=1500,
        description="Two to four sentences in the third person: who they are, what they do, "
        "and why they might contact customer support. Consistent with every trait.",
    )
    speaking_style: str = Field(
        min_length=10,
        max_length=800,
        description="One or two sentences on how they write in a support chat: length, tone, "
        "politeness, typos, jargon, as their traits say.",
    )


class EnrichConfig(EndpointFlags):
    """The model and endpoint of an enrichment."""

    model: str
    """The model, `MODEL` or `backend:MODEL` (the part after `llm:` in `--enrich`)."""
    concurrency: int = Field(8, ge=1)
    """Personas enriched at once."""


@dataclass
class EnrichResult:
    """Enriched personas and the tokens spent on them."""

    personas: list[Persona]
    usage: list[Usage] = field(default_factory=list)


def enrich_model(spec: str) -> str:
    """The model of an `--enrich` spec (`MODEL`, `backend:MODEL` or `llm:MODEL`)."""
    return model_spec("--enrich", spec)


def render_enrich_prompt(persona: Persona) -> str:
    """The request for one persona's backstory and way of speaking."""
    return prompts.render(prompts.text("persona_enrich.md.j2"), persona=persona.model_dump())


async def enrich_personas(personas: Sequence[Persona], config: EnrichConfig) -> EnrichResult:
    """Ask the model for each persona's backstory and way of speaking (structured output).

    The persona's description becomes the backstory followed by `Way of speaking: ...`; the
    source names the model. Requests go through the LLM layer: retried, repaired once when the
    reply does not fit, cached.

    Raises:
        LLMError: a persona's reply failed even after the repair round (names the persona).
        RunStopped: a budget ran out. Nothing is returned on any error.
    """
    from simulate.llm.pool import LLMPool

    pool = LLMPool.from_config(config)
    stories: dict[int, PersonaStory] = {}
    failed: list[tuple[int, LLMError]] = []
    try:
        llm = pool.get(config.model, "generator")

        async def story(item: tuple[int, Persona]) -> None:
            index, persona = item
            messages = [Message(role="user", content=render_enrich_prompt(persona))]
            try:
                completion = await llm.complete(
                    messages, output_type=PersonaStory, seed=_id_seed(persona.id)
                )
            except LLMError as exc:
                if not isinstance(exc, RunStopped):
                    failed.append((index, exc))
                raise
            stories[index] = completion.parsed

        await run_bounded(enumerate(personas), story, concurrency=config.concurrency)
    except LLMError as stop:
        if isinstance(stop, RunStopped) or not failed:
            raise
        index, exc = min(failed, key=lambda f: f[0])  # the first persona, whatever the timing
        raise LLMError(f"--enrich: persona {personas[index].id!r}: {exc}") from exc
    finally:
        await pool.aclose()
    by = f"backstory by llm:{config.model}"
    enriched = [
        Persona.model_validate(
            {
                **p.model_dump(),
                "description": f"{stories[i].backstory.strip()}\n"
                f"Way of speaking: {stories[i].speaking_style.strip()}",
                "source": f"{p.source}; {by}" if p.source else by,
                "tags": [*p.tags, "enriched"],
            }
        )
        for i, p in enumerate(personas)
    ]
    return EnrichResult(enriched, pool.meter.as_usage_list())


def _id_seed(persona_id: str) -> int:
    """A request seed of its own for each persona, so replies differ and replay alike."""
    return int.from_bytes(hashlib.sha256(persona_id.encode()).digest()[:4], "big") >> 1


# --- one `simulate personas generate` ----------------------------------------------------------


class PersonaGeneration(EndpointFlags):
    """Everything `simulate personas generate` does, as one Python call's settings."""

    n: int = Field(ge=1)
    """How many personas."""
    out: str
    """The persona YAML file to write."""
    locale: str = "en_US"
    """Faker locales, comma-separated; each persona draws one."""
    traits_file: str | None = None
    """A traits YAML narrowing the built-in axes and adding custom ones."""
    coverage: Literal["pairwise", "random"] = "pairwise"
    seed: int = 0
    force: bool = False
    """Overwrite ``out`` if it exists."""
    enrich: str | None = None
    """The model that writes backstories (`--enrich llm:MODEL`); None: no model."""
    concurrency: int = Field(8, ge=1)
    """Personas enriched at once."""


@dataclass
class GenerationResult:
    """What a generation wrote."""

    path: Path
    personas: list[Persona]
    varied_axes: int
    """Trait axes with more than one level."""
    covering: int | None
    """Personas that cover every pair of levels (pairwise coverage); None when sampled."""
    usage: list[Usage] = field(default_factory=list)


async def generate_persona_file(config: PersonaGeneration) -> GenerationResult:
    """Generate personas (Faker facts, trait coverage, optional LLM backstories) into a file.

    Raises:
        ConfigError: a bad locale, traits file, size or output name (before any model call).
        LLMError, RunStopped: enrichment failed or ran out of budget; nothing is written.
    """
    model = enrich_model(config.enrich) if config.enrich else None
    refuse_overwrite(config.out, config.force)
    given = read_traits(config.traits_file) if config.traits_file else None
    axes = trait_axes(check_locales(config.locale), given)
    personas = generate_personas(axes, config.n, seed=config.seed, coverage=config.coverage)
    command = (
        f"simulate personas generate --n {config.n} --locale {config.locale} "
        f"--coverage {config.coverage} --seed {config.seed}"
    )
    if config.traits_file:
        command += f" --traits {Path(config.traits_file).name}"
    usage: list[Usage] = []
    if model:
        command += f" --enrich {config.enrich}"
        flags = config.model_dump(include=set(EndpointFlags.model_fields))
        enriched = await enrich_personas(
            personas, EnrichConfig(model=model, concurrency=config.concurrency, **flags)
        )
        personas, usage = enriched.personas, enriched.usage
    header = generation_header(command, personas, config.seed)
    path = write_yaml(personas, config.out, header=header, force=config.force)
    return GenerationResult(
        path=path,
        personas=personas,
        varied_axes=sum(1 for levels in axes.values() if len(levels) > 1),
        covering=len(pairwise_rows(axes, config.seed)) if config.coverage == "pairwise" else None,
        usage=usage,
    )
