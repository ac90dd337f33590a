"""A small Hugging Face Hub API server for tests: loopback only, standard library only.

It answers the HTTP calls that ``huggingface_hub`` 2.4 makes for repository creation,
commits (regular files sent inline, base64), branches, tags, repo info, tree listings
and file downloads (see ``handler.py``), with in-memory storage (see ``state.py``).

Usage::

    server = HubServer().start()          # free port on 127.0.0.1, background thread
    env = server.env(hf_home="/tmp/x")    # HF_ENDPOINT, HF_TOKEN, HF_HOME, ... for a subprocess
    ...
    server.stop()

or standalone: ``PYTHONPATH=tests python -m fake_hub --port 8999`` (prints the endpoint and token).

Why subprocesses: ``huggingface_hub`` reads ``HF_ENDPOINT`` once, at import, and
``transformers`` keeps one shared ``HfApi``; a test process that already imported them
cannot be pointed at this server. Run pushes and pulls in child processes with
``server.env(...)``.
"""

from __future__ import annotations

import os
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from .handler import HubHandler
from .state import HubState

# Variables that would point a child process at another Hub, token or cache: env() drops them.
_HF_VARIABLES = (
    "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
    "HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE",
    "TRANSFORMERS_CACHE", "HF_TOKEN_PATH", "HF_DATASETS_OFFLINE", "HF_MODULES_CACHE",
    "HF_XET_CACHE", "HF_ASSETS_CACHE",
)


class HubServer:
    """A running test Hub: ``.endpoint``, ``.token``, ``.user``, ``.state``, ``.env()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, state: HubState | None = None):
        self.state = state or HubState()
        handler = type("BoundHubHandler", (HubHandler,), {"state": self.state})
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
        env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _HF_VARIABLES}
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
    """Serve in the foreground (``python -m fake_hub``) until interrupted."""
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
