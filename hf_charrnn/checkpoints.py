"""Checkpoint folders of both training paths: which are complete, and which one a run resumes from.

Both paths write `output_dir/checkpoint-STEP` folders and finish each with a JSON state file written last and whole
(Trainer: `trainer_state.json`; stateful BPTT: `bptt_state.json`). A folder without a readable state file was cut
short (the process was killed while saving it): it is named in a warning and never resumed from. One rule, one
function for each question, so `hf-charrnn train` and `hf-charrnn train-accelerate` cannot drift apart.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"  # transformers.trainer_utils.PREFIX_CHECKPOINT_DIR + "-" (a test keeps them equal)
TRAINER_STATE_FILE = "trainer_state.json"  # Trainer's checkpoints
BPTT_STATE_FILE = "bptt_state.json"  # the stateful-BPTT loop's checkpoints
RNN_STATE_FILE = "rnn_state.pt"  # the BPTT loop's carried hidden state (tensors only, loaded with weights_only)
BEST_MODEL_DIR = "best-model"  # the BPTT loop's weights of its best evaluation so far, while it runs
LATEST = ("latest", "last", "true", "auto")  # the words --resume_from_checkpoint accepts for "the newest one"
_CHECKPOINT_NAME = re.compile(re.escape(CHECKPOINT_PREFIX) + r"(\d+)")


def checkpoint_folders(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Every `checkpoint-STEP` folder of `output_dir`, complete or not, as `(step, folder)`, oldest first (by step
    number: checkpoint-10 comes after checkpoint-9)."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _CHECKPOINT_NAME.fullmatch(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def complete_checkpoints(output_dir: str | os.PathLike, state_file: str) -> list[Path]:
    """The `checkpoint-STEP` folders of `output_dir` whose `state_file` is readable, oldest first; the others are
    named in a warning and left out."""
    complete = []
    for _, folder in checkpoint_folders(output_dir):
        if _readable_json(folder / state_file):
            complete.append(folder)
        else:
            logger.warning("Skipping %s: %s is missing or damaged (the run was stopped while saving it).", folder,
                           folder / state_file)
    return complete


def _readable_json(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def resolve_checkpoint(
    requested: str | None,
    output_dir: str | os.PathLike,
    state_file: str,
    overwrite_output_dir: bool = False,
    announce: Callable[[str], None] = logger.warning,
) -> Path | None:
    """The checkpoint a run resumes from.

    `requested` is --resume_from_checkpoint: one of `LATEST` (the newest complete checkpoint in `output_dir`, which
    must exist) or a folder (checked to be a complete checkpoint of this training path). Without it, the newest
    complete checkpoint in `output_dir` (the run record has already said the folder holds this run), announced with
    `announce`, unless `overwrite_output_dir` (the earlier run's files go once the folder is claimed).
    Raises ValueError naming the problem and the way on.
    """
    if requested:
        if str(requested).lower() in LATEST:
            checkpoints = complete_checkpoints(output_dir, state_file)
            if not checkpoints:
                raise ValueError(f"--resume_from_checkpoint {requested}: no complete checkpoint-STEP folder in "
                                 f"{str(output_dir)!r}.")
            return checkpoints[-1]
        path = Path(requested)
        if not path.is_dir():
            raise ValueError(f"--resume_from_checkpoint: {str(requested)!r} is not a checkpoint folder.")
        if not (path / state_file).is_file():
            raise ValueError(
                f"--resume_from_checkpoint: {str(requested)!r} is not a complete checkpoint of this training path "
                f"(no {state_file} in it: another command wrote it, or saving it was cut short); pick another "
                f"checkpoint-STEP folder, or '{LATEST[0]}'."
            )
        return path
    if overwrite_output_dir or not checkpoint_folders(output_dir):
        return None
    checkpoints = complete_checkpoints(output_dir, state_file)
    if not checkpoints:
        announce(f"No complete checkpoint in {output_dir}: starting from scratch.")
        return None
    announce(f"Resuming from {checkpoints[-1]}, the newest checkpoint in {output_dir} "
             "(pass --overwrite_output_dir to start over).")
    return checkpoints[-1]
