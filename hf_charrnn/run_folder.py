"""An output folder belongs to one training run: its record, its lock, and files written whole or not at all.

A run records what defines it (data and their fingerprints, tokenizer, model shape, the options that change
training) in `run.json` before it trains. A later command into the same folder resumes only when it asks for the
same run; a different one stops before touching anything and says what differs and the two ways on
(`--overwrite_output_dir`, or another `--output_dir`); a finished run is not trained again. A lock file (pid and
host) keeps a second live run out, and is taken over from a run that died. Every marker and state file is written
to a temporary file and renamed, so a crash leaves the previous version, never half a file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from .checkpoints import CHECKPOINT_PREFIX

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
LOCK_FILE = ".hf_charrnn.lock"
STATUS_RUNNING, STATUS_COMPLETE = "running", "complete"
# Settings an explicit --resume_from_checkpoint may change: training a run longer is still the same run.
LENGTH_SETTINGS = ("training.max_steps", "training.num_train_epochs")
# What a folder holds once a run has trained into it (a folder with none of these is free to use).
RUN_OUTPUTS = ("config.json", "model.safetensors", "training_summary.json")


class RunFolderError(ValueError):
    """The output folder holds another run, or a live one: stop before touching it (the CLI exits with 2)."""


class RunAlreadyComplete(Exception):
    """The folder holds this very run, finished: nothing to train (the CLI says so and exits with 0)."""


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` whole or not at all: a temporary file in the same folder, flushed, then renamed."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def atomic_write_json(path: str | os.PathLike, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=1, sort_keys=True, default=str) + "\n")


def read_json_file(path: str | os.PathLike, what: str) -> dict | None:
    """A JSON file's content; None with a warning naming the file when it is missing or damaged."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        logger.warning("Ignoring %s: the %s is damaged (%s).", path, what, error)
        return None


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: the settings of a run as one level of named values."""
    flat = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, Mapping):
            flat.update(flatten(item, f"{name}."))
        else:
            flat[name] = item
    return flat


RENAMED_SETTINGS = {"training.per_device_train_batch_size": "training.train_batch_size"}
"""Settings recorded under an older name: a run recorded then (one process: the same value) still resumes."""
ADDED_SETTINGS = {"shift_blocks": "--shift_blocks false"}
"""Settings added after runs were recorded without them, and the option that resumes such a run as it was cut."""


def differences(recorded: Mapping[str, Any], requested: Mapping[str, Any]) -> list[str]:
    """Each setting that differs, as 'name: recorded -> requested'."""
    old = {RENAMED_SETTINGS.get(name, name): value for name, value in flatten(recorded).items()}
    new = flatten(json.loads(json.dumps(requested, default=str)))
    return [
        f"{name}: {old.get(name, '(not set)')!r} -> {new.get(name, '(not set)')!r}"
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    ]


def has_earlier_work(output_dir: Path) -> bool:
    """Whether a run has already written checkpoints or a model into `output_dir`."""
    if not output_dir.is_dir():
        return False
    if any(child.name.startswith(CHECKPOINT_PREFIX) for child in output_dir.iterdir()):
        return True
    return any((output_dir / name).exists() for name in RUN_OUTPUTS)


def check_output_dir(output_dir: str | os.PathLike, identity: Mapping[str, Any], overwrite: bool,
                     extend: bool = False) -> dict | None:
    """
    Read-only: may this run use `output_dir`? Returns the folder's record when the same run is to be resumed, None
    when the folder is free (or `overwrite` is set). Raises `RunAlreadyComplete` for this run finished, and
    `RunFolderError` for another run's folder. `extend` (an explicit --resume_from_checkpoint) lets a run, finished
    or not, go on with another length.
    """
    output_dir = Path(output_dir)
    if overwrite or not output_dir.is_dir():
        return None
    record = read_json_file(output_dir / RUN_FILE, "run record")
    if record is None:
        if has_earlier_work(output_dir):
            raise RunFolderError(
                f"The output folder {str(output_dir)!r} holds checkpoints or a model from an earlier run that "
                f"recorded no settings ({RUN_FILE} is missing or damaged), so it cannot be resumed safely. "
                + ways_on(output_dir)
            )
        return None
    changed = differences(record.get("identity", {}), identity)
    if extend:
        changed = [line for line in changed if line.split(":", 1)[0] not in LENGTH_SETTINGS]
    if changed:
        recorded = flatten(record.get("identity", {}))
        added = [option for name, option in ADDED_SETTINGS.items() if name in flatten(identity) and name not in recorded]
        raise RunFolderError(
            f"The output folder {str(output_dir)!r} holds another run; this command asks for a different one:\n  "
            + "\n  ".join(changed) + "\n"
            + (f"It was recorded by an earlier version: to resume it as it was, add {' '.join(added)}. "
               if added else "") + ways_on(output_dir)
        )
    if record.get("status") == STATUS_COMPLETE and not extend:
        raise RunAlreadyComplete(completed_message(output_dir, record))
    return record


def ways_on(output_dir: Path) -> str:
    return (
        f"Nothing was changed. Either add --overwrite_output_dir to start a new run there (the earlier run's files "
        f"are deleted), or choose another --output_dir (e.g. {str(output_dir)}-2)."
    )


def completed_message(output_dir: Path, record: Mapping[str, Any]) -> str:
    result = record.get("result", {})
    figures = f"{result.get('steps', '?')} steps"
    if result.get("validation_bpc") is not None:
        figures += f", validation {result['validation_bpc']:.4f} bits per character"
    return (
        f"The run in {str(output_dir)!r} is already complete ({figures}); nothing was trained. To train it longer, "
        "run the same command with --resume_from_checkpoint latest and a larger --max_steps (or "
        f"--num_train_epochs); to fine-tune it on other text, use --model_name_or_path {output_dir} with another "
        "--output_dir. To train it again from scratch, add --overwrite_output_dir."
    )


def write_run_record(output_dir: Path, identity: Mapping[str, Any], resumed_from: str | None) -> dict:
    """Record the run as started (or resumed) in `output_dir`."""
    previous = read_json_file(output_dir / RUN_FILE, "run record") or {}
    record = {
        "identity": json.loads(json.dumps(identity, default=str)),
        "status": STATUS_RUNNING,
        "started": previous.get("started", time.strftime("%Y-%m-%dT%H:%M:%S")),
        "resumed_from": [*previous.get("resumed_from", []), *([resumed_from] if resumed_from else [])],
    }
    atomic_write_json(output_dir / RUN_FILE, record)
    return record


def mark_run_complete(output_dir: Path, steps: int, validation_bpc: float | None) -> None:
    record = read_json_file(output_dir / RUN_FILE, "run record") or {}
    record.update(status=STATUS_COMPLETE, finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
                  result={"steps": steps, "validation_bpc": validation_bpc})
    atomic_write_json(output_dir / RUN_FILE, record)


# ----------------------------------------------------------------------------------------------------------------------
# The lock: one live run per folder
# ----------------------------------------------------------------------------------------------------------------------


def _process_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _take_lock(path: Path, owner: dict) -> bool:
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(owner, handle)
    return True


def acquire_lock(output_dir: str | os.PathLike) -> Path:
    """
    Take `output_dir`'s lock: refuse when a live process holds it, take it over (with a warning) from a process
    that died. Returns the lock file; give it back with `release_lock`.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / LOCK_FILE
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    while not _take_lock(path, owner):
        holder = read_json_file(path, "lock file") or {}
        same_host = holder.get("host") == owner["host"]
        if same_host and isinstance(holder.get("pid"), int) and _process_is_alive(holder["pid"]):
            raise RunFolderError(
                f"Another run (pid {holder['pid']}, started {holder.get('started', '?')}) is training into "
                f"{str(output_dir)!r}. Wait for it to finish, stop it, or choose another --output_dir."
            )
        if holder and not same_host:
            raise RunFolderError(
                f"A run on host {holder.get('host')!r} (pid {holder.get('pid')}) holds {path}. If it is no longer "
                "running, delete that file; otherwise choose another --output_dir."
            )
        logger.warning("Taking over %s from a run that is no longer running (%s).", path, holder or "unreadable")
        path.unlink(missing_ok=True)
    return path


