"""The model code a checkpoint carries for `trust_remote_code=True`, against the installed package's.

Every saved or pushed checkpoint holds copies of `configuration_charrnn.py` and `modeling_charrnn.py`: whoever loads
it with `trust_remote_code=True` where hf_charrnn is not installed runs those copies, on whatever transformers they
have. A copy from an earlier hf_charrnn can predate a fix for a newer transformers (5.25 dropped the check that
refused assisted decoding, for one), so the commands that load a checkpoint say when its copies differ from the
installed package's, and `hf-charrnn push` always uploads the installed package's (the tested pair).
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

REMOTE_CODE_FILES = ("configuration_charrnn.py", "modeling_charrnn.py")
PACKAGE_DIR = Path(__file__).resolve().parent


def package_copy(name: str) -> Path | None:
    """The installed package's copy of a remote-code module (`modeling_charrnn.py`...), if it has one."""
    path = PACKAGE_DIR / name
    return path if path.is_file() else None


def checkpoint_copies(name: str, revision: str | None = None, local_files_only: bool = False) -> dict[str, Path]:
    """The remote-code files a checkpoint (folder or Hub id) carries, as local paths; a Hub file comes from the cache
    or (unless `local_files_only`) one small download, and what cannot be had is left out."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        return {file: folder / file for file in REMOTE_CODE_FILES if (folder / file).is_file()}
    found = {}
    for file in REMOTE_CODE_FILES:
        try:
            found[file] = Path(hf_hub_download(name, file, revision=revision, local_files_only=local_files_only))
        except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError):
            continue
    return found


def differing_copies(copies: dict[str, Path]) -> list[str]:
    """Which of the checkpoint's copies are not byte for byte the installed package's."""
    return [file for file, path in copies.items()
            if (own := package_copy(file)) is not None and path.read_bytes() != own.read_bytes()]


def stale_code_warning(name: str, revision: str | None = None, local_files_only: bool = False) -> str | None:
    """A warning naming the checkpoint's remote-code files that differ from the installed package's, with the command
    that refreshes them; None when they match (or the checkpoint carries none)."""
    differing = differing_copies(checkpoint_copies(name, revision, local_files_only))
    if not differing:
        return None
    if Path(name).expanduser().is_dir():
        refresh = f"`hf-charrnn push {name} USER/REPO` uploads the installed package's copies with the model"
    else:
        refresh = (f"`hf download {name} --local-dir FOLDER`, then `hf-charrnn push FOLDER {name}`, which uploads the "
                   "installed package's copies")
    return (f"{name} carries model code ({', '.join(differing)}) that differs from the installed hf_charrnn's, most "
            "likely from an earlier version. This machine runs the installed code; people who load the checkpoint "
            "with trust_remote_code=True without hf_charrnn run the copy, which may not support their transformers. "
            f"To refresh it: {refresh}.")
