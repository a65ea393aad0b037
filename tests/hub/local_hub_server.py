"""A minimal in-memory Hugging Face Hub on 127.0.0.1, for push/pull tests without the network.

It implements just enough of the Hub's HTTP API for the real `huggingface_hub` client (`HfApi.create_repo`,
`upload_folder`, `hf_hub_download`, `snapshot_download`, `list_repo_tree`, `model_info`) and therefore for
`PreTrainedModel.push_to_hub` / `AutoModel.from_pretrained(repo_id)` when `HF_ENDPOINT` points at it:

| Route | Used by |
|---|---|
| `POST /api/repos/create` | `create_repo` (409 with the repo url when it exists, as the Hub does) |
| `POST /api/validate-yaml` | `upload_folder` checks a `README.md`'s metadata first (see [`validate_card_metadata`]) |
| `POST /api/models/{repo}/preupload/{rev}` | upload mode per file: always `"regular"`, so contents come inline |
| `POST /api/models/{repo}/commit/{rev}` | the NDJSON commit (`header`, base64 `file`, `deletedFile`, `deletedFolder`) |
| `GET /api/models/{repo}[/revision/{rev}]` | `model_info` / `repo_info` (`sha`, `siblings`) |
| `GET /api/models/{repo}/tree/{rev}[/{path}]` | `list_repo_tree` / `list_repo_files` (`?recursive=`) |
| `HEAD`/`GET /{repo}/resolve/{rev}/{path}` | `hf_hub_download` (`X-Repo-Commit`, `ETag`, `Content-Length`) |

Answering `"regular"` for every file means no LFS or Xet transfer is ever started, whatever the client has
installed (with `hf_xet` the client takes its pipelined upload path, which commits regular files the same way).
Errors carry the Hub's `X-Error-Code` header (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`), so the client
raises the same exception types as against the real Hub.

Bounded: requests larger than `max_request_bytes` are refused (413), and a watchdog stops the server after
`max_lifetime_s` seconds even if a test forgets to. Use it as a context manager:

```python
with LocalHubServer() as hub:
    HfApi(endpoint=hub.url).create_repo("user/model")
```
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


DEFAULT_NAMESPACE = "local-user"
_API_REPO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?P<rest>/.*)?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


def git_blob_sha1(data: bytes) -> str:
    """The git blob id of `data` (what the Hub reports as a regular file's `oid` / `ETag`)."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def validate_card_metadata(content: str) -> list[str]:
    """Errors the Hub would report for a model card's YAML metadata (a subset of its checks); `[]` when valid.

    Checked: the front matter is a mapping; `library_name` and `pipeline_tag` are strings; `tags` and `datasets` are
    lists of strings; `base_model` holds model ids; `model-index` entries have a `name` and `results` whose items carry
    `task.type`, `dataset.name`, `dataset.type` and `metrics` with a `type` and a `value` each.
    """
    import yaml

    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, flags=re.DOTALL)
    if not match:
        return []
    try:
        data = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as error:
        return [f"Invalid YAML: {error}"]
    if not isinstance(data, dict):
        return ["The metadata must be a mapping."]
    errors = []
    for key in ("library_name", "pipeline_tag", "license"):
        if key in data and not isinstance(data[key], str):
            errors.append(f'"{key}" must be a string')
    for key in ("tags", "datasets"):
        value = data.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            errors.append(f'"{key}" must be a list of strings')
    base = data.get("base_model")
    for model_id in [base] if isinstance(base, str) else base or []:
        if not isinstance(model_id, str) or not _HUB_ID.match(model_id):
            errors.append(f'"base_model" must hold model ids, got {model_id!r}')
    for entry in data.get("model-index") or []:
        if not isinstance(entry, dict) or "name" not in entry or not isinstance(entry.get("results"), list):
            errors.append('"model-index" entries need a "name" and a list of "results"')
            continue
        for result in entry["results"]:
            task, dataset, metrics = result.get("task") or {}, result.get("dataset") or {}, result.get("metrics")
            if "type" not in task or not {"name", "type"} <= set(dataset) or not isinstance(metrics, list):
                errors.append('"model-index" results need task.type, dataset.name, dataset.type and metrics')
            elif not all(isinstance(m, dict) and "type" in m and "value" in m for m in metrics):
                errors.append('"model-index" metrics need a "type" and a "value"')
    return errors


class _Repo:
    def __init__(self, repo_id: str, private: bool):
        self.repo_id = repo_id
        self.private = private
        self.commits: dict[str, dict[str, bytes]] = {}
        self.branches: dict[str, str] = {}
        self.messages: list[str] = []
        initial = {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}
        self._commit("main", initial, "initial commit")

    def _commit(self, branch: str, files: dict[str, bytes], message: str) -> str:
        sha = hashlib.sha1(f"{self.repo_id}:{len(self.commits)}:{time.time_ns()}".encode()).hexdigest()
        self.commits[sha] = files
        self.branches[branch] = sha
        self.messages.append(message)
        return sha

    def resolve(self, revision: str) -> str | None:
        revision = unquote(revision)
        if revision in self.branches:
            return self.branches[revision]
        return revision if revision in self.commits else None


