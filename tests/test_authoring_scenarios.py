"""`simulate scenarios generate` against the local OpenAI-compatible server, and
`simulate scenarios expand` on templated scenario files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fakes.openai_server import FakeOpenAIServer

from simulate.authoring.scenarios import (
    GenerateConfig,
    expand_scenarios,
    generate,
    render_prompt,
    slugify,
)
from simulate.errors import ConfigError
from simulate.loader import load_scenarios

AGENT = """\
# Acme Shop support
Helps customers with orders: tracking, returns within 30 days, refunds to the original
payment method. Never shares another customer's order. Tools: lookup_order, issue_refund.
"""
ROOT = Path(__file__).parents[1]
KINDS = ["happy_path", "edge_case", "policy_violation", "multi_intent"]


def proposal(title: str, kind: str, **changes: object) -> dict[str, object]:
    """One scenario as a model would propose it."""
    data: dict[str, object] = {
        "kind": kind,
        "title": title,
        "description": f"I need help: {title.lower()}.",
        "goal": f"The agent resolves {title.lower()}.",
        "opening": f"Hi, {title.lower()}.",
        "known_info": [{"name": "order_number", "value": "A-10442"}],
        "unknown_info": ["tracking number"],
        "instructions": ["Refuse a voucher and insist on a refund."],
        "must_mention": ["refund"],
        "must_not_mention": ["another customer"],
        "judge": "Does the agent follow the returns policy?",
    }
    data.update(changes)
    return data


def asked_count(request: dict) -> int:
    system = request["messages"][0]["content"]
    return int(re.search(r"Propose exactly (\d+) new scenarios", system).group(1))


def batch_reply(request: dict) -> dict:
    """A valid batch of exactly as many scenarios as the request asks for, titled by order."""
    system = request["messages"][0]["content"]
    kinds = [k for n, k in re.findall(r"^- (\d+) `(\w+)`", system, re.M) for _ in range(int(n))]
    assert len(kinds) == asked_count(request)
    avoid = system.count("\n- Case ")
    titles = [f"Case {avoid + i + 1}" for i in range(len(kinds))]
    return {"json": {"scenarios": [proposal(t, k) for t, k in zip(titles, kinds, strict=True)]}}


@pytest.fixture
def server():
    with FakeOpenAIServer() as fake:
        fake.reply_with(batch_reply)
        yield fake


@pytest.fixture
def env(tmp_path, monkeypatch) -> Path:
    """A temp folder with the agent description and fast-failing endpoint settings."""
    monkeypatch.setenv("SIMULATE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    (tmp_path / "agent.md").write_text(AGENT)
    (tmp_path / "llm.yaml").write_text("max_retries: 1\nretry_backoff_s: 0.01\ntimeout_s: 5\n")
    return tmp_path


def config(env: Path, server: FakeOpenAIServer, **options) -> GenerateConfig:
    options.setdefault("n", 4)
    options.setdefault("out", str(env / "gen.yaml"))
    return GenerateConfig(
        agent_file=str(env / "agent.md"),
        model=options.pop("model", "gpt-4o-mini"),
        base_url=server.base_url,
        llm_config=str(env / "llm.yaml"),
        **options,
    )


def cli(*args: str, env_dir: Path) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "SIMULATE_CACHE_DIR": str(env_dir / "cache"), "COLUMNS": "200"}
    environ.pop("OPENAI_BASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "simulate", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )


# --- generate --------------------------------------------------------------------------------


def test_generate_end_to_end_asks_in_batches_and_writes_valid_distinct_scenarios(env, server):
    out = env / "scenarios" / "gen.yaml"
    result = cli(
        "scenarios", "generate", "--agent", str(env / "agent.md"), "--n", "12",
        "--llm", "gpt-4o-mini", "-o", str(out), "--base-url", server.base_url,
        "--llm-config", str(env / "llm.yaml"), "--seed", "5",
        env_dir=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    mix = "3 happy_path, 3 edge_case, 3 policy_violation, 3 multi_intent"
    assert f"wrote 12 scenarios ({mix}) to {out}" in result.stdout
    # two batches (10 + 2); the second sees the first's titles, each has its own seed
    bodies = [r.body for r in server.requests]
    assert [asked_count(b) for b in bodies] == [10, 2]
    assert [b["seed"] for b in bodies] == [5, 6]
    assert "- Case 10" in bodies[1]["messages"][0]["content"]
    assert AGENT.strip() in bodies[0]["messages"][1]["content"]
    assert bodies[0]["response_format"]["type"] == "json_schema"

    scenarios = load_scenarios(out)  # the file passes the loader: every field validated
    assert [s.id for s in scenarios] == [f"case_{i}" for i in range(1, 13)]
    assert scenarios[0].known_info["order_number"].value == "A-10442"
    assert scenarios[0].success.must_mention == ["refund"]
    assert sorted(s.tags[1] for s in scenarios) == sorted(KINDS * 3)
    assert all(s.tags[0] == "generated" for s in scenarios)
    assert out.read_text().startswith("# Generated by `simulate scenarios generate` from agent.md")


async def test_the_same_title_twice_gets_distinct_ids(env, server):
    server.queue({"json": {"scenarios": [proposal("Late order!", k) for k in KINDS[:3]]}})
    result = await generate(config(env, server, n=3, model="llm:gpt-4o-mini"))
    assert result.model == "openai:gpt-4o-mini"
    ids = [s.id for s in load_scenarios(result.path)]
    assert ids == ["late_order", "late_order_2", "late_order_3"]


async def test_a_reply_that_fails_validation_is_repaired_by_the_llm_layer(env, server):
    bad = proposal("Refund {{ order }}", "happy_path")  # template syntax is refused
    server.queue({"json": {"scenarios": [bad]}})
    result = await generate(config(env, server, n=1))
    assert [s.id for s in result.scenarios] == ["case_1"]
    assert server.count == 2
    repair = server.requests[1].body["messages"][-1]["content"]
    assert "does not fit" in repair and "template syntax" in repair


def test_a_reply_still_invalid_after_repair_is_one_line_and_writes_nothing(env, server):
    out = env / "gen.yaml"
    out.write_text("# mine\n")
    bad = {"json": {"scenarios": [proposal("No goal", "edge_case", goal="")]}}
    server.queue(bad, bad)
    result = cli(
        "scenarios", "generate", "--agent", str(env / "agent.md"), "--n", "1",
        "--llm", "gpt-4o-mini", "-o", str(out), "--force", "--base-url", server.base_url,
        "--llm-config", str(env / "llm.yaml"),
        env_dir=env,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: batch 1: ")
    assert "ProposedScenarios" in result.stderr and "goal" in result.stderr
    assert out.read_text() == "# mine\n"
    assert not list(env.glob(".gen.yaml.*"))


async def test_a_short_batch_is_an_error(env, server):
    server.queue({"json": {"scenarios": [proposal("Only one", "happy_path")]}})
    with pytest.raises(Exception, match="proposed 1 of the 3 scenarios"):
        await generate(config(env, server, n=3))
    assert not (env / "gen.yaml").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agent", "missing.md"], "--agent 'missing.md': no such file"),
        (["--agent", "empty.md"], "the file is empty"),
        (["--n", "0"], "--n must be between 1 and 500, got 0"),
        (["--llm", "llm:"], "name a model"),
        (["--llm", "openia:gpt-4o"], "unknown model backend 'openia' (did you mean 'openai'?)"),
        (["-o", "exists.yaml"], "exists.yaml exists; add --force to overwrite it"),
        (["-o", "gen.json"], "-o gen.json: the file is written as YAML; name it .yaml or .yml"),
        (["-o", "."], "-o .: is a folder; give a file name"),
    ],
)
def test_bad_inputs_are_one_line_errors_before_any_request(env, server, args, message):
    (env / "empty.md").write_text("  \n")
    (env / "exists.yaml").write_text("# mine\n")
    given = dict(zip(args[::2], args[1::2], strict=True))
    base = {"--agent": "agent.md", "--n": "2", "--llm": "gpt-4o-mini", "-o": "gen.yaml"}
    argv = [x for k, v in {**base, **given}.items() for x in (k, v)]
    result = subprocess.run(
        [sys.executable, "-m", "simulate", "scenarios", "generate", *argv,
         "--base-url", server.base_url],
        capture_output=True, text=True, cwd=env,
        env={**os.environ, "SIMULATE_CACHE_DIR": str(env / "cache"), "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 1, result.stdout
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert server.count == 0
    assert (env / "exists.yaml").read_text() == "# mine\n"


async def test_without_a_model_the_config_files_user_model_is_used(env, server):
    (env / "llm.yaml").write_text("max_retries: 1\ntimeout_s: 5\nmodels: {user: gpt-4o-mini}\n")
    result = await generate(config(env, server, n=2, model=None))
    assert result.model == "openai:gpt-4o-mini"
    assert server.requests[0].body["model"] == "gpt-4o-mini"


def test_prompt_names_each_kind_and_slugs_are_valid_ids():
    prompt = render_prompt(
        3, {"happy_path": 2, "edge_case": 0, "policy_violation": 1, "multi_intent": 0}
    )
    assert "2 `happy_path`" in prompt and "1 `policy_violation`" in prompt
    assert "edge_case`:" not in prompt
    assert slugify("Refund for a late order!") == "refund_for_a_late_order"
    assert slugify("¿¿??") == "scenario"
    assert slugify("Réservation d'été: naïve façade") == "reservation_d_ete_naive_facade"
    assert slugify("Ändern der Buchung") == "andern_der_buchung"


# --- expand ----------------------------------------------------------------------------------

TEMPLATED = """\
- id: ship
  description: My parcel to {{ city }} is late ({{ tier }} shipping).
  goal: The agent tells the user when the parcel to {{ city }} arrives.
  known_info: {order_number: A-1}
  variables:
    city: [Paris, Rome, New York]
    tier: [standard, express]
  success: {must_mention: ["{{ city }}"]}
