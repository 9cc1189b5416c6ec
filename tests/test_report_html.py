"""report.html: self-contained, escaped, every link lands, and it renders in headless Chromium.

The browser test needs Python Playwright and /usr/bin/chromium; without them it is skipped,
unless SIMULATE_REQUIRE_BROWSER=1 (CI), where it fails.
"""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_cli import simulate_cli
from test_report_figures import make_episode, write_planted_run

from simulate.report.figures import build_report
from simulate.report.html import rate_chart, render_report, write_report_html

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory) -> Path:
    """`simulate demo` ends by writing RUN/report.html and printing the headline figures."""
    run = tmp_path_factory.mktemp("demo") / "run"
    result = simulate_cli("demo", "--out", str(run), "-q")
    assert result.returncode == 0, result.stderr
    assert re.search(r"goal rate \d+% \(\d+%–\d+%, n=\d+\)", result.stdout)
    assert "pass^1" in result.stdout and "simulator health" in result.stdout
    assert f"report: {run}/report.html" in result.stdout
    return run / "report.html"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.tags.add(tag)
        if values.get("id"):
            self.ids.add(values["id"])  # type: ignore[arg-type]
        if tag == "a" and values.get("href"):
            self.hrefs.append(values["href"])  # type: ignore[arg-type]
        if values.get("src"):
            self.srcs.append(values["src"])  # type: ignore[arg-type]


def test_the_page_is_self_contained_and_every_link_lands(demo_report):
    html = demo_report.read_text(encoding="utf-8")
    links = _Links()
    links.feed(html)
    assert not links.tags & {"script", "link", "img", "iframe"}
    assert not links.srcs
    assert "@import" not in html and "url(" not in html
    # the SVG namespace is the only URL in the page, and it is never fetched
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) == {"http://www.w3.org/2000/svg"}
    assert links.hrefs and all(h.startswith("#") for h in links.hrefs)
    assert {h[1:] for h in links.hrefs} <= links.ids
    assert html.count("<svg") == 4


def test_text_is_escaped(tmp_path):
    hostile = '<script>alert("x")</script><img src=http://evil.example/x.png>'
    episodes = [
        make_episode(
            "ana", "s", 0, status="gave_up", messages=[("user", hostile), ("assistant", "?")]
        ),
        make_episode("ana", "s", 1),
    ]
    html = render_report(build_report(write_planted_run(tmp_path / "run", episodes)))
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


def test_rate_chart_whiskers_are_the_interval_and_show_n(tmp_path):
    episodes = [
        make_episode("ana", "s", t, status="goal_reached" if t else "gave_up") for t in range(4)
    ]
    report = build_report(write_planted_run(tmp_path / "run", episodes))
    chart = rate_chart([s for s in report.slices if s.dimension == "persona"])
    (bar,) = chart["bars"]
    rate = report.slices[0].goal_rate.model_dump()
    assert bar["low"] == pytest.approx(chart["x0"] + rate["low"] * chart["plot_w"])
    assert bar["high"] == pytest.approx(chart["x0"] + rate["high"] * chart["plot_w"])
    assert bar["width"] == pytest.approx(0.75 * chart["plot_w"])
    assert bar["text"] == "75% · n=4"


def test_the_file_is_replaced_whole(tmp_path):
    episodes = [make_episode("ana", "s", 0)]
    run = write_planted_run(tmp_path / "run", episodes)
    path = write_report_html(build_report(run), run / "report.html")
    assert path.read_text(encoding="utf-8").rstrip().endswith("</html>")
    assert not list(run.glob(".*.tmp"))


def _browser_available() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return CHROMIUM.exists()


def test_report_renders_in_headless_chromium(demo_report, tmp_path):
    if not _browser_available():
        if os.environ.get("SIMULATE_REQUIRE_BROWSER") == "1":
            pytest.fail("SIMULATE_REQUIRE_BROWSER=1 but playwright or /usr/bin/chromium is missing")
        pytest.skip("playwright or /usr/bin/chromium missing")
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    external: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            def route(r):
                if not r.request.url.startswith("file://"):
                    external.append(r.request.url)
                    return r.abort()
                return r.continue_()

            page.route("**/*", route)
            page.goto(demo_report.as_uri())
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            charts = page.locator("svg.chart")
            assert charts.count() == 4
            assert charts.first.bounding_box()["height"] > 100
            assert page.locator("svg.chart .whisker").count() > 0
            link = page.locator("#failures a.example").first
            target = link.get_attribute("href")
            link.click()
            transcript = page.locator(target)
            transcript.wait_for(state="visible")
            assert page.evaluate("location.hash") == target
            assert transcript.locator(".msg.assistant").count() > 0
            assert transcript.locator(".msg.wrong").count() >= 1
            box = transcript.bounding_box()
            assert box is not None and -5 < box["y"] < 900  # scrolled into view
        finally:
            browser.close()
    assert errors == []
    assert external == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000


def test_an_incomplete_run_is_flagged_on_the_page(tmp_path):
    run = write_planted_run(tmp_path / "run", [make_episode("ana", "s", t) for t in range(3)])
    report = build_report(run)
    assert 'id="incomplete"' not in render_report(report)
    report.run.planned, report.run.status = 10, "running"
    html = render_report(report)
    assert 'id="incomplete"' in html
    assert "Incomplete run: 3 of 10 planned episodes are stored (run status running)" in html


