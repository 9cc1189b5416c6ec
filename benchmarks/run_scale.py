"""How the offline run loop scales: wall time, CPU and peak memory against the episode count.

    python benchmarks/run_scale.py 1000 5000 20000

Each size runs in a fresh subprocess (so peak RSS is its own): 50 personas x 1 scenario x N/50
trials, the agenda user against an instant in-process agent, into a temporary run folder.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

AGENT = '''
def respond(messages):
    said = " ".join(m["content"] for m in messages if m["role"] == "user")
    if "A-" not in said:
        return "What is your order number?"
    if "yes" not in said.lower() and "proceed" not in said.lower() and "do it" not in said.lower():
        return "Shall I go ahead and issue the refund?"
    return {"reply": "Your refund has been issued.", "tool_calls": [{"name": "issue_refund"}]}
'''

PERSONAS = 50
SCENARIO = {
    "id": "refund",
    "description": "I want a refund for my broken kettle.",
    "goal": "refund issued",
    "known_info": {"order_number": "{{ persona.attributes.order_number }}"},
    "success": {"must_mention": ["refund has been issued"], "must_call_tools": ["issue_refund"]},
}


def one_size(n: int) -> dict:
    """Run n episodes in this process; return timings and peak memory."""
    from simulate.simulation import RunConfig, run

    folder = Path(tempfile.mkdtemp(prefix="simulate-bench-"))
    personas = [
        {"id": f"p{i}", "name": f"Person {i}", "attributes": {"order_number": f"A-{i}"},
         "traits": {"typo_rate": 0.05, "verbosity": "verbose"}}
        for i in range(PERSONAS)
    ]
    (folder / "personas.yaml").write_text(yaml.safe_dump(personas))
    (folder / "scenarios.yaml").write_text(yaml.safe_dump(SCENARIO))
    (folder / "agent.py").write_text(AGENT)
    config = RunConfig(personas=[str(folder / "personas.yaml")],
                       scenarios=[str(folder / "scenarios.yaml")],
                       target=f"python:{folder / 'agent.py'}:respond",
                       out=str(folder / "run"), concurrency=32, trials=max(1, n // PERSONAS))
    started, cpu = time.perf_counter(), time.process_time()
    result = asyncio.run(run(config))
    wall = time.perf_counter() - started
    return {
        "episodes": n,
        "stored": result.stored["stored"],
        "wall_s": round(wall, 2),
        "cpu_ms_per_episode": round((time.process_time() - cpu) * 1000 / n, 2),
        "episodes_per_s": round(n / wall),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "shards": len(list((folder / "run" / "episodes").glob("*.parquet"))),
    }


def main() -> None:
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(one_size(int(sys.argv[2]))))
        return
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 5000, 20000]
    print("| episodes | wall s | episodes/s | CPU ms/episode | peak RSS MB | shards |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        line = subprocess.run([sys.executable, __file__, "--one", str(n)], check=True,
                              capture_output=True, text=True).stdout.strip().splitlines()[-1]
        r = json.loads(line)
        assert r["stored"] == n, r
        print(f"| {n} | {r['wall_s']} | {r['episodes_per_s']} | {r['cpu_ms_per_episode']} | "
              f"{r['peak_rss_mb']} | {r['shards']} |")


if __name__ == "__main__":
    main()
