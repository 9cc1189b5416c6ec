"""HTTP targets: headers from the environment that are never written, retries with an
idempotency key, a reply size cap, and credentials in the URL kept out of every output."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from simulate.cli import cli
from simulate.errors import ConfigError, TargetError
from simulate.schema import Message
from simulate.targets import TargetOptions
from simulate.targets.http import HttpTargetFactory, parse_headers
from tests.fakes.agent_server import AgentServer

DATA = Path(__file__).parent / "data"
SHOP = DATA / "shop"
HI = [Message(role="user", content="hi")]


@pytest.fixture
def server() -> Iterator[AgentServer]:
    with AgentServer(lambda request: "hello") as agent_server:
        yield agent_server


def test_headers_read_variables_from_the_environment() -> None:
    parsed = parse_headers(
        ["Authorization: Bearer ${AGENT_TOKEN}", "X-Team: support"], {"AGENT_TOKEN": "tok-123"}
    )
    assert parsed.headers == (("Authorization", "Bearer tok-123"), ("X-Team", "support"))
    assert "tok-123" in parsed.secrets and "support" not in parsed.secrets


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "Authorization: Bearer ${NOT_SET}",
            "--header Authorization: environment variable NOT_SET is not set",
        ),
        ("no colon here", "--header 'no colon here': expected 'Name: value'"),
        (": value", "--header ': value': expected 'Name: value'"),
    ],
)
def test_a_bad_header_is_a_one_line_error(header: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_headers([header], {})
    assert str(caught.value) == message


async def test_retries_connection_errors_429_and_503_with_one_idempotency_key(
    server: AgentServer,
) -> None:
    factory = HttpTargetFactory(server.url, TargetOptions(retries=3, turn_timeout_s=5))
    target = factory("s1")
    server.failures = [503, "drop", 429]
    try:
        assert (await target.respond(HI)).reply == "hello"
        assert (await target.respond(HI)).reply == "hello"
    finally:
        await factory.aclose()
    keys = [h["idempotency-key"] for h in server.headers]
    assert keys == ["s1-1"] * 4 + ["s1-2"]  # one key per turn, the same on every retry


async def test_when_retries_run_out_the_error_says_so(server: AgentServer) -> None:
    factory = HttpTargetFactory(server.url, TargetOptions(retries=2, turn_timeout_s=5))
    server.failures = [503, 503, 503]
    try:
        with pytest.raises(TargetError) as caught:
            await factory("s1").respond(HI)
    finally:
        await factory.aclose()
    assert str(caught.value) == (f"HTTP 503 from {server.url}: try again later (after 3 attempts)")
    assert len(server.requests) == 3


async def test_a_500_is_not_retried(server: AgentServer) -> None:
    factory = HttpTargetFactory(server.url, TargetOptions(retries=2))
    server.mode = "error"
    try:
        with pytest.raises(TargetError, match="HTTP 500"):
            await factory("s1").respond(HI)
    finally:
        await factory.aclose()
    assert len(server.requests) == 1


async def test_a_huge_body_is_cut_off_unread(server: AgentServer) -> None:
    server.reply = lambda request: "x" * 3_000_000
    factory = HttpTargetFactory(server.url, TargetOptions(max_reply_chars=1000))
    try:
        with pytest.raises(TargetError) as caught:
            await factory("s1").respond(HI)
    finally:
        await factory.aclose()
    assert "sent a reply body over 1,048,576 bytes (--max-reply-chars 1,000)" in str(caught.value)


def run_args(out: Path, target: str, *extra: str) -> list[str]:
    return [
        "run", "--personas", str(SHOP / "personas.yaml"), "--scenarios",
        str(SHOP / "scenarios.yaml"), "--target", target, "--out", str(out), "-q", *extra,
    ]  # fmt: skip


def files_containing(root: Path, secret: str) -> list[str]:
    """Files under ``root`` holding ``secret``: raw bytes, and parquet files' decoded values
    (their pages are compressed, so bytes alone could hide it)."""
    return [str(p) for p in root.rglob("*") if p.is_file() and secret in _readable(p)]


def _readable(path: Path) -> str:
    text = path.read_bytes().decode("utf-8", errors="replace")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        text += json.dumps(pq.read_table(path).to_pylist(), default=str)
    return text


def test_the_auth_header_reaches_the_agent_and_no_file_of_the_run(
    server: AgentServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "tok-CANARY-4417"
    monkeypatch.setenv("AGENT_TOKEN", secret)
    server.reply = lambda request: "What is your order number?"
    out = tmp_path / "run"
    args = run_args(out, server.url, "--header", "Authorization: Bearer ${AGENT_TOKEN}")
    result = CliRunner().invoke(cli, [*args, "--max-turns", "2"])
    assert result.exit_code == 0, result.output
    assert {h["authorization"] for h in server.headers} == {f"Bearer {secret}"}
    assert files_containing(out, secret) == []
    assert secret not in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["headers"] == ["Authorization"]  # the name only


def test_credentials_in_the_target_never_reach_the_data_or_the_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A canary secret in an HTTP URL, its query, a header the agent echoes back, and a cmd
    argv: in no file of the run folder, its exports, its golden card, or any output."""
    canary = "CANARY-s3cr3t-9090"
    monkeypatch.setenv("AGENT_TOKEN", canary)
    runner = CliRunner()
    outputs = []
    with AgentServer() as server:
        # The agent fails every turn and echoes the credentials back in its error body.
        server.reply = lambda request: {"wrong": "shape"}
        server.mode = "error"
        server_url = server.url.replace("http://", f"http://user:{canary}@")
        url = f"{server_url}?api_key={canary}&access_token={canary}"
        http_run = tmp_path / "http-run"
        result = runner.invoke(cli, run_args(
            http_run, url, "--header", "X-Api-Key: ${AGENT_TOKEN}", "--no-preflight",
            "--stop-after-errors", "0", "--target-retries", "0",
        ))  # fmt: skip
        outputs.append(result.output)
        assert result.exit_code == 1  # nothing was measured
    cmd_run = tmp_path / "cmd-run"
    agent = DATA / "jsonl_agent.py"
    result = runner.invoke(cli, run_args(
        cmd_run, f"cmd:{sys.executable} {agent} --crash-on-turn 1 --api-key {canary}",
        "--no-preflight",
    ))  # fmt: skip
    outputs.append(result.output)
    for run in (http_run, cmd_run):
        for args in (
            ["export", str(run), "--format", "jsonl", "--out", str(run.with_suffix(".jsonl"))],
            ["export", str(run), "--format", "csv", "--out", str(run.with_suffix(".csv"))],
            ["golden", str(run)],
            ["show", str(run), "--limit", "0"],
            ["report", str(run)],
        ):
            result = runner.invoke(cli, args)
            outputs.append(result.output)
    for run, where in ((http_run, "HTTP 500 from http://***@127.0.0.1"), (cmd_run, "key ***")):
        rows = run.with_suffix(".jsonl").read_text().splitlines()
        reasons = [json.loads(line)["outcome"]["reason"] for line in rows]
        assert reasons and all(where in r for r in reasons), reasons
    assert files_containing(tmp_path, canary) == []
    assert not [o for o in outputs if canary in o]
    # and the Hub push: every file it commits (episodes, labels, the card)
    from simulate.hub import push_to_hub
    from tests.fakes.hub_server import FakeHubServer

    with FakeHubServer() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", "hf_CanaryTestToken")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        for run in (http_run, cmd_run):
            push_to_hub(run, f"acme/{run.name}")
        committed = [data for repo in hub.repos.values() for data in repo.files.values()]
    leaked = []
    for index, data in enumerate(committed):
        (tmp_path / "pushed").mkdir(exist_ok=True)
        copy = tmp_path / "pushed" / f"{index}.parquet"
        copy.write_bytes(data)
        if canary in (_readable(copy) if data[:4] == b"PAR1" else data.decode(errors="replace")):
            leaked.append(index)
    assert committed and leaked == []
