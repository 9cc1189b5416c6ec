"""`simulate annotate` without a browser: the guard, saving answers, the queue, overlap,
adjudication into `simulate golden`, the label store, and the command's errors.

Requests go through Starlette's TestClient (in-process ASGI); the browser tests are in
test_annotate_browser.py.
"""

from __future__ import annotations

import socket
import sys

import datasets
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from simulate.annotate.labelstore import LabelStore
from simulate.annotate.queue import Filters, latest_answers, prioritize, questions_of
from simulate.annotate.server import AnnotateApp, Settings
from simulate.cli import cli, main
from simulate.label.rubrics import criteria_of
from simulate.loader import load_rubrics
from simulate.schema import Label
from simulate.store import LABELS, RunFolder, ShardWriter, read_labels, shard_paths
from tests.annotate_app import make_run, ten_episodes
from tests.label_runs import write_rubric


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path / "run")


@pytest.fixture
def rubric(tmp_path):
    return write_rubric(tmp_path)


def open_app(run, rubric, annotator="ana", **options) -> tuple[AnnotateApp, TestClient]:
    """An app and a client that has visited it with the token (so it holds the cookie)."""
    app = AnnotateApp(
        Settings(run_dir=str(run), rubrics=[str(rubric)], annotator=annotator, **options)
    )
    client = TestClient(app.asgi(), base_url="http://127.0.0.1:8765")
    assert client.get(f"/?token={app.settings.token}").status_code == 200
    return app, client


def answer(app, client, episode_id, criterion="resolved", value="yes", turn=None, call=None, **kw):
    body = {
        "episode_id": episode_id,
        "criterion": criterion,
        "turn_index": turn,
        "tool_call_index": call,
        "value": value,
        **kw,
    }
    return client.post("/api/answer", json=body, headers={"X-CSRF-Token": app.csrf})


def answer_everything(app, client, value="yes", scale="4"):
    for questions in app.questions.values():
        for q in questions:
            v = scale if q.criterion.kind == "scale" else value
            response = answer(
                app, client, q.episode_id, q.criterion.id, v, q.unit.turn_index,
                q.unit.tool_call_index,
            )  # fmt: skip
            assert response.status_code == 200, response.text


# --- the guard --------------------------------------------------------------------------------


