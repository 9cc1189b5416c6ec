"""How well the offline agenda user understands agents asking for facts in their own words.

For each question of `benchmarks/paraphrase/<split>.yaml`, a fresh agenda user whose scenario
holds the profile's `known_info` opens the conversation, the agent asks the question, and the
user's reply is graded:

- right: it holds the value of every field asked for and no other field's value (for a
  question about something the user does not know: no value at all);
- wrong: it holds the value of a field that was not asked for (a neighbour's);
- missed: neither (the user did not answer, or answered only part).

    PYTHONPATH=. python benchmarks/paraphrase.py           # the held-out part: figures only
    PYTHONPATH=. python benchmarks/paraphrase.py --split dev --misses   # what to work on

(`PYTHONPATH=.` from the checkout's root, so the checkout is measured, not an installed copy.)

Prints a table per kind of fact and the totals; `--json` prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from simulate.plan import build_plan
from simulate.schema import Message, Persona, Scenario
from simulate.stats import wilson_interval
from simulate.users import EpisodeState
from simulate.users.agenda import AgendaUser

HERE = Path(__file__).parent / "paraphrase"


@dataclass(frozen=True)
class Question:
    """One agent question of the benchmark."""

    profile: str
    domain: str
    known: dict[str, str]
    asked: tuple[str, ...]
    """Fields asked for; empty when the question asks for something the user does not know."""
    text: str
    kind: str


def load_questions(split: str) -> list[Question]:
    """The questions of one split (`dev`, `dev2`, `dev3`, `heldout`) or of the whole set (`all`)."""
    name = "questions" if split == "all" else split
    data = yaml.safe_load((HERE / f"{name}.yaml").read_text(encoding="utf-8"))
    kind_of = {field: kind for kind, fields in data["kinds"].items() for field in fields}
    questions = []
    for profile, body in data["profiles"].items():
        known = {k: str(v) for k, v in body["known_info"].items()}
        for fields, text in body["questions"]:
            asked = () if fields == "none" else tuple(fields.split("+"))
            if not asked:
                kind = "not known"
            elif len(asked) > 1:
                kind = "two facts"
            else:
                kind = kind_of[asked[0]]
            questions.append(Question(profile, body["domain"], known, asked, text, kind))
    return questions


def _said(value: str, text: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(value.lower())}(?!\w)", text.lower()) is not None


def grade(question: Question, reply: str) -> str:
    """`right`, `wrong` or `missed` (see the module docstring)."""
    others = [f for f in question.known if f not in question.asked]
    rest = reply  # a value inside an asked one ("Weber" in the e-mail) is not another answer
    for f in question.asked:
        rest = re.sub(re.escape(question.known[f]), " ", rest, flags=re.IGNORECASE)
    if any(_said(question.known[f], rest) for f in others):
        return "wrong"
    if all(_said(question.known[f], reply) for f in question.asked):
        return "right"
    return "missed"


async def answer(question: Question, seed: int) -> str:
    """The agenda user's reply to ``question``, right after its opening message."""
    persona = Persona(id="bench", name="Pat Doe")
    scenario = Scenario(
        id=f"bench-{question.profile}",
        description=f"I need help with something about my {question.domain} account.",
        goal="The user is helped.",
        known_info=question.known,
        success={"must_mention": ["all done"]},
    )
    spec = build_plan([persona], [scenario], run_id="bench", seed=seed)[0]
    user = AgendaUser(spec)
    state = EpisodeState(spec=spec)
    opening = await user.next_turn(state)
    state.messages.append(Message(role="user", content=opening.content or ""))
    state.messages.append(Message(role="assistant", content=question.text))
    turn = await user.next_turn(state)
    return turn.content or ""


def rate(hits: int, n: int) -> dict[str, Any]:
    low, high = wilson_interval(hits, n)
    return {"value": hits / n if n else None, "low": low, "high": high, "n": n}


async def measure(split: str) -> tuple[dict[str, Any], list[tuple[Question, str, str]]]:
    questions = load_questions(split)
    graded = []
    for seed, question in enumerate(questions):
        reply = await answer(question, seed)
        graded.append((question, reply, grade(question, reply)))
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for question, _, verdict in graded:
        by_kind[question.kind][verdict] += 1
    total = Counter(verdict for _, _, verdict in graded)
    n = len(graded)
    figures = {
        "split": split,
        "questions": n,
        "kinds": len([k for k in by_kind if k not in ("not known", "two facts")]),
        "right": rate(total["right"], n),
        "wrong": rate(total["wrong"], n),
        "missed": rate(total["missed"], n),
        "by_kind": {
            kind: {"n": sum(c.values()), **{v: c[v] for v in ("right", "wrong", "missed")}}
            for kind, c in sorted(by_kind.items())
        },
    }
    return figures, graded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="heldout", choices=["dev", "dev2", "dev3", "heldout", "all"])
    parser.add_argument("--misses", action="store_true", help="List every question not right.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args()
    figures, graded = asyncio.run(measure(args.split))
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{'kind':<20} {'n':>4} {'right':>6} {'wrong':>6} {'missed':>7}")
    for kind, row in figures["by_kind"].items():
        print(f"{kind:<20} {row['n']:>4} {row['right']:>6} {row['wrong']:>6} {row['missed']:>7}")
    for key in ("right", "wrong", "missed"):
        r = figures[key]
        print(f"{key}: {r['value']:.1%} (95% {r['low']:.1%}–{r['high']:.1%}, n={r['n']})")
    if args.misses:
        for question, reply, verdict in graded:
            if verdict != "right":
                print(f"\n[{verdict}] {question.profile}: {question.text}  -> {question.asked}")
                print(f"    {reply}")


if __name__ == "__main__":
    main()