- id: plain
  description: Where is my order?
  goal: The agent finds the order.
"""


@pytest.fixture
def templated(tmp_path) -> Path:
    path = tmp_path / "templated.yaml"
    path.write_text(TEMPLATED)
    return path


def test_expand_writes_the_cross_product_with_distinct_ids_and_no_variables(templated, tmp_path):
    out = tmp_path / "expanded.yaml"
    result = cli("scenarios", "expand", str(templated), "-o", str(out), env_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"wrote 7 scenarios to {out}" in result.stdout
    scenarios = load_scenarios(out)
    assert [s.id for s in scenarios] == [
        "ship.Paris-standard", "ship.Paris-express", "ship.Rome-standard",
        "ship.Rome-express", "ship.New_York-standard", "ship.New_York-express", "plain",
    ]  # fmt: skip
    assert scenarios[4].description == "My parcel to New York is late (standard shipping)."
    assert scenarios[4].success.must_mention == ["New York"]
    assert not any(s.variables for s in scenarios)
    assert "variables" not in yaml.safe_load(out.read_text())[0]


def test_expand_sample_is_seeded_without_replacement(templated):
    full = [s.id for s in expand_scenarios(templated)]
    first = [s.id for s in expand_scenarios(templated, sample=3, seed=1)]
    assert first == [s.id for s in expand_scenarios(templated, sample=3, seed=1)]
    assert len(set(first)) == 4 and set(first) <= set(full)  # 3 of `ship`, and `plain`
    others = {tuple(s.id for s in expand_scenarios(templated, sample=3, seed=k)) for k in range(8)}
    assert len(others) > 1
    assert len(expand_scenarios(templated, sample=6)) == 7


def test_expand_bad_inputs_say_what_is_wrong(templated, tmp_path):
    with pytest.raises(ConfigError, match="more than the 6 combinations of scenario 'ship'"):
        expand_scenarios(templated, sample=7)
    plain = tmp_path / "plain.yaml"
    plain.write_text("- {id: a, description: d, goal: g}\n")
    result = cli(
        "scenarios", "expand", str(plain), "-o", str(tmp_path / "o.yaml"), env_dir=tmp_path
    )
    assert result.returncode == 1
    assert (
        result.stderr
        == f"error: {plain}: no scenario has `variables`, so there is nothing to expand\n"
    )
    (tmp_path / "o.yaml").write_text("# mine\n")
    result = cli(
        "scenarios", "expand", str(templated), "-o", str(tmp_path / "o.yaml"), env_dir=tmp_path
    )
    assert result.returncode == 1 and "add --force" in result.stderr
    assert (tmp_path / "o.yaml").read_text() == "# mine\n"
    for target, problem in ((tmp_path, "is a folder"), (tmp_path / "o.json", "name it .yaml")):
        result = cli(
            "scenarios", "expand", str(templated), "-o", str(target), "--force", env_dir=tmp_path
        )
        assert result.returncode == 1 and problem in result.stderr
        assert result.stderr.count("\n") == 1 and not (tmp_path / "o.json").exists()


def test_expand_a_variable_with_no_values_is_an_error_not_an_empty_file(tmp_path):
    # `city: []` has no combination: the scenario would silently vanish from the output.
    path = tmp_path / "empty.yaml"
    path.write_text(TEMPLATED.replace("[Paris, Rome, New York]", "[]"))
    out = tmp_path / "o.yaml"
    result = cli("scenarios", "expand", str(path), "-o", str(out), env_dir=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        f"error: {path}: scenario 'ship': variable 'city' has no values, so the scenario would "
        "expand to nothing; give it at least one value or remove it\n"
    )
    assert not out.exists()
