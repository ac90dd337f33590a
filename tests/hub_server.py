"""A small Hugging Face Hub API server for tests: loopback only, standard library only.

It answers the HTTP calls that ``huggingface_hub`` 2.4 makes for repository creation,
commits (regular files sent inline, base64), branches, tags, repo info, tree listings
and file downloads, closely enough that ``huggingface_hub`` and ``transformers`` raise
their own errors (``RepositoryNotFoundError``, ``RevisionNotFoundError``,
``EntryNotFoundError``) from its answers. What it does not implement it answers with a
loud 501 JSON error and records in ``HubState.unhandled``, so tests can assert that no
unknown endpoint was hit (no answer is ever guessed).

Storage is in memory: content-addressed blobs (git blob sha1, the ``oid`` the Hub
reports for regular files), commits with real sha1 ids, per-branch history. A commit
is parsed and validated completely before it is applied under a lock: a malformed
commit, or one that fails midway, leaves the branch where it was.

Usage::

    server = HubServer().start()          # free port on 127.0.0.1, background thread
    env = server.env(hf_home="/tmp/x")    # HF_ENDPOINT, HF_TOKEN, HF_HOME, ... for a subprocess
    ...
    server.stop()

or standalone: ``python tests/hub_server.py --port 8999`` (prints the endpoint and token).

Why subprocesses: ``huggingface_hub`` reads ``HF_ENDPOINT`` once, at import, and
``transformers`` keeps one shared ``HfApi``; a test process that already imported them
cannot be pointed at this server. Run pushes and pulls in child processes with
``server.env(...)``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import os
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

try:  # PyYAML ships with huggingface_hub; used only to read README front matter.
    import yaml as _yaml
except Exception:  # pragma: no cover - optional
    _yaml = None

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
DEFAULT_BRANCH = "main"

# What the Hub puts in the initial commit of a new repository (shortened list).
INITIAL_GITATTRIBUTES = (
    "*.bin filter=lfs diff=lfs merge=lfs -text\n"
    "*.h5 filter=lfs diff=lfs merge=lfs -text\n"
    "*.onnx filter=lfs diff=lfs merge=lfs -text\n"
    "*.pt filter=lfs diff=lfs merge=lfs -text\n"
    "*.pth filter=lfs diff=lfs merge=lfs -text\n"
    "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    "*.zip filter=lfs diff=lfs merge=lfs -text\n"
).encode()

# Endpoints huggingface_hub calls on a best-effort basis and that may 404 on a Hub:
# answered 404 and recorded separately (``HubState.optional_misses``), not as unhandled.
OPTIONAL_404 = {("GET", "/api/agent-harnesses")}

_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def git_blob_oid(content: bytes) -> str:
    """The git blob sha1: what the Hub reports as ``oid`` for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + (
        "%03dZ" % int((ts % 1) * 1000)
    )


