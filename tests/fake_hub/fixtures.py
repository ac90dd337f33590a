"""pytest fixtures for Hub round trips with no internet.

``tests/conftest.py`` imports them with ``from fake_hub.fixtures import *`` (``tests`` is not
a package: pytest puts the test folder on ``sys.path`` in its default "prepend" import mode).

Fixtures
--------
``hub_server``   session: a ``HubServer`` (tests/fake_hub/server.py) on a free 127.0.0.1 port.
                 ``.endpoint``, ``.token``, ``.read_token``, ``.user``, ``.state``, ``.env(...)``.
``hub_env``      function: environment dict for a child process (fresh HF_HOME under
                 tmp_path, HF_ENDPOINT, HF_TOKEN, telemetry off). At teardown it fails the
                 test if the child hit an endpoint the server does not implement.
``hub_python``   function: ``hub_python(code, env=None, **kw)`` runs ``python -c code`` in a
                 child process with ``hub_env`` (or ``env``) and returns the CompletedProcess;
                 raises with stdout/stderr on a non-zero exit unless ``check=False``.
``hub_repo_id``  function: a fresh ``"<user>/<test-name>-<n>"`` repo id (not created).
``olah_mirror``  module: an ``olah`` server (PyPI ``olah``, a third-party Hub mirror) running
                 offline in a child process, serving local git repositories;
                 ``.add_repo(repo_id, files) -> commit sha``, ``.endpoint``, ``.env(hf_home)``.

Why child processes: huggingface_hub reads HF_ENDPOINT once at import and transformers
keeps one shared HfApi, so the pytest process itself cannot be re-pointed at a server.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .server import HubServer

__all__ = [
    "BLOCK_PACKAGE",
    "HubServer",
    "OlahMirror",
    "hub_env",
    "hub_python",
    "hub_repo_id",
    "hub_server",
    "make_git_repo",
    "olah_mirror",
    "run_python",
]

_counter = itertools.count()

# Code that makes `import hf_charrnn` fail in a child process even though the package is installed (editable installs
# put a finder on sys.meta_path that `python -I` keeps): what loads then is the checkpoint's own remote code.
BLOCK_PACKAGE = """
import sys
class _BlockHfCharrnn:
    def find_spec(self, name, path=None, target=None):
        if name == "hf_charrnn" or name.startswith("hf_charrnn."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, _BlockHfCharrnn())
try:
    import hf_charrnn
    raise SystemExit("hf_charrnn is importable: the remote-code test would prove nothing")
except ModuleNotFoundError:
    pass
"""


def run_python(code: str, env: dict, *, cwd: str | os.PathLike | None = None, isolated: bool = False,
               timeout: float = 300, check: bool = True, args: list[str] | None = None,
               python: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run ``python -c code`` in a child process with ``env``.

    ``isolated=True`` runs ``python -I`` (no PYTHONPATH, no user site, no script folder on
    sys.path): with ``cwd`` outside the project, the project is importable only if it is
    installed in the interpreter's site-packages. ``python`` is another interpreter to run
    (another virtual environment's), this one's by default.
    """
    interpreter = str(python or sys.executable)
    cmd = [interpreter] + (["-I"] if isolated else []) + ["-c", textwrap.dedent(code)] + list(args or [])
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"child python exited with {proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}"
            f"\n--- stderr ---\n{proc.stderr[-12000:]}")
    return proc


@pytest.fixture(scope="session")
def hub_server():
    server = HubServer().start()
    yield server
    server.stop()


@pytest.fixture
def hub_env(tmp_path, hub_server):
    hf_home = tmp_path / "hf_home"
    hf_home.mkdir()
    seen = len(hub_server.state.unhandled)
    yield hub_server.env(hf_home=hf_home)
    new = hub_server.state.unhandled[seen:]
    assert not new, f"the test hub got requests it does not implement: {new}"


