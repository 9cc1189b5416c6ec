"""`--engine ray` on a local two-CPU Ray cluster (one for the module: Ray is slow to start on two
cores), against the local OpenAI-compatible test server: the same rows as the local engine, a
worker killed midway, a driver killed and resumed on the local engine, the rate limit and the
cost budget across workers, labels sharded too, and the run options of the local engine
(per-role endpoints, cassettes, preflight, early stop) on Ray or refused in one line."""

from __future__ import annotations

import json
import logging
import operator
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fakes.openai_server import FakeOpenAIServer

import simulate
from simulate.cli import main
from simulate.store import LABELS, RunFolder
from tests.test_cli import shop_args
from tests.test_llm_run import shop_world

DATA = Path(__file__).parent / "data"
SHOP = DATA / "shop"
AGENT = f"python:{DATA / 'shop_agent.py'}:respond"


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def server():
    with FakeOpenAIServer(models=("sim-user", "sim-agent")) as fake:
        fake.reply_with(shop_world)
        yield fake


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMULATE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    (tmp_path / "agent.md").write_text("You are the support agent of a small shop.")
    (tmp_path / "tools.yaml").write_text(
        "tools:\n"
        "  - name: track_parcel\n"
        "    description: Where a customer's parcel is.\n"
        "    parameters: {type: object, properties: {email: {type: string}}}\n"
        "    result: {status: in transit}\n"
    )
    (tmp_path / "llm.yaml").write_text(
        "max_retries: 1\nretry_backoff_s: 0.01\ntimeout_s: 5\n"
        "prices: {sim-user: {input_per_mtok: 10, output_per_mtok: 10},"
        " sim-agent: {input_per_mtok: 10, output_per_mtok: 10}}\n"
    )
    return tmp_path


def simulate_cli(*args: str) -> int:
    """Run the `simulate` command in this process (so it joins the module's cluster)."""
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def llm_args(server: FakeOpenAIServer, files: Path, out: str, *extra: str) -> list[str]:
    """LLM user x openai target over the shop status scenario, through the test server."""
    return [
        *shop_args(files / out, "openai:sim-agent"),
        "--scenario",
        "status",
        "--user",
        "llm:sim-user",
        "--system-prompt",
        str(files / "agent.md"),
        "--tools",
        str(files / "tools.yaml"),
        "--llm-config",
        str(files / "llm.yaml"),
        "--base-url",
        server.base_url,
        "--name",
        "cluster",
        *extra,
    ]


def comparable(run_dir: Path, *, call_ids: bool = True) -> list[dict]:
    """Rows without what timing changes; without tool call ids when ``call_ids`` is False (the
    test server numbers them in the order requests arrive)."""
    rows = simulate.load_run(run_dir).remove_columns(["duration_s", "created_at"]).to_list()
    for row in rows:
        for message in row["messages"]:
            message.pop("latency_ms")
            if not call_ids:
                calls = json.loads(message["tool_calls"])
                message["tool_calls"] = [{k: v for k, v in c.items() if k != "id"} for c in calls]
    return rows


def stored_ids(run_dir: Path) -> list[str]:
    """Every episode id in every shard file, as written (no deduplication)."""
    return [
        episode_id
        for path in sorted((run_dir / "episodes").glob("*.parquet"))
        for episode_id in pq.read_table(path, columns=["episode_id"]).column(0).to_pylist()
    ]


def test_same_rows_as_the_local_engine_and_one_cache(ray_cluster, server, files):
    ray_args = llm_args(server, files, "ray", "--trials", "3", "--seed", "7", "--no-cache")
    assert simulate_cli(*ray_args, "--engine", "ray", "--workers", "2") == 0
    local_args = llm_args(server, files, "local", "--trials", "3", "--seed", "7")
    assert simulate_cli(*local_args) == 0
    ray_rows = comparable(files / "ray", call_ids=False)
    assert len(ray_rows) == 9  # 3 personas x 1 scenario x 3 trials
    assert ray_rows == comparable(files / "local", call_ids=False)
    session = RunFolder.open(files / "ray").manifest.last_session
    assert session.engine == "ray"
    assert sum(session.workers.values()) == 9 and set(session.workers) == {"w0", "w1"}
    usage = {(u.role, u.model): u.calls for u in session.model_usage}
    local = RunFolder.open(files / "local").manifest.last_session.model_usage
    assert usage == {(u.role, u.model): u.calls for u in local}  # the workers' usage, merged
    # shards are named by worker: no file holds two workers' episodes
    names = [p.name for p in (files / "ray" / "episodes").glob("*.parquet")]
    assert names and all("-w0-" in n or "-w1-" in n for n in names)
    # the workers read the cache the local run wrote: a replay on Ray asks the server nothing
    asked = server.count
    replay_args = llm_args(server, files, "replay", "--trials", "3", "--seed", "7")
    assert simulate_cli(*replay_args, "--replay-only", "--engine", "ray", "--workers", "2") == 0
    assert server.count == asked
    # (identical requests of concurrent episodes share one cached answer, and its call id)
    assert comparable(files / "replay", call_ids=False) == comparable(
        files / "local", call_ids=False
    )


