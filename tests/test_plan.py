"""The plan: cross product, filters, seeds, stable ids, template rendering, expansion."""

from __future__ import annotations

import pytest

from simulate.errors import ConfigError
from simulate.plan import build_plan, episode_id, expand_variables
from simulate.schema import Persona, Scenario


def personas() -> list[Persona]:
    return [
        Persona(id="ana", name="Ana", attributes={"email": "ana@x.org"}),
        Persona(id="bob", name="Bob", tags=["adversarial"], attributes={"email": "bob@x.org"}),
    ]


def scenarios() -> list[Scenario]:
    return [
        Scenario(
            id="refund",
            description="refund",
            goal="g",
            tags=["billing"],
            known_info={"email": "{{ persona.attributes.email }}"},
            opening="Hi, I am {{ persona.name }}.",
        ),
        Scenario(id="baggage", description="bags", goal="g"),
    ]


def test_cross_product_in_fixed_order_with_trials():
    specs = build_plan(personas(), scenarios(), run_id="r", trials=2, seed=1)
    keys = [(s.persona.id, s.scenario.id, s.trial) for s in specs]
    assert keys == [
        ("ana", "refund", 0),
        ("ana", "refund", 1),
        ("ana", "baggage", 0),
        ("ana", "baggage", 1),
        ("bob", "refund", 0),
        ("bob", "refund", 1),
        ("bob", "baggage", 0),
        ("bob", "baggage", 1),
    ]
    assert len({s.episode_id for s in specs}) == 8
    assert len({s.seed for s in specs}) == 8


def test_same_inputs_same_plan_and_seed_changes_seeds_not_ids():
    first = build_plan(personas(), scenarios(), run_id="r", seed=1)
    again = build_plan(personas(), scenarios(), run_id="r", seed=1)
    other_seed = build_plan(personas(), scenarios(), run_id="r", seed=2)
    assert first == again
    assert [s.episode_id for s in first] == [s.episode_id for s in other_seed]
    assert [s.seed for s in first] != [s.seed for s in other_seed]


def test_episode_id_is_a_stable_hash_of_run_persona_scenario_trial():
    assert episode_id("r", "ana", "refund", 0) == episode_id("r", "ana", "refund", 0)
    assert episode_id("r", "ana", "refund", 0) != episode_id("r2", "ana", "refund", 0)
    assert episode_id("r", "ana", "refund", 0) != episode_id("r", "ana", "refund", 1)
    assert len(episode_id("r", "ana", "refund", 0)) == 16


def test_templates_render_per_persona():
    specs = build_plan(personas(), scenarios()[:1], run_id="r")
    assert [s.scenario.known_info["email"].value for s in specs] == ["ana@x.org", "bob@x.org"]
    assert specs[1].scenario.opening == "Hi, I am Bob."


def test_undefined_template_name_is_a_config_error_naming_scenario_persona_and_field():
    bad = Scenario(
        id="s",
        description="d",
        goal="g",
        known_info={"order": "{{ persona.attributes.order_number }}"},
    )
    with pytest.raises(ConfigError, match=r"scenario 's' for persona 'ana': known_info.order"):
        build_plan(personas(), [bad], run_id="r")


def test_filters_by_id_glob_and_tag():
    specs = build_plan(personas(), scenarios(), run_id="r", persona_filter=["a*"])
    assert {s.persona.id for s in specs} == {"ana"}
    specs = build_plan(personas(), scenarios(), run_id="r", scenario_filter=["baggage"])
    assert {s.scenario.id for s in specs} == {"baggage"}
    specs = build_plan(personas(), scenarios(), run_id="r", tags=["adversarial"])
    assert {(s.persona.id, s.scenario.id) for s in specs} == {("bob", "refund"), ("bob", "baggage")}
    specs = build_plan(personas(), scenarios(), run_id="r", tags=["billing"])
    assert {(s.persona.id, s.scenario.id) for s in specs} == {("ana", "refund"), ("bob", "refund")}


def test_filter_matching_nothing_suggests_the_closest_id():
    with pytest.raises(ConfigError, match=r"--persona 'anna' matches nothing \(did you mean 'ana'"):
        build_plan(personas(), scenarios(), run_id="r", persona_filter=["anna"])
    with pytest.raises(ConfigError, match=r"--tag nope leaves no episode"):
        build_plan(personas(), scenarios(), run_id="r", tags=["nope"])


