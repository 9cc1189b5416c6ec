"""`simulate annotate` in headless Chromium: keyboard labeling, reloads, a killed server, two
annotators at once, hostile transcripts, and requests that must be refused.

Needs Python Playwright and /usr/bin/chromium; without them every test here is skipped, unless
SIMULATE_REQUIRE_BROWSER=1 (CI), where they fail. Screenshots of the main pages are kept in
tests/artifacts/annotate/ (git-ignored).
"""

from __future__ import annotations

import http.server
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulate.annotate.queue import latest_answers
from simulate.annotate.server import Settings
from simulate.schema import Message, Persona, Scenario, ToolCall
from simulate.store import RunFolder, read_labels
from tests.annotate_app import LiveApp, make_run, ten_episodes
from tests.label_runs import episode, write_rubric

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).parent / "artifacts" / "annotate"
KEYS = "y4yn5y"
"""One episode of the test rubric from the keyboard, in reading order: grounded, polite and
right_tool of reply 1, grounded and polite of reply 3, resolved of the whole episode."""


def _require_browser() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "playwright"
    else:
        missing = "" if CHROMIUM.exists() else str(CHROMIUM)
    if missing:
        if os.environ.get("SIMULATE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"SIMULATE_REQUIRE_BROWSER=1 but {missing} is missing")
        pytest.skip(f"{missing} missing")


@pytest.fixture(scope="module")
def browser() -> Iterator:
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield PatientBrowser(chromium)
        chromium.close()


class PatientBrowser:
    """Chromium whose pages wait up to 90 s, not Playwright's 30: two servers and two browsers
    on a busy 2-core machine can take that long to answer."""

    def __init__(self, browser: Any) -> None:
        self._browser = browser

    def new_context(self, **options: Any) -> Any:
        context = self._browser.new_context(**options)
        context.set_default_timeout(90_000)
        return context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._browser, name)


