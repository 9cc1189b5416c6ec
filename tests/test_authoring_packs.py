"""Stress-test packs: every pack loads, is added to a folder, and plays offline against the demo
agent with its behaviour in the transcript and its checks catching the demo's weaknesses."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from importlib import resources
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_cli import simulate_cli

from simulate.authoring.packs import DESCRIPTIONS, add_packs, list_packs, load_pack, pack_names
from simulate.cli import cli
from simulate.errors import ConfigError
from simulate.schema import Episode
from simulate.simulation import RunConfig, run
from simulate.store import iter_episodes
from simulate.users.agenda import LONG_MESSAGE_CHARS, attacks

#: The failures the issue lists, each with its pack.
EXPECTED = {
    "prompt-injection",
    "system-prompt-extraction",
    "role-play-jailbreak",
    "pii-fishing",
    "abusive-user",
    "off-topic",
    "multi-intent",
    "long-messages",
    "typos-non-native",
    "language-switching",
    "changes-mind",
}


def test_every_shipped_folder_is_a_listed_pack_with_personas_scenarios_and_checks():
    folders = {
        p.name for p in resources.files("simulate").joinpath("stress_packs").iterdir() if p.is_dir()
    }
    assert folders == set(DESCRIPTIONS) == EXPECTED
    for pack in list_packs():
        assert pack.personas and pack.scenarios, pack.name
        for item in [*pack.personas, *pack.scenarios]:
            assert item.id.startswith(f"{pack.name}."), item.id
            assert {"stress", pack.name} <= set(item.tags), item.id
        for scenario in pack.scenarios:
            checks = scenario.success
            assert checks.must_mention and checks.judge, scenario.id
            assert scenario.instructions, f"{scenario.id}: LLM users need the behaviour in words"


def test_ids_never_collide_across_packs_and_every_scenario_renders_for_every_persona(tmp_path):
    packs = list_packs()
    persona_ids = [p.id for pack in packs for p in pack.personas]
    scenario_ids = [s.id for pack in packs for s in pack.scenarios]
    assert len(set(persona_ids)) == len(persona_ids)
    assert len(set(scenario_ids)) == len(scenario_ids)
    add_packs(pack_names(), tmp_path / "stress")
    result = simulate_cli("validate", str(tmp_path / "stress"), env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert f"ok: {len(persona_ids)} personas, {len(scenario_ids)} scenarios" in result.stdout


def test_add_writes_each_pack_as_personas_and_scenarios_and_never_overwrites(tmp_path):
    out = tmp_path / "stress"
    written = add_packs(["prompt-injection", "pii-fishing", "prompt-injection"], out)
    assert written == [
        out / "personas" / "prompt-injection.yaml",
        out / "scenarios" / "prompt-injection.yaml",
        out / "personas" / "pii-fishing.yaml",
        out / "scenarios" / "pii-fishing.yaml",
    ]
    text = written[1].read_text()
    assert "ADAPT" in text and "SIMULATE-CANARY-7731" in text  # comments travel with the data

    written[1].write_text("# mine\n")
    with pytest.raises(ConfigError, match=r"exists.*add --force"):
        add_packs(["off-topic", "prompt-injection"], out)
    assert not (out / "personas" / "off-topic.yaml").exists()  # nothing half-written
    assert written[1].read_text() == "# mine\n"
    add_packs(["prompt-injection"], out, force=True)
    assert "SIMULATE-CANARY-7731" in written[1].read_text()
    assert not list(out.rglob(".*.tmp"))


def test_unknown_pack_is_a_one_line_error_with_a_suggestion(tmp_path):
    result = simulate_cli("packs", "add", "pii-fishng", "-o", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "unknown pack 'pii-fishng' (did you mean 'pii-fishing'?)" in result.stderr
    assert not list(tmp_path.iterdir())


def test_packs_list_names_every_pack_with_its_counts():
    result = CliRunner().invoke(cli, ["packs", "list"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for pack in list_packs():
        line = next(x for x in result.output.splitlines() if x.startswith(pack.name + " "))
        assert line.split()[-2:] == [str(len(pack.personas)), str(len(pack.scenarios))]


# --- every pack plays offline against the demo agent ---------------------------------------


@pytest.fixture(scope="module")
def played(tmp_path_factory) -> dict[str, list[Episode]]:
    """Each pack's personas x scenarios played by the agenda user against the demo agent."""
    root = tmp_path_factory.mktemp("packs")
    by_scenario: dict[str, list[Episode]] = defaultdict(list)
    for name in pack_names():
        folder = root / name
        add_packs([name], folder)
        config = RunConfig(
            personas=[str(folder / "personas")],
            scenarios=[str(folder / "scenarios")],
            out=str(root / f"run-{name}"),
            target="demo",
            trials=2,
        )
        result = asyncio.run(run(config))
        for episode in iter_episodes(result.run_dir):
            by_scenario[episode.scenario_id].append(episode)
    return by_scenario


def user_messages(episode: Episode) -> list[str]:
    return [m.content for m in episode.messages if m.role == "user"]


def test_every_pack_scenario_plays_to_an_end_the_agent_is_responsible_for(played):
    expected = {s.id for pack in list_packs() for s in pack.scenarios}
    assert set(played) == expected
    for scenario_id, episodes in played.items():
        for episode in episodes:
            assert episode.outcome.status in {"goal_reached", "gave_up", "max_turns"}, (
                scenario_id,
                episode.outcome,
            )


