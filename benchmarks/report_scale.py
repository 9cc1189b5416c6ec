"""How `simulate report` scales: wall time and peak memory over a generated run of N episodes.

    python benchmarks/report_scale.py 10000 100000     # 100,000 episodes = 1,000,000 messages

Each size: a run folder is generated with the real episode schema (50 personas x 20 scenarios x
N/1000 trials, 10 messages per episode, usage and cost on every episode, a mix of outcomes and
failed checks, shards of 10,000 episodes), then `python -m simulate report RUN --json` runs in
a fresh process (it also writes report.html); its wall time and peak RSS are measured.
"""

from __future__ import annotations

import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from simulate.schema import Persona, Scenario
from simulate.store import EPISODES, arrow_schema, write_manifest

PERSONAS, SCENARIOS, MESSAGES, SHARD = 50, 20, 10, 10_000
WORDS = [
    "booking",
    "flight",
    "refund",
    "change",
    "date",
    "bag",
    "luggage",
    "seat",
    "email",
    "name",
    "please",
    "thanks",
    "need",
    "want",
    "my",
    "the",
    "a",
    "to",
    "for",
    "on",
    "with",
    "is",
    "can",
    "you",
    "I",
    "when",
    "where",
    "why",
    "how",
    "today",
    "tomorrow",
    "cancel",
    "policy",
    "fee",
    "price",
    "ticket",
    "airport",
    "gate",
    "delay",
    "voucher",
    "credit",
    "card",
    "number",
    "reference",
    "help",
    "again",
    "still",
]
STATUSES = ["goal_reached"] * 14 + ["gave_up", "gave_up", "max_turns", "target_error"]


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(4, 18))).capitalize() + "."


def _episode(i: int, personas: list[str], scenarios: list[str], rng: random.Random) -> dict:
    persona_i, scenario_i = i % PERSONAS, (i // PERSONAS) % SCENARIOS
    status = rng.choice(STATUSES)
    leaked = rng.random() < 0.03
    messages = []
    for turn in range(MESSAGES):
        user = turn % 2 == 0
        content = _sentence(rng)
        if leaked and turn == 5:
            content += " The internal code is SECRET-7."
        messages.append(
            {
                "role": "user" if user else "assistant",
                "content": content,
                "tool_calls": "[]",
                "tool_call_id": None,
                "context": [],
                "latency_ms": None if user else rng.uniform(50, 900),
            }
        )
    failed = (["must_not_mention: 'SECRET-7'"] if leaked else []) + (
        ["must_mention: 'refund'"] if status == "goal_reached" and rng.random() < 0.05 else []
    )
    prompt, completion = rng.randint(500, 4000), rng.randint(50, 400)
    return {
        "episode_id": f"e{i:08d}",
        "run_id": "bench",
        "persona_id": f"p{persona_i:02d}",
        "scenario_id": f"s{scenario_i:02d}",
        "trial": i // (PERSONAS * SCENARIOS),
        "seed": i,
        "persona": personas[persona_i],
        "scenario": scenarios[scenario_i],
        "messages": messages,
        "outcome": {"status": status, "reason": status, "failed_checks": failed},
        "success": status == "goal_reached" and not failed,
        "n_turns": MESSAGES // 2,
        "usage": [
            {
                "role": "target",
                "model": "openai:gpt-4o-mini",
                "calls": MESSAGES // 2,
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "cost_usd": prompt * 0.15e-6 + completion * 0.6e-6,
            }
        ],
        "duration_s": rng.uniform(1, 30),
        "user": "agenda",
        "target": "openai:gpt-4o-mini",
        "created_at": "2026-11-29T00:00:00+00:00",
    }


def generate(run_dir: Path, n: int) -> None:
    """A run folder of ``n`` episodes with the real schema, in shards of SHARD episodes."""
    rng = random.Random(0)
    personas = [
        Persona(
            id=f"p{i:02d}", name=f"Person {i}", tags=["adversarial"] if i % 10 == 0 else ["regular"]
        ).model_dump_json()
        for i in range(PERSONAS)
    ]
    scenarios = [
        Scenario(
            id=f"s{i:02d}", description="d", goal="g", tags=["refund" if i % 2 else "change"]
        ).model_dump_json()
        for i in range(SCENARIOS)
    ]
    (run_dir / EPISODES).mkdir(parents=True)
    write_manifest(
        run_dir,
        {"simulate": "run", "run_id": "bench", "status": "complete", "counts": {"planned": n}},
    )
    for start in range(0, n, SHARD):
        rows = [_episode(i, personas, scenarios, rng) for i in range(start, min(n, start + SHARD))]
        table = pa.Table.from_pylist(rows, schema=arrow_schema())
        pq.write_table(table, run_dir / EPISODES / f"part-{start // SHARD:05d}.parquet")


def measure(n: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="simulate-report-bench-"))
    try:
        run_dir = folder / "run"
        started = time.perf_counter()
        generate(run_dir, n)
        generated = time.perf_counter() - started
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "simulate", "report", str(run_dir), "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        report = json.loads(result.stdout)
        return {
            "episodes": n,
            "messages": n * MESSAGES,
            "shards_mb": round(
                sum(p.stat().st_size for p in (run_dir / EPISODES).glob("*")) / 2**20
            ),
            "generate_s": round(generated, 1),
            "report_wall_s": round(wall, 2),
            "report_cpu_s": round(
                after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2
            ),
            "peak_rss_mb": round(after.ru_maxrss / 1024),
            "goal_rate": round(report["overall"]["goal_rate"]["value"], 4),
            "html_kb": round((run_dir / "report.html").stat().st_size / 1024),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [10_000, 100_000]
    print("| episodes | messages | shards MB | report wall s | CPU s | peak RSS MB | html KB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        r = measure(n)
        print(
            f"| {r['episodes']} | {r['messages']} | {r['shards_mb']} | {r['report_wall_s']} | "
            f"{r['report_cpu_s']} | {r['peak_rss_mb']} | {r['html_kb']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
