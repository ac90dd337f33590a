"""Read-only repository endpoints: repo info, tree listing, refs, commit history, paths-info.

A mixin of ``handler.HubHandler``: it uses the handler's ``state``, ``headers``,
``_get_repo``, ``_read_body`` and ``_send_json``.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from typing import Any

from .cards import readme_metadata
from .state import DEFAULT_BRANCH, Commit, HubError, Repo, iso_time


def _flag(values: list[str] | None) -> bool:
    """A boolean query or form parameter (last value wins), as huggingface_hub sends them."""
    return (values or ["false"])[-1].lower() in ("1", "true")


class RepoEndpoints:
    # --------------------------------------------------------------- entries
    def _file_entry(self, path: str, oid: str, repo: Repo | None = None, commit: Commit | None = None,
                    expand: bool = False) -> dict:
        """A tree/paths-info file entry; ``expand`` adds the last commit that changed the file."""
        entry = {"type": "file", "oid": oid, "size": len(self.state.blobs[oid]), "path": path}
        if expand and repo is not None and commit is not None:
            last = commit
            c = commit
            while c.parent is not None:
                parent = repo.commits[c.parent]
                if parent.files.get(path) != oid:
                    break
                last = c = parent
            entry["lastCommit"] = {"id": last.oid, "title": last.title, "date": iso_time(last.timestamp)}
        return entry

    def _dir_entry(self, path: str, files: dict[str, str]) -> dict:
        """A directory entry; its oid changes whenever anything under it does (like a git tree id)."""
        inner = sorted((p, o) for p, o in files.items() if p.startswith(path + "/"))
        oid = hashlib.sha1(json.dumps(inner).encode()).hexdigest()
        return {"type": "directory", "oid": oid, "size": 0, "path": path}

    # --------------------------------------------------------------- repo info
    def _repo_info(self, repo_type: str, repo_id: str, revision: str | None, query: dict) -> bool:
        """``model_info``/``repo_info``: the fields huggingface_hub and transformers read."""
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id)
            oid = self.state.resolve(repo, revision or DEFAULT_BRANCH)
            commit = repo.commits[oid]
            info: dict[str, Any] = {
                "_id": hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24],
                "id": repo_id,
                "author": repo.namespace,
                "sha": oid,
                "lastModified": iso_time(commit.timestamp),
                "createdAt": iso_time(repo.created_at),
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": self._siblings(commit, _flag(query.get("blobs"))),
            }
            self._add_card_fields(info, repo_type, commit)
            self._add_config_field(info, repo_type, commit)
            expand = query.get("expand") or query.get("expand[]")
            if expand:
                info = {k: v for k, v in info.items() if k in set(expand) | {"_id", "id"}}
        self._send_json(200, info)
        return True

    def _siblings(self, commit: Commit, blobs: bool) -> list[dict]:
        """The file list of repo info; ``blobs=true`` adds sizes and blob ids."""
        siblings = []
        for path in sorted(commit.files):
            sib: dict[str, Any] = {"rfilename": path}
            if blobs:
                sib["size"] = len(self.state.blobs[commit.files[path]])
                sib["blobId"] = commit.files[path]
            siblings.append(sib)
        return siblings

    def _add_card_fields(self, info: dict, repo_type: str, commit: Commit) -> None:
        """``cardData``, ``tags`` and the model fields the Hub derives from the README's front matter."""
        card = readme_metadata(self.state.blobs.get(commit.files.get("README.md", "")))
        if card is None:
            return
        info["cardData"] = card
        tags = card.get("tags") or []
        info["tags"] = [tags] if isinstance(tags, str) else list(tags)
        if repo_type == "model":
            for key in ("library_name", "pipeline_tag", "model-index"):
                if card.get(key):
                    info[key] = card[key]

    def _add_config_field(self, info: dict, repo_type: str, commit: Commit) -> None:
        """The ``config`` summary the Hub derives from a model's config.json (what auto classes look at)."""
        if repo_type != "model" or "config.json" not in commit.files:
            return
        try:
            cfg = json.loads(self.state.blobs[commit.files["config.json"]])
            info["config"] = {k: cfg[k] for k in ("architectures", "model_type", "auto_map") if k in cfg}
        except ValueError:
            pass

    # --------------------------------------------------------------- tree, refs, commits
    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str, query: dict) -> bool:
        """``list_repo_tree``: directories first, then files; 404 EntryNotFound for a missing folder."""
        recursive = _flag(query.get("recursive"))
        expand = _flag(query.get("expand"))
        path = path.strip("/")
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id)
            oid = self.state.resolve(repo, revision)
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
            oid: str | None = self.state.resolve(repo, revision)
            out = []
            while oid is not None:
                c = repo.commits[oid]
                out.append({"id": c.oid, "title": c.title, "message": c.message,
                            "authors": [{"user": c.author}], "date": iso_time(c.timestamp)})
                oid = c.parent
        self._send_json(200, out)
        return True

    # --------------------------------------------------------------- paths-info
    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> bool:
        """``get_paths_info``: an entry per path that exists (files and folders), missing ones left out."""
        paths, expand = self._paths_info_request()
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id)
            oid = self.state.resolve(repo, revision)
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

    def _paths_info_request(self) -> tuple[list[str], bool]:
        """The paths and ``expand`` flag, sent as JSON or as a form depending on the huggingface_hub release."""
        ctype = self.headers.get("Content-Type", "")
        body = self._read_body()
        if "json" in ctype:
            payload = json.loads(body or b"{}")
            paths = payload.get("paths", [])
            expand = bool(payload.get("expand", False))
        else:
            form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
            paths = form.get("paths", [])
            expand = _flag(form.get("expand"))
        if isinstance(paths, str):
            paths = [paths]
        return paths, expand
