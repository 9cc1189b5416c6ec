"""The labeling app: pages (queue, episode, agreement) and the two writes (answer, undo).

`AnnotateApp(settings)` loads the run's episodes and the rubric once, orders the queue, and
serves a Starlette app behind `guard.Guard`. Every answer goes through `labelstore.LabelStore`
and is on disk before the reply. Templates are Jinja2 with autoescaping (all transcript text
is data, never markup); the only script is the app's own `static/app.js`.
"""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from simulate.annotate.guard import Guard
from simulate.annotate.labelstore import LabelStore
from simulate.annotate.queue import (
    Filters,
    Item,
    Question,
    build_queue,
    latest_answers,
    people,
    prioritize,
    questions_of,
)
from simulate.errors import ConfigError, SimulateError
from simulate.label import make_label
from simulate.label.agreement import CriterionAgreement, criterion_report, group_ratings
from simulate.label.imports import check_annotator
from simulate.label.rubrics import criteria_of, load_rubric_specs
from simulate.schema import Episode, Label
from simulate.store import RunFolder

HERE = Path(__file__).parent
LOCAL_HOSTS = ("127.0.0.1", "localhost")
ANY_HOST = ("0.0.0.0", "::")


@dataclass
class Settings:
    """One `simulate annotate`."""

    run_dir: str
    rubrics: Sequence[str]
    annotator: str
    blind: bool = False
    overlap: int = 1
    adjudicate: bool = False
    host: str = "127.0.0.1"
    port: int = 8765
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def labeler(self) -> str:
        return f"{'adjudicator' if self.adjudicate else 'human'}:{self.annotator}"


