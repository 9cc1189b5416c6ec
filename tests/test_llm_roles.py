"""An endpoint per role: config sections and `--user/--agent/--judge-base-url`, each role's calls
going to its own server with its own key, and the manifest naming each role's host."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fakes.openai_server import FakeOpenAIServer
from test_cli import shop_args

import simulate
from simulate.cli import cli
from simulate.errors import ConfigError
from simulate.llm.settings import LLMSettings

USER_KEY = "sk-user-key-NEVER-IN-A-FILE-1"
AGENT_KEY = "sk-agent-key-NEVER-IN-A-FILE-2"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "llm.yaml"
    path.write_text(text)
    return path


def test_each_role_s_section_is_over_the_shared_settings(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "base_url: http://shared:1/v1\n"
        "timeout_s: 7\n"
        "max_concurrency: 4\n"
        "prices: {m: {input_per_mtok: 1, output_per_mtok: 1}}\n"
        "user:\n"
        "  base_url: http://vllm:8000/v1\n"
        "  model: llama\n"
        "  max_concurrency: 32\n"
        "  prices: {m: {input_per_mtok: 0, output_per_mtok: 0}}\n"
        "agent:\n"
        "  api_key_env: AGENT_KEY\n"
        "  model: gpt-4o-mini\n"
        "  requests_per_minute: 60\n",
    )
    env = {"OPENAI_API_KEY": "sk-shared", "AGENT_KEY": "sk-agent"}

    settings = LLMSettings.resolve(config, env=env)

    user, agent, judge = (settings.for_role(r) for r in ("user", "agent", "judge"))
    assert (user.host, user.client_key(), user.max_concurrency, user.timeout_s) == (
        "vllm:8000",
        "sk-shared",
        32,
        7,
    )
    assert user.prices["m"].input_per_mtok == 0 and settings.prices["m"].input_per_mtok == 1
    assert (agent.host, agent.client_key(), agent.requests_per_minute) == (
        "shared:1",
        "sk-agent",
        60,
    )
    assert settings.for_role("target") == agent  # Simulate playing the agent uses its section
    assert (judge.host, judge.client_key(), judge.max_concurrency) == ("shared:1", "sk-shared", 4)
    assert settings.models == {"user": "llama", "agent": "gpt-4o-mini", "target": "gpt-4o-mini"}
    assert "sk-agent" not in repr(settings) + settings.model_dump_json()


def test_flags_beat_the_file_and_a_role_s_flag_beats_base_url(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "base_url: http://file:1/v1\nuser: {base_url: 'http://file-user:2/v1'}\n",
    )
    env = {"OPENAI_BASE_URL": "http://env:3/v1"}

    def hosts(**given: Any) -> tuple[str, ...]:
        settings = LLMSettings.resolve(config, env=env, **given)
        return tuple(settings.for_role(r).host for r in ("user", "agent", "judge"))

    assert hosts() == ("file-user:2", "file:1", "file:1")
    assert hosts(base_url="http://flag:4/v1") == ("flag:4", "flag:4", "flag:4")
    assert hosts(
        base_url="http://flag:4/v1",
        role_base_urls={"judge": "http://judge:5/v1", "user": None},
    ) == ("flag:4", "flag:4", "judge:5")
    no_file = LLMSettings.resolve(env=env, role_base_urls={"agent": "http://agent:6/v1"})
    assert (no_file.for_role("user").host, no_file.for_role("agent").host) == ("env:3", "agent:6")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "judge:\n  model: m\n  api_key: sk-literal-in-file\n",
            r"llm\.yaml:3: `judge\.api_key` is not allowed in a config file",
        ),
        (
            "agent:\n  base_url: http://x/v1\n  timeout: 3\n",
            r":3: unknown setting 'agent\.timeout' \(did you mean 'timeout_s'\?\)",
        ),
        ("user:\n  api_key_env: NOT_SET_ANYWHERE\n", r":2: user\.api_key_env names 'NOT_SET_"),
        ("generator:\n  max_retries: -2\n", r":2: generator\.max_retries: Input should be"),
        ("critic:\n  model: m\n", r":1: unknown setting 'critic'.*choose from: .*judge"),
    ],
    ids=["literal-key", "unknown", "unset-env", "range", "role"],
)
def test_bad_sections_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    config = write(tmp_path, text)

    with pytest.raises(ConfigError, match=message) as caught:
        LLMSettings.resolve(config, env={})

    assert "sk-literal-in-file" not in str(caught.value)


def user_side(request: dict[str, Any]) -> Any:
    said = [m["content"] for m in request["messages"] if m["role"] == "user"]
    if said and "on its way" in said[-1]:
        return {"json": {"message": "Thanks!", "status": "goal_reached", "reason": "told"}}
    ask = "Where is my parcel? My email is ana@example.com"
    return {"json": {"message": ask, "status": "continue", "reason": "asking"}}


def agent_side(request: dict[str, Any]) -> Any:
    said = " ".join(m["content"] or "" for m in request["messages"] if m["role"] == "user")
    return "Your parcel is on its way." if "@" in said else "What is your email?"


def test_two_roles_on_two_servers_in_one_run(tmp_path: Path) -> None:
    (tmp_path / "agent.md").write_text("You are the support agent of a small shop.")
    with FakeOpenAIServer() as users, FakeOpenAIServer() as agents:
        users.reply_with(user_side)
        agents.reply_with(agent_side)
        config = write(
            tmp_path,
            "max_retries: 1\n"
            "user:\n"
            f"  base_url: {users.base_url}\n"
            "  api_key_env: USER_KEY\n"
            "  model: sim-user\n"
            "agent:\n"
            "  api_key_env: AGENT_KEY\n"
            "  prices: {sim-agent: {input_per_mtok: 1000, output_per_mtok: 2000}}\n",
        )
        args = [
            *shop_args(tmp_path / "run", "openai:sim-agent"),
            "--scenario",
            "status",
            "--persona",
            "ana",
            "--user",
            "llm:sim-user",
            "--system-prompt",
            str(tmp_path / "agent.md"),
            "--llm-config",
            str(config),
            "--agent-base-url",
            agents.base_url,
        ]
        env = {
            "USER_KEY": USER_KEY,
            "AGENT_KEY": AGENT_KEY,
            "OPENAI_API_KEY": None,
            "OPENAI_BASE_URL": None,
            "SIMULATE_CACHE_DIR": str(tmp_path / "cache"),
        }

        result = CliRunner().invoke(cli, args, env=env)

    assert result.exit_code == 0, result.output + result.stderr
    assert users.count > 0 and agents.count > 0
    assert all("response_format" in r.body for r in users.requests)  # the user's calls only
    assert all("response_format" not in r.body for r in agents.requests)
    assert {r.authorization for r in users.requests} == {f"Bearer {USER_KEY}"}
    assert {r.authorization for r in agents.requests} == {f"Bearer {AGENT_KEY}"}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["llm"]["endpoints"] == {
        "user": users.base_url.split("/")[2],
        "agent": agents.base_url.split("/")[2],
    }
    assert manifest["config"]["agent_base_url"] == agents.base_url
    (row,) = simulate.load_run(tmp_path / "run")
    usage = {u["role"]: u for u in row["usage"]}
    target = usage["target"]
    assert target["cost_usd"] == pytest.approx(
        (target["prompt_tokens"] * 1000 + target["completion_tokens"] * 2000) / 1e6
    )
    assert usage["user"]["cost_usd"] is None  # sim-user has no price
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert USER_KEY.encode() not in path.read_bytes()
            assert AGENT_KEY.encode() not in path.read_bytes()
