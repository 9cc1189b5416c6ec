"""What `--engine ray` costs and gives on one machine: throughput with 1, 2 and 4 workers
against the local engine, and the time the engine adds per run and per episode.

    python benchmarks/ray_engine.py                 # 2,000 and 10,000 episodes
    python benchmarks/ray_engine.py --episodes 500 4000 --repeats 3

The workload is the offline one of `run_scale.py` (50 personas x 1 scenario x N/50 trials, the
agenda user against an instant in-process Python agent, `--concurrency 32`): pure CPU, so it
shows what the engine does with the cores, not what it hides of a model's latency. One local
Ray cluster (`num_cpus=2`) is started once and timed alone; every run joins it, so a run's
time includes starting its worker actors (new processes) but not the cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from run_scale import AGENT, PERSONAS, SCENARIO


def inputs(folder: Path) -> dict[str, str]:
    personas = [
        {
            "id": f"p{i}",
            "name": f"Person {i}",
            "attributes": {"order_number": f"A-{i}"},
            "traits": {"typo_rate": 0.05, "verbosity": "verbose"},
        }
        for i in range(PERSONAS)
    ]
    (folder / "personas.yaml").write_text(yaml.safe_dump(personas))
    (folder / "scenarios.yaml").write_text(yaml.safe_dump(SCENARIO))
    (folder / "agent.py").write_text(AGENT)
    return {
        "personas": str(folder / "personas.yaml"),
        "scenarios": str(folder / "scenarios.yaml"),
        "target": f"python:{folder / 'agent.py'}:respond",
    }


def one_run(folder: Path, files: dict[str, str], episodes: int, workers: int | None) -> float:
    """Seconds to play ``episodes`` on the local engine (workers None) or on Ray."""
    from simulate.simulation import RunConfig, run

    out = Path(tempfile.mkdtemp(dir=folder)) / "run"
    engine = {"engine": "ray", "workers": workers} if workers else {}
    config = RunConfig(
        personas=[files["personas"]],
        scenarios=[files["scenarios"]],
        target=files["target"],
        out=str(out),
        name="bench",
        concurrency=32,
        trials=max(1, episodes // PERSONAS),
        **engine,
    )
    started = time.perf_counter()
    result = asyncio.run(run(config))
    elapsed = time.perf_counter() - started
    assert result.stored.stored == episodes, result.stored
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    # Ray starts its workers at nice 15; on this shared machine that starves them behind the
    # other engineers' processes while the local engine runs at nice 0. Like for like:
    os.environ.setdefault("RAY_worker_niceness", "0")
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    print(f"cluster start: {time.perf_counter() - started:.1f} s (once per `simulate run`)")
    folder = Path(tempfile.mkdtemp(prefix="simulate-ray-bench-"))
    files = inputs(folder)
    one_run(folder, files, PERSONAS, 2)  # warm: the OS's file cache, Ray's worker pool
    walls: dict[tuple[int, int | None], float] = {}
    print("| episodes | engine | workers | wall s | episodes/s |")
    print("|---:|---|---:|---:|---:|")
    for episodes in args.episodes:
        for workers in [None, *args.workers]:
            times = [one_run(folder, files, episodes, workers) for _ in range(args.repeats)]
            walls[episodes, workers] = wall = statistics.median(times)
            engine = "ray" if workers else "local"
            print(
                f"| {episodes} | {engine} | {workers or '-'} | {wall:.2f} | {episodes / wall:.0f} |"
            )
    if len(args.episodes) >= 2:  # wall = fixed + episodes x marginal, from the two ends
        small, large = min(args.episodes), max(args.episodes)
        print("\n| engine | workers | fixed s per run | marginal ms/episode | steady episodes/s |")
        print("|---|---:|---:|---:|---:|")
        for workers in [None, *args.workers]:
            marginal = (walls[large, workers] - walls[small, workers]) / (large - small)
            fixed = walls[small, workers] - small * marginal
            engine = "ray" if workers else "local"
            print(
                f"| {engine} | {workers or '-'} | {fixed:.1f} | {marginal * 1000:.2f} "
                f"| {1 / marginal:.0f} |"
            )
    ray.shutdown()


if __name__ == "__main__":
    main()