def open_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one), or a ConfigError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, so uvicorn sets TCP_NODELAY (no 40 ms delayed-ACK stall per reply)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == 98 or "in use" in str(exc).lower():
            raise ConfigError(
                f"--port {port}: {host}:{port} is already in use; choose another --port "
                "(or --port 0 for any free one)"
            ) from None
        raise ConfigError(f"--host {host!r} --port {port}: cannot listen: {exc.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


class AnnotateApp:
    """The state of one labeling session and its ASGI app."""

    def __init__(self, settings: Settings) -> None:
        if settings.overlap < 1:
            raise ConfigError(f"--overlap {settings.overlap}: give 1 or more people per unit")
        check_annotator(settings.annotator)
        self.settings = settings
        self.store = LabelStore(settings.run_dir)
        rubrics = load_rubric_specs(settings.rubrics)
        if not rubrics:
            raise ConfigError("--rubric is required: a rubric file or a shipped name (support)")
        self.episodes: dict[str, Episode] = {
            e.episode_id: e for e in RunFolder(settings.run_dir).episodes()
        }
        if not self.episodes:
            raise ConfigError(f"{settings.run_dir!r} holds no episodes to label")
        pairs = criteria_of(rubrics)
        self.criteria = [c.id for _, c in pairs]
        self.questions = {i: questions_of(e, pairs) for i, e in self.episodes.items()}
        self.tags = {i: _tags(e) for i, e in self.episodes.items()}
        self.priority = prioritize(
            list(self.episodes.values()), self.questions, latest_answers(self.store.labels())
        )
        self.csrf = secrets.token_urlsafe(24)
        self.undo_stack: list[Label] = []
        self.skipped: set[str] = set()
        self.saved = 0
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        env.filters["pretty"] = _pretty
        self.templates = Jinja2Templates(env=env)

    # --- the app ------------------------------------------------------------------------------

    def asgi(self) -> Guard:
        """The Starlette app behind the guard."""
        app = Starlette(
            routes=[
                Route("/", self.queue_page),
                Route("/episode/{episode_id:str}", self.episode_page),
                Route("/next", self.next_episode),
                Route("/agreement", self.agreement_page),
                Route("/api/answer", self.answer, methods=["POST"]),
                Route("/api/undo", self.undo, methods=["POST"]),
                Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
            ]
        )
        # on every interface the Host header is whatever name reaches the machine: the token
        # (which a rebinding page does not have) is then the whole protection
        hosts = {"*"} if self.settings.host in ANY_HOST else {*LOCAL_HOSTS, self.settings.host}
        return Guard(
            app,
            token=self.settings.token,
            csrf=self.csrf,
            cookie=f"simulate-annotate-{self.settings.port}",
            hosts=hosts,
        )

    def url(self) -> str:
        """The address to open, with the token."""
        host = self.settings.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.settings.port}/?token={self.settings.token}"

    # --- the queue ----------------------------------------------------------------------------

    def _answers(self) -> dict[Any, dict[str, Label]]:
        return latest_answers(self.store.labels())

    def _queue(self, filters: Filters) -> list[Item]:
        keep = {i for i, e in self.episodes.items() if filters.keeps(e, self.tags[i])}
        questions = {
            i: [q for q in asked if filters.asks(q)] for i, asked in self.questions.items()
        }
        return build_queue(
            self.priority,
            questions,
            self._answers(),
            labeler=self.settings.labeler,
            overlap=self.settings.overlap,
            adjudicate=self.settings.adjudicate,
            keep=keep,
        )

    def _base(self, request: Request, filters: Filters, items: list[Item]) -> dict[str, Any]:
        query = _filter_query(filters)
        return {
            "settings": self.settings,
            "labeler": self.settings.labeler,
            "run_name": Path(self.settings.run_dir).name or self.settings.run_dir,
            "csrf": self.csrf,
            "filters": filters,
            "query": query,
            "done": sum(item.done for item in items),
            "total": len(items),
        }

    async def queue_page(self, request: Request) -> Response:
        filters = _filters(request)
        items = self._queue(filters)
        options = {
            "persona": sorted({e.persona_id for e in self.episodes.values()}),
            "scenario": sorted({e.scenario_id for e in self.episodes.values()}),
            "outcome": sorted({e.outcome.status.value for e in self.episodes.values()}),
            "tag": sorted(set().union(*self.tags.values())),
            "criterion": self.criteria,
        }
        context = {
            **self._base(request, filters, items),
            "items": items,
            "episodes": self.episodes,
            "options": options,
            "message": request.query_params.get("message", ""),
        }
        return self.templates.TemplateResponse(request, "queue.html", context)

    async def next_episode(self, request: Request) -> Response:
        """Redirect to the next (or previous, `step=-1`) episode of the queue.

        `unlabeled=1` goes to the next episode with questions left; `skip=1` also sets the
        current episode aside for this session.
        """
        filters = _filters(request)
        params = request.query_params
        current = params.get("from", "")
        if params.get("skip") == "1" and current:
            self.skipped.add(current)
        items = self._queue(filters)
        ids = [item.episode_id for item in items]
        start = ids.index(current) if current in ids else -1
        query = _filter_query(filters)
        if params.get("unlabeled") == "1":
            ring = ids[start + 1 :] + ids[: start + 1]
            open_items = {item.episode_id for item in items if not item.done}
            fresh = [i for i in ring if i in open_items and i not in self.skipped]
            target = next(iter(fresh or [i for i in ring if i in open_items]), None)
        else:
            step = -1 if params.get("step") == "-1" else 1
            index = start + step if start >= 0 or step == 1 else len(ids) - 1
            target = ids[index] if 0 <= index < len(ids) else None
        if target is None:
            message = "every episode of the queue is labeled" if items else "the queue is empty"
            return RedirectResponse(
                "/?" + _join(query, urlencode({"message": message})), status_code=303
            )
        return RedirectResponse(f"/episode/{target}" + (f"?{query}" if query else ""), 303)

    # --- the episode page ---------------------------------------------------------------------

    async def episode_page(self, request: Request) -> Response:
        episode_id = request.path_params["episode_id"]
        episode = self.episodes.get(episode_id)
        if episode is None:
            return Response("no such episode in this run", status_code=404)
        filters = _filters(request)
        items = self._queue(filters)
        answers = self._answers()
        item = next((i for i in items if i.episode_id == episode_id), None)
        asked = (
            item.questions
            if item is not None
            else [q for q in self.questions[episode_id] if filters.asks(q)]
        )
        if self.settings.adjudicate and item is None:
            asked = []
        views = [self._question_view(q, answers.get(q.slot, {})) for q in asked]
        by_unit: dict[tuple[int | None, int | None], list[dict[str, Any]]] = {}
        for view in views:
            by_unit.setdefault(view["unit"], []).append(view)
        context = {
            **self._base(request, filters, items),
            "episode": episode,
            "messages": _messages(episode, by_unit),
            "episode_questions": by_unit.get((None, None), []),
            "persona": json.loads(episode.persona),
            "scenario": json.loads(episode.scenario),
            "item": item,
            "position": [i.episode_id for i in items].index(episode_id) + 1 if item else None,
        }
        return self.templates.TemplateResponse(request, "episode.html", context)

    def _question_view(self, question: Question, answers: dict[str, Label]) -> dict[str, Any]:
        mine = answers.get(self.settings.labeler)
        criterion = question.criterion
        values = criterion.allowed_values()
        reveal = mine is not None or not self.settings.blind
        return {
            "id": "q-" + "-".join(str(p) for p in question.slot[1:] if p is not None),
            "unit": (question.unit.turn_index, question.unit.tool_call_index),
            "slot": question.slot,
            "criterion": criterion,
            "choices": values,
            "shortcuts": _keys(criterion.kind, values),
            "answer": mine.value if mine else None,
            "rationale": mine.rationale if mine else "",
            "suggestions": _suggestions(answers) if reveal else [],
            "hidden": not reveal,
            "people": [
                {"labeler": who, "value": label.value, "rationale": label.rationale}
                for who, label in sorted(people(answers).items())
            ]
            if self.settings.adjudicate
            else [],
        }

    # --- writes -------------------------------------------------------------------------------

    async def answer(self, request: Request) -> Response:
        """Save one answer; reply with what the page shows next (suggestions, progress)."""
        try:
            body = await request.json()
            question = self._find(body)
            value = body.get("value")
            rationale = body.get("rationale") or ""
            if not isinstance(rationale, str):
                raise ValueError("rationale must be text")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if value not in question.criterion.allowed_values():
            allowed = ", ".join(question.criterion.allowed_values())
            return JSONResponse(
                {"error": f"value {value!r} is not allowed; allowed: {allowed}"}, status_code=400
            )
        label = self._label(question, value, rationale.strip())
        self.store.save(label)
        self.undo_stack.append(label)
        self.saved += 1
        return JSONResponse(self._after(question))

    async def undo(self, request: Request) -> Response:
        """Take back this session's last answer: the earlier answer returns, or none."""
        if not self.undo_stack:
            return JSONResponse({"error": "nothing to undo in this session"}, status_code=409)
        last = self.undo_stack.pop()
        question = self._find(
            {
                "episode_id": last.episode_id,
                "criterion": last.criterion,
                "turn_index": last.turn_index,
                "tool_call_index": last.tool_call_index,
            }
        )
        earlier = [
            label
            for label in self.store.labels()
            if label.labeler == last.labeler
            and (label.episode_id, label.criterion, label.turn_index, label.tool_call_index)
            == question.slot
            and label.created_at < last.created_at
        ]
        earlier.sort(key=lambda label: label.created_at)
        previous = earlier[-1] if earlier else None
        value = previous.value if previous else ""
        restored = self._label(question, value, previous.rationale if previous else "undone")
        self.store.save(restored)
        return JSONResponse({"episode_id": last.episode_id, "restored": value or None})

    def _find(self, body: dict[str, Any]) -> Question:
        """The question a request names, or ValueError."""
        episode_id = body["episode_id"]
        slot = (episode_id, body["criterion"], body.get("turn_index"), body.get("tool_call_index"))
        for question in self.questions.get(episode_id, []):
            if question.slot == slot:
                return question
        raise ValueError(f"no such question: {slot!r}")

    def _label(self, question: Question, value: str, rationale: str) -> Label:
        """This annotator's label for ``question``; an empty ``value`` withdraws the answer."""
        kind = "adjudicator" if self.settings.adjudicate else "human"
        # microseconds: two answers within one second still have an order
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        if not value:
            return Label(
                episode_id=question.episode_id,
                criterion=question.criterion.id,
                turn_index=question.unit.turn_index,
                tool_call_index=question.unit.tool_call_index,
                value="",
                rationale=rationale,
                labeler=self.settings.labeler,
                labeler_kind=kind,
                rubric=question.rubric,
                created_at=now,
            )
        label = make_label(
            question.episode_id,
            question.criterion,
            question.unit,
            value,
            labeler=self.settings.labeler,
            kind=kind,
            rationale=rationale,
            rubric=question.rubric,
        )
        return label.model_copy(update={"created_at": now})

    def _after(self, question: Question) -> dict[str, Any]:
        answers = self._answers()
        items = self._queue(Filters())
        item = next((i for i in items if i.episode_id == question.episode_id), None)
        return {
            "saved": True,
            "suggestions": _suggestions(answers.get(question.slot, {})),
            "done": sum(i.done for i in items),
            "total": len(items),
            "episode_done": bool(item and item.done),
        }

    # --- agreement ----------------------------------------------------------------------------

    async def agreement_page(self, request: Request) -> Response:
        sections: list[CriterionAgreement] = []
        problem = ""
        try:
            grouped = group_ratings(self.store.labels())
            sections = [
                criterion_report(name, grouped[name])
                for name in sorted(grouped)
                if len(grouped[name]) >= 2
            ]
        except SimulateError as exc:
            problem = str(exc)
        if not sections and not problem:
            problem = "no criterion has answers from two labelers yet"
        context = {
            **self._base(request, Filters(), self._queue(Filters())),
            "sections": sections,
            "problem": problem,
        }
        return self.templates.TemplateResponse(request, "agreement.html", context)

    def compact(self) -> Path | None:
        """Merge this session's one-answer shards into one (on a clean stop)."""
        return self.store.compact()