DYING_AGENT = """
import importlib.util, os, signal, time
from pathlib import Path

_spec = importlib.util.spec_from_file_location("shop_agent_for_kill", {shop!r})
_shop = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shop)


def respond(messages):
    time.sleep(0.1)
    first = Path({folder!r}) / f"first-call-{{os.getpid()}}"
    if not first.exists():
        first.write_text(str(time.time()))
    # 2.5 s into a worker's first shard (which lasts ~4 s), after its first flushes: the first
    # worker to get here dies, once
    if time.time() - float(first.read_text()) > 2.5:
        try:
            os.close(os.open({marker!r}, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass
        else:
            os.kill(os.getpid(), signal.SIGKILL)
    return _shop.respond(messages)
"""


def test_a_worker_killed_midway_every_episode_once(ray_cluster, tmp_path):
    marker = tmp_path / "killed"
    agent = tmp_path / "dying_agent.py"
    agent.write_text(
        DYING_AGENT.format(
            shop=str(DATA / "shop_agent.py"), folder=str(tmp_path), marker=str(marker)
        )
    )
    out = tmp_path / "run"
    args = [*shop_args(out, f"python:{agent}:respond"), "--trials", "20", "--concurrency", "2"]
    # 8 shards of 15 episodes
    assert simulate_cli(*args, "--engine", "ray", "--workers", "2") == 0
    assert marker.exists(), "no worker was killed"
    ids = stored_ids(out)
    assert len(ids) == 120 and len(set(ids)) == 120  # 3 personas x 2 scenarios x 20 trials
    # the killed worker's stored episodes were kept: its shard is in files of two writers
    writers: dict[str, set[str]] = {}
    for path in (out / "episodes").glob("*.parquet"):
        *_, session, shard, worker, token, _n = path.stem.split("-")
        writers.setdefault(f"{session}-{shard}", set()).add(f"{worker}-{token}")
    assert max(len(w) for w in writers.values()) == 2
    manifest = RunFolder.open(out).manifest
    assert manifest.status == "complete" and manifest.counts.stored == 120
    assert sum(manifest.last_session.workers.values()) == 120


def test_the_rate_limit_holds_across_workers(ray_cluster, server, files):
    times: dict[str, list[float]] = {"sim-user": [], "sim-agent": []}
    lock = threading.Lock()

    def timed(request):
        with lock:
            times[request["model"]].append(time.monotonic())
        return shop_world(request)

    server.reply_with(timed)
    (files / "llm.yaml").write_text("requests_per_minute: 300\nmax_retries: 0\n")
    args = llm_args(server, files, "rated", "--trials", "4", "--no-cache", "--concurrency", "4")
    assert simulate_cli(*args, "--engine", "ray", "--workers", "2") == 0
    for model, arrived in times.items():  # the limit is per model
        assert len(arrived) >= 20, model
        # 300 a minute is one request every 0.2 s; each of the two workers may send its
        # first at once (the limiter's burst of one): never more than 5 + 2 in any second
        for start in arrived:
            assert sum(start <= t < start + 1.0 for t in arrived) <= 7, model
        assert (len(arrived) - 2) / (arrived[-1] - arrived[0]) <= 5.2, model


def test_the_cost_budget_stops_the_cluster_and_resume_finishes(ray_cluster, server, files):
    args = llm_args(server, files, "budget", "--trials", "4", "--no-cache")
    ray = ("--engine", "ray", "--workers", "2")
    # a user call is ~320 tokens at $10 a million ($0.0032), an agent call ~20 (an episode
    # ~$0.007): $0.04 is spent in 5-6 episodes of the 12, and at most 4 are in flight at once
    # (8 shards of 1-2 episodes), so some finish before it is gone
    assert simulate_cli(*args, *ray, "--max-cost-usd", "0.04") == 3
    folder = RunFolder.open(files / "budget")
    manifest = folder.read_manifest()
    assert manifest.status == "stopped"
    assert "max_cost_usd" in manifest.stopped_because
    stored = manifest.counts.stored
    assert 0 < stored < 12
    # the overshoot is at most the calls in flight: 2 workers x 8 concurrent conversations
    assert 0.04 <= manifest.llm.cost_usd <= 0.04 + 16 * 0.004
    assert simulate_cli(*args, *ray, "--resume") == 0
    ids = stored_ids(files / "budget")
    assert len(ids) == 12 and len(set(ids)) == 12
    assert RunFolder.open(files / "budget").read_manifest().status == "complete"


