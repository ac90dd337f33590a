"""The HTTP request handler of the loopback Hub: plumbing, authentication and routing.

It answers the HTTP calls that ``huggingface_hub`` makes closely enough that
``huggingface_hub`` and ``transformers`` raise their own errors (``RepositoryNotFoundError``,
``RevisionNotFoundError``, ``EntryNotFoundError``) from its answers. What it does not
implement it answers with a loud 501 JSON error and records in ``HubState.unhandled``, so
tests can assert that no unknown endpoint was hit (no answer is ever guessed).

The endpoints themselves live in mixins, by concern: ``handler_account`` (whoami, create,
delete, validate-yaml), ``handler_repos`` (repo info, tree, refs, commits, paths-info) and
``handler_commits`` (preupload, commit, branch, tag, file download).
"""

from __future__ import annotations

import json
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any

from .handler_account import AccountEndpoints
from .handler_commits import CommitEndpoints
from .handler_repos import RepoEndpoints
from .state import OPTIONAL_404, REPO_TYPES, HubError, HubState, Repo


class HubHandler(AccountEndpoints, RepoEndpoints, CommitEndpoints, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hf-charrnn-test-hub/1.0"
    state: HubState  # set on the subclass built by HubServer

    # --------------------------------------------------------------- plumbing
    def log_message(self, format: str, *args: Any) -> None:  # silence stderr
        pass

    def _read_body(self) -> bytes:
        """The request body, read once (plain or chunked) and kept: error paths drain it too."""
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
        """Send one answer and log it in ``HubState.requests`` (tests assert on that log)."""
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
        """An error the way the Hub sends it: JSON ``error`` plus ``X-Error-Code``/``X-Error-Message`` headers."""
        headers = dict(err.headers)
        if err.code:
            headers["X-Error-Code"] = err.code
        headers["X-Error-Message"] = err.message
        self._send(err.status, json.dumps({"error": err.message}).encode(), headers,
                   head_only=self.command == "HEAD")

    def _dispatch(self) -> None:
        """Route one request; every failure becomes a JSON error answer, never a dropped connection."""
        self._body = None
        split = urllib.parse.urlsplit(self.path)
        segments = [urllib.parse.unquote(s) for s in split.path.split("/")[1:]]
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        try:
            if not self._route(segments, query):
                self._not_implemented(split.path)
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

    def _not_implemented(self, path: str) -> None:
        """No route matched: a known optional endpoint is a quiet 404, anything else a recorded 501."""
        key = (self.command, path)
        if key in OPTIONAL_404:
            with self.state.lock:
                self.state.optional_misses.append(key)
            raise HubError(404, f"Not found: {path}")
        with self.state.lock:
            self.state.unhandled.append((self.command, self.path))
        raise HubError(501, f"hub_server: endpoint not implemented: {self.command} {path}")

    # --------------------------------------------------------------- auth
    def _auth_user(self, required: bool = False, write: bool = False) -> str | None:
        """The user of the bearer token (None if anonymous and allowed); 401/403 like the Hub otherwise."""
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
        """The repo if this caller may see it (and write to it if ``write``).

        A private repo the caller cannot see is "not found", as on the Hub: 401 when
        anonymous, 404 with a token, so its existence does not leak.
        """
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
        """Call the endpoint for ``seg``; False if there is none (the caller answers 404/501)."""
        if seg and seg[0] == "api":
            return self._route_api(seg[1:], query)
        # /{prefix}{ns}/{name}/resolve/{rev}/{path...}
        repo_type = "model"
        if seg and seg[0] in ("datasets", "spaces"):
            repo_type = REPO_TYPES[seg[0]]
            seg = seg[1:]
        if len(seg) >= 5 and seg[2] == "resolve" and self.command in ("GET", "HEAD"):
            return self._resolve_file(repo_type, f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
        return False

    def _route_api(self, rest: list[str], query: dict) -> bool:
        """``/api/...``: account-level endpoints, then per-repository ones."""
        m = self.command
        if rest == ["whoami-v2"] and m == "GET":
            return self._whoami()
        if rest == ["repos", "create"] and m == "POST":
            return self._create_repo()
        if rest == ["repos", "delete"] and m == "DELETE":
            return self._delete_repo()
        if rest == ["validate-yaml"] and m == "POST":
            return self._validate_yaml()
        if len(rest) >= 3 and rest[0] in REPO_TYPES:
            return self._repo_api(REPO_TYPES[rest[0]], f"{rest[1]}/{rest[2]}", rest[3:], query)
        if len(rest) == 2 and rest[0] in REPO_TYPES and m == "GET":
            # /api/models/{name} without namespace: no such repo here.
            raise HubError(401 if self.headers.get("Authorization") is None else 404,
                           "Repository not found", "RepoNotFound")
        return False

    def _repo_api(self, repo_type: str, repo_id: str, tail: list[str], query: dict) -> bool:
        """``/api/{type}s/{ns}/{name}/...``: the per-repository endpoints."""
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

    def _endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"
