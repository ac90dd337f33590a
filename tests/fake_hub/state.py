"""The in-memory state of the loopback Hub: repositories, commits, blobs, tokens, request log.

Storage is content-addressed: blobs are keyed by their git blob sha1 (the ``oid`` the Hub
reports for regular files), commits have real sha1 ids and each one holds the full tree
(path -> blob oid), and every branch and tag points at a commit. Nothing here speaks HTTP:
the request handler (``handler.py``) validates a request completely, then changes this
state under ``HubState.lock``, so a failed request leaves it as it was.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field

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


def iso_time(ts: float) -> str:
    """A timestamp the way the Hub writes one: UTC, milliseconds, ``Z``."""
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + (
        "%03dZ" % int((ts % 1) * 1000)
    )


def valid_path(path: str) -> bool:
    """Whether ``path`` may name a file in a repo: relative, no empty/``.``/``..`` parts, not under ``.git``."""
    if not path or path.startswith("/") or path.endswith("/") or "\\" in path:
        return False
    parts = path.split("/")
    return all(p not in ("", ".", "..") for p in parts) and parts[0] != ".git"


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

    def take_commit_failure(self) -> dict | None:
        """The next injected commit failure (``status``, ``after_lines``), consumed; None if none is queued."""
        with self.lock:
            return self._commit_failures.pop(0) if self._commit_failures else None

    # -- helpers used by tests -----------------------------------------------------------
    def get_repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def head(self, repo_id: str, revision: str = DEFAULT_BRANCH, repo_type: str = "model") -> str:
        return self.get_repo(repo_id, repo_type).branches[revision]

    def history(self, repo_id: str, revision: str = DEFAULT_BRANCH, repo_type: str = "model") -> list[Commit]:
        """Commits reachable from ``revision``, newest first."""
        with self.lock:
            repo = self.get_repo(repo_id, repo_type)
            out, oid = [], self.resolve(repo, revision)
            while oid is not None:
                out.append(repo.commits[oid])
                oid = repo.commits[oid].parent
            return out

    def files(self, repo_id: str, revision: str = DEFAULT_BRANCH, repo_type: str = "model") -> dict[str, bytes]:
        with self.lock:
            repo = self.get_repo(repo_id, repo_type)
            commit = repo.commits[self.resolve(repo, revision)]
            return {p: self.blobs[o] for p, o in commit.files.items()}

    # -- used by the request handler ------------------------------------------------------
    def now(self) -> float:
        """Strictly increasing timestamps, so two commits never share one."""
        with self.lock:
            self._clock = max(self._clock + 0.001, time.time())
            return self._clock

    def resolve(self, repo: Repo, revision: str) -> str:
        """The commit oid ``revision`` names: a branch, a tag (``refs/...`` or bare) or a full commit id."""
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

    def make_commit(self, repo: Repo, parent: str | None, files: dict[str, str], title: str,
                    message: str, author: str, changes: dict[str, list[str]]) -> Commit:
        """Record a commit in ``repo`` (branches are not moved: the caller does that)."""
        ts = self.now()
        tree = hashlib.sha1(json.dumps(sorted(files.items())).encode()).hexdigest()
        body = f"tree {tree}\nparent {parent}\nauthor {author} {ts:.6f}\n\n{title}\n\n{message}"
        oid = hashlib.sha1(b"commit %d\0" % len(body.encode()) + body.encode()).hexdigest()
        commit = Commit(oid, parent, dict(files), title, message, author, ts, changes)
        repo.commits[oid] = commit
        return commit
