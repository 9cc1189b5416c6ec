"""Split questions.yaml once into dev.yaml (tuned on) and heldout.yaml (never tuned on).

Run once; the split files are committed. Each profile's questions are shuffled with a fixed
seed and 40% go to dev, the rest to held-out.
"""

from __future__ import annotations

import random
from pathlib import Path

import yaml

HERE = Path(__file__).parent
DEV_SHARE = 0.4
SEED = 14


def main() -> None:
    data = yaml.safe_load((HERE / "questions.yaml").read_text(encoding="utf-8"))
    rng = random.Random(SEED)
    parts: dict[str, dict] = {"dev": {}, "heldout": {}}
    for name, profile in data["profiles"].items():
        questions = list(profile["questions"])
        rng.shuffle(questions)
        cut = round(len(questions) * DEV_SHARE)
        for split, chosen in (("dev", questions[:cut]), ("heldout", questions[cut:])):
            parts[split][name] = {**profile, "questions": chosen}
    for split, profiles in parts.items():
        text = yaml.safe_dump(
            {"kinds": data["kinds"], "profiles": profiles}, sort_keys=False, allow_unicode=True
        )
        header = f"# {split} part of questions.yaml, written by split.py (seed {SEED}).\n"
        (HERE / f"{split}.yaml").write_text(header + text, encoding="utf-8")
        print(split, sum(len(p["questions"]) for p in profiles.values()))


if __name__ == "__main__":
    main()
