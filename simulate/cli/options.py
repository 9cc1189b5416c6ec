"""Option stacks that several commands share: model endpoints, run settings, rule limits."""

from __future__ import annotations

from typing import Any

import click

from simulate.plan import MAX_EPISODES

CONCURRENCY = click.IntRange(1, 4096)
"""Work at once (conversations, judged units, enriched personas): past a few thousand, one
process only queues more."""
TRIALS = click.IntRange(1, 10_000)
TURNS = click.IntRange(1, 1000)


def stacked(func: Any, options: list[Any]) -> Any:
    """``func`` with ``options`` applied, the first listed first in `--help`."""
    for option in reversed(options):
        func = option(func)
    return func


def setting(
    name: str, default: Any, type: Any, help: str, *, dest: str | None = None, **attrs: Any
) -> Any:
    """An option with a default, which `--help` shows: `setting("--seed", 0, int, "Run seed.")`
    (``type`` None: the default's; ``dest`` the parameter's name when not the flag's)."""
    names = (name, dest) if dest else (name,)
    return click.option(*names, default=default, show_default=True, type=type, help=help, **attrs)


def llm_options(func: Any) -> Any:
    """Model endpoint, cache and budget options, shared by `run`, `demo` and `label`."""
    options = [
        click.option(
            "--llm-config",
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="YAML endpoint settings: base_url, api_key_env, limits, prices; a section per"
            " role (user, agent, judge, generator).",
        ),
        click.option(
            "--base-url",
            metavar="URL",
            help="OpenAI-compatible endpoint (vLLM, Ollama...) [OPENAI_BASE_URL].",
        ),
        *(
            click.option(
                f"--{role}-base-url",
                metavar="URL",
                help=f"The {what}'s own endpoint, over --base-url and the config file.",
            )
            for role, what in (
                ("user", "simulated user"),
                ("agent", "agent (openai: target, --agent-llm-proxy)"),
                ("judge", "judge"),
            )
        ),
        click.option(
            "--no-cache",
            "no_cache",
            is_flag=True,
            help="Do not serve repeated model requests from the cache.",
        ),
        click.option(
            "--replay-only",
            is_flag=True,
            help="Answer model requests only from the cache; a miss stops the run.",
        ),
        click.option(
            "--max-calls",
            type=click.IntRange(1),
            help="Stop cleanly after this many paid model calls.",
        ),
        click.option(
            "--max-cost-usd",
            type=click.FloatRange(min=0, min_open=True),
            help="Stop cleanly once this much is spent on models.",
        ),
    ]
    return stacked(func, options)


def engine_options(func: Any) -> Any:
    """`--engine`, `--ray-address`, `--workers`: where the work is played."""
    options = [
        setting(
            "--engine",
            "local",
            click.Choice(["local", "ray"]),
            "local: this process; ray: shards over a Ray cluster (pip install 'simulate[ray]').",
        ),
        click.option(
            "--ray-address",
            metavar="ADDRESS",
            help="With --engine ray: the cluster to join (auto, ray://HOST:10001) [a local one].",
        ),
        click.option(
            "--workers",
            type=click.IntRange(1, 4096),
            help="With --engine ray: workers, each with --concurrency [the cluster's CPUs].",
        ),
    ]
    return stacked(func, options)


def run_options(func: Any) -> Any:
    """Options shared by `run` and `demo`."""
    options = [
        setting("--user", "agenda", None, "Simulated user: agenda (offline) or scripted."),
        setting("--trials", 1, TRIALS, "Conversations per persona x scenario."),
        setting("--seed", 0, int, "Run seed."),
        setting("--concurrency", 8, CONCURRENCY, "Conversations played at once."),
        setting("--max-turns", 12, TURNS, "Agent replies before an episode ends as max_turns."),
        setting(
            "--max-episodes",
            MAX_EPISODES,
            click.IntRange(1),
            "Refuse a larger plan (it is counted before anything is built).",
        ),
        setting(
            "--turn-timeout",
            30.0,
            click.FloatRange(min=0, min_open=True),
            "Seconds one agent reply may take.",
        ),
        click.option(
            "--persona",
            "persona_filter",
            multiple=True,
            metavar="ID",
            help="Only these personas (glob; repeatable).",
        ),
        click.option(
            "--scenario",
            "scenario_filter",
            multiple=True,
            metavar="ID",
            help="Only these scenarios (glob; repeatable).",
        ),
        click.option(
            "--tag",
            "tags",
            multiple=True,
            help="Only pairs whose persona or scenario has this tag (repeatable).",
        ),
        click.option("--name", default=None, help="Run name, part of episode ids [folder name]."),
        click.option("--resume", is_flag=True, help="Continue the run in --out."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
        click.option(
            "--user-prompt",
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="Jinja2 template replacing the LLM user's system prompt.",
        ),
        click.option(
            "--temperature",
            type=click.FloatRange(0, 2),
            help="Sampling temperature of the LLM user.",
        ),
        setting(
            "--resimulate-faults",
            0,
            click.IntRange(0),
            "Play an episode with simulator faults again with a new seed, up to N times "
            "(attempts set aside go to RUN/discarded/).",
            metavar="N",
        ),
        click.option(
            "--dry-run",
            is_flag=True,
            help="Print the plan and an estimate of model calls and cost; run nothing.",
        ),
    ]
    func = engine_options(llm_options(func))
    return stacked(func, options)


def target_check_options(func: Any) -> Any:
    """How `run` guards against a broken agent: preflight, early stop, reply size."""
    options = [
        click.option(
            "--no-preflight",
            is_flag=True,
            help="Do not send the target one opening turn before the run (which stops the run "
            "at once when it fails).",
        ),
        setting(
            "--stop-after-errors",
            5,
            click.IntRange(0),
            "Stop the run (exit 1) when the first K episodes all end in target or "
            "simulator errors; 0 never stops.",
            metavar="K",
        ),
        setting(
            "--max-reply-chars",
            100_000,
            click.IntRange(1),
            "A longer agent reply ends its episode as target_error.",
        ),
    ]
    return stacked(func, options)


def rule_limit_options(func: Any) -> Any:
    """`--max-turns`, `--reply-chars`, `--latency-ms`: thresholds of the limit rules."""
    from simulate.label.rules import RuleLimits

    defaults = RuleLimits()
    options = [
        setting(
            "--max-turns",
            defaults.max_turns,
            click.IntRange(1),
            "Rule max_turns: agent replies a conversation may take.",
        ),
        setting(
            "--reply-chars",
            defaults.reply_chars,
            click.IntRange(1),
            "Rule reply_chars: characters one agent reply may have.",
        ),
        setting(
            "--latency-ms",
            defaults.latency_ms,
            click.FloatRange(min=0, min_open=True),
            "Rule latency_ms: milliseconds one agent reply may take.",
        ),
    ]
    return stacked(func, options)