class HubError(Exception):
    """An error answer: status, JSON ``error`` message and optional ``X-Error-Code``."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})


@dataclass
class Commit:
    oid: str
    parent: str | None
    files: dict[str, str]  # path -> blob oid (the full tree at this commit)
    title: str
    message: str
    author: str
    timestamp: float
    changes: dict[str, list[str]] = field(default_factory=dict)  # added / modified / deleted
    # What the commit request carried: paths sent as file contents, and deletions.
    payload: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: float
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]


class HubState:
    """All repositories, blobs, tokens and the request log of one server."""

    def __init__(self, user: str = "test-user", token: str = "hf_test_token_write",
                 read_token: str = "hf_test_token_read", orgs: tuple[str, ...] = ("test-org",)):
        self.lock = threading.RLock()
        self.user = user
        self.orgs = list(orgs)
        # token -> (user, role)
        self.tokens: dict[str, tuple[str, str]] = {token: (user, "write"), read_token: (user, "read")}
        self.repos: dict[tuple[str, str], Repo] = {}
        self.blobs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.unhandled: list[tuple[str, str]] = []
        self.optional_misses: list[tuple[str, str]] = []
        self._commit_failures: list[dict] = []
        self._clock = 0

    # -- fault injection ---------------------------------------------------------------
    def fail_commits(self, times: int = 1, status: int = 500, after_lines: int | None = None) -> None:
        """Make the next ``times`` commit requests fail with ``status``.

        The failure happens after ``after_lines`` NDJSON lines were read and validated
        (all of them if None), i.e. midway through the commit: nothing is applied.
        """
        with self.lock:
            self._commit_failures.extend({"status": status, "after_lines": after_lines} for _ in range(times))

    def clear_failures(self) -> None:
        with self.lock:
            self._commit_failures.clear()

    # -- helpers used by tests -----------------------------------------------------------
    def get_repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def head(self, repo_id: str, revision: str = DEFAULT_BRANCH, repo_type: str = "model") -> str:
        return self.get_repo(repo_id, repo_type).branches[revision]

    def history(self, repo_id: str, revision: str = DEFAULT_BRANCH, repo_type: str = "model") -> list[Commit]:
        """Commits reachable from ``revision``, newest first."""
        with self.lock:
            repo = self.get_repo(repo_id, repo_type)
            out, oid = [], self._resolve(repo, revision)
            while oid is not None:
                out.append(repo.commits[oid])
                oid = repo.commits[oid].parent
            return out

    def files(self, repo_id: str, revision: str = DEFAULT_BRANCH, repo_type: str = "model") -> dict[str, bytes]:
        with self.lock:
            repo = self.get_repo(repo_id, repo_type)
            commit = repo.commits[self._resolve(repo, revision)]
            return {p: self.blobs[o] for p, o in commit.files.items()}

    # -- internals --------------------------------------------------------------------
    def _now(self) -> float:
        # Strictly increasing timestamps, so two commits never share one.
        with self.lock:
            self._clock = max(self._clock + 0.001, time.time())
            return self._clock

    def _resolve(self, repo: Repo, revision: str) -> str:
        rev = revision
        for prefix in ("refs/heads/", "refs/tags/"):
            if rev.startswith(prefix):
                rev = rev[len(prefix):]
        if rev in repo.branches:
            return repo.branches[rev]
        if rev in repo.tags:
            return repo.tags[rev]
        if _COMMIT_RE.match(rev) and rev in repo.commits:
            return rev
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _make_commit(self, repo: Repo, parent: str | None, files: dict[str, str], title: str,
                     message: str, author: str, changes: dict[str, list[str]]) -> Commit:
        ts = self._now()
        tree = hashlib.sha1(json.dumps(sorted(files.items())).encode()).hexdigest()
        body = f"tree {tree}\nparent {parent}\nauthor {author} {ts:.6f}\n\n{title}\n\n{message}"
        oid = hashlib.sha1(b"commit %d\0" % len(body.encode()) + body.encode()).hexdigest()
        commit = Commit(oid, parent, dict(files), title, message, author, ts, changes)
        repo.commits[oid] = commit
        return commit


def _readme_metadata(content: bytes | None) -> dict | None:
    if content is None or _yaml is None:
        return None
    text = content.decode("utf-8", errors="replace")
    m = re.match(r"^\s*---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|$)", text, flags=re.S)
    if not m:
        return None
    try:
        data = _yaml.safe_load(m.group(1))
    except Exception:
        return None
    return data if isinstance(data, dict) else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hf-charrnn-test-hub/1.0"
    state: HubState  # set on the subclass built by HubServer

    # --------------------------------------------------------------- plumbing
    def log_message(self, format: str, *args: Any) -> None:  # silence stderr
        pass

    def _read_body(self) -> bytes:
        if getattr(self, "_body", None) is not None:
            return self._body
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self._body = b"".join(chunks)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            self._body = self.rfile.read(length) if length else b""
        return self._body

    def _json_body(self) -> Any:
        body = self._read_body()
        try:
            return json.loads(body or b"{}")
        except ValueError:
            raise HubError(400, "Request body is not valid JSON")

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None,
              content_type: str = "application/json", head_only: bool = False,
              content_length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if content_length is None else content_length))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head_only and body:
            self.wfile.write(body)
        with self.state.lock:
            self.state.requests.append((self.command, self.path, status))

    def _send_json(self, status: int, obj: Any, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers, head_only=self.command == "HEAD")

    def _send_error(self, err: HubError) -> None:
        headers = dict(err.headers)
        if err.code:
            headers["X-Error-Code"] = err.code
        headers["X-Error-Message"] = err.message
        self._send(err.status, json.dumps({"error": err.message}).encode(), headers,
                   head_only=self.command == "HEAD")

    def _dispatch(self) -> None:
        self._body = None
        split = urllib.parse.urlsplit(self.path)
        raw_segments = split.path.split("/")[1:]
        segments = [urllib.parse.unquote(s) for s in raw_segments]
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        try:
            handled = self._route(segments, query)
            if not handled:
                key = (self.command, split.path)
                if key in OPTIONAL_404:
                    with self.state.lock:
                        self.state.optional_misses.append(key)
                    raise HubError(404, f"Not found: {split.path}")
                with self.state.lock:
                    self.state.unhandled.append((self.command, self.path))
                raise HubError(501, f"hub_server: endpoint not implemented: {self.command} {split.path}")
        except HubError as err:
            if self.command in ("POST", "PUT", "DELETE"):
                try:
                    self._read_body()  # drain, keep the connection usable
                except Exception:
                    pass
            self._send_error(err)
        except Exception as exc:  # a bug in this server: say so loudly
            self._send_error(HubError(500, f"hub_server internal error: {type(exc).__name__}: {exc}"))

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    # --------------------------------------------------------------- auth
    def _auth_user(self, required: bool = False, write: bool = False) -> str | None:
        header = self.headers.get("Authorization")
        if not header:
            if required:
                raise HubError(401, "You must be authenticated to access this resource")
            return None
        if not header.lower().startswith("bearer "):
            raise HubError(401, "Invalid credentials in Authorization header")
        token = header[7:].strip()
        entry = self.state.tokens.get(token)
        if entry is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        user, role = entry
        if write and role != "write":
            raise HubError(403, "You don't have the rights to write with this token (read-only token)")
        return user

    def _can_write_namespace(self, user: str, namespace: str) -> bool:
        return namespace == user or namespace in self.state.orgs

    def _get_repo(self, repo_type: str, repo_id: str, write: bool = False) -> Repo:
        user = self._auth_user(write=write)
        repo = self.state.repos.get((repo_type, repo_id))
        not_found = HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        if repo is None:
            raise not_found
        if repo.private and (user is None or not self._can_write_namespace(user, repo.namespace)):
            raise not_found
        if write:
            if user is None:
                raise HubError(401, "You must be authenticated to write to this repository")
            if not self._can_write_namespace(user, repo.namespace):
                raise HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    # --------------------------------------------------------------- routing
    def _route(self, seg: list[str], query: dict) -> bool:
        m = self.command
        if seg and seg[0] == "api":
            rest = seg[1:]
            if rest == ["whoami-v2"] and m == "GET":
                return self._whoami()
            if rest == ["repos", "create"] and m == "POST":
                return self._create_repo()
            if rest == ["repos", "delete"] and m == "DELETE":
                return self._delete_repo()
            if rest == ["validate-yaml"] and m == "POST":
                return self._validate_yaml()
            if len(rest) >= 3 and rest[0] in REPO_TYPES:
                repo_type = REPO_TYPES[rest[0]]
                repo_id = f"{rest[1]}/{rest[2]}"
                tail = rest[3:]
                return self._repo_api(repo_type, repo_id, tail, query)
            if len(rest) == 2 and rest[0] in REPO_TYPES and m == "GET":
                # /api/models/{name} without namespace: no such repo here.
                raise HubError(401 if self.headers.get("Authorization") is None else 404,
                               "Repository not found", "RepoNotFound")
            return False
        # /{prefix}{ns}/{name}/resolve/{rev}/{path...}
        repo_type = "model"
        if seg and seg[0] in ("datasets", "spaces"):
            repo_type = REPO_TYPES[seg[0]]
            seg = seg[1:]
        if len(seg) >= 5 and seg[2] == "resolve" and m in ("GET", "HEAD"):
            return self._resolve_file(repo_type, f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
        return False

    def _repo_api(self, repo_type: str, repo_id: str, tail: list[str], query: dict) -> bool:
        m = self.command
        if not tail and m == "GET":
            return self._repo_info(repo_type, repo_id, None, query)
        if len(tail) == 2 and tail[0] == "revision" and m == "GET":
            return self._repo_info(repo_type, repo_id, tail[1], query)
        if len(tail) >= 2 and tail[0] == "tree" and m == "GET":
            return self._tree(repo_type, repo_id, tail[1], "/".join(tail[2:]), query)
        if tail == ["refs"] and m == "GET":
            return self._refs(repo_type, repo_id, query)
        if len(tail) == 2 and tail[0] == "commits" and m == "GET":
            return self._commits(repo_type, repo_id, tail[1])
        if len(tail) == 2 and tail[0] == "paths-info" and m == "POST":
            return self._paths_info(repo_type, repo_id, tail[1])
        if len(tail) == 2 and tail[0] == "preupload" and m == "POST":
            return self._preupload(repo_type, repo_id, tail[1], query)
        if len(tail) == 2 and tail[0] == "commit" and m == "POST":
            return self._commit(repo_type, repo_id, tail[1], query)
        if len(tail) == 2 and tail[0] == "branch" and m in ("POST", "DELETE"):
            return self._branch(repo_type, repo_id, tail[1])
        if len(tail) == 2 and tail[0] == "tag" and m in ("POST", "DELETE"):
            return self._tag(repo_type, repo_id, tail[1])
        return False

    # --------------------------------------------------------------- endpoints
    def _whoami(self) -> bool:
        user = self._auth_user(required=True)
        role = next(r for t, (u, r) in self.state.tokens.items()
                    if self.headers["Authorization"][7:].strip() == t)
        self._send_json(200, {
            "type": "user", "id": hashlib.sha1(user.encode()).hexdigest()[:24], "name": user,
            "fullname": user, "email": f"{user}@example.invalid", "emailVerified": True,
            "isPro": False, "canPay": False, "periodEnd": None,
            "orgs": [{"type": "org", "name": o, "fullname": o, "roleInOrg": "admin"} for o in self.state.orgs],
            "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": role}},
        })
        return True

    def _create_repo(self) -> bool:
        user = self._auth_user(required=True, write=True)
        payload = self._json_body()
        name = payload.get("name")
        namespace = payload.get("organization") or user
        repo_type = payload.get("type") or "model"
        if repo_type not in URL_PREFIX:
            raise HubError(400, f"Invalid repo type: {repo_type}")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", name) \
                or ".." in name or "--" in name or name.endswith(".git"):
            raise HubError(400, f"Invalid repo name: {name!r}")
        if not self._can_write_namespace(user, namespace):
            raise HubError(403, f"You don't have the rights to create a repo under the namespace {namespace}")
        repo_id = f"{namespace}/{name}"
        url = f"{self._endpoint()}/{URL_PREFIX[repo_type]}{repo_id}"
        if payload.get("visibility") is not None:
            private = payload["visibility"] == "private"
        else:
            private = bool(payload.get("private", False))
        with self.state.lock:
            if (repo_type, repo_id) in self.state.repos:
                self._send_json(409, {"error": f"You already created this {repo_type} repo", "url": url})
                return True
            repo = Repo(repo_type, repo_id, private, self.state._now())
            self.state.blobs[git_blob_oid(INITIAL_GITATTRIBUTES)] = INITIAL_GITATTRIBUTES
            commit = self.state._make_commit(
                repo, None, {".gitattributes": git_blob_oid(INITIAL_GITATTRIBUTES)}, "initial commit", "",
                user, {"added": [".gitattributes"], "modified": [], "deleted": []})
            repo.branches[DEFAULT_BRANCH] = commit.oid
            self.state.repos[(repo_type, repo_id)] = repo
        self._send_json(200, {"url": url, "name": repo_id, "id": repo_id})
        return True

    def _delete_repo(self) -> bool:
        user = self._auth_user(required=True, write=True)
        payload = self._json_body()
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or user}/{payload.get('name')}"
        with self.state.lock:
            self._get_repo(repo_type, repo_id, write=True)
            del self.state.repos[(repo_type, repo_id)]
        self._send_json(200, {})
        return True

    def _validate_yaml(self) -> bool:
        payload = self._json_body()
        content = payload.get("content", "")
        errors: list[dict] = []
        if _yaml is not None:
            text = content if isinstance(content, str) else ""
            m = re.match(r"^\s*---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|$)", text, flags=re.S)
            if m:
                try:
                    data = _yaml.safe_load(m.group(1))
                    if data is not None and not isinstance(data, dict):
                        errors.append({"message": "YAML metadata must be a mapping"})
                    elif isinstance(data, dict):
                        for key in ("tags", "datasets"):
                            if key in data and not isinstance(data[key], (list, str)):
                                errors.append({"message": f'"{key}" must be an array of strings'})
                        if "model-index" in data and not isinstance(data["model-index"], list):
                            errors.append({"message": '"model-index" must be an array'})
                except Exception as exc:
                    errors.append({"message": f"Invalid YAML: {exc}"})
        if errors:
            self._send_json(400, {"errors": errors, "warnings": []})
        else:
            self._send_json(200, {"errors": [], "warnings": []})
        return True

    def _file_entry(self, path: str, oid: str, repo: Repo | None = None, commit: Commit | None = None,
                    expand: bool = False) -> dict:
        entry = {"type": "file", "oid": oid, "size": len(self.state.blobs[oid]), "path": path}
        if expand and repo is not None and commit is not None:
            last = commit
            c = commit
            while c.parent is not None:
                parent = repo.commits[c.parent]
                if parent.files.get(path) != oid:
                    break
                last = c = parent
            entry["lastCommit"] = {"id": last.oid, "title": last.title, "date": _iso(last.timestamp)}
        return entry

    def _dir_entry(self, path: str, files: dict[str, str]) -> dict:
        inner = sorted((p, o) for p, o in files.items() if p.startswith(path + "/"))
        oid = hashlib.sha1(json.dumps(inner).encode()).hexdigest()
        return {"type": "directory", "oid": oid, "size": 0, "path": path}

    def _repo_info(self, repo_type: str, repo_id: str, revision: str | None, query: dict) -> bool:
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id)
            oid = self.state._resolve(repo, revision or DEFAULT_BRANCH)
            commit = repo.commits[oid]
            blobs = query.get("blobs", ["false"])[-1].lower() in ("1", "true")
            siblings = []
            for path in sorted(commit.files):
                sib: dict[str, Any] = {"rfilename": path}
                if blobs:
                    sib["size"] = len(self.state.blobs[commit.files[path]])
                    sib["blobId"] = commit.files[path]
                siblings.append(sib)
            readme = self.state.blobs.get(commit.files.get("README.md", ""))
            card = _readme_metadata(readme)
            info: dict[str, Any] = {
                "_id": hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24],
                "id": repo_id,
                "author": repo.namespace,
                "sha": oid,
                "lastModified": _iso(commit.timestamp),
                "createdAt": _iso(repo.created_at),
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
            }
            if card is not None:
                info["cardData"] = card
                tags = card.get("tags") or []
                info["tags"] = [tags] if isinstance(tags, str) else list(tags)
                if repo_type == "model":
                    if card.get("library_name"):
                        info["library_name"] = card["library_name"]
                    if card.get("pipeline_tag"):
                        info["pipeline_tag"] = card["pipeline_tag"]
                    if card.get("model-index"):
                        info["model-index"] = card["model-index"]
            if repo_type == "model" and "config.json" in commit.files:
                try:
                    cfg = json.loads(self.state.blobs[commit.files["config.json"]])
                    info["config"] = {k: cfg[k] for k in ("architectures", "model_type", "auto_map") if k in cfg}
                except ValueError:
                    pass
            expand = query.get("expand") or query.get("expand[]")
            if expand:
                info = {k: v for k, v in info.items() if k in set(expand) | {"_id", "id"}}
        self._send_json(200, info)
        return True

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str, query: dict) -> bool:
        recursive = query.get("recursive", ["false"])[-1].lower() in ("1", "true")
        expand = query.get("expand", ["false"])[-1].lower() in ("1", "true")
        path = path.strip("/")
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id)
            oid = self.state._resolve(repo, revision)
            commit = repo.commits[oid]
            files = commit.files
            prefix = path + "/" if path else ""
            if path and not any(p.startswith(prefix) for p in files):
                headers = {"X-Repo-Commit": oid}
                if path in files:
                    raise HubError(404, f"{path} is a file, not a directory", "EntryNotFound", headers)
                raise HubError(404, "Entry not found", "EntryNotFound", headers)
            entries: dict[str, dict] = {}
            for p, blob in sorted(files.items()):
                if not p.startswith(prefix):
                    continue
                rel = p[len(prefix):].split("/")
                # directories along the way
                for depth in range(1, len(rel)):
                    if not recursive and depth > 1:
                        break
                    d = prefix + "/".join(rel[:depth])
                    if d not in entries:
                        entries[d] = self._dir_entry(d, files)
                if recursive or len(rel) == 1:
                    entries[p] = self._file_entry(p, blob, repo, commit, expand)
            out = sorted(entries.values(), key=lambda e: (e["type"] != "directory", e["path"]))
        self._send_json(200, out)
        return True

    def _refs(self, repo_type: str, repo_id: str, query: dict) -> bool:
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id)
            data = {
                "branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": o}
                             for b, o in sorted(repo.branches.items())],
                "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": o}
                         for t, o in sorted(repo.tags.items())],
                "converts": [],
            }
            if query.get("include_prs"):
                data["pullRequests"] = []
        self._send_json(200, data)
        return True

    def _commits(self, repo_type: str, repo_id: str, revision: str) -> bool:
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id)
            oid: str | None = self.state._resolve(repo, revision)
            out = []
            while oid is not None:
                c = repo.commits[oid]
                out.append({"id": c.oid, "title": c.title, "message": c.message,
                            "authors": [{"user": c.author}], "date": _iso(c.timestamp)})
                oid = c.parent
        self._send_json(200, out)
        return True

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> bool:
        ctype = self.headers.get("Content-Type", "")
        body = self._read_body()
        if "json" in ctype:
            payload = json.loads(body or b"{}")
            paths = payload.get("paths", [])
            expand = bool(payload.get("expand", False))
        else:
            form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
            paths = form.get("paths", [])
            expand = form.get("expand", ["false"])[-1].lower() in ("1", "true")
        if isinstance(paths, str):
            paths = [paths]
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id)
            oid = self.state._resolve(repo, revision)
            commit = repo.commits[oid]
            out = []
            for p in paths:
                p = p.strip("/")
                if p in commit.files:
                    out.append(self._file_entry(p, commit.files[p], repo, commit, expand))
                elif p and any(f.startswith(p + "/") for f in commit.files):
                    out.append(self._dir_entry(p, commit.files))
        self._send_json(200, out)
        return True

    def _preupload(self, repo_type: str, repo_id: str, revision: str, query: dict) -> bool:
        if query.get("create_pr"):
            raise HubError(501, "hub_server: pull requests (create_pr) are not implemented")
        payload = self._json_body()
        files = payload.get("files")
        if not isinstance(files, list):
            raise HubError(400, "preupload: 'files' must be a list")
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id, write=True)
            if revision not in repo.branches:
                self.state._resolve(repo, revision)  # RevisionNotFound if unknown
                raise HubError(400, f"Can only upload to a branch, not to {revision}")
            commit = repo.commits[repo.branches[revision]]
            out = []
            for f in files:
                if not isinstance(f, dict) or not isinstance(f.get("path"), str):
                    raise HubError(400, "preupload: each file needs a 'path'")
                entry = {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                if f["path"] in commit.files:
                    entry["oid"] = commit.files[f["path"]]
                out.append(entry)
        self._send_json(200, {"files": out, "commitOid": commit.oid})
        return True

    def _commit(self, repo_type: str, repo_id: str, revision: str, query: dict) -> bool:
        if query.get("create_pr"):
            raise HubError(501, "hub_server: pull requests (create_pr) are not implemented")
        user = self._auth_user(required=True, write=True)
        # Permission and revision checks before reading the (possibly large) body.
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id, write=True)
            if revision not in repo.branches:
                self.state._resolve(repo, revision)
                raise HubError(400, f"Can only commit to a branch, not to {revision}")
            failure = self.state._commit_failures.pop(0) if self.state._commit_failures else None
        body = self._read_body()
        # 1. Parse and validate everything; nothing is applied yet.
        lines = [ln for ln in body.split(b"\n") if ln.strip()]
        if not lines:
            raise HubError(400, "Empty commit payload")
        header = None
        ops: list[tuple[str, str, bytes | None]] = []
        for i, raw in enumerate(lines):
            if failure is not None and failure["after_lines"] is not None and i >= failure["after_lines"]:
                raise HubError(failure["status"], f"hub_server: injected failure after {i} commit lines")
            try:
                item = json.loads(raw)
                key, value = item["key"], item["value"]
            except (ValueError, KeyError, TypeError):
                raise HubError(400, f"Malformed commit payload at line {i + 1}")
            if i == 0:
                if key != "header" or not isinstance(value, dict):
                    raise HubError(400, "The first line of a commit payload must be its header")
                header = value
                continue
            if key == "header":
                raise HubError(400, f"Duplicate header at line {i + 1}")
            if not isinstance(value, dict) or not isinstance(value.get("path"), str):
                raise HubError(400, f"Malformed operation at line {i + 1}")
            path = value["path"]
            if key in ("file", "deletedFile") and not _valid_path(path):
                raise HubError(400, f"Invalid path in repo: {path!r}")
            if key == "file":
                if value.get("encoding") != "base64" or not isinstance(value.get("content"), str):
                    raise HubError(400, f"Unsupported file encoding at line {i + 1} (expected base64)")
                try:
                    content = base64.b64decode(value["content"], validate=True)
                except ValueError:
                    raise HubError(400, f"Invalid base64 content for {path}")
                ops.append(("add", path, content))
            elif key == "deletedFile":
                ops.append(("delete", path, None))
            elif key == "deletedFolder":
                ops.append(("delete_folder", path.strip("/"), None))
            elif key == "lfsFile":
                raise HubError(
                    422,
                    f"hub_server: lfsFile operations are not supported ({path}): this server answers "
                    "uploadMode 'regular' at preupload, so file contents must come inline as 'file' lines")
            else:
                raise HubError(400, f"Unknown commit operation {key!r} at line {i + 1}")
        if failure is not None:
            raise HubError(failure["status"], "hub_server: injected failure while applying the commit")
        summary = header.get("summary") if isinstance(header, dict) else None
        if not isinstance(summary, str) or not summary.strip():
            raise HubError(400, "A commit summary (title) is required")
        # 2. Apply atomically.
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id, write=True)
            if revision not in repo.branches:
                raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            head = repo.branches[revision]
            parent_commit = header.get("parentCommit")
            if parent_commit is not None and parent_commit != head:
                raise HubError(412, f"A commit has happened since {parent_commit}: the branch head is {head}")
            files = dict(repo.commits[head].files)
            before = dict(files)
            new_blobs: dict[str, bytes] = {}
            for kind, path, content in ops:
                if kind == "add":
                    oid = git_blob_oid(content)
                    new_blobs[oid] = content
                    files[path] = oid
                elif kind == "delete":
                    if path not in files:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del files[path]
                else:
                    victims = [p for p in files if p.startswith(path + "/")] if path else list(files)
                    if not victims:
                        raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for p in victims:
                        del files[p]
            changes = {
                "added": sorted(p for p in files if p not in before),
                "modified": sorted(p for p in files if p in before and before[p] != files[p]),
                "deleted": sorted(p for p in before if p not in files),
            }
            self.state.blobs.update(new_blobs)
            commit = self.state._make_commit(repo, head, files, summary, header.get("description") or "",
                                             user, changes)
            commit.payload = {"uploaded": [p for k, p, _ in ops if k == "add"],
                              "deleted": [p for k, p, _ in ops if k != "add"]}
            repo.branches[revision] = commit.oid
        url = f"{self._endpoint()}/{URL_PREFIX[repo_type]}{repo_id}/commit/{commit.oid}"
        self._send_json(200, {"success": True, "commitOid": commit.oid, "commitUrl": url,
                              "pullRequestUrl": None})
        return True

    def _branch(self, repo_type: str, repo_id: str, branch: str) -> bool:
        payload = self._json_body() if self.command == "POST" else {}
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id, write=True)
            if self.command == "DELETE":
                if branch not in repo.branches:
                    raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
                if branch == DEFAULT_BRANCH:
                    raise HubError(403, "Cannot delete the default branch")
                del repo.branches[branch]
                self._send_json(200, {})
                return True
            if not re.fullmatch(r"[A-Za-z0-9._/-]+", branch) or ".." in branch:
                raise HubError(400, f"Invalid branch name: {branch!r}")
            if branch in repo.branches or branch in repo.tags:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            start = payload.get("startingPoint") or DEFAULT_BRANCH
            repo.branches[branch] = self.state._resolve(repo, start)
        self._send_json(200, {})
        return True

    def _tag(self, repo_type: str, repo_id: str, name: str) -> bool:
        payload = self._json_body() if self.command == "POST" else {}
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id, write=True)
            if self.command == "DELETE":
                if name not in repo.tags:
                    raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
                del repo.tags[name]
                self._send_json(200, {})
                return True
            # POST /tag/{revision} with {"tag": name}
            tag = payload.get("tag")
            if not isinstance(tag, str) or not tag:
                raise HubError(400, "A tag name is required")
            if tag in repo.tags or tag in repo.branches:
                raise HubError(409, f"Reference already exists: refs/tags/{tag}")
            repo.tags[tag] = self.state._resolve(repo, name)
        self._send_json(200, {})
        return True

    def _resolve_file(self, repo_type: str, repo_id: str, revision: str, path: str) -> bool:
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id)
            oid = self.state._resolve(repo, revision)
            commit = repo.commits[oid]
            if path not in commit.files:
                raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": oid})
            blob_oid = commit.files[path]
            content = self.state.blobs[blob_oid]
        headers = {
            "X-Repo-Commit": oid,
            "ETag": f'"{blob_oid}"',
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"',
        }
        status, body = 200, content
        rng = self.headers.get("Range")
        if rng and self.command == "GET":
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not m or (not m.group(1) and not m.group(2)):
                raise HubError(416, f"Invalid range: {rng}", headers={"Content-Range": f"bytes */{len(content)}"})
            if m.group(1):
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else len(content) - 1
            else:
                start, end = max(0, len(content) - int(m.group(2))), len(content) - 1
            end = min(end, len(content) - 1)
            if start >= len(content) or start > end:
                raise HubError(416, f"Range not satisfiable: {rng}",
                               headers={"Content-Range": f"bytes */{len(content)}"})
            status, body = 206, content[start:end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
        self._send(status, body, headers, content_type="application/octet-stream",
                   head_only=self.command == "HEAD", content_length=len(body))
        return True

    def _endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"


def _valid_path(path: str) -> bool:
    if not path or path.startswith("/") or path.endswith("/") or "\\" in path:
        return False
    parts = path.split("/")
    return all(p not in ("", ".", "..") for p in parts) and parts[0] != ".git"


class HubServer:
    """A running test Hub: ``.endpoint``, ``.token``, ``.user``, ``.state``, ``.env()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, state: HubState | None = None):
        self.state = state or HubState()
        handler = type("BoundHubHandler", (_Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def token(self) -> str:
        return next(t for t, (_, role) in self.state.tokens.items() if role == "write")

    @property
    def read_token(self) -> str:
        return next(t for t, (_, role) in self.state.tokens.items() if role == "read")

    @property
    def user(self) -> str:
        return self.state.user

    def start(self) -> "HubServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="test-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def env(self, hf_home: str | None = None, token: str | None | bool = True, *,
            base: dict | None = None, **extra: str) -> dict[str, str]:
        """A complete environment for a child process that talks to this server.

        Starts from ``base`` (default ``os.environ``) minus any Hugging Face token, offline
        or endpoint variables, then sets HF_ENDPOINT, HF_HOME (if given), telemetry and
        progress bars off. ``token=True`` sets HF_TOKEN to the write token, ``None`` or
        ``False`` sets no token, a string is used as is. ``extra`` overrides anything.
        """

        env = dict(os.environ if base is None else base)
        for key in list(env):
            if key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                       "HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE",
                       "TRANSFORMERS_CACHE", "HF_TOKEN_PATH", "HF_DATASETS_OFFLINE", "HF_MODULES_CACHE",
                       "HF_XET_CACHE", "HF_ASSETS_CACHE"):
                del env[key]
        env.update({
            "HF_ENDPOINT": self.endpoint,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "DO_NOT_TRACK": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
        })
        if hf_home is not None:
            env["HF_HOME"] = str(hf_home)
        if token is True:
            env["HF_TOKEN"] = self.token
        elif isinstance(token, str):
            env["HF_TOKEN"] = token
        env.update({k: str(v) for k, v in extra.items()})
        return env


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Loopback Hub API server for tests.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--user", default="test-user")
    args = parser.parse_args(argv)
    server = HubServer(port=args.port, state=HubState(user=args.user))
    print(f"HF_ENDPOINT={server.endpoint}\nHF_TOKEN={server.token}", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()


if __name__ == "__main__":
    main()