def release_lock(path: Path) -> None:
    holder = read_json_file(path, "lock file") or {}
    if holder.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def run_lock(output_dir: str | os.PathLike) -> Iterator[None]:
    """Hold `output_dir`'s lock for the block (see `acquire_lock`)."""
    path = acquire_lock(output_dir)
    try:
        yield
    finally:
        release_lock(path)


def clear_earlier_run(output_dir: Path) -> None:
    """`--overwrite_output_dir`: delete the earlier run's checkpoints, record and summary (the lock stays)."""
    for child in output_dir.iterdir() if output_dir.is_dir() else ():
        if child.is_dir() and child.name.startswith(CHECKPOINT_PREFIX):
            shutil.rmtree(child)
    for name in (RUN_FILE, "training_summary.json", "log_history.json"):
        (output_dir / name).unlink(missing_ok=True)
    logger.warning("--overwrite_output_dir: deleted the earlier run's checkpoints and record in %s.", output_dir)


class OutputDirClaim:
    """
    A run's hold on its output folder, taken once its inputs are checked and given back when it ends: the folder is
    locked, checked again under the lock (another run may have finished in it since the first check), cleared on
    `overwrite`, and records this run. Other processes of a distributed run leave all of it to the main one.
    """

    def __init__(self, output_dir, identity: Mapping[str, Any], *, overwrite: bool, extend: bool = False,
                 is_main_process: bool = True):
        self.output_dir, self.identity, self.overwrite, self.extend = Path(output_dir), identity, overwrite, extend
        self.is_main_process = is_main_process
        self.lock: Path | None = None

    def check(self) -> dict | None:
        """Read-only, before the run builds anything: may it use the folder (see `check_output_dir`)?"""
        return check_output_dir(self.output_dir, self.identity, self.overwrite, extend=self.extend)

    def acquire(self, resumed_from: str | None) -> None:
        if not self.is_main_process:
            return
        self.lock = acquire_lock(self.output_dir)
        if self.overwrite:
            clear_earlier_run(self.output_dir)
        else:
            self.check()  # again, under the lock: another run may have finished in the folder since
        write_run_record(self.output_dir, self.identity, resumed_from)

    def complete(self, steps: int, validation_bpc: float | None) -> None:
        if self.is_main_process:
            mark_run_complete(self.output_dir, steps, validation_bpc)

    def release(self) -> None:
        if self.lock is not None:
            release_lock(self.lock)
            self.lock = None


def refused_pickle_message(checkpoint: str | os.PathLike) -> str:
    """Name the files of `checkpoint` that hold pickled objects beyond plain tensors (torch.load refused them)."""
    refused = []
    for path in sorted(Path(checkpoint).glob("*")):
        if path.suffix in (".pt", ".pth", ".bin"):
            try:
                torch.load(path, weights_only=True, map_location="cpu")  # refuses to run pickled code
            except Exception:  # noqa: BLE001 - any refusal names the file
                refused.append(path.name)
    names = ", ".join(refused) or "a file"
    return (
        f"The checkpoint {str(checkpoint)!r} holds pickled Python objects beyond plain tensors ({names}), and "
        "hf_charrnn never runs pickled code. Resume from another checkpoint, or delete those files if you know "
        "what wrote them (a missing rng_state.pth only means the random-number state is not restored)."
    )