def test_variables_expand_to_the_cross_product_with_distinct_ids():
    templated = Scenario(
        id="book",
        description="Fly to {{ city }} in {{ cabin }}",
        goal="g",
        variables={"city": ["Paris", "New York"], "cabin": ["economy", "business"]},
    )
    expanded = expand_variables(templated)
    assert [s.id for s in expanded] == [
        "book.Paris-economy",
        "book.Paris-business",
        "book.New_York-economy",
        "book.New_York-business",
    ]
    assert expanded[2].description == "Fly to New York in economy"
    assert all(not s.variables for s in expanded)


def test_variables_and_persona_templates_in_one_scenario_render_in_two_passes():
    templated = Scenario(
        id="book",
        description="{{ persona.name | upper }} flies to {{ city }}",
        goal="g",
        opening="Hi, I'm {{ persona.name }}, booking for {{ vars.city }}.",
        variables={"city": ["Paris", "Rome"]},
    )
    expanded = expand_variables(templated)
    assert expanded[1].description == "{{ persona.name | upper }} flies to Rome"
    plan = build_plan(personas()[:1], [templated], run_id="r")
    assert [spec.scenario.description for spec in plan] == [
        "ANA flies to Paris",
        "ANA flies to Rome",
    ]
    assert plan[1].scenario.opening == "Hi, I'm Ana, booking for Rome."


def test_an_expression_mixing_a_variable_and_the_persona_renders_per_persona():
    templated = Scenario(
        id="ask",
        description="My {{ field }} is {{ persona.attributes[field] }}.",
        goal="g",
        tags=["field:{{ field }}", "plain"],
        variables={"field": ["email"]},
    )
    [spec] = build_plan(personas()[:1], [templated], run_id="r")
    assert spec.scenario.description == "My email is ana@x.org."
    assert spec.scenario.tags == ["field:email", "plain"]  # tags take the variables too


def test_variable_values_become_readable_distinct_ids():
    templated = Scenario(
        id="fly",
        description="{{ city }}",
        goal="g",
        variables={"city": ["São Paulo", "東京", "大阪"]},
    )
    ids = [s.id for s in expand_variables(templated)]
    assert ids[0] == "fly.Sao_Paulo"
    assert len(set(ids)) == 3 and all(i.startswith("fly.v") for i in ids[1:])


def test_a_variable_with_no_values_is_an_error_not_a_vanished_scenario():
    templated = Scenario(id="fly", description="{{ city }}", goal="g", variables={"city": []})
    with pytest.raises(ConfigError, match=r"scenario 'fly': variables.city: has no values"):
        build_plan(personas(), [templated], run_id="r")


# --- sizes: counted before built -------------------------------------------------------------


def _huge_scenario() -> Scenario:
    values = [f"v{i}" for i in range(10)]
    return Scenario(
        id="huge",
        description="I want {{ a }} {{ b }}.",
        goal="g",
        variables={name: values for name in "abcdefgh"},  # 10^8 combinations
    )


def test_a_plan_past_the_ceiling_is_refused_before_anything_is_built():
    import time

    from simulate.plan import variant_count

    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"100,000,000 episodes, more than --max-episodes"):
        build_plan([Persona(id="p", name="P")], [_huge_scenario()], run_id="r")
    assert time.perf_counter() - started < 5  # counted, not built
    assert variant_count(_huge_scenario()) == 10**8
    with pytest.raises(ConfigError, match=r"1,000,000,000 episodes"):
        small = Scenario(id="s", description="d", goal="g")
        build_plan([Persona(id="p", name="P")], [small], run_id="r", trials=10**9)


def test_a_sample_of_a_huge_expansion_builds_only_the_sample():
    from simulate.plan import expand_variables

    scenario = _huge_scenario()
    with pytest.raises(ConfigError, match=r"expand to 100,000,000 scenarios"):
        expand_variables(scenario)
    first, last = expand_variables(scenario, indexes=[0, 10**8 - 1])
    assert first.description == "I want v0 v0." and first.id.endswith("v0-v0-v0-v0-v0-v0-v0-v0")
    assert last.id.endswith("v9-v9-v9-v9-v9-v9-v9-v9")


@pytest.mark.parametrize(
    "template",
    ["{{ 'a' * 10**9 }}", "{{ range(10**8) | list | length }}", "{{ 9 ** 99999 }}"],
)
def test_templates_that_would_build_gigabytes_are_template_errors(template):
    scenario = Scenario(id="s", description=template, goal="g")
    with pytest.raises(ConfigError, match="template error"):
        build_plan([Persona(id="p", name="P")], [scenario], run_id="r")
