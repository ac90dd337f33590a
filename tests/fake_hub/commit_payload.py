"""The NDJSON body of a commit request: parsed and validated in full, then applied to a tree.

``huggingface_hub`` sends ``POST /api/{type}s/{repo}/commit/{branch}`` with one JSON object
per line: first ``{"key": "header", "value": {"summary": ..., "parentCommit": ...}}``, then
one operation per line (``file`` with base64 content, ``deletedFile``, ``deletedFolder``;
``lfsFile`` is refused since preupload never asks for LFS). Parsing touches no state, so a
malformed payload, or an injected failure midway, is answered before anything changes.
"""

from __future__ import annotations

import base64
import json

from .state import HubError, git_blob_oid, valid_path

# (kind, path, content): kind is "add" (content set), "delete" or "delete_folder" (content None).
Operation = tuple[str, str, "bytes | None"]


def parse_commit_payload(body: bytes, failure: dict | None) -> tuple[dict, list[Operation]]:
    """The header and operations of a commit body; raises HubError on the first bad line.

    ``failure`` is an injected failure (``HubState.fail_commits``): it is raised once
    ``after_lines`` lines were read, or after all of them, so tests can check that a commit
    dying midway leaves the branch unchanged.
    """
    lines = [ln for ln in body.split(b"\n") if ln.strip()]
    if not lines:
        raise HubError(400, "Empty commit payload")
    header: dict = {}
    ops: list[Operation] = []
    for i, raw in enumerate(lines):
        _raise_injected_failure_at(failure, i)
        key, value = _decode_line(raw, i)
        if i == 0:
            header = _parse_header(key, value)
        else:
            ops.append(_parse_operation(key, value, i))
    if failure is not None:
        raise HubError(failure["status"], "hub_server: injected failure while applying the commit")
    return header, ops


def commit_summary(header: dict) -> str:
    """The commit title: required and non-blank, as on the Hub."""
    summary = header.get("summary") if isinstance(header, dict) else None
    if not isinstance(summary, str) or not summary.strip():
        raise HubError(400, "A commit summary (title) is required")
    return summary


def _raise_injected_failure_at(failure: dict | None, index: int) -> None:
    """Fail before line ``index`` if an injected failure says so (simulates a connection dying midway)."""
    if failure is not None and failure["after_lines"] is not None and index >= failure["after_lines"]:
        raise HubError(failure["status"], f"hub_server: injected failure after {index} commit lines")


def _decode_line(raw: bytes, index: int) -> tuple[str, object]:
    """One NDJSON line as (key, value); a line that is not ``{"key":..., "value":...}`` is a 400."""
    try:
        item = json.loads(raw)
        return item["key"], item["value"]
    except (ValueError, KeyError, TypeError):
        raise HubError(400, f"Malformed commit payload at line {index + 1}")


def _parse_header(key: str, value: object) -> dict:
    """The first line must be the header: it carries the summary and the expected parent commit."""
    if key != "header" or not isinstance(value, dict):
        raise HubError(400, "The first line of a commit payload must be its header")
    return value


def _parse_operation(key: str, value: object, index: int) -> Operation:
    """One operation line, checked the way the Hub checks it (paths, encoding, known keys)."""
    if key == "header":
        raise HubError(400, f"Duplicate header at line {index + 1}")
    if not isinstance(value, dict) or not isinstance(value.get("path"), str):
        raise HubError(400, f"Malformed operation at line {index + 1}")
    path = value["path"]
    if key in ("file", "deletedFile") and not valid_path(path):
        raise HubError(400, f"Invalid path in repo: {path!r}")
    if key == "file":
        return ("add", path, _file_content(value, path, index))
    if key == "deletedFile":
        return ("delete", path, None)
    if key == "deletedFolder":
        return ("delete_folder", path.strip("/"), None)
    if key == "lfsFile":
        raise HubError(
            422,
            f"hub_server: lfsFile operations are not supported ({path}): this server answers "
            "uploadMode 'regular' at preupload, so file contents must come inline as 'file' lines")
    raise HubError(400, f"Unknown commit operation {key!r} at line {index + 1}")


def _file_content(value: dict, path: str, index: int) -> bytes:
    """The bytes of a ``file`` line: only inline base64 is accepted (what preupload's 'regular' mode asks for)."""
    if value.get("encoding") != "base64" or not isinstance(value.get("content"), str):
        raise HubError(400, f"Unsupported file encoding at line {index + 1} (expected base64)")
    try:
        return base64.b64decode(value["content"], validate=True)
    except ValueError:
        raise HubError(400, f"Invalid base64 content for {path}")


def apply_operations(files: dict[str, str], ops: list[Operation]) -> dict[str, bytes]:
    """Apply ``ops`` to the tree ``files`` (path -> blob oid) in place; returns the new blobs by oid.

    Works on a copy of the branch's tree and returns the blobs instead of storing them, so a
    delete of a missing path (404 EntryNotFound) leaves the repository untouched.
    """
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
    return new_blobs


def tree_changes(before: dict[str, str], after: dict[str, str]) -> dict[str, list[str]]:
    """What a commit changed, by path: what tests assert on (``Commit.changes``)."""
    return {
        "added": sorted(p for p in after if p not in before),
        "modified": sorted(p for p in after if p in before and before[p] != after[p]),
        "deleted": sorted(p for p in before if p not in after),
    }


def payload_paths(ops: list[Operation]) -> dict[str, list[str]]:
    """What the request carried (``Commit.payload``): tests check that unchanged files were not re-sent."""
    return {"uploaded": [p for k, p, _ in ops if k == "add"],
            "deleted": [p for k, p, _ in ops if k != "add"]}
