"""Where a stateful-BPTT run keeps its checkpoints, and which of them are complete.

A checkpoint is `output_dir/checkpoint-STEP`; its state file is written last and whole (`run_folder`'s atomic
writes), so a folder without a readable one is incomplete, named in a warning and skipped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .run_folder import read_json_file

CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "bptt_state.json"  # written last: a checkpoint folder without it is incomplete and ignored
RNN_STATE_FILE = "rnn_state.pt"


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints (`checkpoint-STEP` folders with a readable state file) in `output_dir`, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = re.fullmatch(re.escape(CHECKPOINT_PREFIX) + r"(\d+)", child.name)
        if match and child.is_dir() and (child / STATE_FILE).is_file():
            if read_json_file(child / STATE_FILE, "state file of this checkpoint (it is skipped)") is not None:
                found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def resolve_checkpoint(spec: str, output_dir: str | os.PathLike) -> Path:
    """`'latest'` (or `'last'`, `'true'`, `'auto'`, as `hf-charrnn train` accepts) -> the newest complete checkpoint in
    `output_dir`; a path -> that checkpoint (checked)."""
    if str(spec).lower() in ("latest", "last", "true", "auto"):
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            raise FileNotFoundError(
                f"--resume_from_checkpoint latest: no complete checkpoint-STEP folder in {str(output_dir)!r}."
            )
        return checkpoints[-1]
    path = Path(spec)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(
            f"{spec!r} is not a complete checkpoint of this training loop (no {STATE_FILE} in it). "
            "Give a checkpoint-STEP folder written by train-accelerate, or 'latest'."
        )
    return path