# --- helpers for the views --------------------------------------------------------------------


def _tags(episode: Episode) -> set[str]:
    persona = json.loads(episode.persona)
    scenario = json.loads(episode.scenario)
    return set(persona.get("tags", [])) | set(scenario.get("tags", []))


FILTER_NAMES = ("persona", "scenario", "outcome", "tag", "criterion")


def _filters(request: Request) -> Filters:
    params = request.query_params
    return Filters(**{name: params.get(name, "") for name in FILTER_NAMES})


def _filter_query(filters: Filters) -> str:
    return urlencode({n: getattr(filters, n) for n in FILTER_NAMES if getattr(filters, n)})


def _join(*parts: str) -> str:
    return "&".join(p for p in parts if p)


def _keys(kind: str, values: list[str]) -> list[str]:
    """The key that answers each value: y/n for yes and no, else 1, 2, 3… in order."""
    if kind == "binary":
        return ["y", "n"]
    return [str(i + 1) if i < 9 else "" for i in range(len(values))]


def _suggestions(answers: dict[str, Label]) -> list[dict[str, Any]]:
    """Judges' and rules' answers of a question, shown as suggestions."""
    return [
        {
            "labeler": who,
            "kind": label.labeler_kind,
            "value": label.value,
            "rationale": label.rationale,
            "split": label.spread or 0,
        }
        for who, label in sorted(answers.items())
        if label.labeler_kind in ("judge", "rule")
    ]


def _messages(
    episode: Episode, by_unit: dict[tuple[int | None, int | None], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Messages with the questions asked of each reply and each tool call."""
    views = []
    for index, message in enumerate(episode.messages):
        views.append(
            {
                "index": index,
                "message": message,
                "questions": by_unit.get((index, None), []),
                "calls": [
                    {"call": call, "questions": by_unit.get((index, j), [])}
                    for j, call in enumerate(message.tool_calls)
                ],
            }
        )
    return views


def _pretty(value: Any) -> str:
    """JSON for people: indented, non-ASCII kept (escaped by the template like any text)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
