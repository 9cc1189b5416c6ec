"""A local stand-in for the Hugging Face Hub on 127.0.0.1, served from a thread.

    with FakeHubServer() as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_test"}  # huggingface_hub talks to it
        hub.fail("commit", status=500)          # the next commit answers 500 (or status=None: drop)
        hub.repos["acme/sim"].files, .private, .commits; hub.authorizations

Only what `HfApi.create_repo`, `list_repo_files`, `repo_info` and `create_commit` call is
served: `POST /api/repos/create`, `DELETE /api/repos/delete`, `GET
/api/datasets/<repo>/tree/<rev>`, `GET
/api/datasets/<repo>`, `POST /api/validate-yaml`, `POST /api/datasets/<repo>/preupload/<rev>` and
`POST /api/datasets/<repo>/commit/<rev>`. By default preupload answers `uploadMode: regular` for
every file, so contents travel base64-encoded inside the NDJSON commit. A commit applies all its
operations or none.

`FakeHubServer(lfs_suffixes=(".parquet",))` answers `uploadMode: lfs` for those files instead, as
the real Hub does for binary files, and serves the Git LFS upload that huggingface_hub then makes
(with Xet off, `HF_HUB_DISABLE_XET=1`: the fake has no Xet storage):

    POST /datasets/<repo>.git/info/lfs/objects/batch   route `lfs_batch`: answers `transfer: basic`
         and, per object not stored yet, an upload action and a verify action on this server
    PUT  /lfs-storage/<repo>/<sha256>                   route `lfs_upload`: stores the body in
         `hub.lfs_objects` when its sha256 and size are what the batch announced, else 400
    POST /lfs-verify/<repo>                             route `lfs_verify`: 200 when stored

and the commit's `lfsFile` entries take their bytes from `hub.lfs_objects` (400 when missing), so
`repo.files` holds the real contents either way and `repo.lfs` names the files that went by LFS.
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
    ("DELETE", re.compile(r"^/api/repos/delete$"), "delete"),
    ("POST", re.compile(r"^/api/validate-yaml$"), "validate_yaml"),
    ("GET", re.compile(rf"^/api/datasets/{_REPO}/tree/(?P<rev>[^/]+)(?:/.*)?$"), "tree"),
    ("POST", re.compile(rf"^/api/datasets/{_REPO}/preupload/(?P<rev>[^/]+)$"), "preupload"),
    ("POST", re.compile(rf"^/api/datasets/{_REPO}/commit/(?P<rev>[^/]+)$"), "commit"),
    ("GET", re.compile(rf"^/api/datasets/{_REPO}(?:/revision/[^/]+)?$"), "info"),
    ("POST", re.compile(rf"^/datasets/{_REPO}\.git/info/lfs/objects/batch$"), "lfs_batch"),
    ("PUT", re.compile(rf"^/lfs-storage/{_REPO}/(?P<oid>[0-9a-f]{{64}})$"), "lfs_upload"),
    ("POST", re.compile(rf"^/lfs-verify/{_REPO}$"), "lfs_verify"),
]


@dataclass
class FakeRepo:
    """One dataset repository: its files at the head, its visibility and its commits."""

    repo_id: str
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)
    """One entry per commit: `oid`, `summary`, `added` and `deleted` paths."""
    lfs: set[str] = field(default_factory=set)
    """The paths in `files` whose contents were committed as LFS pointers."""

    @property
    def sha(self) -> str:
        return self.commits[-1]["oid"] if self.commits else "0" * 40


class FakeHubServer:
    """The fake Hub: repositories in memory, the requests it saw, failures on demand."""

    def __init__(self, lfs_suffixes: tuple[str, ...] = ()) -> None:
        self.lfs_suffixes = lfs_suffixes
        """Files whose names end so are LFS files (preupload answers `lfs`); none by default."""
        self.lfs_objects: dict[str, bytes] = {}
        """sha256 -> contents of every LFS object PUT and checked."""
        self._announced: dict[str, int] = {}
        """sha256 -> size, of the objects an LFS batch request announced."""
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[tuple[str, str]] = []
        """(method, path) of every request, in order."""
        self.authorizations: list[str] = []
        """The `Authorization` header of every request (empty string when absent)."""
        self._faults: deque[tuple[str, str, int | None, bool]] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail(
        self,
        route: str,
        status: int | None = 500,
        echo_auth: bool = False,
        times: int = 1,
        path_contains: str = "",
    ) -> None:
        """Make the next ``times`` requests to ``route`` (`create`, `commit`, `lfs_upload`...)
        whose path contains ``path_contains`` fail: answer ``status`` (with `Retry-After: 0`, so
        huggingface_hub's retries of 5xx wait 1 s instead of backing off to 8 s), or drop the
        connection without an answer when ``status`` is None. ``echo_auth``: the error message
        quotes the request's Authorization header, as a careless proxy might."""
        with self._lock:
            self._faults.extend([(route, path_contains, status, echo_auth)] * times)

    def recover(self) -> None:
        """Forget the failures `fail` set up that have not happened yet."""
        with self._lock:
            self._faults.clear()

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

    def delete(self, body: bytes, **_: str) -> tuple[int, Any]:
        payload = json.loads(body)
        repo_id = f"{payload['organization']}/{payload['name']}"
        if self.repos.pop(repo_id, None) is None:
            return 404, {"error": "Repository not found"}
        return 200, {}

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
            | ({"lfs": _lfs_info(data)} if path in found.lfs else {})
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
                {"path": f["path"], "uploadMode": self._mode(f), "shouldIgnore": False, "oid": None}
                for f in files
            ]
        }

    def lfs_batch(self, repo: str, body: bytes, **_: str) -> tuple[int, Any]:
        found = self._repo(repo)
        if isinstance(found, tuple):
            return found
        payload = json.loads(body)
        if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", []):
            return 422, {"message": "this fake only takes basic LFS uploads"}
        objects = []
        for obj in payload["objects"]:
            oid, size = obj["oid"], obj["size"]
            entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if oid not in self.lfs_objects:
                self._announced[oid] = size
                entry["actions"] = {
                    "upload": {"href": f"{self.url}/lfs-storage/{repo}/{oid}", "header": {}},
                    "verify": {"href": f"{self.url}/lfs-verify/{repo}", "header": {}},
                }
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}

    def lfs_upload(self, oid: str, body: bytes, **_: str) -> tuple[int, Any]:
        if oid not in self._announced:
            return 400, {"message": f"no LFS batch announced {oid}"}
        if len(body) != self._announced[oid] or hashlib.sha256(body).hexdigest() != oid:
            return 400, {"message": f"the body is not object {oid} of the size announced"}
        self.lfs_objects[oid] = body
        return 200, {}

    def lfs_verify(self, body: bytes, **_: str) -> tuple[int, Any]:
        wanted = json.loads(body)
        stored = self.lfs_objects.get(wanted["oid"])
        if stored is None or len(stored) != wanted["size"]:
            return 404, {"message": f"object {wanted['oid']} is not stored"}
        return 200, {"message": "Everything looks good"}

    def commit(self, repo: str, body: bytes, **_: str) -> tuple[int, Any]:
        found = self._repo(repo)
        if isinstance(found, tuple):
            return found
        files, lfs = dict(found.files), set(found.lfs)
        added, deleted, summary = [], [], ""
        for line in body.decode().splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "header":
                summary = value["summary"]
            elif item["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
                lfs.discard(value["path"])
                added.append(value["path"])
            elif item["key"] == "lfsFile":
                stored = self.lfs_objects.get(value["oid"])
                if value.get("algo") != "sha256" or stored is None:
                    return 400, {"error": f"LFS object of {value['path']} was never uploaded"}
                files[value["path"]] = stored
                lfs.add(value["path"])
                added.append(value["path"])
            elif item["key"] == "deletedFile":
                if value["path"] not in files:
                    return 404, {"error": f"A file with this name doesn't exist: {value['path']}"}
                del files[value["path"]]
                lfs.discard(value["path"])
                deleted.append(value["path"])
            else:
                return 400, {"error": f"this fake does not take {item['key']!r} operations"}
        oid = hashlib.sha1(f"{found.sha}{body!r}".encode()).hexdigest()
        found.files, found.lfs = files, lfs
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

    def _mode(self, file: dict[str, Any]) -> str:
        """`lfs` for a non-empty file with an LFS suffix, else `regular`."""
        lfs = file["size"] > 0 and file["path"].endswith(self.lfs_suffixes)
        return "lfs" if lfs else "regular"

    def _web(self, repo_id: str) -> str:
        return f"{self.url}/datasets/{repo_id}"

    def _fault(self, route: str, path: str) -> tuple[bool, int | None, bool]:
        with self._lock:
            for index, (name, contains, status, echo_auth) in enumerate(self._faults):
                if name == route and contains in path:
                    del self._faults[index]
                    return True, status, echo_auth
        return False, None, False


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_info(data: bytes) -> dict[str, Any]:
    return {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}


def _handler(hub: FakeHubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def _body(self) -> bytes:
            """The request body, sent with a Content-Length or chunked."""
            if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)

        def _serve(self, method: str) -> None:
            path = unquote(urlsplit(self.path).path)
            body = self._body()
            with hub._lock:
                hub.requests.append((method, path))
                hub.authorizations.append(self.headers.get("Authorization", ""))
            for route_method, pattern, name in ROUTES:
                match = pattern.match(path)
                if route_method == method and match:
                    failing, status, echo_auth = hub._fault(name, path)
                    if failing and status is None:
                        self.close_connection = True
                        self.connection.close()  # no answer at all: a network failure
                        return
                    if failing:
                        seen = self.headers.get("Authorization", "")
                        error = f"refused {seen!r}" if echo_auth else "Internal Error (injected)"
                        self._answer(status or 500, {"error": error}, {"Retry-After": "0"})
                        return
                    with hub._lock:
                        code, payload = getattr(hub, name)(body=body, **match.groupdict())
                    self._answer(code, payload)
                    return
            self._answer(404, {"error": f"the fake Hub does not serve {method} {path}"})

        def _answer(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if status == 404:
                self.send_header("X-Error-Code", "RepoNotFound")
            self.end_headers()
            self.wfile.write(data)

    return Handler