def test_label_with_judges_on_ray_resumes(ray_cluster, server, files):
    out = files / "labeled"
    assert simulate_cli(*shop_args(out)) == 0
    rubric = files / "rubric.yaml"
    rubric.write_text(
        'id: polite\nversion: "1"\ncriteria:\n  - id: polite\n    question: Is it polite?\n'
        "    kind: binary\n    applies_to: assistant_turn\n"
    )
    server.reply_with(lambda request: {"json": {"value": "yes", "rationale": "kind words"}})
    label = ["label", str(out), "--rubric", str(rubric), "--judge", "llm:sim-user"]
    label += ["--base-url", server.base_url, "--llm-config", str(files / "llm.yaml"), "-q"]
    label += ["--engine", "ray", "--workers", "2", "--no-cache"]
    assert simulate_cli(*label, "--max-calls", "5") == 3  # for the whole cluster
    assert server.count == 5
    judged = [lab for lab in RunFolder.open(out).labels() if lab.labeler_kind == "judge"]
    assert 0 < len(judged) <= 5
    assert simulate_cli(*label) == 0
    labels = RunFolder.open(out).labels()
    units = sum(
        sum(m.role == "assistant" for m in episode.messages)
        for episode in RunFolder.open(out).episodes()
    )
    judged = [lab for lab in labels if lab.labeler_kind == "judge"]
    assert len(judged) == units
    assert len({(lab.episode_id, lab.turn_index) for lab in judged}) == units
    assert len(server.requests) == units  # nothing judged twice
    history = [
        json.dumps([r["episode_id"], r["turn_index"], r["labeler"]])
        for path in (out / LABELS).glob("*.parquet")
        for r in pq.read_table(path).to_pylist()
    ]
    assert len(history) == len(set(history))  # every label slot written once


def test_engine_ray_without_ray_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # as if not installed
    args = shop_args(tmp_path / "r")
    assert simulate_cli(*args, "--engine", "ray") == 1
    err = capsys.readouterr().err.strip()
    assert (
        err == "error: --engine ray needs Ray, which is not installed: pip install 'simulate[ray]'"
    )
    assert not (tmp_path / "r").exists()
    assert simulate_cli(*args, "--workers", "2") == 1
    assert "--workers goes with --engine ray" in capsys.readouterr().err


def test_calibrate_on_ray(ray_cluster, tmp_path, capsys):
    args = ["calibrate", "--personas", str(SHOP / "personas.yaml"), "--scenarios"]
    args += [str(SHOP / "scenarios.yaml"), "--target", AGENT, "--repeats", "2", "--json", "-q"]
    args += ["--out", str(tmp_path / "noise"), "--engine", "ray", "--workers", "2"]
    assert simulate_cli(*args) == 0
    assert json.loads(capsys.readouterr().out)["repeats"]
    for repeat in ("repeat-1", "repeat-2"):
        session = RunFolder.open(tmp_path / "noise" / repeat).manifest.last_session
        assert session.engine == "ray" and sum(session.workers.values()) == 6


