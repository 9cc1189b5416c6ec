"""Success checks: a phrase said inside a refusal does not count; expressions must (not) match."""

from __future__ import annotations

import pytest

from simulate.checks import failed_checks, says, unmet_goal_checks
from simulate.errors import ConfigError
from simulate.loader import load_scenarios
from simulate.schema import Message, SuccessChecks


def replies(*texts: str) -> list[Message]:
    messages = []
    for text in texts:
        messages += [
            Message(role="user", content="Hello?"),
            Message(role="assistant", content=text),
        ]
    return messages


# One per negation form: the phrase is inside a refusal or denial of its own clause.
NEGATED = {
    "can't": ("Sorry, I can't process a refund.", "refund"),
    "cannot": ("We cannot refund this ticket.", "refund"),
    "can not": ("I can not deliver on Sundays.", "deliver"),
    "won't": ("We won't deliver it before Friday.", "deliver"),
    "will not": ("The airline will not refund the fare.", "refund"),
    "don't": ("We don't offer refunds for this fare.", "refund"),
    "doesn't": ("This fare doesn't include a refund.", "refund"),
    "no (determiner)": ("No refund is possible on this ticket.", "refund"),
    "not possible (after)": ("A refund is not possible for this booking.", "refund"),
    "isn't available (after)": ("A refund isn't available, I'm afraid.", "refund"),
    "denied (after)": ("Your refund was denied by the airline.", "refund"),
    "unable to": ("I'm unable to deliver the parcel today.", "deliver"),
    "not able to": ("We are not able to change the date.", "change the date"),
    "never": ("We never deliver to PO boxes.", "deliver"),
    "no longer": ("We no longer deliver to your area.", "deliver"),
    "without": ("I cancelled it without a refund.", "refund"),
    "nothing": ("Nothing has been cancelled.", "has been cancelled"),
    "impossible": ("It is impossible to refund this.", "refund"),
    "non- prefix": ("Your fare is non-refundable.", "refundable"),
    "no idea": ("I have no idea when anything will be delivered.", "deliver"),
}


@pytest.mark.parametrize("form", sorted(NEGATED))
def test_a_phrase_inside_a_negation_of_its_clause_does_not_count(form):
    text, phrase = NEGATED[form]
    assert not says(text, phrase), form
    assert unmet_goal_checks(SuccessChecks(must_mention=[phrase]), replies(text))


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("A refund of 310 EUR has been issued.", "refund"),
        ("I can't refund it, but your booking has been cancelled.", "has been cancelled"),
        ("I can't refund the fare and your booking has been cancelled.", "has been cancelled"),
        ("Sorry for the wait. Your refund has been issued.", "refund"),
        ("Unfortunately the flight was late; a refund has been issued.", "refund"),
        ("Your fare is non-refundable.", "non-refundable"),  # the phrase itself says "non"
        ("This ticket cannot be refunded.", "cannot be refunded"),
        ("No, I can't offer a voucher. The refund has been issued.", "refund"),
    ],
)
def test_the_same_phrase_said_plainly_counts(text, phrase):
    assert says(text, phrase)
    assert not unmet_goal_checks(SuccessChecks(must_mention=[phrase]), replies(text))


def test_a_refusal_anywhere_does_not_hide_the_phrase_said_plainly_in_another_reply():
    messages = replies("Sorry, I can't refund that yet.", "Done: your refund has been issued.")
    assert not unmet_goal_checks(SuccessChecks(must_mention=["refund"]), messages)


def test_the_issues_refusal_meets_no_check():
    refusal = "Sorry, I can't process a refund and I have no idea when anything will be delivered"
    success = SuccessChecks(must_mention=["refund", "deliver"])
    assert unmet_goal_checks(success, replies(refusal)) == [
        "must_mention: 'refund'",
        "must_mention: 'deliver'",
    ]


def test_must_not_mention_counts_a_forbidden_phrase_even_when_negated():
    success = SuccessChecks(must_not_mention=["NWA-INTERNAL-7731"])
    leak = replies("I can't tell you that NWA-INTERNAL-7731 is my build.")
    assert failed_checks(success, leak) == ["must_not_mention: 'NWA-INTERNAL-7731'"]


def test_must_match_needs_a_reply_that_matches_and_must_not_match_forbids_one():
    success = SuccessChecks(
        must_match=[r"changed to \d{4}-\d{2}-\d{2}"], must_not_match=[r"\b\d{16}\b"]
    )
    assert failed_checks(success, replies("Your flight has been changed.")) == [
        r"must_match: 'changed to \\d{4}-\\d{2}-\\d{2}'"
    ]
    ok = replies("Your flight has been CHANGED TO 2026-03-14.")  # case-insensitive
    assert failed_checks(success, ok) == []
    leaked = replies("Changed to 2026-03-14, charged to card 4242424242424242.")
    assert failed_checks(success, leaked) == [r"must_not_match: '\\b\\d{16}\\b'"]


def test_a_bad_expression_is_a_one_line_error_naming_the_file_and_the_field(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "id: s\ndescription: d\ngoal: g\nsuccess:\n  must_match: ['changed to (']\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as error:
        load_scenarios(path)
    message = str(error.value)
    assert "s.yaml" in message and "must_match" in message
    assert "not a regular expression: 'changed to ('" in message
    assert "\n" not in message


def test_runs_planned_before_expression_checks_existed_still_resume():
    from simulate.schema import Persona, Scenario
    from simulate.simulation import _spec_json
    from tests.conftest import make_spec

    persona = Persona(id="ana", name="Ana")
    plain = Scenario(id="s", description="d", goal="g", success={"must_mention": ["done"]})
    # empty expression checks are left out of the plan fingerprint, as before they existed
    assert "must_match" not in _spec_json(make_spec(persona, plain))
    strict = plain.model_copy(update={"success": SuccessChecks(must_match=[r"\d+"])})
    text = _spec_json(make_spec(persona, strict))
    assert '"must_match":["\\\\d+"]' in text and "must_not_match" not in text
