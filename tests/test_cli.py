"""What users type: `simulate run / show / validate` end to end in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest

import simulate

DATA = Path(__file__).parent / "data"
SHOP = DATA / "shop"
AGENT = f"python:{DATA / 'shop_agent.py'}:respond"


def simulate_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run this checkout's console entry point in a subprocess (from any ``cwd``)."""
    root = str(Path(__file__).parents[1])
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": path, "SIMULATE_DEBUG": "", **(env or {})},
    )


def shop_args(out: Path, target: str = AGENT) -> list[str]:
    """`simulate run` arguments for the shop personas and scenarios against ``target``."""
    return [
        "run",
        "--personas",
        str(SHOP / "personas.yaml"),
        "--scenarios",
        str(SHOP / "scenarios.yaml"),
        "--target",
        target,
        "--out",
        str(out),
        "-q",
    ]


def run_shop(out: Path, *extra: str, env: dict[str, str] | None = None):
    return simulate_cli(*shop_args(out), *extra, env=env)


def comparable(ds: datasets.Dataset) -> list[dict]:
    """Rows without what timing changes (durations, latencies, timestamps)."""
    rows = []
    for row in ds.remove_columns(["duration_s", "created_at"]).to_list():
        for message in row["messages"]:
            message.pop("latency_ms")
        rows.append(row)
    return rows