def test_a_slice_with_nothing_rated_draws_no_whisker(tmp_path):
    # Every episode of bob ended in a target error: no rate, so no 0%–100% whisker drawn as
    # if it had been measured; ana's slice keeps its whisker.
    episodes = [make_episode("bob", "s", t, status="target_error") for t in range(3)]
    episodes += [make_episode("ana", "s", t) for t in range(3)]
    report = build_report(write_planted_run(tmp_path / "run", episodes))
    chart = rate_chart([s for s in report.slices if s.dimension == "persona"])
    bars = {bar["label"]: bar for bar in chart["bars"]}
    assert bars["bob"]["low"] is None and bars["bob"]["high"] is None
    assert bars["bob"]["text"] == "n/a · n=0" and "interval" not in bars["bob"]["title"]
    assert bars["ana"]["low"] is not None
    html = render_report(report)
    svg = html.split('aria-label="goal rate per persona"')[1].split("</svg>")[0]
    assert svg.count('class="whisker"') == 3  # ana's three lines only


def test_long_labels_and_unbroken_words_stay_on_the_page(tmp_path):
    # Stress-pack ids are long (`language-switching.german_speaker`) and a user may send a
    # 3,000-character word: chart labels must not run off the chart's left edge, and nothing
    # may widen the page past the window.
    if not _browser_available():
        if os.environ.get("SIMULATE_REQUIRE_BROWSER") == "1":
            pytest.fail("SIMULATE_REQUIRE_BROWSER=1 but playwright or /usr/bin/chromium is missing")
        pytest.skip("playwright or /usr/bin/chromium missing")
    from playwright.sync_api import sync_playwright

    word = "a" * 3000
    ids = ["language-switching.german_speaker", "x" * 90, "ana"]
    episodes = [
        make_episode(
            persona,
            "system-prompt-extraction.repeat_the_text_above",
            t,
            status="gave_up" if t else "goal_reached",
            messages=[("user", f"hi {word}"), ("assistant", "?"), ("user", f"hi {word}")],
        )
        for persona in ids
        for t in range(2)
    ]
    report = build_report(write_planted_run(tmp_path / "run", episodes))
    chart = rate_chart([s for s in report.slices if s.dimension == "persona"])
    labels = {bar["label"] for bar in chart["bars"]}
    assert "language-switching.german_speaker" in labels  # whole: the column grew for it
    assert any(label.startswith("xxx") and label.endswith("…") for label in labels)
    page_file = write_report_html(report, tmp_path / "report.html")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(page_file.as_uri())
            for svg in page.locator("svg.chart").all():
                left = svg.bounding_box()["x"]
                for label in svg.locator("text.label").all():
                    assert label.bounding_box()["x"] >= left - 0.5, label.text_content()
            assert page.evaluate("document.documentElement.scrollWidth") <= 1200
        finally:
            browser.close()


@pytest.fixture(scope="module")
def realism_report(tmp_path_factory) -> Path:
    """A demo run measured against the shipped Taskmaster sample, then reported."""
    from click.testing import CliRunner

    from simulate.cli import cli

    root = tmp_path_factory.mktemp("realism")
    sample = Path(__file__).parent / "data" / "taskmaster" / "sample.json"
    for args in (
        ["demo", "--out", str(root / "run"), "-q"],
        ["import", "conversations", str(sample), "-o", str(root / "ref")],
        ["realism", str(root / "run"), "--reference", str(root / "ref"), "--resamples", "100"],
        ["report", str(root / "run")],
    ):
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return root / "run" / "report.html"


def test_the_realism_section_renders_in_headless_chromium(realism_report):
    html = realism_report.read_text(encoding="utf-8")
    links = _Links()
    links.feed(html)
    assert {h[1:] for h in links.hrefs} <= links.ids
    assert html.count("<svg") == 5  # the four run charts and the realism chart
    if not _browser_available():
        if os.environ.get("SIMULATE_REQUIRE_BROWSER") == "1":
            pytest.fail("SIMULATE_REQUIRE_BROWSER=1 but playwright or /usr/bin/chromium is missing")
        pytest.skip("playwright or /usr/bin/chromium missing")
    from playwright.sync_api import sync_playwright

    from simulate.report.realism import load_realism

    measured = load_realism(realism_report.parent)
    assert measured is not None
    errors: list[str] = []
    external: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("pageerror", lambda e: errors.append(str(e)))

            def route(r):
                if not r.request.url.startswith("file://"):
                    external.append(r.request.url)
                    return r.abort()
                return r.continue_()

            page.route("**/*", route)
            page.goto(realism_report.as_uri() + "#realism")
            section = page.locator("#realism")
            section.wait_for(state="visible")
            box = section.bounding_box()
            assert box is not None and box["height"] > 600 and -5 < box["y"] < 900
            auc = page.locator("#realism-auc .big").text_content()
            assert auc == f"{measured.discriminator.auc.value:,.2f}"
            chart = section.locator("svg.chart")
            assert chart.count() == 1 and chart.bounding_box()["height"] > 200
            assert chart.locator("rect.sim").count() == chart.locator("rect.hum").count() == 7
            assert chart.locator(".whisker").count() >= 7
            rows = page.locator("#realism-measures tr")
            assert rows.count() == len(measured.measures) + 1
            giveaways = page.locator("#realism-giveaways tr")
            assert giveaways.count() == min(12, len(measured.discriminator.giveaways)) + 1
            first = measured.discriminator.giveaways[0].feature
            assert giveaways.nth(1).locator("code").text_content() == first
            for label in chart.locator("text.label").all():
                assert label.bounding_box()["x"] >= chart.bounding_box()["x"] - 0.5
            assert page.evaluate("document.documentElement.scrollWidth") <= 1200
        finally:
            browser.close()
    assert errors == [] and external == []