class LocalHubServer:
    """An in-memory Hub served by a `ThreadingHTTPServer` on 127.0.0.1 (see the module docstring).

    Args:
        max_request_bytes: largest accepted request body.
        max_lifetime_s: the watchdog stops the server after this many seconds.

    Attributes:
        url: the endpoint, e.g. `http://127.0.0.1:54321` (set `HF_ENDPOINT` or pass `endpoint=` to `HfApi`).
        repos: repo id -> stored repo; [`LocalHubServer.files`] gives a repo's current files.
        requests: `(method, path)` of every request served, for assertions.
    """

    def __init__(self, max_request_bytes: int = 256 * 1024 * 1024, max_lifetime_s: float = 300.0):
        self.max_request_bytes = max_request_bytes
        self.max_lifetime_s = max_lifetime_s
        self.repos: dict[str, _Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Timer | None = None

    # -------------------------------------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("The server is not running.")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalHubServer:
        hub = self

        class Handler(_HubHandler):
            server_state = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        self._watchdog = threading.Timer(self.max_lifetime_s, self.stop)
        self._watchdog.daemon = True
        self._watchdog.start()
        return self

    def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self) -> LocalHubServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------------ state

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The files of `repo_id` at `revision` (path -> content)."""
        repo = self.repos[repo_id]
        return dict(repo.commits[repo.resolve(revision)])


class _HubHandler(BaseHTTPRequestHandler):
    server_state: LocalHubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
        pass

    # ---------------------------------------------------------------------------------------------- helpers

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False):
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "application/json")
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, payload, headers: dict[str, str] | None = None, head: bool = False):
        self._send(status, json.dumps(payload).encode(), headers, head)

    def _error(self, status: int, code: str | None, message: str, head: bool = False):
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._json(status, {"error": message}, headers, head)

    def _body(self) -> bytes:
        return self._request_body

    def _repo(self, repo_id: str, head: bool = False) -> _Repo | None:
        repo = self.server_state.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found.", head)
        return repo

    def _snapshot(self, repo: _Repo, revision: str, head: bool = False) -> tuple[str, dict[str, bytes]] | None:
        sha = repo.resolve(revision)
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(revision)}", head)
            return None
        return sha, repo.commits[sha]

    # -------------------------------------------------------------------------------------------- dispatch

    def do_HEAD(self):  # noqa: N802 - http.server naming
        self._dispatch("HEAD")

    def do_GET(self):  # noqa: N802
        self._dispatch("GET")

    def do_POST(self):  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        state = self.server_state
        state.requests.append((method, path))
        # Read the whole body first (bounded), so that an early error never leaves bytes on a kept-alive connection.
        length = int(self.headers.get("Content-Length") or 0)
        if length > state.max_request_bytes:
            self.close_connection = True
            return self._error(413, None, "Request too large for the local test hub.", method == "HEAD")
        self._request_body = self.rfile.read(length) if length else b""
        try:
            with state._lock:
                if method == "POST" and path == "/api/repos/create":
                    return self._create_repo()
                if method == "POST" and path == "/api/validate-yaml":
                    return self._validate_yaml()
                match = _API_REPO.match(path)
                if match:
                    return self._api(method, unquote(match["repo"]), match["rest"] or "", query)
                match = _RESOLVE.match(path)
                if match and method in ("GET", "HEAD"):
                    return self._resolve(method, unquote(match["repo"]), match["rev"], unquote(match["path"]))
                self._error(404, None, f"No route for {method} {path} in the local test hub.", method == "HEAD")
        except Exception as error:  # a bug in the fake hub must show up in the client's error, not hang it
            self._error(500, None, f"Local test hub error: {type(error).__name__}: {error}", method == "HEAD")

    # ------------------------------------------------------------------------------------------------ routes

    def _create_repo(self) -> None:
        body = self._body()
        payload = json.loads(body or b"{}")
        if payload.get("type", "model") not in (None, "model"):
            return self._error(400, None, "The local test hub only stores model repositories.")
        repo_id = f"{payload.get('organization') or DEFAULT_NAMESPACE}/{payload['name']}"
        url = f"{self.server_state.url}/{repo_id}"
        if repo_id in self.server_state.repos:
            return self._json(409, {"error": "You already created this model repo", "url": url})
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        self.server_state.repos[repo_id] = _Repo(repo_id, private)
        self._json(200, {"url": url, "name": repo_id})

    def _validate_yaml(self) -> None:
        payload = json.loads(self._body() or b"{}")
        errors = validate_card_metadata(payload.get("content", ""))
        self._json(400 if errors else 200, {"errors": [{"message": m} for m in errors], "warnings": []})

    def _api(self, method: str, repo_id: str, rest: str, query: dict[str, list[str]]) -> None:
        head = method == "HEAD"
        repo = self._repo(repo_id, head)
        if repo is None:
            return
        parts = [unquote(part) for part in rest.split("/") if part]
        if method == "GET" and (not parts or parts[0] == "revision"):
            revision = parts[1] if len(parts) > 1 else "main"
            return self._model_info(repo, revision)
        if method == "GET" and parts and parts[0] == "tree" and len(parts) >= 2:
            recursive = (query.get("recursive") or ["false"])[0].lower() in ("1", "true")
            return self._tree(repo, parts[1], "/".join(parts[2:]), recursive)
        if method == "POST" and len(parts) == 2 and parts[0] == "preupload":
            return self._preupload(repo, parts[1])
        if method == "POST" and len(parts) == 2 and parts[0] == "commit":
            return self._commit(repo, parts[1])
        self._error(404, None, f"No route for {method} /api/models/{repo_id}{rest} in the local test hub.", head)

    def _model_info(self, repo: _Repo, revision: str) -> None:
        snapshot = self._snapshot(repo, revision)
        if snapshot is None:
            return
        sha, files = snapshot
        siblings = [
            {"rfilename": path, "size": len(data), "blobId": git_blob_sha1(data)} for path, data in files.items()
        ]
        self._json(
            200,
            {
                "_id": sha[:24],
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": sha,
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "tags": [],
                "siblings": sorted(siblings, key=lambda s: s["rfilename"]),
            },
        )

    def _tree(self, repo: _Repo, revision: str, folder: str, recursive: bool) -> None:
        snapshot = self._snapshot(repo, revision)
        if snapshot is None:
            return
        _, files = snapshot
        prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
        entries: dict[str, dict] = {}
        for path, data in files.items():
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix) :].split("/")
            # Every folder on the way down is listed (only the first level when not recursive).
            for depth in range(1, len(parts) if recursive else min(len(parts), 2)):
                folder_path = prefix + "/".join(parts[:depth])
                entries.setdefault(
                    folder_path,
                    {"type": "directory", "oid": hashlib.sha1(folder_path.encode()).hexdigest(), "path": folder_path},
                )
            if recursive or len(parts) == 1:
                entries[path] = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path}
        if prefix and not entries:
            return self._error(404, "EntryNotFound", f"{folder} does not exist on {revision}")
        self._json(200, [entries[key] for key in sorted(entries)])

    def _preupload(self, repo: _Repo, revision: str) -> None:
        body = self._body()
        snapshot = self._snapshot(repo, revision)
        if snapshot is None:
            return
        _, files = snapshot
        answer = []
        for item in json.loads(body)["files"]:
            existing = files.get(item["path"])
            answer.append(
                {
                    "path": item["path"],
                    "uploadMode": "regular",  # contents come inline in the commit: no LFS, no Xet
                    "shouldIgnore": False,
                    "oid": git_blob_sha1(existing) if existing is not None else None,
                }
            )
        self._json(200, {"files": answer, "commitOid": snapshot[0]})

    def _commit(self, repo: _Repo, revision: str) -> None:
        body = self._body()
        branch = unquote(revision)
        if branch not in repo.branches:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {branch}")
        files = dict(repo.commits[repo.branches[branch]])
        message = ""
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value.get("summary", "")
                parent = value.get("parentCommit")
                if parent is not None and parent != repo.branches[branch]:
                    return self._error(412, None, "parentCommit is not the head of the branch.")
            elif key == "file":
                if value.get("encoding", "base64") != "base64":
                    return self._error(400, None, f"Unsupported encoding {value.get('encoding')!r}.")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {path: data for path, data in files.items() if not path.startswith(prefix)}
            else:  # lfsFile: never requested, since preupload answers "regular" for every file
                return self._error(400, None, f"The local test hub does not store {key!r} entries.")
        sha = repo._commit(branch, files, message)
        self._json(
            200,
            {
                "success": True,
                "commitOid": sha,
                "commitUrl": f"{self.server_state.url}/{repo.repo_id}/commit/{sha}",
                "pullRequestUrl": None,
                "hookOutput": "",
            },
        )

    def _resolve(self, method: str, repo_id: str, revision: str, path: str) -> None:
        head = method == "HEAD"
        repo = self._repo(repo_id, head)
        if repo is None:
            return
        snapshot = self._snapshot(repo, revision, head)
        if snapshot is None:
            return
        sha, files = snapshot
        data = files.get(path)
        if data is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist on {unquote(revision)}", head)
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Repo-Commit": sha,
            "ETag": f'"{git_blob_sha1(data)}"',
        }
        self._send(200, data, headers, head)


__all__ = ["DEFAULT_NAMESPACE", "LocalHubServer", "git_blob_sha1", "validate_card_metadata"]