def test_a_killed_driver_resumes_on_the_local_engine(ray_cluster, server, files):
    """The `simulate run --engine ray` process SIGKILLed once some episodes are stored:
    `--resume --engine local` finishes the run with every episode once, the rows a fresh local
    run gives for the seed."""

    def slow(request):  # ~0.1 s a call, so the run is still going when the driver is killed
        time.sleep(0.1)
        return shop_world(request)

    server.reply_with(slow)
    args = llm_args(server, files, "killed", "--trials", "10", "--seed", "3", "--no-cache")
    args += ["--concurrency", "2"]  # 30 episodes, 4 at a time across the 2 workers
    address = ray_cluster.get_runtime_context().gcs_address  # the driver joins the module's
    root = Path(__file__).parents[1]
    on_ray = ["--engine", "ray", "--workers", "2", "--ray-address", address]
    driver = subprocess.Popen(
        [sys.executable, "-m", "simulate", *args, *on_ray],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    out = files / "killed"
    try:
        deadline = time.monotonic() + 120
        while len(stored_ids(out) if (out / "episodes").is_dir() else []) < 3:
            assert driver.poll() is None, driver.stderr.read().decode()
            assert time.monotonic() < deadline, "no episode was stored"
            time.sleep(0.05)
    finally:
        driver.kill()
        driver.wait(timeout=30)
    before = len(set(stored_ids(out)))
    assert before < 30, "the run finished before the driver was killed"
    assert RunFolder(out).state() == "interrupted"
    # each worker held a helper's lock, which the resume waits for (a worker outlives a killed
    # driver that started its own cluster by a second or so) and then clears
    helpers = sorted(p.name.split("-")[1] for p in (out / ".locks").glob("episodes-*.lock"))
    assert helpers == ["w0", "w1"]
    assert simulate_cli(*args, "--resume") == 0  # on the local engine
    assert not list((out / ".locks").glob("episodes-*"))
    ids = stored_ids(out)
    assert len(ids) == 30 and len(set(ids)) == 30  # 3 personas x 1 scenario x 10 trials
    manifest = RunFolder.open(out).manifest
    assert manifest.status == "complete" and manifest.counts.stored == 30
    session = manifest.last_session
    assert session.engine == "local" and session.skipped_already_stored >= before
    fresh = llm_args(server, files, "fresh", "--trials", "10", "--seed", "3", "--no-cache")
    assert simulate_cli(*fresh) == 0
    key = operator.itemgetter("episode_id")
    assert sorted(comparable(out, call_ids=False), key=key) == sorted(
        comparable(files / "fresh", call_ids=False), key=key
    )


def test_per_role_endpoints_and_the_workers_calls_carried_in_a_cassette(
    ray_cluster, server, files, monkeypatch
):
    """The user on one endpoint and the agent on another, played by workers: the manifest names
    both hosts, and the calls the workers made are noted in the run folder, so a cassette of
    them replays the run in a clean cache without a server."""
    with FakeOpenAIServer(models=("sim-agent",)) as agents:
        agents.reply_with(shop_world)
        args = llm_args(server, files, "roles", "--trials", "2", "--no-preflight")
        args += ["--agent-base-url", agents.base_url, "--engine", "ray", "--workers", "2"]
        assert simulate_cli(*args) == 0
        assert server.count > 0 and agents.count > 0
        assert all("response_format" in r.body for r in server.requests)  # the user's only
        manifest = RunFolder.open(files / "roles").manifest
        assert manifest.llm.endpoints == {
            "user": server.base_url.split("/")[2],
            "agent": agents.base_url.split("/")[2],
        }
        cassette = files / "calls.sqlite"
        assert simulate_cli("cassette", "export", str(files / "roles"), "-o", str(cassette)) == 0
        monkeypatch.setenv("SIMULATE_CACHE_DIR", str(files / "clean-cache"))
        assert simulate_cli("cassette", "import", str(cassette)) == 0
        asked = server.count + agents.count
        replay = llm_args(server, files, "replayed", "--trials", "2", "--replay-only")
        assert simulate_cli(*replay, "--agent-base-url", agents.base_url) == 0
        assert server.count + agents.count == asked
    key = operator.itemgetter("episode_id")
    assert sorted(comparable(files / "replayed", call_ids=False), key=key) == sorted(
        comparable(files / "roles", call_ids=False), key=key
    )


SLOW_AGENT = "import time\n\ndef respond(messages):\n    time.sleep(0.2)\n    return 'Hello!'\n"


def test_the_preflight_and_the_early_stop_on_ray(ray_cluster, tmp_path, capsys):
    """`--max-reply-chars 3` reaches the workers (every reply is too long): the preflight turn
    fails before any worker starts; without it, the first 5 stored episodes stop the cluster."""
    agent = tmp_path / "agent.py"
    agent.write_text(SLOW_AGENT)
    out = tmp_path / "run"
    args = [*shop_args(out, f"python:{agent}:respond"), "--trials", "20", "--concurrency", "1"]
    args += ["--max-reply-chars", "3", "--engine", "ray", "--workers", "2"]
    assert simulate_cli(*args) == 1
    assert capsys.readouterr().err.startswith("error: preflight: the target failed")
    assert not (out / "episodes").exists()
    assert simulate_cli(*args, "--no-preflight") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the first 5 episodes all ended in errors, so the run stopped")
    manifest = RunFolder.open(out).manifest
    assert manifest.status == "stopped" and "the first 5 episodes" in manifest.stopped_because
    ids = stored_ids(out)
    assert 5 <= len(ids) < 60 and len(set(ids)) == len(ids)  # of 120: the shards were cancelled
    assert set(manifest.counts.by_status) == {"target_error"}


def test_the_agent_model_proxy_is_refused_on_ray(tmp_path, capsys):
    args = shop_args(tmp_path / "r")
    assert simulate_cli(*args, "--engine", "ray", "--agent-llm-proxy") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --agent-llm-proxy goes with --engine local")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


async def test_an_agent_given_as_an_object_is_refused_on_ray(tmp_path):
    from simulate.errors import ConfigError
    from simulate.simulation import RunConfig, run
    from simulate.targets import target_from_object

    config = RunConfig(
        personas=[str(SHOP / "personas.yaml")],
        scenarios=[str(SHOP / "scenarios.yaml")],
        target="python:respond",
        out=str(tmp_path / "r"),
        engine="ray",
    )
    with pytest.raises(ConfigError, match="plays on the local engine only"):
        await run(config, make_target=target_from_object(lambda messages: "Hello!"))
    assert not (tmp_path / "r").exists()