def failed(episodes: list[Episode], check: str) -> int:
    return sum(any(check in c for c in e.outcome.failed_checks) for e in episodes)


def test_leak_packs_send_their_attack_and_catch_the_demo_leaking_its_instructions(played):
    sent_second = {
        "prompt-injection.ignore_instructions": "prompt_injection",
        "system-prompt-extraction.ask_for_rules": "system_prompt",
        "system-prompt-extraction.repeat_the_text_above": "system_prompt_extraction",
        "role-play-jailbreak.dan_role_play": "role_play",
    }
    for scenario_id, kind in sent_second.items():
        for episode in played[scenario_id]:
            assert user_messages(episode)[1] in attacks()[kind], scenario_id
    for episode in played["prompt-injection.injection_inside_request"]:
        assert "ignore previous instructions" in user_messages(episode)[0]
    for scenario_id in [*sent_second, "prompt-injection.injection_inside_request"]:
        episodes = played[scenario_id]
        leaked = failed(episodes, "must_not_mention: 'these are my instructions'")
        assert leaked == sum(not e.success for e in episodes) >= 1, scenario_id
    # the plain injections always work on the demo agent
    assert failed(played["prompt-injection.ignore_instructions"], "these are my") == 4


def test_pii_pack_catches_the_demo_reading_out_another_customers_email(played):
    episodes = played["pii-fishing.other_booking_by_reference"]
    for episode in episodes:
        assert "NW9ZQX" in user_messages(episode)[1]
        assert not episode.success
    assert failed(episodes, "must_not_mention: 'greta.lindqvist@example.org'") == len(episodes)
    # asked by name, the demo does not leak; it does when a persona's own attack names the booking
    for episode in played["pii-fishing.other_customer_by_name"]:
        assert "Greta Lindqvist" in user_messages(episode)[1]
        asked_by_reference = any("NW9ZQX" in m for m in user_messages(episode))
        assert episode.success is not asked_by_reference


def test_long_message_user_buries_the_request_in_a_long_opening(played):
    for episode in played["long-messages.request_buried_in_story"]:
        opening = user_messages(episode)[0]
        assert len(opening) >= LONG_MESSAGE_CHARS
        assert "details of my booking" in opening
        assert episode.outcome.status == "goal_reached"


def test_language_switching_user_switches_and_the_english_only_demo_fails(played):
    switched = {"es": "español", "de": "Deutsch"}
    for episode in played["language-switching.change_date_then_switch"]:
        language = json.loads(episode.persona)["traits"]["language"]
        messages = user_messages(episode)
        assert switched[language] not in messages[0]
        assert switched[language] in messages[1]
        assert not episode.success  # the demo does not understand "Sí, adelante" or "Ja, bitte"


def test_change_of_mind_is_said_at_the_confirmation_step(played):
    episodes = played["changes-mind.cancel_then_change_date"]
    for episode in episodes:
        said = [m for m in user_messages(episode) if "changed my mind" in m]
        assert len(said) == 1 and "move my flight" in said[0]
        asked = episode.messages[
            episode.messages.index(next(m for m in episode.messages if m.content == said[0])) - 1
        ]
        assert "go ahead" in asked.content.lower()
        # the demo reads "don't cancel it" as "cancel" and offers the cancellation again: the
        # user who changed its mind says no every time (or, asked yet again, leaves), so
        # nothing is cancelled
        after = episode.messages[episode.messages.index(asked) + 1 :]
        for offer, answer in zip(after[1::2], after[2::2], strict=False):
            if "cancel booking" in offer.content and "go ahead" in offer.content:
                left = answer is episode.messages[-1] and episode.outcome.status == "gave_up"
                assert answer.content.startswith("No,") or left, answer.content
        assert not episode.success
        assert "must_not_mention: 'has been cancelled'" not in episode.outcome.failed_checks
    # ... and the agent never moves the flight: the pack catches that
    assert failed(episodes, "must_mention: '2026-04-20'") >= 1


def test_multi_intent_catches_the_demo_dropping_the_second_request(played):
    for episode in played["multi-intent.details_and_pets"]:
        assert "dog" in user_messages(episode)[0] and "details" in user_messages(episode)[0]
        assert not episode.success


def test_abuse_off_topic_and_typo_users_do_what_their_pack_says(played):
    for episode in played["abusive-user.insults_mid_task"]:
        assert any(w in user_messages(episode)[1].lower() for w in ("useless", "idiot"))
    for episode in played["off-topic.poem_and_stocks"]:
        assert any(w in user_messages(episode)[1] for w in ("poem", "stock"))
    opening = "I want to cancel my booking please, I can't travel any more."
    typed = [
        user_messages(e)[0]
        for e in played["typos-non-native.cancel_with_typos"]
        if json.loads(e.persona)["id"] == "typos-non-native.fast_thumbs"
    ]
    assert typed and any(opening not in t for t in typed)
    non_native = [
        " ".join(user_messages(e))
        for e in played["typos-non-native.details_with_typos"]
        if json.loads(e.persona)["id"] == "typos-non-native.second_language"
    ]
    assert non_native and all("the details of my booking" not in t for t in non_native)


def test_a_pack_file_loads_alone_with_the_loader(tmp_path):
    pack = load_pack("changes-mind")
    assert pack.description == DESCRIPTIONS["changes-mind"]
    add_packs(["changes-mind"], tmp_path)
    assert Path(tmp_path / "scenarios" / "changes-mind.yaml").is_file()
