"""Rubrics by name or path: the shipped ones in `simulate/rubrics/`, or the user's files.

load_rubric_specs(["faithfulness", "rubrics/mine.yaml"])
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from importlib import resources
from pathlib import Path

from simulate.errors import ConfigError, did_you_mean
from simulate.loader import load_rubrics
from simulate.schema import Criterion, Rubric


def shipped_rubrics() -> list[str]:
    """Names of the rubrics that ship with Simulate (`support`, `faithfulness`...)."""
    folder = resources.files("simulate").joinpath("rubrics")
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def load_rubric_specs(specs: Sequence[str]) -> list[Rubric]:
    """Rubrics from paths or shipped names; a path that exists wins over a name.

    Raises:
        ConfigError: a file is wrong (file, line, field), a name is unknown, or two rubrics
            share an id or a criterion id.
    """
    rubrics: list[Rubric] = []
    with ExitStack() as stack:
        for spec in specs:
            if Path(spec).exists():
                rubrics += load_rubrics([spec])
                continue
            names = shipped_rubrics()
            if spec not in names:
                raise ConfigError(
                    f"--rubric {spec!r} is neither a file nor a shipped rubric"
                    f"{did_you_mean(spec, names)}; shipped: {', '.join(names)}"
                )
            shipped = resources.files("simulate").joinpath("rubrics", f"{spec}.yaml")
            rubrics += load_rubrics([stack.enter_context(resources.as_file(shipped))])
    _check_distinct(rubrics)
    return rubrics


def _check_distinct(rubrics: Sequence[Rubric]) -> None:
    """Each rubric once, and each criterion id in one rubric only (labels name the id)."""
    ids = [r.id for r in rubrics]
    repeated = next((i for i in ids if ids.count(i) > 1), None)
    if repeated:
        raise ConfigError(f"rubric {repeated!r} is given twice")
    owner: dict[str, str] = {}
    for rubric in rubrics:
        for criterion in rubric.criteria:
            if criterion.id in owner:
                raise ConfigError(
                    f"criterion {criterion.id!r} is in two of the rubrics given, "
                    f"{owner[criterion.id]} and {rubric.ref}; give only one of them"
                )
            owner[criterion.id] = rubric.ref


def criteria_of(rubrics: Sequence[Rubric]) -> list[tuple[Rubric, Criterion]]:
    """Every (rubric, criterion) pair, in the order given."""
    return [(r, c) for r in rubrics for c in r.criteria]
