"""A local stand-in for the Hugging Face Hub on 127.0.0.1, served from a thread.

    with FakeHubServer() as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_test"}  # huggingface_hub talks to it
        hub.fail("commit", status=500)          # the next commit answers 500 (or status=None: drop)
        hub.repos["acme/sim"].files, .private, .commits; hub.authorizations

Only what `HfApi.create_repo`, `list_repo_files`, `repo_info` and `create_commit` call is
served: `POST /api/repos/create`, `GET /api/datasets/<repo>/tree/<rev>`, `GET
/api/datasets/<repo>`, `POST /api/validate-yaml`, `POST /api/datasets/<repo>/preupload/<rev>` and
`POST /api/datasets/<repo>/commit/<rev>`. Preupload answers `uploadMode: regular` for every file,
so contents travel base64-encoded inside the NDJSON commit and no LFS or Xet upload happens. A
commit applies all its operations or none.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

_REPO = r"(?P<repo>[^/]+/[^/]+)"
ROUTES = [
    ("POST", re.compile(r"^/api/repos/create$"), "create"),
    ("POST", re.compile(r"^/api/validate-yaml$"), "validate_yaml"),
    ("GET", re.compile(rf"^/api/datasets/{_REPO}/tree/(?P<rev>[^/]+)(?:/.*)?$"), "tree"),
    ("POST", re.compile(rf"^/api/datasets/{_REPO}/preupload/(?P<rev>[^/]+)$"), "preupload"),
    ("POST", re.compile(rf"^/api/datasets/{_REPO}/commit/(?P<rev>[^/]+)$"), "commit"),
    ("GET", re.compile(rf"^/api/datasets/{_REPO}(?:/revision/[^/]+)?$"), "info"),
]


@dataclass
class FakeRepo:
    """One dataset repository: its files at the head, its visibility and its commits."""

    repo_id: str
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)
    """One entry per commit: `oid`, `summary`, `added` and `deleted` paths."""

    @property
    def sha(self) -> str:
        return self.commits[-1]["oid"] if self.commits else "0" * 40


class FakeHubServer:
    """The fake Hub: repositories in memory, the requests it saw, failures on demand."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[tuple[str, str]] = []
        """(method, path) of every request, in order."""
        self.authorizations: list[str] = []
        """The `Authorization` header of every request (empty string when absent)."""
        self._faults: deque[tuple[str, int | None, bool]] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail(self, route: str, status: int | None = 500, echo_auth: bool = False) -> None:
        """Make the next request to ``route`` (`create`, `commit`...) fail: answer ``status``,
        or drop the connection without an answer when ``status`` is None. ``echo_auth``: the
        error message quotes the request's Authorization header, as a careless proxy might."""
        self._faults.append((route, status, echo_auth))

    def __enter__(self) -> FakeHubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- the routes -------------------------------------------------------------------------

    def create(self, body: bytes, **_: str) -> tuple[int, Any]:
        payload = json.loads(body)
        repo_id = f"{payload['organization']}/{payload['name']}"
        if payload.get("type") != "dataset":
            return 400, {"error": f"this fake serves datasets, not {payload.get('type')!r}"}
        if repo_id in self.repos:
            return 409, {
                "error": "You already created this dataset repo",
                "url": self._web(repo_id),
            }
        self.repos[repo_id] = FakeRepo(repo_id, private=payload.get("visibility") == "private")
        return 200, {"url": self._web(repo_id), "name": repo_id}

    def validate_yaml(self, body: bytes, **_: str) -> tuple[int, Any]:
        content = json.loads(body)["content"]
        match = re.match(r"^---\n(.*?)\n---\n", content, re.DOTALL)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else None
        except yaml.YAMLError as exc:
            return 400, {"errors": [{"message": f"invalid YAML: {exc}"}], "warnings": []}
        if not isinstance(metadata, dict):
            return 400, {"errors": [{"message": "no YAML metadata block"}], "warnings": []}
        return 200, {"errors": [], "warnings": []}

    def tree(self, repo: str, **_: str) -> tuple[int, Any]:
        found = self._repo(repo)
        if isinstance(found, tuple):
            return found
        return 200, [
            {"type": "file", "path": path, "size": len(data), "oid": _git_oid(data)}
            for path, data in sorted(found.files.items())
        ]

    def info(self, repo: str, **_: str) -> tuple[int, Any]:
        found = self._repo(repo)
        if isinstance(found, tuple):
            return found
        return 200, {
            "id": repo,
            "sha": found.sha,
            "private": found.private,
            "siblings": [{"rfilename": p} for p in sorted(found.files)],
        }

    def preupload(self, repo: str, body: bytes, **_: str) -> tuple[int, Any]:
        found = self._repo(repo)
        if isinstance(found, tuple):
            return found
        files = json.loads(body)["files"]
        return 200, {
            "files": [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                for f in files
            ]
        }

    def commit(self, repo: str, body: bytes, **_: str) -> tuple[int, Any]:
        found = self._repo(repo)
        if isinstance(found, tuple):
            return found
        files = dict(found.files)
        added, deleted, summary = [], [], ""
        for line in body.decode().splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "header":
                summary = value["summary"]
            elif item["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
                added.append(value["path"])
            elif item["key"] == "deletedFile":
                if value["path"] not in files:
                    return 404, {"error": f"A file with this name doesn't exist: {value['path']}"}
                del files[value["path"]]
                deleted.append(value["path"])
            else:
                return 400, {"error": f"this fake does not take {item['key']!r} operations"}
        oid = hashlib.sha1(f"{found.sha}{body!r}".encode()).hexdigest()
        found.files = files
        found.commits.append({"oid": oid, "summary": summary, "added": added, "deleted": deleted})
        return 200, {
            "success": True,
            "commitOid": oid,
            "commitUrl": f"{self._web(repo)}/commit/{oid}",
            "commitMessage": summary,
        }

    # --- helpers ----------------------------------------------------------------------------

    def _repo(self, repo_id: str) -> FakeRepo | tuple[int, Any]:
        found = self.repos.get(repo_id)
        return found if found is not None else (404, {"error": "Repository not found"})

    def _web(self, repo_id: str) -> str:
        return f"{self.url}/datasets/{repo_id}"

    def _fault(self, route: str) -> tuple[bool, int | None, bool]:
        with self._lock:
            for index, (name, status, echo_auth) in enumerate(self._faults):
                if name == route:
                    del self._faults[index]
                    return True, status, echo_auth
        return False, None, False


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _handler(hub: FakeHubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _serve(self, method: str) -> None:
            path = unquote(urlsplit(self.path).path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with hub._lock:
                hub.requests.append((method, path))
                hub.authorizations.append(self.headers.get("Authorization", ""))
            for route_method, pattern, name in ROUTES:
                match = pattern.match(path)
                if route_method == method and match:
                    failing, status, echo_auth = hub._fault(name)
                    if failing and status is None:
                        self.close_connection = True
                        self.connection.close()  # no answer at all: a network failure
                        return
                    if failing:
                        seen = self.headers.get("Authorization", "")
                        error = f"refused {seen!r}" if echo_auth else "Internal Error (injected)"
                        self._answer(status or 500, {"error": error})
                        return
                    with hub._lock:
                        code, payload = getattr(hub, name)(body=body, **match.groupdict())
                    self._answer(code, payload)
                    return
            self._answer(404, {"error": f"the fake Hub does not serve {method} {path}"})

        def _answer(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 404:
                self.send_header("X-Error-Code", "RepoNotFound")
            self.end_headers()
            self.wfile.write(data)

    return Handler
