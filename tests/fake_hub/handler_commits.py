"""Write endpoints (preupload, commit, branch, tag) and the file download (``resolve``).

A mixin of ``handler.HubHandler``: it uses the handler's ``state``, ``command``,
``headers``, ``_auth_user``, ``_get_repo``, ``_read_body``, ``_json_body``, ``_send``,
``_send_json`` and ``_endpoint``.

A commit is validated completely (permissions, branch, every payload line) before the
state lock is taken to apply it, and it is applied to a copy of the branch's tree: a
malformed commit, or one that fails midway, leaves the branch where it was.
"""

from __future__ import annotations

import re

from .commit_payload import (
    Operation,
    apply_operations,
    commit_summary,
    parse_commit_payload,
    payload_paths,
    tree_changes,
)
from .state import DEFAULT_BRANCH, URL_PREFIX, Commit, HubError, Repo

_BRANCH_NAME_RE = re.compile(r"[A-Za-z0-9._/-]+")
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")


def _refuse_pull_request(query: dict) -> None:
    """Pull requests (``create_pr=1``) are not implemented: say so instead of committing to the branch."""
    if query.get("create_pr"):
        raise HubError(501, "hub_server: pull requests (create_pr) are not implemented")


def _byte_range(header: str, size: int) -> tuple[int, int]:
    """(start, end), inclusive, of a ``Range: bytes=...`` header on ``size`` bytes; 416 if unusable."""
    m = _RANGE_RE.fullmatch(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        raise HubError(416, f"Invalid range: {header}", headers={"Content-Range": f"bytes */{size}"})
    if m.group(1):
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else size - 1
    else:
        start, end = max(0, size - int(m.group(2))), size - 1
    end = min(end, size - 1)
    if start >= size or start > end:
        raise HubError(416, f"Range not satisfiable: {header}", headers={"Content-Range": f"bytes */{size}"})
    return start, end


class CommitEndpoints:
    # --------------------------------------------------------------- preupload
    def _preupload(self, repo_type: str, repo_id: str, revision: str, query: dict) -> bool:
        """Every file is answered ``regular`` (inline in the commit), with its current oid if it exists."""
        _refuse_pull_request(query)
        payload = self._json_body()
        files = payload.get("files")
        if not isinstance(files, list):
            raise HubError(400, "preupload: 'files' must be a list")
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id, write=True)
            if revision not in repo.branches:
                self.state.resolve(repo, revision)  # RevisionNotFound if unknown
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

    # --------------------------------------------------------------- commit
    def _commit(self, repo_type: str, repo_id: str, revision: str, query: dict) -> bool:
        """``create_commit``: check, parse the whole NDJSON body, then apply it atomically."""
        _refuse_pull_request(query)
        user = self._auth_user(required=True, write=True)
        failure = self._check_commit_target(repo_type, repo_id, revision)
        header, ops = parse_commit_payload(self._read_body(), failure)
        summary = commit_summary(header)
        commit = self._apply_commit(repo_type, repo_id, revision, user, header, summary, ops)
        url = f"{self._endpoint()}/{URL_PREFIX[repo_type]}{repo_id}/commit/{commit.oid}"
        self._send_json(200, {"success": True, "commitOid": commit.oid, "commitUrl": url,
                              "pullRequestUrl": None})
        return True

    def _check_commit_target(self, repo_type: str, repo_id: str, revision: str) -> dict | None:
        """Permission and branch checks before reading the (possibly large) body.

        Also takes the next injected failure (``HubState.fail_commits``), so that each
        commit request consumes exactly one.
        """
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id, write=True)
            if revision not in repo.branches:
                self.state.resolve(repo, revision)  # RevisionNotFound if unknown
                raise HubError(400, f"Can only commit to a branch, not to {revision}")
            return self.state.take_commit_failure()

    def _apply_commit(self, repo_type: str, repo_id: str, revision: str, user: str, header: dict,
                      summary: str, ops: list[Operation]) -> Commit:
        """Apply the parsed operations under the lock and move the branch; nothing changes if one fails.

        Permissions and the branch are checked again: the repo or branch may have gone
        while the body was being read.
        """
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id, write=True)
            head = self._commit_parent(repo, revision, header)
            files = dict(repo.commits[head].files)
            new_blobs = apply_operations(files, ops)
            changes = tree_changes(repo.commits[head].files, files)
            self.state.blobs.update(new_blobs)
            commit = self.state.make_commit(repo, head, files, summary, header.get("description") or "",
                                            user, changes)
            commit.payload = payload_paths(ops)
            repo.branches[revision] = commit.oid
        return commit

    @staticmethod
    def _commit_parent(repo: Repo, revision: str, header: dict) -> str:
        """The branch head the commit builds on; 412 if the client's ``parentCommit`` is no longer the head."""
        if revision not in repo.branches:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        head = repo.branches[revision]
        parent_commit = header.get("parentCommit")
        if parent_commit is not None and parent_commit != head:
            raise HubError(412, f"A commit has happened since {parent_commit}: the branch head is {head}")
        return head

    # --------------------------------------------------------------- branches and tags
    def _branch(self, repo_type: str, repo_id: str, branch: str) -> bool:
        """``create_branch`` (POST, from ``startingPoint``, default main) and ``delete_branch`` (DELETE)."""
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
            if not _BRANCH_NAME_RE.fullmatch(branch) or ".." in branch:
                raise HubError(400, f"Invalid branch name: {branch!r}")
            if branch in repo.branches or branch in repo.tags:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            start = payload.get("startingPoint") or DEFAULT_BRANCH
            repo.branches[branch] = self.state.resolve(repo, start)
        self._send_json(200, {})
        return True

    def _tag(self, repo_type: str, repo_id: str, name: str) -> bool:
        """``create_tag`` (POST /tag/{revision} with ``{"tag": name}``) and ``delete_tag`` (DELETE /tag/{name})."""
        payload = self._json_body() if self.command == "POST" else {}
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id, write=True)
            if self.command == "DELETE":
                if name not in repo.tags:
                    raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
                del repo.tags[name]
                self._send_json(200, {})
                return True
            tag = payload.get("tag")
            if not isinstance(tag, str) or not tag:
                raise HubError(400, "A tag name is required")
            if tag in repo.tags or tag in repo.branches:
                raise HubError(409, f"Reference already exists: refs/tags/{tag}")
            repo.tags[tag] = self.state.resolve(repo, name)
        self._send_json(200, {})
        return True

    # --------------------------------------------------------------- downloads
    def _resolve_file(self, repo_type: str, repo_id: str, revision: str, path: str) -> bool:
        """``hf_hub_download``: the file with the headers it checks (X-Repo-Commit, ETag), ranges honoured."""
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id)
            oid = self.state.resolve(repo, revision)
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
            start, end = _byte_range(rng, len(content))
            status, body = 206, content[start:end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
        self._send(status, body, headers, content_type="application/octet-stream",
                   head_only=self.command == "HEAD", content_length=len(body))
        return True