@pytest.fixture
def rubric(tmp_path) -> Path:
    return write_rubric(tmp_path)


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def label_episode(page, keys: str = KEYS) -> None:
    """Press ``keys`` on the open episode and wait until every answer given is saved."""
    for key in keys:
        page.keyboard.press(key)
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.q[data-answer]:not([data-answer=\"\"])'))"
        ".every(q => q.querySelector('.status').textContent === 'saved')"
    )


def chosen(page) -> list[str]:
    return page.locator(".q .choice.chosen").evaluate_all("bs => bs.map(b => b.dataset.value)")


def test_ten_episodes_from_the_keyboard_only_survive_a_reload(browser, tmp_path, rubric):
    run = make_run(tmp_path / "run")
    live = LiveApp(Settings(run_dir=str(run), rubrics=[str(rubric)], annotator="ana"))
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(live.url)
        assert page.locator("#progress").text_content() == "0 of 10 episodes done"
        shot(page, "queue")
        page.keyboard.press("?")
        assert page.locator("#help").is_visible()
        assert "undo your last answer" in page.locator("#help").text_content()
        page.keyboard.press("?")
        page.keyboard.press("u")  # the first unlabeled episode
        seen: list[str] = []
        for n in range(10):
            page.wait_for_url(lambda url: url.rsplit("/", 1)[1] not in seen and "/episode/" in url)
            seen.append(page.url.rsplit("/", 1)[1])
            if n == 0:
                page.keyboard.press("r")
                page.keyboard.type("the tool call was right")
                page.keyboard.press("Escape")
            label_episode(page)
            if n == 0:
                shot(page, "episode")
            assert page.locator("#end").is_visible()
            page.keyboard.press("u")  # the next episode with questions left
        page.wait_for_url(re.compile(r"/\?message="))
        assert "every episode of the queue is labeled" in page.locator("#message").text_content()
        assert page.locator("#progress").text_content() == "10 of 10 episodes done"
        assert sorted(seen) == [f"ep-{i:02d}" for i in range(10)]

        page.goto(f"{live.base}/episode/ep-07")
        page.reload()
        assert chosen(page) == ["yes", "4", "yes", "no", "5", "yes"]
        page.goto(f"{live.base}/episode/{seen[0]}")
        rationale = page.locator(".q").first.locator(".rationale").input_value()
        assert rationale == "the tool call was right"
        assert errors == []
    finally:
        live.stop()
    answers = latest_answers(read_labels(run))
    assert len(answers) == 60
    assert {who for given in answers.values() for who in given} == {"human:ana"}


def test_undo_from_the_keyboard(browser, tmp_path, rubric):
    run = make_run(tmp_path / "run")
    live = LiveApp(Settings(run_dir=str(run), rubrics=[str(rubric)], annotator="ana"))
    try:
        page = browser.new_page()
        page.goto(live.url.replace("/?", "/episode/ep-02?"))
        label_episode(page, "y4")
        with page.expect_navigation():  # the page comes back with the answer taken back
            page.keyboard.press("z")
        assert chosen(page) == ["yes"]
        with page.expect_navigation():
            page.keyboard.press("z")
        assert chosen(page) == []
    finally:
        live.stop()
    assert [label.value for label in RunFolder(run).label_history()] == ["yes", "4", "", ""]


def _start_cli(run: Path, rubric: Path) -> tuple[subprocess.Popen, str]:
    root = str(Path(__file__).parents[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "simulate", "annotate", str(run), "--rubric", str(rubric),
         "--annotator", "ana", "--port", "0", "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": root},
    )  # fmt: skip
    line = process.stdout.readline()
    match = re.match(r"serving on (http://127\.0\.0\.1:\d+/\?token=\S+)", line)
    assert match, line + process.stderr.read()
    return process, match.group(1)


def test_a_killed_server_loses_no_answer(browser, tmp_path, rubric):
    run = make_run(tmp_path / "run")
    process, url = _start_cli(run, rubric)
    try:
        page = browser.new_page()
        page.goto(url.replace("/?", "/episode/ep-05?"))
        label_episode(page, "y4y")  # acknowledged as saved...
        os.kill(process.pid, signal.SIGKILL)  # ...then the server dies mid-session
        process.wait(10)
    finally:
        process.kill()
    process, url = _start_cli(run, rubric)
    try:
        page.goto(url.replace("/?", "/episode/ep-05?"))
        assert chosen(page) == ["yes", "4", "yes"]
        label_episode(page, "n")  # picks up at the first question left: reply 3's grounded
        assert chosen(page) == ["yes", "4", "yes", "no"]
        assert page.locator(".q").nth(3).get_attribute("data-turn") == "3"
    finally:
        process.send_signal(signal.SIGINT)  # a clean stop merges this session's shards
        out, _ = process.communicate(timeout=20)
    assert "stopped: 1 answers saved" in out
    by_time = sorted(read_labels(run), key=lambda label: label.created_at)  # two processes
    assert [label.value for label in by_time] == ["yes", "4", "yes", "no"]


def test_two_annotators_at_once_with_overlap_two_then_an_adjudication(browser, tmp_path, rubric):
    run = make_run(tmp_path / "run")
    settings = {"run_dir": str(run), "rubrics": [str(rubric)], "overlap": 2}
    ana = LiveApp(Settings(annotator="ana", **settings))
    bo = LiveApp(Settings(annotator="bo", **settings))
    try:
        pages = []
        for live in (ana, bo):
            page = browser.new_context().new_page()
            page.goto(live.url)
            page.keyboard.press("u")
            pages.append(page)
        done: list[set[str]] = [set(), set()]
        for _ in range(10):
            for page, keys, seen in zip(pages, (KEYS, "y4yn5n"), done, strict=True):
                page.wait_for_url(lambda url, seen=seen: url.rsplit("/", 1)[1] not in seen)
                seen.add(page.url.rsplit("/", 1)[1])
                for key in keys:  # both browsers type before either waits
                    page.keyboard.press(key)
            for page in pages:
                label_episode(page, "")
                page.keyboard.press("u")
        for page in pages:
            page.wait_for_url(re.compile(r"/\?message="))
        cy = LiveApp(Settings(annotator="cy", **settings))
        try:
            page = browser.new_context().new_page()
            page.goto(cy.url)
            assert page.locator("table.queue").text_content().count("Nothing to label") == 1
            assert page.locator("#progress").text_content() == "0 of 0 episodes done"
        finally:
            cy.stop()
    finally:
        ana.stop()
        bo.stop()
    answers = latest_answers(read_labels(run))
    assert len(answers) == 60
    assert all(sorted(given) == ["human:ana", "human:bo"] for given in answers.values())
    disputed = {slot for slot, given in answers.items() if given["human:ana"].value != given[
        "human:bo"].value}  # fmt: skip
    assert disputed == {(f"ep-{i:02d}", "resolved", None, None) for i in range(10)}

    lead = LiveApp(Settings(annotator="lead", adjudicate=True, **settings))
    try:
        page = browser.new_context().new_page()
        page.goto(lead.url)
        assert page.locator("a.episode-link").count() == 10
        shot(page, "adjudicate-queue")
        page.keyboard.press("u")
        page.wait_for_url(re.compile(r"/episode/"))
        assert page.locator(".q").count() == 1
        people = page.locator(".q .people li").all_text_contents()
        assert people == ["human:ana: yes", "human:bo: no"]
        label_episode(page, "n")
        shot(page, "adjudicate-episode")
    finally:
        lead.stop()
    (decision,) = [label for label in read_labels(run) if label.labeler_kind == "adjudicator"]
    assert (decision.labeler, decision.value) == ("adjudicator:lead", "no")


HOSTILE = [
    '<script>window.__pwned = "script"</script>',
    '<img src="http://198.51.100.7/x.png" onerror="window.__pwned = \'onerror\'">',
    "<a href=\"javascript:window.__pwned='link'\">click me</a>",
    "{{ 7 * 7 }} {% if true %}TEMPLATE{% endif %}",
    "![beacon](http://198.51.100.7/beacon.png?leak=1)",
    '"><svg onload="window.__pwned = \'svg\'">',
    "<style>body{background:url(http://198.51.100.7/css.png)}</style>",
]


def hostile_episode():
    text = "\n".join(HOSTILE)
    persona = Persona(id="mallory", name=HOSTILE[0], description=text, tags=[HOSTILE[2]])
    scenario = Scenario(id="xss", description=text, goal=HOSTILE[4], instructions=[HOSTILE[1]])
    bad = episode("ep-xss", text, text, text)
    messages = list(bad.messages)
    messages[1] = Message(
        role="assistant",
        content=text,
        tool_calls=[ToolCall(name=HOSTILE[5], arguments={"q": text}, result={"html": text})],
        context=HOSTILE,
    )
    return bad.model_copy(
        update={
            "persona": persona.model_dump_json(),
            "scenario": scenario.model_dump_json(),
            "messages": messages,
            "persona_id": "mallory",
        }
    )


def test_hostile_transcripts_render_as_text_and_load_nothing(browser, tmp_path):
    run = make_run(tmp_path / "run", [hostile_episode(), *ten_episodes()[:1]])
    rubric = write_rubric(tmp_path)
    rubric.write_text(
        rubric.read_text().replace("How polite is this reply?", HOSTILE[1]), encoding="utf-8"
    )
    live = LiveApp(Settings(run_dir=str(run), rubrics=[str(rubric)], annotator="ana"))
    requests: list[str] = []
    dialogs: list[str] = []
    try:
        context = browser.new_context()
        context.on("request", lambda r: requests.append(r.url))

        def refuse(route):  # nothing may leave 127.0.0.1; refuse it rather than send it
            if route.request.url.startswith(live.base):
                return route.continue_()
            return route.abort()

        context.route("**/*", refuse)
        page = context.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(live.url.replace("/?", "/episode/ep-xss?"))
        for details in page.locator("details").all():
            details.locator("summary").click()
        label_episode(page, "y")
        page.locator(".msg.user .text").first.click()
        shot(page, "hostile")
        assert page.evaluate("window.__pwned") is None
        assert page.locator(".msg.user .text").first.text_content() == "\n".join(HOSTILE)
        assert page.locator("main script, main img, main style, main svg, main iframe").count() == 0
        assert page.locator("a[href^='javascript']").count() == 0
        assert "{{ 7 * 7 }}" in page.content() and "49" not in page.locator("main").text_content()
        assert page.locator(".context-panel .persona .name").text_content().startswith(HOSTILE[0])
        assert page.locator(".tool-call summary").first.text_content() == f"tool call: {HOSTILE[5]}"
    finally:
        live.stop()
    assert dialogs == []
    assert requests and all(url.startswith(live.base) for url in requests), requests


def test_a_request_without_the_token_is_refused(browser, tmp_path, rubric):
    run = make_run(tmp_path / "run")
    live = LiveApp(Settings(run_dir=str(run), rubrics=[str(rubric)], annotator="ana"))
    try:
        page = browser.new_context().new_page()
        for path in ("/", "/episode/ep-00", "/static/app.js"):
            response = page.goto(live.base + path)
            assert response.status == 403
            assert "refused" in page.locator("body").text_content()
        response = page.goto(live.url)
        assert response.status == 200 and "token" not in page.url
    finally:
        live.stop()


class _EvilPage(http.server.BaseHTTPRequestHandler):
    """Another site on 127.0.0.1 (same *site*, so the cookie goes along) posting a form."""

    target = ""

    def do_GET(self) -> None:
        body = (
            f'<form id="f" method="post" action="{self.target}/api/answer">'
            '<input name="episode_id" value="ep-00"><input name="criterion" value="resolved">'
            '<input name="value" value="no"></form>'
            '<script>document.getElementById("f").submit()</script>'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_a_cross_site_form_post_is_refused(browser, tmp_path, rubric):
    run = make_run(tmp_path / "run")
    live = LiveApp(Settings(run_dir=str(run), rubrics=[str(rubric)], annotator="ana"))
    handler = type("Evil", (_EvilPage,), {"target": live.base})
    evil = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        page = browser.new_context().new_page()
        page.goto(live.url)  # the annotator has the app open: the cookie is set
        statuses: list[int] = []
        page.on(
            "response",
            lambda r: statuses.append(r.status) if r.url.endswith("/api/answer") else None,
        )
        with page.expect_response(lambda r: r.url.endswith("/api/answer")):
            page.goto(f"http://127.0.0.1:{evil.server_port}/")
        deadline = time.monotonic() + 5
        while not statuses and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert statuses == [403]
        assert "refused" in page.locator("body").text_content()
    finally:
        evil.shutdown()
        live.stop()
    assert read_labels(run) == []
