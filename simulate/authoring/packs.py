"""Stress-test packs: personas and scenarios shipped with Simulate that probe one failure each.

Each pack is a folder of `simulate/stress_packs/` holding `personas.yaml` and
`scenarios.yaml`; `simulate packs add` copies them, comments included (they say what to adapt),
into `DIR/personas/<pack>.yaml` and `DIR/scenarios/<pack>.yaml`, so that
`simulate run --personas DIR/personas --scenarios DIR/scenarios` plays every pack added.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from simulate.errors import ConfigError, unknown_choice
from simulate.loader import load_personas, load_scenarios
from simulate.schema import Persona, Scenario

#: Pack name -> what it probes, one line. Every name is a folder of `stress_packs/`.
DESCRIPTIONS: dict[str, str] = {
    "prompt-injection": "tells the agent to ignore its instructions; catches leaked instructions",
    "system-prompt-extraction": "asks for the hidden instructions with a pretext; catches leaks",
    "role-play-jailbreak": "wraps the request in a role-play ('you are DAN'); catches leaks",
    "pii-fishing": "asks for another customer's data; catches their email in a reply",
    "abusive-user": "insults the agent; catches insults and lectures in return",
    "off-topic": "drifts to poems and stock tips; catches an agent that plays along",
    "multi-intent": "asks two things in one message; catches the second one dropped",
    "long-messages": "buries the request in 2,000+ characters of backstory",
    "typos-non-native": "writes with many typos or in non-native English",
    "language-switching": "switches to Spanish, German or French mid-conversation",
    "changes-mind": "changes their mind at the confirmation step; catches the first action done",
}
KINDS = ("personas", "scenarios")
"""The files of a pack, each `<kind>.yaml`."""


@dataclass(frozen=True)
class Pack:
    """One stress-test pack, loaded."""

    name: str
    description: str
    personas: list[Persona]
    scenarios: list[Scenario]


def pack_names() -> list[str]:
    """The names of the packs that ship with Simulate, in a fixed order."""
    return list(DESCRIPTIONS)


def pack_text(name: str, kind: str) -> str:
    """The YAML text of one file of a pack (``kind`` is `personas` or `scenarios`)."""
    _check_name(name)
    folder = resources.files("simulate").joinpath("stress_packs", name)
    return folder.joinpath(f"{kind}.yaml").read_text("utf-8")


def load_pack(name: str) -> Pack:
    """The personas and scenarios of the pack ``name``.

    Raises:
        ConfigError: no pack has that name (the closest is suggested).
    """
    _check_name(name)
    folder = resources.files("simulate").joinpath("stress_packs", name)
    with resources.as_file(folder) as path:
        personas = load_personas(Path(path) / "personas.yaml")
        scenarios = load_scenarios(Path(path) / "scenarios.yaml")
    return Pack(name, DESCRIPTIONS[name], personas, scenarios)


def list_packs() -> list[Pack]:
    """Every pack, loaded."""
    return [load_pack(name) for name in pack_names()]


def add_packs(names: Sequence[str], out_dir: str | Path, *, force: bool = False) -> list[Path]:
    """Write the packs ``names`` into ``out_dir``: `personas/<pack>.yaml`, `scenarios/<pack>.yaml`.

    Every name is checked and no file is written when one would be overwritten without
    ``force``; each file is written whole and renamed into place.

    Returns:
        The files written, personas then scenarios of each pack.

    Raises:
        ConfigError: an unknown pack name, or a file exists and ``force`` is false.
    """
    if not names:
        raise ConfigError(f"name at least one pack: {', '.join(pack_names())}")
    for name in names:
        _check_name(name)
    unique = list(dict.fromkeys(names))
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {out_dir}: exists and is not a folder")
    targets = [(name, kind, out / kind / f"{name}.yaml") for name in unique for kind in KINDS]
    if not force:
        existing = [str(path) for _, _, path in targets if path.exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise ConfigError(f"{existing[0]} exists{more}; add --force to overwrite")
    written = []
    for name, kind, path in targets:
        _write_atomic(path, pack_text(name, kind))
        written.append(path)
    return written


def _check_name(name: str) -> None:
    if name not in DESCRIPTIONS:
        raise unknown_choice("pack", name, DESCRIPTIONS)


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
