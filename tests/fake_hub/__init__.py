"""A loopback Hugging Face Hub for tests (standard library only), and its pytest fixtures.

``server`` (HubServer, ``main``), ``state`` (HubState, Repo, Commit, HubError), ``handler``
plus ``handler_*`` (the HTTP endpoints), ``commit_payload`` (commit bodies), ``cards``
(README front matter) and ``fixtures`` (pytest fixtures, imported by ``tests/conftest.py``;
not imported here, so the server runs without pytest).
"""

from .server import HubServer
from .state import DEFAULT_BRANCH, Commit, HubError, HubState, Repo, git_blob_oid

__all__ = ["DEFAULT_BRANCH", "Commit", "HubError", "HubServer", "HubState", "Repo", "git_blob_oid"]
