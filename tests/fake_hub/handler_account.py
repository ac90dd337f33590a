"""Account-level endpoints: ``whoami-v2``, ``repos/create``, ``repos/delete``, ``validate-yaml``.

A mixin of ``handler.HubHandler``: it uses the handler's ``state``, ``_auth_user``,
``_get_repo``, ``_json_body``, ``_send_json`` and ``_endpoint``.
"""

from __future__ import annotations

import hashlib
import re

from .cards import card_yaml_errors
from .state import DEFAULT_BRANCH, INITIAL_GITATTRIBUTES, URL_PREFIX, HubError, Repo, git_blob_oid

_REPO_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


class AccountEndpoints:
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
        """``create_repo``: a new repo with the Hub's initial commit; 409 (with its url) if it exists."""
        user = self._auth_user(required=True, write=True)
        payload = self._json_body()
        repo_type, repo_id = self._new_repo_id(user, payload)
        url = f"{self._endpoint()}/{URL_PREFIX[repo_type]}{repo_id}"
        if payload.get("visibility") is not None:
            private = payload["visibility"] == "private"
        else:
            private = bool(payload.get("private", False))
        with self.state.lock:
            if (repo_type, repo_id) in self.state.repos:
                self._send_json(409, {"error": f"You already created this {repo_type} repo", "url": url})
                return True
            self.state.repos[(repo_type, repo_id)] = self._initial_repo(repo_type, repo_id, private, user)
        self._send_json(200, {"url": url, "name": repo_id, "id": repo_id})
        return True

    def _new_repo_id(self, user: str, payload: dict) -> tuple[str, str]:
        """The (type, id) a create request asks for, after the Hub's name and namespace checks."""
        name = payload.get("name")
        namespace = payload.get("organization") or user
        repo_type = payload.get("type") or "model"
        if repo_type not in URL_PREFIX:
            raise HubError(400, f"Invalid repo type: {repo_type}")
        if not isinstance(name, str) or not _REPO_NAME_RE.fullmatch(name) \
                or ".." in name or "--" in name or name.endswith(".git"):
            raise HubError(400, f"Invalid repo name: {name!r}")
        if not self._can_write_namespace(user, namespace):
            raise HubError(403, f"You don't have the rights to create a repo under the namespace {namespace}")
        return repo_type, f"{namespace}/{name}"

    def _initial_repo(self, repo_type: str, repo_id: str, private: bool, user: str) -> Repo:
        """A repo whose main branch holds the Hub's initial commit (a .gitattributes), as a new Hub repo does."""
        repo = Repo(repo_type, repo_id, private, self.state.now())
        self.state.blobs[git_blob_oid(INITIAL_GITATTRIBUTES)] = INITIAL_GITATTRIBUTES
        commit = self.state.make_commit(
            repo, None, {".gitattributes": git_blob_oid(INITIAL_GITATTRIBUTES)}, "initial commit", "",
            user, {"added": [".gitattributes"], "modified": [], "deleted": []})
        repo.branches[DEFAULT_BRANCH] = commit.oid
        return repo

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
        errors = card_yaml_errors(payload.get("content", ""))
        if errors:
            self._send_json(400, {"errors": errors, "warnings": []})
        else:
            self._send_json(200, {"errors": [], "warnings": []})
        return True
