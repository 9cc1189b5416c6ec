"""Simulate's cost over the openai client: the same LLM conversations run two ways, compared.

    python benchmarks/throughput.py                      # N=100 conversations x T=6 user turns
    python benchmarks/throughput.py --target-llm         # the agent is a model too
    python benchmarks/throughput.py --scale 1000 5000    # peak memory of the LLM path by size
    python benchmarks/throughput.py --profile            # where the CPU goes (cProfile)

The test server (`tests/fakes/openai_server.py`) runs in a process of its own at a fixed
latency, scripted so the LLM user says "continue" until turn T and then "goal_reached". Each
side runs in a fresh subprocess, so its CPU time and peak RSS are its own (imports untimed):

- Simulate: `run()` with `--user llm:MODEL` against an instant async Python agent (or, with
  `--target-llm`, `--target openai:MODEL`), every conversation at once, no cache;
- the floor: a bare asyncio loop over one `openai.AsyncOpenAI` client making the same calls
  with the same request shape (the UserMove json_schema response format, the message lists
  growing per turn): N conversations at once, each T calls in sequence (and the agent's);
- the floor's raw path: the same loop through `client.post()`, replies as JSON dicts.

Then Simulate runs twice with the cache on (a temporary SIMULATE_CACHE_DIR): the second run
must make no request. Figures are medians over `--repeat` interleaved runs of each side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gpt-4o-mini"
START = "[The support chat has opened. Write your first message to the agent.]"
AGENT_REPLY = "Anything else?"
AGENT = f"async def respond(messages):\n    return {AGENT_REPLY!r}\n"
SYNC_AGENT = AGENT.removeprefix("async ")  # run in a worker thread by Simulate
AGENT_PROMPT = "You are a helpful support agent for an online shop. Answer in one sentence.\n"
PERSONAS = 50
SCENARIO = {
    "id": "refund",
    "description": "I want a refund for my broken kettle.",
    "goal": "refund issued",
    "known_info": {"order_number": "{{ persona.attributes.order_number }}"},
}


# --- the server, in its own process -----------------------------------------------------------


def serve(turns: int) -> None:
    """Serve the scripted endpoint; commands on stdin: `count`, `clear`, `latency SECONDS`."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fakes.openai_server import FakeOpenAIServer

    def script(request: dict[str, Any]) -> dict[str, Any]:
        if "response_format" not in request:  # the agent's call
            return {"content": "Thanks, I can help with that. Anything else?"}
        turn = 1 + sum(1 for m in request["messages"] if m["role"] == "assistant")
        # The seed tells conversations apart, so the agent's requests differ too (no cache hits).
        said = f"This is message {turn} of conversation {request.get('seed')}: my kettle broke."
        status = "goal_reached" if turn >= turns else "continue"
        return {
            "json": {
                "message": said,
                "status": status,
                "reason": "the agent has not refunded me yet" if status == "continue" else "done",
            }
        }

    server = FakeOpenAIServer(models=[MODEL]).reply_with(script)
    with server:
        print(server.base_url, flush=True)
        for line in sys.stdin:
            command, _, arg = line.strip().partition(" ")
            if command == "count":
                print(server.count, flush=True)
            elif command == "clear":
                server.requests.clear()  # the server keeps every request; scale runs are long
                print("ok", flush=True)
            elif command == "latency":
                server.latency_s = float(arg)
                print("ok", flush=True)


