"""`simulate realism RUN --reference REF`: every measure against a hand-computed example, the
discriminator on two halves of one human set (AUC near 0.5) and against a simulator that repeats
one sentence (near 1.0), the JSON (no NaN), and the figures in the report and the card."""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from scipy.spatial.distance import jensenshannon

from simulate.authoring.conversations import read_conversations
from simulate.cli import cli
from simulate.report.realism import (
    REALISM_FILE,
    Conversation,
    compare_sides,
    conversations_of,
    discriminator_of,
    ending_of,
    load_realism,
    typo_words,
)

SAMPLE = Path(__file__).parent / "data" / "taskmaster" / "sample.json"

SIMULATED = [
    Conversation("s1", ["Hello, I want a latte.", "Yes, thanks!"], ["latte"], agent_last=False),
    Conversation("s2", ["What teas do you have?"], [], agent_last=True),
]
HUMAN = [
    Conversation("h1", ["one latte please", "yes"], ["latte"], agent_last=True),
    Conversation("h2", ["a late", "actually, make that a latte", "thanks"], ["latte"], True),
]


@pytest.fixture(scope="module")
def measured():
    measures, endings = compare_sides(SIMULATED, HUMAN, resamples=200, seed=1)
    return {m.id: m for m in measures}, {e.kind: e for e in endings}


def value(measure, side: str) -> float:
    return getattr(measure, side).value


# Words per message: simulated 5, 2, 5; human 3, 1, 2, 5, 1. Words: simulated 12 distinct of 12;
# human 12 with `latte` and `a` twice (10 distinct). Shared words: a, latte, yes, thanks.
@pytest.mark.parametrize(
    ("ident", "simulated", "human", "distance"),
    [
        ("message_words", 12 / 3, 12 / 5, 1.6),  # Wasserstein of the two step CDFs, by hand
        ("message_words_ks", None, None, 7 / 15),  # |1/3 - 4/5| between 3 and 5 words
        ("turns", 1.5, 2.5, 1.0),
        ("distinct_1", 1.0, 10 / 12, 1.0 - 10 / 12),
        ("distinct_2", 1.0, 1.0, 0.0),  # 9 and 7 word pairs, none repeated
        ("vocabulary_overlap", None, None, 4 / 18),
        ("question_rate", 1 / 3, 0.0, 1 / 3),  # "What teas ...?"
        ("repair_rate", 0.0, 1 / 5, -1 / 5),  # "actually, make that ..."
        ("politeness_rate", 1 / 3, 2 / 5, 1 / 3 - 2 / 5),  # thanks; please, thanks
        ("typo_rate", 0.0, 1 / 12, -1 / 12),  # "late": rare, one letter from "latte" (3 times)
        ("opening_share", 10 / 12, 5 / 12, 10 / 12 - 5 / 12),
        ("facts_in_opening", 1.0, 0.5, 0.5),  # h2 names its latte only in its second message
        ("agent_last_word", 0.5, 1.0, -0.5),
        ("endings", None, None, 0.5),  # closing+question against confirmation+closing
    ],
)
def test_every_measure_matches_the_hand_computed_example(
    measured, ident, simulated, human, distance
):
    measure = measured[0][ident]
    if simulated is None:
        assert measure.simulated is None and measure.human is None
    else:
        assert value(measure, "simulated") == pytest.approx(simulated)
        assert value(measure, "human") == pytest.approx(human)
    assert measure.distance.value == pytest.approx(distance)
    if measure.distance.low is not None:
        assert measure.distance.low <= measure.distance.high