def test_run_records_a_dataset_that_load_run_and_load_dataset_both_read(tmp_path):
    result = run_shop(tmp_path / "first", "--trials", "3", "--seed", "7", "--concurrency", "4")
    assert result.returncode == 0, result.stderr
    assert "goal rate" in result.stdout
    ds = simulate.load_run(tmp_path / "first")
    assert isinstance(ds, datasets.Dataset)
    assert ds.num_rows == 3 * 2 * 3
    assert set(ds["persona_id"]) == {"ana", "bruno", "mallory"}
    row = ds[0]
    assert row["messages"][0]["role"] == "user"
    assert row["outcome"]["status"] in {s.value for s in simulate.Status}
    same = datasets.load_dataset(
        "parquet", data_files=str(tmp_path / "first" / "episodes" / "*.parquet"), split="train"
    )
    assert sorted(same["episode_id"]) == sorted(ds["episode_id"])
    manifest = json.loads((tmp_path / "first" / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["counts"]["stored"] == 18
    assert manifest["config"]["seed"] == 7


def test_same_seed_gives_identical_rows_and_another_seed_does_not(tmp_path):
    for name in ("a", "b"):
        assert (
            run_shop(tmp_path / name, "--seed", "3", "--name", "same", "--trials", "2").returncode
            == 0
        )
    assert (
        run_shop(tmp_path / "c", "--seed", "4", "--name", "same", "--trials", "2").returncode == 0
    )
    a, b, c = (comparable(simulate.load_run(tmp_path / n)) for n in "abc")
    assert a == b
    assert a != c


def start_slow_run(out: Path, shards: int) -> tuple[list[str], subprocess.Popen]:
    """Start a 48-episode run with a slow agent; return once ``shards`` shards are on disk."""
    args = [*shop_args(out), "--trials", "8", "--concurrency", "2"]
    env = {**os.environ, "SHOP_AGENT_DELAY": "0.05"}
    process = subprocess.Popen(
        [sys.executable, "-m", "simulate", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list((out / "episodes").glob("*.parquet"))) < shards:
        time.sleep(0.05)
    return args, process


def test_resume_after_sigkill_stores_every_episode_exactly_once(tmp_path):
    out = tmp_path / "killed"
    args, process = start_slow_run(out, shards=2)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    partial = len(simulate.load_run(out))
    assert 0 < partial < 48, "the kill should land mid-run"

    resumed = simulate_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    ids = simulate.load_run(out)["episode_id"]
    assert len(ids) == 48 and len(set(ids)) == 48
    assert f"{partial} already stored" in resumed.stdout
    assert not list((out / "episodes").glob(".*.tmp"))


def test_ctrl_c_stops_cleanly_keeps_what_finished_and_resume_completes(tmp_path):
    out = tmp_path / "interrupted"
    args, process = start_slow_run(out, shards=1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "--resume" in stderr and "Traceback" not in stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert 0 < manifest["counts"]["stored"] < 48
    assert manifest["counts"]["stored"] == len(simulate.load_run(out))
    assert simulate_cli(*args, "--resume").returncode == 0
    assert sorted(set(simulate.load_run(out)["episode_id"])) == sorted(
        simulate.load_run(out)["episode_id"]
    )
    assert len(simulate.load_run(out)) == 48


def test_sigterm_stops_like_ctrl_c_and_the_manifest_says_interrupted(tmp_path):
    out = tmp_path / "terminated"
    _, process = start_slow_run(out, shards=1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143
    assert "terminated:" in stderr and "--resume" in stderr and "Traceback" not in stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert 0 < manifest["counts"]["stored"] == len(simulate.load_run(out))


def test_an_existing_run_is_never_overwritten_and_a_changed_plan_cannot_resume(tmp_path):
    out = tmp_path / "run"
    assert run_shop(out).returncode == 0
    before = sorted(p.name for p in (out / "episodes").iterdir())
    again = run_shop(out)
    assert again.returncode == 1
    assert "already holds a run" in again.stderr and "--resume" in again.stderr
    changed = run_shop(out, "--seed", "99", "--resume")
    assert changed.returncode == 1
    assert "planned with other inputs" in changed.stderr
    assert sorted(p.name for p in (out / "episodes").iterdir()) == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--personas", "nowhere/"], "nowhere"),
        (["--target", "pyhton:agent.py:respond"], "did you mean 'python'"),
        (["--target", f"python:{DATA / 'shop_agent.py'}:respnd"], "respond"),
        (["--persona", "anaa"], "did you mean 'ana'"),
        (["--scenario", "nope"], "--scenario 'nope' matches nothing"),
    ],
)
def test_bad_input_is_one_line_naming_the_culprit_and_exit_1(tmp_path, args, expected):
    base = {
        "--personas": str(SHOP / "personas.yaml"),
        "--scenarios": str(SHOP / "scenarios.yaml"),
        "--target": AGENT,
        "--out": str(tmp_path / "out"),
    }
    flags = dict(base)
    extra = []
    for i in range(0, len(args), 2):
        if args[i] in flags:
            flags[args[i]] = args[i + 1]
        else:
            extra += args[i : i + 2]
    result = simulate_cli("run", *[x for kv in flags.items() for x in kv], *extra)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # nothing written before the inputs are checked


def test_a_bad_yaml_file_names_file_and_line(tmp_path):
    bad = tmp_path / "personas.yaml"
    bad.write_text("- id: ana\n  name: Ana\n  traits: {patience: low\n")
    result = simulate_cli("validate", str(bad))
    assert result.returncode == 1
    assert "personas.yaml:" in result.stderr and "Traceback" not in result.stderr


def test_usage_errors_exit_2(tmp_path):
    result = simulate_cli("run", "--personas", "x")
    assert result.returncode == 2
    assert "Missing option" in result.stderr


def test_show_filters_by_status_and_limit(tmp_path):
    out = tmp_path / "run"
    assert run_shop(out, "--trials", "2").returncode == 0
    shown = simulate_cli("show", str(out), "--status", "goal_reached", "--limit", "2", "--json")
    rows = [json.loads(line) for line in shown.stdout.splitlines()]
    assert len(rows) == 2
    assert all(r["outcome"]["status"] == "goal_reached" for r in rows)
    text = simulate_cli("show", str(out), "--persona", "mallory", "--limit", "1")
    assert "mallory" in text.stdout and "user:" in text.stdout and "agent:" in text.stdout
    bad = simulate_cli("show", str(out), "--status", "gaveup")
    assert bad.returncode == 1 and "gave_up" in bad.stderr
    missing = simulate_cli("show", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "no such run folder" in missing.stderr


def test_validate_checks_both_kinds_and_renders_templates(tmp_path):
    ok = simulate_cli("validate", str(SHOP / "personas.yaml"), str(SHOP / "scenarios.yaml"))
    assert ok.returncode == 0, ok.stderr
    assert "3 personas, 2 scenarios, 6 episodes" in ok.stdout
    scenario = tmp_path / "scenarios.yaml"
    scenario.write_text("id: s\ndescription: d\ngoal: g\nopening: 'I am {{ persona.nickname }}'\n")
    bad = simulate_cli("validate", str(SHOP / "personas.yaml"), str(scenario))
    assert bad.returncode == 1
    assert "scenario 's' for persona 'ana': opening" in bad.stderr


def test_demo_plays_the_bundled_library_and_reports_what_it_found(tmp_path):
    result = simulate_cli("demo", "--out", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    ds = simulate.load_run(tmp_path / "demo")
    assert ds.num_rows >= 40
    assert len(set(ds["persona_id"])) >= 12 and len(set(ds["scenario_id"])) >= 8
    assert "goal rate per persona" in result.stdout
    # the bundled agent's weaknesses are found: a leak of its hidden instructions, another
    # customer's data, and users who give up
    assert "NWA-INTERNAL-7731" in result.stdout
    assert "greta.lindqvist@example.org" in result.stdout
    assert "gave_up" in result.stdout
    assert 0 < sum(ds["success"]) < ds.num_rows


def shop_against(target: str, out: Path, *extra: str):
    return simulate_cli(*shop_args(out, target), *extra)


@pytest.mark.parametrize(
    ("mode", "extra", "reason"),
    [
        ("error", [], "HTTP 500"),
        ("slow", ["--turn-timeout", "0.3"], "0.3s"),
        ("garbage", [], "JSON"),
    ],
)
def test_http_target_faults_are_recorded_and_the_run_finishes(tmp_path, mode, extra, reason):
    from fakes.agent_server import AgentServer

    with AgentServer() as server:
        server.mode = mode
        server.delay_s = 2.0
        result = shop_against(server.url, tmp_path / "run", *extra, "--no-preflight")
    # Every episode recorded; nothing counted toward the goal rate, so the run exits 1 (#13).
    assert result.returncode == 1, result.stderr
    assert "no episode counts toward the goal rate" in result.stderr
    ds = simulate.load_run(tmp_path / "run")
    assert ds.num_rows == 6
    assert {o["status"] for o in ds["outcome"]} == {"target_error"}
    assert all(reason in o["reason"] for o in ds["outcome"]), ds["outcome"][0]
    assert "goal rate n/a" in result.stdout  # no episode counts for or against the agent


def test_http_target_that_works_reaches_goals(tmp_path):
    from fakes.agent_server import AgentServer

    def agent(request):
        said = " ".join(m["content"] for m in request["messages"] if m["role"] == "user")
        if "@" in said:
            return {"reply": "Your parcel is on its way.", "context": ["tracking: in transit"]}
        return "What is your email address?"

    with AgentServer(agent) as server:
        result = shop_against(
            server.url, tmp_path / "run", "--scenario", "status", "--no-preflight"
        )
        sessions = {r["session_id"] for r in server.requests}
    assert result.returncode == 0, result.stderr
    ds = simulate.load_run(tmp_path / "run")
    assert all(ds["success"])
    assert sessions == set(ds["episode_id"])
    assert ds[0]["messages"][-2]["context"] == ["tracking: in transit"]


def test_cmd_target_crash_is_recorded_with_its_exit_and_the_run_finishes(tmp_path):
    script = DATA / "jsonl_agent.py"
    result = shop_against(f"cmd:{sys.executable} {script} --crash-on-turn 2", tmp_path / "run")
    assert result.returncode == 1, result.stderr  # nothing counted toward the goal rate (#13)
    ds = simulate.load_run(tmp_path / "run")
    assert ds.num_rows == 6
    for episode in ds:
        assert episode["outcome"]["status"] == "target_error"
        assert episode["n_turns"] == 1  # the first turn was answered, the second crashed
        assert "exited with code 3" in episode["outcome"]["reason"]
        assert "boom: crashed on turn 2" in episode["outcome"]["reason"]


def test_scripted_user_plays_only_the_script_and_needs_one(tmp_path):
    scenario = tmp_path / "scenarios.yaml"
    scenario.write_text(
        "id: status\ndescription: Where is my parcel?\ngoal: told\n"
        "script: ['Where is my parcel?', 'My email is {{ persona.attributes.email }}']\n"
        "success: {must_mention: [on its way]}\n"
    )
    result = simulate_cli(
        "run",
        "--personas",
        str(SHOP / "personas.yaml"),
        "--scenarios",
        str(scenario),
        "--target",
        AGENT,
        "--out",
        str(tmp_path / "run"),
        "--user",
        "scripted",
        "-q",
    )
    assert result.returncode == 0, result.stderr
    ds = simulate.load_run(tmp_path / "run")
    for row in ds:
        users = [m["content"] for m in row["messages"] if m["role"] == "user"]
        assert users[0] == "Where is my parcel?" and users[1].startswith("My email is ")
        assert row["outcome"]["status"] == "goal_reached"
    missing = simulate_cli(*shop_args(tmp_path / "run2"), "--user", "scripted")
    assert missing.returncode == 1
    assert "--user scripted needs a `script`" in missing.stderr and "refund" in missing.stderr


def test_credentials_in_a_target_url_never_reach_the_run_folder(tmp_path):
    from fakes.agent_server import AgentServer

    with AgentServer() as server:
        url = server.url.replace("http://", "http://bot:s3cr3t-token@") + "?api_key=k3y-v4lue"
        result = shop_against(url, tmp_path / "run", "--scenario", "status")
    assert result.returncode == 0, result.stderr
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"s3cr3t-token" not in data and b"k3y-v4lue" not in data, path
    assert "s3cr3t-token" not in result.stdout + result.stderr
    assert simulate.load_run(tmp_path / "run")[0]["target"].startswith("http://***@127.0.0.1")


def test_a_run_with_no_episode_stored_yet_loads_as_an_empty_dataset(tmp_path):
    from simulate.store import load_labels, write_manifest

    (tmp_path / "episodes").mkdir()
    write_manifest(tmp_path, {"run_id": "empty"})
    ds = simulate.load_run(tmp_path)
    assert ds.num_rows == 0 and "messages" in ds.column_names
    assert load_labels(tmp_path).num_rows == 0


def test_brackets_in_replies_phrases_and_folder_names_are_printed_as_written(tmp_path):
    """Rich markup and polars globs must not read the user's text: `[/INST]` in a reply and a
    check phrase, `[1]` in the run folder's name."""
    (tmp_path / "agent.py").write_text(
        "def respond(messages):\n    return 'You said: [/INST] hi [bold]x'\n", encoding="utf-8"
    )
    (tmp_path / "p.yaml").write_text("id: p1\nname: Bob\n", encoding="utf-8")
    (tmp_path / "s.yaml").write_text(
        "id: s1\ndescription: 'hello [red]'\ngoal: g\ntags: ['[/x]']\n"
        "success:\n  must_not_mention: ['[/INST]']\n",
        encoding="utf-8",
    )
    run = tmp_path / "runs" / "r[1]"
    played = simulate_cli(
        "run",
        *("--personas", str(tmp_path / "p.yaml"), "--scenarios", str(tmp_path / "s.yaml")),
        *("--target", f"python:{tmp_path / 'agent.py'}:respond", "--out", str(run)),
    )
    assert played.returncode == 0, played.stderr
    assert "goal rate 0% (0/1" in played.stdout
    labeled = simulate_cli("label", str(run), "--rules-only")
    assert labeled.returncode == 0, labeled.stderr

    shown = simulate_cli("show", str(run))
    assert shown.returncode == 0, shown.stderr
    assert "You said: [/INST] hi [bold]x" in shown.stdout
    assert "failed checks: must_not_mention: '[/INST]'" in shown.stdout

    reported = simulate_cli("report", str(run))
    assert reported.returncode == 0, reported.stderr
    assert "'[/INST]'" in reported.stdout and "[/x]" in reported.stdout
    compared = simulate_cli("compare", str(run), str(run))
    assert compared.returncode == 0, compared.stderr