def test_every_request_without_the_token_is_refused(run, rubric):
    app = AnnotateApp(Settings(run_dir=str(run), rubrics=[str(rubric)], annotator="ana"))
    client = TestClient(app.asgi(), base_url="http://127.0.0.1:8765")
    for path in ("/", "/episode/ep-00", "/agreement", "/static/app.js", "/next"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert "token" in response.text
    assert client.get("/?token=wrong").status_code == 403
    refused = answer(app, client, "ep-00")
    assert refused.status_code == 403
    assert read_labels(run) == []


def test_the_token_in_the_url_becomes_a_cookie_and_leaves_the_url(run, rubric):
    app = AnnotateApp(Settings(run_dir=str(run), rubrics=[str(rubric)], annotator="ana"))
    client = TestClient(app.asgi(), base_url="http://127.0.0.1:8765")
    first = client.get(f"/?persona=zelda&token={app.settings.token}", follow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"] == "/?persona=zelda"
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert cookie.startswith("simulate-annotate-8765=")
    assert client.get("/static/app.js").status_code == 200


def test_every_reply_carries_a_strict_content_security_policy(run, rubric):
    app, client = open_app(run, rubric)
    for response in (client.get("/"), client.get("/episode/ep-00"), client.get("/nothing")):
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
    refused = TestClient(app.asgi(), base_url="http://127.0.0.1").get("/")
    assert "content-security-policy" in refused.headers


def test_writes_need_the_csrf_header_json_and_our_own_origin(run, rubric):
    app, client = open_app(run, rubric)
    body = {"episode_id": "ep-00", "criterion": "resolved", "value": "yes"}
    assert client.post("/api/answer", json=body).status_code == 403  # no X-CSRF-Token
    headers = {"X-CSRF-Token": app.csrf}
    form = client.post("/api/answer", data=body, headers=headers)
    assert form.status_code == 415
    evil = {**headers, "Origin": "http://127.0.0.1:9999"}
    assert client.post("/api/answer", json=body, headers=evil).status_code == 403
    assert read_labels(run) == []
    own = {**headers, "Origin": "http://127.0.0.1:8765"}
    assert client.post("/api/answer", json=body, headers=own).status_code == 200
    assert len(read_labels(run)) == 1


def test_only_the_hosts_it_serves_are_answered(run, rubric):
    _, client = open_app(run, rubric)
    rebound = client.get("/", headers={"Host": "attacker.example:8765"})
    assert rebound.status_code == 400
    _, everywhere = open_app(run, rubric, host="0.0.0.0")  # any name reaches it; token still
    assert everywhere.get("/", headers={"Host": "my-laptop.lan:8765"}).status_code == 200


# --- answers ----------------------------------------------------------------------------------


def test_an_answer_is_a_human_label_on_disk_before_the_reply(run, rubric):
    app, client = open_app(run, rubric)
    saved = answer(app, client, "ep-03", "polite", "4", turn=1, rationale="  short but kind ")
    assert saved.status_code == 200
    (label,) = read_labels(run)  # a fresh read of the run folder
    assert (label.episode_id, label.criterion, label.turn_index) == ("ep-03", "polite", 1)
    assert (label.value, label.score, label.passed) == ("4", 4.0, True)
    assert (label.labeler, label.labeler_kind, label.rubric) == ("human:ana", "human", "test@1")
    assert label.rationale == "short but kind"


def test_bad_answers_are_refused_with_the_reason(run, rubric):
    app, client = open_app(run, rubric)
    wrong_value = answer(app, client, "ep-00", "polite", "9", turn=1)
    assert wrong_value.status_code == 400
    assert wrong_value.json()["error"] == "value '9' is not allowed; allowed: 1, 2, 3, 4, 5"
    assert answer(app, client, "ep-00", "polite", "4", turn=0).status_code == 400  # user turn
    assert answer(app, client, "nope", "resolved").status_code == 400
    headers = {"X-CSRF-Token": app.csrf}
    assert client.post("/api/answer", json=["ep-00"], headers=headers).status_code == 400
    assert read_labels(run) == []


def test_a_later_answer_replaces_the_earlier_and_history_is_kept(run, rubric):
    app, client = open_app(run, rubric)
    answer(app, client, "ep-01", value="yes")
    answer(app, client, "ep-01", value="no")
    history = [label.value for label in RunFolder(run).label_history()]
    assert history == ["yes", "no"]
    (latest,) = latest_answers(read_labels(run)).values()
    assert latest["human:ana"].value == "no"


def test_undo_brings_back_the_earlier_answer_then_withdraws_the_first(run, rubric):
    app, client = open_app(run, rubric)
    answer(app, client, "ep-01", value="yes")
    answer(app, client, "ep-01", value="no")
    undo = client.post("/api/undo", json={}, headers={"X-CSRF-Token": app.csrf})
    assert undo.json() == {"episode_id": "ep-01", "restored": "yes"}
    (latest,) = latest_answers(read_labels(run)).values()
    assert latest["human:ana"].value == "yes"
    undo = client.post("/api/undo", json={}, headers={"X-CSRF-Token": app.csrf})
    assert undo.json()["restored"] is None
    assert latest_answers(read_labels(run)) == {("ep-01", "resolved", None, None): {}}
    assert [label.value for label in RunFolder(run).label_history()] == ["yes", "no", "yes", ""]
    nothing = client.post("/api/undo", json={}, headers={"X-CSRF-Token": app.csrf})
    assert nothing.status_code == 409


def test_blind_mode_sends_no_suggestion_before_the_answer(run, rubric):
    writer = ShardWriter(run, LABELS)
    writer.add(judge_label("ep-00", "resolved", "no", "JUDGE-SAYS-NO"))
    writer.flush()
    app, client = open_app(run, rubric, blind=True)
    page = client.get("/episode/ep-00").text
    assert "JUDGE-SAYS-NO" not in page and "judge:m" not in page
    assert "hidden until you answer" in page
    saved = answer(app, client, "ep-00", value="yes")
    (suggestion,) = saved.json()["suggestions"]
    assert (suggestion["labeler"], suggestion["value"]) == ("judge:m", "no")
    assert "JUDGE-SAYS-NO" in client.get("/episode/ep-00").text
    _, seeing = open_app(run, rubric, annotator="bo")  # not blind: shown, marked
    assert 'class="tag">suggestion</span> judge:m: <b>no</b>' in seeing.get("/episode/ep-00").text


def judge_label(episode_id, criterion, value, rationale="", spread=None, turn=None) -> Label:
    return Label(
        episode_id=episode_id,
        criterion=criterion,
        turn_index=turn,
        value=value,
        score=1.0 if value == "yes" else 0.0,
        passed=value == "yes",
        rationale=rationale,
        labeler="judge:m",
        labeler_kind="judge",
        rubric="test@1",
        spread=spread,
        created_at="2026-01-01T00:00:00+00:00",
    )


# --- the queue --------------------------------------------------------------------------------


def test_the_queue_puts_each_answer_where_it_counts(run, rubric):
    labels = [
        judge_label("ep-01", "resolved", "yes", spread=0.34),  # the judge's samples split
        judge_label("ep-02", "resolved", "no"),  # a failure no person has checked
        judge_label("ep-03", "resolved", "yes"),  # a pass; people checked passes already
        judge_label("ep-04", "resolved", "yes"),
        judge_label("ep-04", "resolved", "yes").model_copy(
            update={"labeler": "human:x", "labeler_kind": "human"}
        ),
    ]
    labels += [judge_label(f"ep-0{i}", "resolved", "yes") for i in range(5, 10)]
    pairs = criteria_of(load_rubrics([rubric]))
    episodes = {e.episode_id: e for e in ten_episodes()}
    questions = {i: questions_of(e, pairs) for i, e in episodes.items()}
    priority = prioritize(list(episodes.values()), questions, latest_answers(labels))
    assert priority.order[:4] == ["ep-00", "ep-01", "ep-02", "ep-03"]
    assert [priority.tiers[i][0] for i in priority.order[:4]] == [0, 1, 2, 2]
    assert priority.tiers["ep-02"][1] > priority.tiers["ep-03"][1]
    assert priority.order[-1] == "ep-04"  # people answered everything the judge said


def test_questions_follow_the_reading_order(run, rubric):
    pairs = criteria_of(load_rubrics([rubric]))
    (episode, *_) = ten_episodes()
    asked = [(q.criterion.id, q.unit.turn_index, q.unit.tool_call_index) for q in
             questions_of(episode, pairs)]  # fmt: skip
    assert asked == [
        ("grounded", 1, None),
        ("polite", 1, None),
        ("right_tool", 1, 0),
        ("grounded", 3, None),
        ("polite", 3, None),
        ("resolved", None, None),
    ]


def test_filters_narrow_the_queue_and_the_questions(run, rubric):
    _, client = open_app(run, rubric)
    page = client.get("/?criterion=resolved").text
    assert page.count('class="episode-link"') == 10
    assert "0 / 1" in page
    assert client.get("/?persona=nobody").text.count('class="episode-link"') == 0
    episode = client.get("/episode/ep-00?criterion=polite").text
    assert episode.count('data-criterion="polite"') == 2
    assert 'data-criterion="resolved"' not in episode


def test_overlap_gives_each_unit_to_that_many_people(run, rubric):
    ana, ana_client = open_app(run, rubric, annotator="ana", overlap=2)
    answer_everything(ana, ana_client)
    bo, bo_client = open_app(run, rubric, annotator="bo", overlap=2)
    assert len(bo._queue(Filters())) == 10  # still open: one person each so far
    answer_everything(bo, bo_client, value="no")
    cy, _ = open_app(run, rubric, annotator="cy", overlap=2)
    assert cy._queue(Filters()) == []  # every unit has its two people
    solo, _ = open_app(run, rubric, annotator="di", overlap=1)
    assert solo._queue(Filters()) == []
    per_unit = latest_answers(read_labels(run))
    assert len(per_unit) == 60
    assert all(sorted(a) == ["human:ana", "human:bo"] for a in per_unit.values())


def test_an_adjudication_outranks_both_annotators_in_simulate_golden(run, rubric):
    ana, ana_client = open_app(run, rubric, annotator="ana", overlap=2)
    bo, bo_client = open_app(run, rubric, annotator="bo", overlap=2)
    for episode_id in ("ep-00", "ep-01"):
        answer(ana, ana_client, episode_id, value="yes", rationale="ana: answered")
        answer(bo, bo_client, episode_id, value="no", rationale="bo: not really")
    answer(ana, ana_client, "ep-02", value="yes")
    answer(bo, bo_client, "ep-02", value="yes")
    lead, lead_client = open_app(run, rubric, annotator="lead", adjudicate=True)
    items = lead._queue(Filters())
    assert [(i.episode_id, [q.criterion.id for q in i.questions]) for i in items] == [
        ("ep-00", ["resolved"]),
        ("ep-01", ["resolved"]),
    ]
    page = lead_client.get("/episode/ep-00").text
    assert "bo: not really" in page and "ana: answered" in page
    assert answer(lead, lead_client, "ep-00", value="no").status_code == 200
    (label,) = [label for label in read_labels(run) if label.labeler == "adjudicator:lead"]
    assert (label.labeler_kind, label.episode_id, label.value) == ("adjudicator", "ep-00", "no")

    result = CliRunner().invoke(cli, ["golden", str(run), "--split", "1,0,0"])
    assert result.exit_code == 0, result.output
    golden = datasets.load_dataset(str(run / "golden"))["train"]
    merged = {
        (row["episode_id"], label["criterion"]): label for row in golden for label in row["labels"]
    }
    decided = merged["ep-00", "resolved"]
    assert (decided["value"], decided["kind"], decided["source"]) == (
        "no",
        "adjudicator",
        ["adjudicator:lead"],
    )
    assert ("ep-01", "resolved") not in merged  # still disputed: left out
    assert merged["ep-02", "resolved"]["kind"] == "human"


def test_the_agreement_page_shows_the_figures_of_simulate_agreement(run, rubric):
    ana, ana_client = open_app(run, rubric, annotator="ana")
    assert "no criterion has answers from two labelers yet" in ana_client.get("/agreement").text
    bo, bo_client = open_app(run, rubric, annotator="bo")
    for i in range(6):
        answer(ana, ana_client, f"ep-0{i}", value="yes" if i % 2 else "no")
        answer(bo, bo_client, f"ep-0{i}", value="yes" if i % 3 else "no")
    page = ana_client.get("/agreement").text
    assert "Cohen's kappa</th><td>0.00 (-0.75 to 0.75), n=6" in page
    assert "Krippendorff's alpha (nominal)</th><td>0.06, n=6" in page


# --- the label store --------------------------------------------------------------------------


def test_each_answer_is_its_own_shard_and_compacting_keeps_every_label(run):
    store = LabelStore(run)
    rows = [judge_label(f"ep-0{i}", "resolved", "yes") for i in range(3)]
    for row in rows:
        store.save(row)
    assert len(shard_paths(run, LABELS)) == 3
    other = LabelStore(run)  # another server on the same run sees them at once
    assert other.labels() == rows
    merged = store.compact()
    assert shard_paths(run, LABELS) == [merged]
    assert read_labels(run) == rows
    assert other.labels() == rows  # the vanished shards are dropped, the merged one read


# --- the command ------------------------------------------------------------------------------


def test_a_taken_port_is_one_clear_error(run, rubric, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        args = ["annotate", str(run), "--rubric", str(rubric), "--annotator", "ana"]
        with pytest.raises(SystemExit) as stop:
            main([*args, "--port", str(port), "--no-browser"])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert err == (
        f"error: --port {port}: 127.0.0.1:{port} is already in use; choose another --port "
        "(or --port 0 for any free one)\n"
    )


def test_bad_flags_are_one_line_errors(run, rubric, capsys):
    base = ["annotate", str(run), "--rubric", str(rubric), "--no-browser", "--port", "0"]
    cases = [
        ([*base, "--annotator", "a b"], "error: --annotator 'a b': use letters"),
        (["annotate", str(run), "--rubric", "nope", "--annotator", "a"], "error: --rubric 'nope'"),
        (["annotate", str(run.parent / "x"), "--rubric", str(rubric), "--annotator", "a"],
         "error: no such run folder"),
    ]  # fmt: skip
    for args, expected in cases:
        with pytest.raises(SystemExit) as stop:
            main(args)
        assert stop.value.code == 1
        assert capsys.readouterr().err.startswith(expected)


def test_without_the_extra_the_command_says_what_to_install(run, rubric, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    with pytest.raises(SystemExit) as stop:
        main(["annotate", str(run), "--rubric", str(rubric), "--annotator", "ana"])
    assert stop.value.code == 1
    assert "pip install 'simulate[annotate]'" in capsys.readouterr().err
