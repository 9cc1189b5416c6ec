"""How human the offline agenda user is: next-turn replay on held-out Taskmaster-4 dialogs.

    python benchmarks/realism_taskmaster.py                    # data_03.json, the held-out file
    python benchmarks/realism_taskmaster.py --data ../shared/data/taskmaster4/data_03.json \
        --user agenda --resamples 1000 --json out.json

The held-out file's 500 coffee-ordering dialogs are imported as a reference set (their writers'
tasks become the scenarios), then `simulate realism --replay` has the agenda user write every
replayable user turn from the real prefix; the discriminator's AUC with its interval, the
measures that differ most and the top giveaway features are printed as a markdown block for
benchmarks/README.md. Files data_00 to data_02 stay free for developing the user (issue 18,
part 6); data_03 is only measured. Taskmaster-4 is CC BY 4.0, Google LLC (Bill Byrne and
Saravanan Ganesh); the figures derived here carry that attribution in the README.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from simulate.authoring.conversations import (
    TASK_FROM_CONVERSATION,
    read_conversations,
    reference_source,
    write_reference,
)
from simulate.report.realism import save_realism
from simulate.report.replay import reference_conversations, replay_all, replay_report
from simulate.users import load_user

HELD_OUT = Path(__file__).parents[2] / "shared" / "data" / "taskmaster4" / "data_03.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HELD_OUT, help="A Taskmaster JSON file.")
    parser.add_argument("--user", default="agenda", help="agenda (offline) only, here.")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="Also write the realism report here.")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        conversations, fmt = read_conversations(args.data)
        origin = reference_source(fmt, args.data, source=None, license=None, masked=False)
        reference = write_reference(conversations, Path(tmp) / "ref", origin)
        replayed = reference_conversations(reference)
        turns = asyncio.run(replay_all(replayed, load_user(args.user), seed=args.seed))
        skipped = sum(1 for c in replayed if TASK_FROM_CONVERSATION in c.task.tags)
        report = replay_report(
            reference,
            turns,
            args.user,
            skipped_openings=skipped,
            resamples=args.resamples,
            seed=args.seed,
        )
    if args.json:
        save_realism(report, args.json)
    wall = time.perf_counter() - started
    auc = report.discriminator.auc
    replay = report.replay
    assert replay is not None
    print(f"data: {args.data.name} ({len(conversations)} dialogs), user {args.user}, {wall:.1f} s")
    print(
        f"turns replayed {replay.positions} ({replay.skipped_openings} openings not replayed: "
        f"open-ended dialogs), answered {replay.produced}, errors {replay.errors}"
    )
    interval = f"95% {auc.low:.3f}–{auc.high:.3f}, n={auc.n} turns"
    print(f"\n**discriminator ROC AUC {auc.value:.3f} ({interval})**\n")
    print("| measure | agenda | people | distance |")
    print("|---|---:|---:|---:|")
    for m in report.measures:
        sides = [
            "" if e is None or e.value is None else f"{e.value:.3g}" for e in (m.simulated, m.human)
        ]
        d = m.distance
        distance = "" if d is None or d.value is None else f"{m.distance_kind} {d.value:.3g}"
        if d is not None and d.low is not None:
            distance += f" ({d.low:.3g}–{d.high:.3g})"
        print(f"| {m.name} | {sides[0]} | {sides[1]} | {distance} |")
    print(
        f"\nfacts disclosed as the person did: {replay.same_facts.value:.0%} of turns; recall "
        f"{replay.fact_recall.value:.0%}, precision {replay.fact_precision.value:.0%}"
    )
    print("\ntop giveaways (weight; share of agenda turns vs people's turns):")
    for g in report.discriminator.giveaways[:15]:
        print(f"- `{g.feature}` ({g.kind}) {g.weight:+.2f}; {_shares(g)}")
    print("\nwhat people do that the agenda user does not:")
    for g in report.discriminator.human_tells[:10]:
        print(f"- `{g.feature}` ({g.kind}) {g.weight:+.2f}; {_shares(g)}")
    print("\nexamples:")
    for e in replay.examples:
        print(f"- agent: {e.agent!r}\n  person: {e.human!r}\n  agenda: {e.simulated!r}")


def _shares(feature: object) -> str:
    return f"{feature.simulated_share:.0%} vs {feature.human_share:.0%}"  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
