"""How varied a set of personas is: level counts per trait axis, the share of level pairs that
occur together in some persona, distinct-n of the descriptions, and near-duplicate descriptions.

    stats = persona_stats(load_personas("personas/"))
    stats.pair_coverage.share, stats.descriptions.near_duplicates.pairs
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from itertools import combinations
from typing import Any, get_args

from simulate.schema import Model, Persona, Traits

#: Built-in axes, in the order they are reported; custom axes follow in order of appearance.
BUILTIN_AXES = ("patience", "expertise", "tone", "verbosity", "politeness", "typo_rate", "language")
NEAR_DUPLICATE_JACCARD = 0.8
"""Two descriptions are near-duplicates when their word 3-gram sets overlap this much (Jaccard)."""
SHINGLE_WORDS = 3
MAX_LISTED = 20
"""Missing pairs and near-duplicate pairs listed by name, at most."""

_WORD = re.compile(r"\w+")


class PairCoverage(Model):
    """Pairs of levels of two different axes that occur together in some persona."""

    axes: list[str]
    """The axes with two or more levels seen."""
    covered: int
    total: int
    share: float | None
    missing: list[str]
    """Up to `MAX_LISTED` missing pairs, as `axis=level & axis=level`."""


class NearDuplicates(Model):
    threshold: float
    ngram: int
    pairs: int
    examples: list[tuple[str, str, float]]
    """Up to `MAX_LISTED` pairs: two persona ids and their Jaccard similarity."""


class DescriptionStats(Model):
    distinct_1: float | None
    distinct_2: float | None
    empty: int
    near_duplicates: NearDuplicates


class PersonaStats(Model):
    """Coverage and diversity figures of a set of personas (`persona_stats`)."""

    personas: int
    sources: dict[str, int]
    """Source -> personas; "(none)" for personas that name none."""
    licenses: dict[str, int]
    axes: dict[str, dict[str, int]]
    """Axis -> level -> personas; closed built-in axes list unseen levels with 0."""
    pair_coverage: PairCoverage
    descriptions: DescriptionStats


def persona_levels(persona: Persona) -> dict[str, str]:
    """The persona's level on each axis it has: the built-ins, then its custom axes."""
    traits = persona.traits
    levels = {axis: str(getattr(traits, axis)) for axis in BUILTIN_AXES}
    return levels | dict(traits.custom)


def persona_stats(
    personas: Sequence[Persona], *, threshold: float = NEAR_DUPLICATE_JACCARD
) -> PersonaStats:
    """Coverage and diversity figures of ``personas``; `--json` is its dump."""
    levels = [persona_levels(p) for p in personas]
    return PersonaStats(
        personas=len(personas),
        sources=_counts(p.source or "(none)" for p in personas),
        licenses=_counts(p.license or "(none)" for p in personas),
        axes=axis_counts(levels),
        pair_coverage=pair_coverage(levels),
        descriptions=description_stats(
            [p.id for p in personas], [p.description for p in personas], threshold=threshold
        ),
    )


def _counts(values: Any) -> dict[str, int]:
    return dict(sorted(Counter(values).items(), key=lambda kv: (-kv[1], kv[0])))


def axis_counts(levels: Sequence[dict[str, str]]) -> dict[str, dict[str, int]]:
    """Axis -> level -> how many personas have it; closed built-in axes show unseen levels too."""
    axes: dict[str, Counter[str]] = {}
    for axis in BUILTIN_AXES:
        closed = get_args(Traits.model_fields[axis].annotation)
        axes[axis] = Counter(dict.fromkeys(closed, 0))
    for row in levels:
        for axis, level in row.items():
            axes.setdefault(axis, Counter())[level] += 1
    return {
        axis: dict(sorted(c.items(), key=lambda kv: kv[0])) if axis == "typo_rate" else dict(c)
        for axis, c in axes.items()
    }


def pair_coverage(levels: Sequence[dict[str, str]]) -> PairCoverage:
    """How many pairs of levels of two different axes occur together in some persona.

    Only levels seen count (the set itself cannot say which levels a custom axis should have),
    and only axes with two or more of them: a constant axis pairs with everything trivially.
    """
    seen: dict[str, list[str]] = {}
    for row in levels:
        for axis, level in row.items():
            if level not in seen.setdefault(axis, []):
                seen[axis].append(level)
    varied = [axis for axis, found in seen.items() if len(found) > 1]
    together = {
        (a, row[a], b, row[b])
        for row in levels
        for a, b in combinations([x for x in varied if x in row], 2)
    }
    total = 0
    missing: list[str] = []
    for a, b in combinations(varied, 2):
        for level_a in seen[a]:
            for level_b in seen[b]:
                total += 1
                if (a, level_a, b, level_b) not in together and len(missing) < MAX_LISTED:
                    missing.append(f"{a}={level_a} & {b}={level_b}")
    covered = len(together)
    return PairCoverage(
        axes=varied,
        covered=covered,
        total=total,
        share=covered / total if total else None,
        missing=missing,
    )


def distinct_n(texts: Sequence[str], n: int) -> float | None:
    """Distinct n-grams over all n-grams of the texts' words (Li et al., 2016); None if none."""
    grams: list[tuple[str, ...]] = []
    for text in texts:
        words = _WORD.findall(text.lower())
        grams += [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def shingles(text: str, size: int = SHINGLE_WORDS) -> frozenset[tuple[str, ...]]:
    """The word ``size``-grams of a text (the whole text as one when it is shorter)."""
    words = _WORD.findall(text.lower())
    if len(words) < size:
        return frozenset([tuple(words)]) if words else frozenset()
    return frozenset(tuple(words[i : i + size]) for i in range(len(words) - size + 1))


def near_duplicates(
    ids: Sequence[str], texts: Sequence[str], *, threshold: float = NEAR_DUPLICATE_JACCARD
) -> list[tuple[str, str, float]]:
    """Pairs of texts whose word 3-gram sets have a Jaccard similarity of ``threshold`` or more.

    Exact: an index from shingle to the texts holding it counts each pair's shared shingles,
    so texts that share none are never compared.
    """
    sets = [shingles(t) for t in texts]
    index: dict[tuple[str, ...], list[int]] = {}
    found: list[tuple[str, str, float]] = []
    for j, current in enumerate(sets):
        shared: Counter[int] = Counter()
        for shingle in current:
            shared.update(index.get(shingle, ()))
            index.setdefault(shingle, []).append(j)
        for i, common in sorted(shared.items()):
            jaccard = common / (len(sets[i]) + len(current) - common)
            if jaccard >= threshold:
                found.append((ids[i], ids[j], round(jaccard, 4)))
    return found


def description_stats(
    ids: Sequence[str], texts: Sequence[str], *, threshold: float = NEAR_DUPLICATE_JACCARD
) -> DescriptionStats:
    """distinct-1, distinct-2, empty descriptions and near-duplicate pairs."""
    written = [(i, t) for i, t in zip(ids, texts, strict=True) if t.strip()]
    pairs = near_duplicates([i for i, _ in written], [t for _, t in written], threshold=threshold)
    return DescriptionStats(
        distinct_1=distinct_n([t for _, t in written], 1),
        distinct_2=distinct_n([t for _, t in written], 2),
        empty=len(texts) - len(written),
        near_duplicates=NearDuplicates(
            threshold=threshold, ngram=SHINGLE_WORDS, pairs=len(pairs), examples=pairs[:MAX_LISTED]
        ),
    )