class Server:
    """The parent's handle on the server process."""

    def __init__(self, turns: int, latency_s: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(turns)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.base_url = self._read()
        self.ask(f"latency {latency_s}")

    def _read(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def ask(self, command: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._read()

    def count(self) -> int:
        return int(self.ask("count"))

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


# --- the two sides, each in a fresh process ---------------------------------------------------


def write_inputs(folder: Path, n: int, target_llm: bool, sync: bool = False) -> dict[str, Any]:
    """Personas, scenario, agent and LLM config files; returns the run's RunConfig fields."""
    personas = min(PERSONAS, n)
    if n % personas:
        raise SystemExit(f"the conversation count must be a multiple of {personas}")
    (folder / "personas.yaml").write_text(
        yaml.safe_dump(
            [
                {"id": f"p{i}", "name": f"Person {i}", "attributes": {"order_number": f"A-{i}"}}
                for i in range(personas)
            ]
        )
    )
    (folder / "scenarios.yaml").write_text(yaml.safe_dump(SCENARIO))
    (folder / "agent.py").write_text(SYNC_AGENT if sync else AGENT)
    (folder / "agent.md").write_text(AGENT_PROMPT)
    # Full concurrency: every conversation may have its request in flight (default 64).
    (folder / "llm.yaml").write_text(yaml.safe_dump({"max_concurrency": n}))
    fields: dict[str, Any] = {
        "personas": [str(folder / "personas.yaml")],
        "scenarios": [str(folder / "scenarios.yaml")],
        "trials": n // personas,
        "user": f"llm:{MODEL}",
        "target": f"python:{folder / 'agent.py'}:respond",
        "concurrency": n,
        "llm_config": str(folder / "llm.yaml"),
    }
    if target_llm:
        fields.update(target=f"openai:{MODEL}", system_prompt=str(folder / "agent.md"))
    return fields


def measure(fn: Any, profile: str | None = None) -> dict[str, Any]:
    """Run ``asyncio.run(fn())``; its wall and CPU seconds and this process's peak RSS.

    With ``profile`` (a file), under cProfile, its stats written there.
    """
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started, cpu = time.perf_counter(), time.process_time()
    extra = asyncio.run(fn())
    figures = {
        "wall_s": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **(extra or {}),
    }
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    return figures


def side_simulate(job: dict[str, Any]) -> dict[str, Any]:
    # What run() imports on first use is imported here, untimed, as the floor imports openai.
    import simulate.llm.openai
    import simulate.targets.openai
    import simulate.targets.python
    import simulate.users.llm  # noqa: F401
    from simulate.simulation import RunConfig, run

    out = Path(tempfile.mkdtemp(prefix="simulate-throughput-")) / "run"
    config = RunConfig(
        **job["config"],
        out=str(out),
        max_turns=job["turns"],
        base_url=job["base_url"],
        use_cache=job["cache"],
    )

    async def go() -> dict[str, Any]:
        result = await run(config)
        return {"statuses": dict(result.tally.statuses)}

    try:
        return measure(go, job.get("profile"))
    finally:
        shutil.rmtree(out.parent)


def side_floor(job: dict[str, Any]) -> dict[str, Any]:
    import openai

    n, turns, fmt, system = job["n"], job["turns"], job["response_format"], job["system"]

    async def ask(client: openai.AsyncOpenAI, **request: Any) -> str:
        if job["raw"]:  # no params transform, no response models: the JSON as a dict
            options: Any = {"security": {"bearer_auth": True}}
            data = await client.post(
                "/chat/completions", body=request, cast_to=object, options=options
            )
            return data["choices"][0]["message"]["content"] or ""
        response = await client.chat.completions.create(**request)
        return response.choices[0].message.content or ""

    async def conversation(client: openai.AsyncOpenAI, seed: int) -> str:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": START}]
        agent = [{"role": "system", "content": AGENT_PROMPT}]
        for _ in range(turns):
            content = await ask(
                client, model=MODEL, messages=messages, response_format=fmt, seed=seed
            )
            move = json.loads(content)
            if move["status"] != "continue":
                return move["status"]
            messages.append({"role": "assistant", "content": move["message"]})
            reply = AGENT_REPLY
            if job["target_llm"]:
                agent.append({"role": "user", "content": move["message"]})
                reply = await ask(client, model=MODEL, messages=agent)
                agent.append({"role": "assistant", "content": reply})
            messages.append({"role": "user", "content": reply})
        return "max_turns"

    async def go() -> dict[str, Any]:
        client = openai.AsyncOpenAI(base_url=job["base_url"], api_key="not-needed", max_retries=0)
        async with client:
            ends = await asyncio.gather(*(conversation(client, i) for i in range(n)))
        return {"statuses": {s: ends.count(s) for s in set(ends)}}

    return measure(go, job.get("profile"))


def run_side(side: str, job: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """One side in a fresh process; its figures as a dict."""
    done = subprocess.run(
        [sys.executable, __file__, "--side", side, json.dumps(job)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed(server: Server, side: str, job: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """A side's figures plus the requests the server saw while it ran."""
    before = server.count()
    figures = run_side(side, job, **kw)
    figures["requests"] = server.count() - before
    return figures


# --- the report -------------------------------------------------------------------------------


def floor_job(args: argparse.Namespace, folder: Path, base_url: str) -> dict[str, Any]:
    """The floor's inputs: Simulate's own system prompt and response format, made here once."""
    from simulate.llm.openai import strict_schema
    from simulate.loader import load_personas, load_scenarios
    from simulate.plan import build_plan
    from simulate.users.llm import UserMove, default_prompt, render_prompt

    specs = build_plan(
        load_personas([folder / "personas.yaml"]),
        load_scenarios([folder / "scenarios.yaml"]),
        run_id="floor",
    )
    schema = UserMove.model_json_schema()
    return {
        "n": args.conversations,
        "turns": args.turns,
        "target_llm": args.target_llm,
        "raw": False,
        "base_url": base_url,
        "system": render_prompt(default_prompt(), specs[0]),
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "UserMove", "schema": strict_schema(schema), "strict": True},
        },
    }


def median(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of each figure over repeats; request counts must agree."""
    assert len({r["requests"] for r in rows}) == 1, [r["requests"] for r in rows]
    keys = ("wall_s", "cpu_s", "peak_rss_mb")
    return {**rows[0], **{k: statistics.median(r[k] for r in rows) for k in keys}}


def compare(args: argparse.Namespace) -> None:
    """Both sides (and the floor's raw path) at the same work; then a cached run and its replay."""
    n, turns = args.conversations, args.turns
    folder = Path(tempfile.mkdtemp(prefix="simulate-throughput-"))
    config = write_inputs(folder, n, args.target_llm, args.sync_agent)
    server = Server(turns, args.latency_ms / 1000)
    try:
        floor = floor_job(args, folder, server.base_url)
        jobs = {
            "floor": ("floor", floor),
            "raw": ("floor", {**floor, "raw": True}),
            "sim": (
                "simulate",
                {"config": config, "turns": turns, "base_url": server.base_url, "cache": False},
            ),
        }
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in jobs}
        for _ in range(args.repeat):  # interleaved, so drift hits every side alike
            for name, (side, job) in jobs.items():
                runs[name].append(timed(server, side, job))
        r = {name: median(rows) for name, rows in runs.items()}
        env = {"SIMULATE_CACHE_DIR": str(folder / "cache")}
        cached = {**jobs["sim"][1], "cache": True}
        r["first"] = timed(server, "simulate", cached, env=env)
        r["replay"] = timed(server, "simulate", cached, env=env)
    finally:
        server.close()
        shutil.rmtree(folder)
    calls = n * turns + (n * (turns - 1) if args.target_llm else 0)
    kind = "sync (in a worker thread)" if args.sync_agent else "async"
    target = f"openai:{MODEL}" if args.target_llm else f"an instant {kind} Python agent"
    print(
        f"{n} conversations x {turns} user turns, LLM user against {target}; test server at"
        f" {args.latency_ms:g} ms; all {n} at once; {calls} calls; median of {args.repeat}\n"
    )
    print("| side | wall s | CPU ms/conversation | peak RSS MB | requests |")
    print("|---|---:|---:|---:|---:|")
    names = {
        "floor": "floor: bare loop, `chat.completions.create`",
        "raw": "raw floor: bare loop, `client.post`, JSON dicts",
        "sim": "Simulate `run()`",
        "first": "Simulate, cache on, first run",
        "replay": "Simulate, cache on, replay",
    }
    for key, name in names.items():
        row = r[key]
        print(
            f"| {name} | {row['wall_s']:.2f} | {row['cpu_s'] * 1000 / n:.1f} |"
            f" {row['peak_rss_mb']:.0f} | {row['requests']} |"
        )
    sim, flo, raw = r["sim"], r["floor"], r["raw"]
    print(
        f"\nSimulate / floor: wall {sim['wall_s'] / flo['wall_s']:.2f}x,"
        f" CPU {sim['cpu_s'] / flo['cpu_s']:.2f}x (target: at most 1.1x)"
        f"\nSimulate / raw floor: wall {sim['wall_s'] / raw['wall_s']:.2f}x,"
        f" CPU {sim['cpu_s'] / raw['cpu_s']:.2f}x"
        f"\ncached replay: {r['first']['wall_s'] / r['replay']['wall_s']:.0f}x faster than its"
        f" first run, {r['replay']['requests']} requests (target: at least 50x, 0 requests)"
    )
    for key in ("floor", "raw", "sim", "first"):
        assert r[key]["requests"] == calls, (key, r[key]["requests"], calls)
        assert r[key]["statuses"] == {"goal_reached": n}, (key, r[key]["statuses"])
    assert r["replay"]["requests"] == 0 and r["replay"]["statuses"] == {"goal_reached": n}


def scale(args: argparse.Namespace) -> None:
    """Peak memory of the LLM path against the episode count, the server at no latency."""
    server = Server(args.turns, 0.0)
    print(f"LLM user x instant agent, T={args.turns}, concurrency 32, no latency, no cache\n")
    print("| episodes | wall s | episodes/s | CPU ms/episode | peak RSS MB | requests |")
    print("|---:|---:|---:|---:|---:|---:|")
    try:
        for n in args.scale:
            folder = Path(tempfile.mkdtemp(prefix="simulate-throughput-"))
            config = {**write_inputs(folder, n, False), "concurrency": 32}
            job = {
                "config": config,
                "turns": args.turns,
                "base_url": server.base_url,
                "cache": False,
            }
            r = timed(server, "simulate", job)
            server.ask("clear")
            shutil.rmtree(folder)
            print(
                f"| {n} | {r['wall_s']:.1f} | {n / r['wall_s']:.0f} | "
                f"{r['cpu_s'] * 1000 / n:.1f} | {r['peak_rss_mb']:.0f} | {r['requests']} |",
                flush=True,
            )
    finally:
        server.close()


def by_package(stats_file: str) -> dict[str, float]:
    """Own CPU seconds in a cProfile file, summed by package (or by module of Simulate)."""
    import pstats

    totals: dict[str, float] = {}
    stats = pstats.Stats(stats_file).stats  # type: ignore[attr-defined]
    for (path, _, name), (_, _, own, _, _) in stats.items():
        if "site-packages/" in path:
            key = path.split("site-packages/")[1].split("/")[0]
        elif "/simulate/" in path:
            key = "simulate/" + path.split("/simulate/")[-1]
        elif path == "~":
            key = name  # built-ins: isinstance, socket calls...
        else:
            key = "stdlib " + Path(path).stem
        totals[key] = totals.get(key, 0.0) + own
    return totals


def profile(args: argparse.Namespace) -> None:
    """cProfile Simulate and the raw floor; own CPU by package side by side, Simulate's top."""
    import pstats

    n, turns = args.conversations, args.turns
    folder = Path(tempfile.mkdtemp(prefix="simulate-throughput-"))
    config = write_inputs(folder, n, args.target_llm)
    server = Server(turns, args.latency_ms / 1000)
    files = {"floor": str(folder / "floor.prof"), "simulate": str(folder / "simulate.prof")}
    try:
        jobs = {
            # The raw floor goes through the same client path as Simulate.
            "floor": {**floor_job(args, folder, server.base_url), "raw": True},
            "simulate": {
                "config": config,
                "turns": turns,
                "base_url": server.base_url,
                "cache": False,
            },
        }
        runs = {
            side: timed(server, side, {**job, "profile": files[side]}) for side, job in jobs.items()
        }
    finally:
        server.close()
    for side, r in runs.items():
        print(
            f"{side}: wall {r['wall_s']:.2f} s, CPU {r['cpu_s']:.2f} s under cProfile"
            f" ({files[side]})"
        )
    floor, sim = by_package(files["floor"]), by_package(files["simulate"])
    print("\n| own CPU s | raw floor | Simulate | Simulate - floor |\n|---|---:|---:|---:|")
    for key in sorted(set(floor) | set(sim), key=lambda k: -sim.get(k, 0) - floor.get(k, 0))[:30]:
        f, m = floor.get(key, 0.0), sim.get(key, 0.0)
        print(f"| {key} | {f:.2f} | {m:.2f} | {m - f:+.2f} |")
    print(
        f"| total | {sum(floor.values()):.2f} | {sum(sim.values()):.2f} |"
        f" {sum(sim.values()) - sum(floor.values()):+.2f} |\n"
    )
    pstats.Stats(files["simulate"]).sort_stats("tottime").print_stats(30)


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]))
        return
    if sys.argv[1:2] == ["--side"]:
        job = json.loads(sys.argv[3])
        side = {"simulate": side_simulate, "floor": side_floor}[sys.argv[2]]
        print(json.dumps(side(job)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--conversations", type=int, default=100)
    parser.add_argument("-t", "--turns", type=int, default=6, help="user turns per conversation")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--target-llm", action="store_true", help="the agent is a model too")
    parser.add_argument("--sync-agent", action="store_true", help="a sync agent function")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each side (median)")
    parser.add_argument(
        "--scale",
        type=int,
        nargs="+",
        metavar="EPISODES",
        help="instead: Simulate's peak memory at these sizes, no latency",
    )
    parser.add_argument(
        "--profile", action="store_true", help="instead: cProfile Simulate and the raw floor"
    )
    args = parser.parse_args()
    if args.scale:
        scale(args)
    elif args.profile:
        profile(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
