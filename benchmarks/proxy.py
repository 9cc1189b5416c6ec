"""The agent's model proxy's cost per call: an agent's calls sent direct, or through the proxy.

    python benchmarks/proxy.py                 # 300 calls one at a time, 1500 at 16 at once
    python benchmarks/proxy.py --stream        # the agent streams its replies
    python benchmarks/proxy.py --latency 0.05  # the endpoint takes 50 ms per answer

The test server (`tests/fakes/openai_server.py`) runs in a process of its own. Each side runs
in a fresh subprocess (imports and warm-up calls untimed) with one `openai.AsyncOpenAI` client,
the agent's; the proxy runs in the same process and event loop, as it does for a `python:`
agent (a `cmd:` agent's client is another process, which only takes CPU off this one):

- direct: the client calls the server;
- proxy: the client calls `ModelProxy`, which forwards each call through Simulate's LLM layer
  (role `agent`: limits, retries, the meter; the cache off, so every call reaches the server);
- proxy, replayed: the same calls again with `--replay-only`, answered from the cache.

Each call is a chat completion of a support conversation (a system prompt and six turns of
history, ~330 prompt words) with a 40-word reply, every call different. Reported: wall ms per
call one at a time (median and p95 over calls), then calls per second and CPU ms per call with
16 calls in flight; medians over `--repeat` interleaved runs of each side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gpt-4o-mini"
REPLY = " ".join(["Thanks, I have looked up your order and a refund is on its way."] * 3)[:230]
SYSTEM = "You are the support agent of an online shop. " * 12
TURN = "My kettle stopped working after two days and I would like my money back please."
WARM_UP = 20


# --- the server, in its own process ------------------------------------------------------------


def serve(latency: float) -> None:
    """Serve the test endpoint until stdin closes; print its base URL first."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fakes.openai_server import FakeOpenAIServer

    server = FakeOpenAIServer(models=[MODEL]).reply_with(lambda request: REPLY)
    server.supports_streaming = True
    server.latency_s = latency
    with server:
        print(server.base_url, flush=True)
        sys.stdin.read()


# --- one side, in its own process -------------------------------------------------------------


def request(index: int, stream: bool) -> dict[str, Any]:
    """One call of the agent: a conversation of six turns, unique by its index."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    for turn in range(6):
        messages.append({"role": "user", "content": f"{TURN} (call {index}, turn {turn})"})
        messages.append({"role": "assistant", "content": REPLY})
    messages.append({"role": "user", "content": f"Any news? (call {index})"})
    return {"model": MODEL, "messages": messages, "stream": stream}


async def call(client: Any, body: dict[str, Any]) -> None:
    if body["stream"]:
        stream = await client.chat.completions.create(**body)
        async for _ in stream:
            pass
    else:
        await client.chat.completions.create(**body)


async def measure(side: str, url: str, cache: str, calls: int, stream: bool) -> dict[str, Any]:
    """Time ``calls`` one at a time, then 5x as many at 16 at once, through ``side``."""
    import openai

    from simulate.llm.pool import LLMPool
    from simulate.llm.proxy import ModelProxy
    from simulate.llm.settings import LLMSettings
    from simulate.llm.usage import Sessions, UsageMeter

    settings = LLMSettings(
        base_url=url,
        api_key="sk-bench",
        cache_dir=Path(cache),
        use_cache=side != "proxy",
        replay_only=side == "replayed",
        max_concurrency=64,
    )
    pool = LLMPool(settings, UsageMeter())
    proxy = ModelProxy(pool, Sessions()) if side != "direct" else None
    if proxy is not None:
        await proxy.__aenter__()
    target = proxy.base_url if proxy else url
    client = openai.AsyncOpenAI(base_url=target, api_key=proxy.token if proxy else "sk-bench")
    for i in range(WARM_UP):
        await call(client, request(-1 - i, stream))
    latencies = []
    for i in range(calls):
        began = time.perf_counter()
        await call(client, request(i, stream))
        latencies.append((time.perf_counter() - began) * 1000)
    many = list(range(calls, calls * 6))
    gate = asyncio.Semaphore(16)

    async def bounded(i: int) -> None:
        async with gate:
            await call(client, request(i, stream))

    cpu = _cpu()
    began = time.perf_counter()
    await asyncio.gather(*(bounded(i) for i in many))
    wall = time.perf_counter() - began
    cpu = _cpu() - cpu
    await client.close()
    if proxy is not None:
        await proxy.aclose()
    await pool.aclose()
    latencies.sort()
    return {
        "median_ms": statistics.median(latencies),
        "p95_ms": latencies[int(len(latencies) * 0.95) - 1],
        "calls_per_s": len(many) / wall,
        "cpu_ms_per_call": cpu * 1000 / len(many),
    }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def side_process(side: str, url: str, cache: str, calls: int, stream: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--side", side, "--url", url, "--cache", cache]
    command += ["--calls", str(calls)] + (["--stream"] if stream else [])
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{side} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency)
        return
    if args.side:
        sys.path.insert(0, str(ROOT))
        result = asyncio.run(measure(args.side, args.url, args.cache, args.calls, args.stream))
        print(json.dumps(result))
        return
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--latency", str(args.latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdin is not None
    url = server.stdout.readline().strip()
    sides = ("direct", "proxy", "replayed")
    results: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    try:
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as cache:
                side_process("recorded", url, cache, args.calls, args.stream)  # fills the cache
                for side in sides:
                    results[side].append(side_process(side, url, cache, args.calls, args.stream))
    finally:
        server.stdin.close()
        server.wait()
    what = "streamed" if args.stream else "whole"
    print(f"{args.calls} calls one at a time, {args.calls * 5} at 16 at once; {what} replies;")
    print(f"endpoint latency {args.latency * 1000:g} ms; medians of {args.repeat} runs\n")
    print("| side | ms/call median | ms/call p95 | calls/s at 16 | CPU ms/call at 16 |")
    print("|---|---:|---:|---:|---:|")
    for side in sides:
        row = {k: statistics.median(r[k] for r in results[side]) for k in results[side][0]}
        print(
            f"| {side} | {row['median_ms']:.2f} | {row['p95_ms']:.2f} | "
            f"{row['calls_per_s']:.0f} | {row['cpu_ms_per_call']:.2f} |"
        )


if __name__ == "__main__":
    main()
