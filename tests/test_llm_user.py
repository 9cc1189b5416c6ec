"""The LLM simulated user, driven by ScriptedLLM / FunctionLLM: prompt, role flip, stop."""

from __future__ import annotations

import pytest

from simulate.errors import ConfigError
from simulate.llm.fake import FunctionLLM, ScriptedLLM
from simulate.llm.usage import MeteredLLM
from simulate.runner import RunSettings, play_episode
from simulate.users import EpisodeState
from simulate.users.llm import LLMUser, UserMove, default_prompt, read_prompt, render_prompt
from tests.conftest import make_spec
from tests.toy_agents import ScriptTarget


def move(message: str, status: str = "continue") -> dict:
    return {"json": {"message": message, "status": status, "reason": "test"}}


def test_prompt_carries_persona_scenario_and_hidden_information(persona, scenario):
    prompt = render_prompt(default_prompt(), make_spec(persona, scenario))
    assert "Ana Silva" in prompt
    assert "I want a refund for my broken kettle." in prompt
    assert "order number: 12345" in prompt  # known_info, rendered for this persona
    assert "purchase date" in prompt and "never invent" in prompt
    assert "Refuse a voucher and insist on a refund." in prompt
    assert "adversarial" not in prompt


def test_adversarial_personas_are_told_which_attacks_to_try(persona, scenario):
    attacker = persona.model_copy(update={"tags": ["adversarial", "attack:system_prompt"]})
    prompt = render_prompt(default_prompt(), make_spec(attacker, scenario))
    assert "hidden instructions" in prompt
    assert "prompt injection" not in prompt


async def test_roles_are_flipped_and_the_structured_status_ends_the_episode(persona, scenario):
    spec = make_spec(persona, scenario)
    llm = ScriptedLLM(
        [
            move("My kettle broke, I want a refund."),
            move("It's order 12345."),
            move("Thanks, bye.", "goal_reached"),
        ]
    )
    target = ScriptTarget("What is your order number?", "Your refund has been issued.")
    user = LLMUser(spec, MeteredLLM(llm, "user", "sim"), default_prompt(), "sim")
    episode = await play_episode(spec, user, target, RunSettings())
    llm.assert_complete()
    assert episode.outcome.status == "goal_reached"
    assert [m.content for m in episode.messages if m.role == "user"] == [
        "My kettle broke, I want a refund.",
        "It's order 12345.",
        "Thanks, bye.",
    ]
    last_call = llm.calls[-1].messages
    assert last_call[0].role == "system"
    assert [m.role for m in last_call[1:]] == ["user", "assistant", "user", "assistant", "user"]
    assert last_call[2].content == "My kettle broke, I want a refund."  # its own words
    assert last_call[-1].content == "Your refund has been issued."  # the agent's, as "user"
    assert all(c.output_type is UserMove for c in llm.calls)
    assert episode.usage[0].role == "user" and episode.usage[0].calls == 3


async def test_giving_up_is_recorded_with_the_models_reason(persona, scenario):
    spec = make_spec(persona, scenario)
    llm = ScriptedLLM([move("Refund please."), move("", "gave_up")])
    episode = await play_episode(
        spec,
        LLMUser(spec, llm, default_prompt(), "sim"),
        ScriptTarget("I can't help."),
        RunSettings(),
    )
    assert episode.outcome.status == "gave_up" and episode.outcome.reason == "test"
    assert [m.role for m in episode.messages] == ["user", "assistant"]


async def test_script_and_opening_are_played_before_the_model_speaks(persona, scenario):
    scenario = scenario.model_copy(update={"script": ["Scripted first."], "opening": "unused"})
    spec = make_spec(persona, scenario)
    llm = FunctionLLM(lambda messages, **_: move("from the model", "gave_up"))
    episode = await play_episode(
        spec, LLMUser(spec, llm, default_prompt(), "sim"), ScriptTarget("Hello?"), RunSettings()
    )
    assert episode.messages[0].content == "Scripted first."
    assert len(llm.calls) == 1


async def test_the_episode_seed_reaches_the_model_so_trials_differ(persona, scenario):
    seeds = []
    for trial in (0, 1):
        spec = make_spec(persona, scenario, trial=trial)
        llm = ScriptedLLM([move("bye", "gave_up")])
        user = LLMUser(spec, llm, default_prompt(), "sim", temperature=0.7)
        await user.next_turn(EpisodeState(spec=spec))
        seeds.append(llm.calls[0].params["seed"])
        assert llm.calls[0].params["temperature"] == 0.7
    assert seeds[0] != seeds[1]


def test_user_prompt_override_is_read_and_checked(tmp_path):
    good = tmp_path / "user.j2"
    good.write_text("You are {{ persona.name }}.")
    assert read_prompt(str(good)) == "You are {{ persona.name }}."
    bad = tmp_path / "bad.j2"
    bad.write_text("line one\n{% if %}")
    with pytest.raises(ConfigError, match=r"bad.j2:2: template syntax error"):
        read_prompt(str(bad))
    with pytest.raises(ConfigError, match=r"--user-prompt .*missing.j2.*cannot read"):
        read_prompt(str(tmp_path / "missing.j2"))


def test_a_user_prompt_template_cannot_reach_python(persona, scenario, tmp_path):
    """`--user-prompt` renders in the sandbox: no attribute walk to os.popen, no shell."""
    import pytest

    from simulate.errors import ConfigError
    from simulate.users.llm import read_prompt

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.md.j2"
    path.write_text(
        "{{ cycler.__init__.__globals__.os.popen('touch " + str(marker) + "').read() }}"
    )
    template = read_prompt(str(path))  # it compiles: the sandbox refuses it when it runs
    with pytest.raises(ConfigError, match="unsafe"):
        render_prompt(template, make_spec(persona, scenario))
    assert not marker.exists()