def test_word_divergence_is_the_jensen_shannon_divergence_of_the_word_counts(measured):
    vocabulary = ["hello", "i", "want", "a", "latte", "yes", "thanks", "what", "teas", "do"]
    vocabulary += ["you", "have", "one", "please", "late", "actually", "make", "that"]
    simulated = [1] * 12 + [0] * 6
    human = [0, 0, 0, 2, 2, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert len(vocabulary) == len(simulated) == len(human) and sum(human) == 12
    expected = jensenshannon(simulated, human, base=2) ** 2
    assert measured[0]["word_jsd"].distance.value == pytest.approx(expected)


def test_ending_shares_and_kinds(measured):
    endings = measured[1]
    assert endings["closing"].simulated.value == 0.5 and endings["question"].simulated.value == 0.5
    assert endings["confirmation"].human.value == 0.5 and endings["closing"].human.value == 0.5
    assert ending_of(Conversation("x", ["Great, that's all. Bye!"])) == "closing"
    assert ending_of(Conversation("x", ["Yep looks right"])) == "confirmation"
    assert ending_of(Conversation("x", ["how long will it take"])) == "question"
    assert ending_of(Conversation("x", ["I'll pick it up at 5"])) == "other"


def test_typos_are_rare_words_one_edit_from_a_common_one():
    counts = Counter({"latte": 3, "lattte": 1, "late": 1, "laet": 1, "mocha": 1, "ab": 1, "lat": 1})
    assert typo_words(counts) == {"lattte", "late"}  # "laet" is two edits; short words never


def test_intervals_cover_the_values_and_shrink_with_more_data():
    rng = random.Random(0)
    small = [
        Conversation(f"a{i}", ["yes please"] if rng.random() < 0.5 else ["no"]) for i in range(20)
    ]
    large = small * 10
    few, _ = compare_sides(small, small, resamples=300)
    many, _ = compare_sides(
        [Conversation(f"{c.conversation_id}-{i}", c.user_messages) for i, c in enumerate(large)],
        [Conversation(f"{c.conversation_id}-{i}", c.user_messages) for i, c in enumerate(large)],
        resamples=300,
    )
    for one, other in zip(few, many, strict=True):
        if one.simulated is None or one.simulated.low is None:
            continue
        assert one.simulated.low <= one.simulated.value <= one.simulated.high
        width = one.simulated.high - one.simulated.low
        assert other.simulated.high - other.simulated.low <= width + 1e-9, one.id


def _human_side() -> list[Conversation]:
    conversations, _ = read_conversations(SAMPLE)
    return [
        Conversation(c.conversation_id, [m.content for m in c.messages if m.role == "user"])
        for c in conversations
    ]


def test_the_discriminator_cannot_tell_two_halves_of_one_human_set_apart():
    people = _human_side()
    random.Random(7).shuffle(people)
    found = discriminator_of(people[:50], people[50:], seed=3, resamples=300)
    assert 0.35 < found.auc.value < 0.65
    assert found.auc.low < 0.5 < found.auc.high
    assert found.folds == 5 and found.simulated_turns + found.human_turns == found.auc.n


def test_the_discriminator_always_tells_a_simulator_repeating_one_sentence():
    parrot = [
        Conversation(f"p{i}", ["I would like to order a coffee, please."] * 2) for i in range(30)
    ]
    found = discriminator_of(parrot, _human_side(), seed=0, resamples=300)
    assert found.auc.value > 0.98 and found.auc.low > 0.95
    top = {g.feature for g in found.giveaways if g.kind == "word"}
    assert top & {"coffee", "would like", "order a", "coffee ,", "i would"}
    assert all(g.weight > 0 for g in found.giveaways)
    assert all(g.weight < 0 for g in found.human_tells)
    coffee = next(g for g in found.giveaways if g.feature == "coffee")
    assert coffee.simulated_share == 1.0 and coffee.human_share < 0.2


def test_turns_of_one_conversation_never_straddle_folds():
    # Each conversation writes its four turns from its own six made-up words, on both sides
    # alike. With folds grouped by conversation the classifier never saw a test conversation's
    # words, so it is near chance; ungrouped folds (checked once by hand) give AUC 1.0, because
    # a conversation's turns in training give its test turns away.
    rng = random.Random(1)

    def conversation(ident: str) -> Conversation:
        own = ["w" + hashlib.md5(f"{ident}{j}".encode()).hexdigest()[:8] for j in range(6)]
        return Conversation(ident, [" ".join(rng.sample(own, 4)) for _ in range(4)])

    people = [conversation(f"h{i}") for i in range(40)]
    sims = [conversation(f"s{i}") for i in range(40)]
    found = discriminator_of(sims, people, seed=0, resamples=100)
    assert found.auc.value < 0.75


@pytest.fixture(scope="module")
def measured_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("realism")
    runner = CliRunner()
    for args in (
        ["demo", "--out", str(root / "run"), "-q"],
        ["import", "conversations", str(SAMPLE), "-o", str(root / "ref")],
    ):
        result = runner.invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    result = runner.invoke(
        cli,
        ["realism", str(root / "run"), "--reference", str(root / "ref"), "--resamples", "100"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return root, result.output


def test_realism_on_a_run_prints_the_figures_and_writes_realism_json(measured_run):
    root, output = measured_run
    assert "discriminator AUC" in output and "gives the simulator away" in output
    assert f"realism: {root / 'run' / REALISM_FILE}" in output
    report = load_realism(root / "run")
    assert report is not None and report.mode == "run"
    assert report.simulated.conversations == 108 and report.reference.conversations == 100
    assert report.reference.license == "CC-BY-4.0"
    assert report.discriminator.auc.value > 0.9  # the airline demo user is not a coffee customer
    assert {m.id for m in report.measures} >= {"message_words", "word_jsd", "typo_rate"}


def test_the_json_has_no_nan_and_loads_back(measured_run, tmp_path):
    root, _ = measured_run
    result = CliRunner().invoke(
        cli,
        [
            "realism",
            str(root / "run"),
            "--reference",
            str(root / "ref"),
            "--json",
            "--resamples",
            "50",
            "-o",
            str(tmp_path / "r.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    text = result.stdout
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"JSON has {c}"))
    assert data["discriminator"]["auc"]["value"] > 0.9
    assert json.loads((tmp_path / "r.json").read_text())["mode"] == "run"


def test_figures_that_cannot_be_computed_are_null_not_nan():
    no_facts = [Conversation("a", ["hi"]), Conversation("b", ["yo"])]
    measures, _ = compare_sides(no_facts, no_facts, resamples=20)
    facts = next(m for m in measures if m.id == "facts_in_opening")
    assert facts.simulated.value is None and facts.distance.value is None
    report_text = json.dumps([m.model_dump(mode="json") for m in measures], allow_nan=False)
    assert "NaN" not in report_text
    assert all(
        v is None or math.isfinite(v)
        for m in measures
        for e in (m.simulated, m.human, m.distance)
        if e is not None
        for v in (e.value, e.low, e.high)
    )


def test_the_report_and_the_card_carry_the_realism_figures(measured_run):
    root, _ = measured_run
    run = root / "run"
    result = CliRunner().invoke(cli, ["report", str(run)], catch_exceptions=False)
    assert "realism: discriminator AUC" in result.output
    html = (run / "report.html").read_text(encoding="utf-8")
    assert 'id="realism"' in html and "discriminator ROC AUC" in html
    from simulate.card import render_run_card

    card = str(render_run_card(run, {"episodes": {"train": "episodes/*.parquet"}}).card)
    assert "## Realism against people" in card and "ROC AUC" in card
    assert "| message length |" in card and "CC-BY-4.0" in card


def test_a_report_without_realism_says_nothing_of_it(tmp_path):
    run = tmp_path / "run"
    CliRunner().invoke(cli, ["demo", "--out", str(run), "-q"], catch_exceptions=False)
    assert 'id="realism"' not in (run / "report.html").read_text(encoding="utf-8")
    from simulate.card import realism_lines

    assert realism_lines(run) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["RUN"], "give RUN --reference REF, or --replay REF"),
        (["--replay", "REF", "RUN"], "--replay REF takes no RUN"),
        (["RUN", "--reference", "REF", "--limit", "3"], "go with --replay"),
    ],
)
def test_flag_mistakes_are_usage_errors(args, message):
    result = CliRunner().invoke(cli, ["realism", *args])
    assert result.exit_code == 2 and message in result.output


def test_a_folder_that_is_not_a_run_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(
        cli, ["realism", str(tmp_path / "nope"), "--reference", str(tmp_path)]
    )
    assert result.exit_code != 0 and "no such run folder" in str(result.exception)
    bad = tmp_path / "run"
    bad.mkdir()
    (bad / "manifest.json").write_text("{}")
    (bad / REALISM_FILE).write_text('{"mode": "run"}')
    with pytest.raises(Exception, match="not a realism report"):
        load_realism(bad)
    with pytest.raises(Exception, match="holds no conversation"):
        conversations_of(bad)