@pytest.fixture
def hub_python(hub_env):
    def run(code: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
        return run_python(code, hub_env if env is None else env, **kwargs)

    return run


@pytest.fixture
def hub_repo_id(hub_server, request):
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-.")[:60] or "repo"
    return f"{hub_server.user}/{name}-{next(_counter)}"


# ------------------------------------------------------------------------------------------
# olah: a third-party Hub mirror, offline, serving local git repositories (download only)
# ------------------------------------------------------------------------------------------

def make_git_repo(path: str | os.PathLike, files: dict[str, bytes | str], *, branch: str = "main",
                  message: str = "add files") -> str:
    """Create (or add a commit to) a git repository at ``path`` with ``files``; returns the commit sha."""
    path = Path(path)
    git = shutil.which("git")
    if git is None:
        pytest.skip("git CLI not available")
    env = {**os.environ, "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(path.parent)}

    def run(*args: str) -> str:
        return subprocess.run([git, *args], cwd=path, env=env, check=True, capture_output=True,
                              text=True).stdout.strip()

    if not (path / ".git").exists():
        path.mkdir(parents=True, exist_ok=True)
        run("init", "-q", "-b", branch)
    for rel, content in files.items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)
    run("add", "-A")
    run("commit", "-q", "-m", message)
    return run("rev-parse", "HEAD")


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OlahMirror:
    """olah (offline) in a child process; repositories are git folders under ``mirrors/``.

    Layout olah expects (olah/server_mirror.py): ``<mirrors-path>/<repo_type>s/<org>/<name>``,
    a git work tree (or bare repo) whose branches and commits olah resolves with GitPython.
    In offline mode the repo-info route without a revision (``GET /api/models/org/name``)
    answers from olah's cache only, so it is 401 RepoNotFound for a mirror-only repo; the
    ``/revision/{rev}`` form, tree, paths-info, refs and ``resolve`` routes read the git repo.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.mirrors = self.root / "mirrors"
        self.mirrors.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log_path = self.root / "olah-stdout.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_repo(self, repo_id: str, files: dict[str, bytes | str], repo_type: str = "model",
                 branch: str = "main", message: str = "add files") -> str:
        org, name = repo_id.split("/")
        return make_git_repo(self.mirrors / f"{repo_type}s" / org / name, files, branch=branch, message=message)

    def start(self, timeout: float = 60) -> "OlahMirror":
        last_error = ""
        for _attempt in range(3):
            self.port = free_port()
            config = self.root / "olah.toml"
            config.write_text(
                "[basic]\n"
                'host = "127.0.0.1"\n'
                f"port = {self.port}\n"
                f'repos-path = "{(self.root / "cache").as_posix()}"\n'
                f'mirrors-path = ["{self.mirrors.as_posix()}"]\n'
                f'mirror-netloc = "127.0.0.1:{self.port}"\n'
                f'mirror-lfs-netloc = "127.0.0.1:{self.port}"\n'
                "metadata-cache-ttl = 0\n"
                "\n[accessibility]\n"
                "offline = true\n")
            env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "import sys; from olah.server import cli; sys.argv[0] = 'olah-cli'; cli()",
                 "--config", str(config), "--log-path", str(self.root / "logs")],
                cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT)
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    urllib.request.urlopen(f"{self.endpoint}/api/whoami-v2", timeout=2)
                    return self
                except urllib.error.HTTPError:
                    return self  # any HTTP answer means it is serving
                except OSError:
                    time.sleep(0.2)
            last_error = self.log_path.read_text(errors="replace")[-3000:]
            self.stop()
        raise RuntimeError(f"olah did not start:\n{last_error}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def env(self, hf_home: str | os.PathLike, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                            "HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
        env.update({"HF_ENDPOINT": self.endpoint, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_TELEMETRY": "1",
                    "HF_HUB_DISABLE_PROGRESS_BARS": "1", "NO_PROXY": "127.0.0.1,localhost",
                    "no_proxy": "127.0.0.1,localhost"})
        env.update(extra)
        return env


@pytest.fixture(scope="module")
def olah_mirror(tmp_path_factory):
    pytest.importorskip("olah", reason="olah (dev extra) is not installed")
    if shutil.which("git") is None:
        pytest.skip("git CLI not available")
    mirror = OlahMirror(tmp_path_factory.mktemp("olah")).start()
    yield mirror
    mirror.stop()
