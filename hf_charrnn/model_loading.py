"""Loading a trained model and its tokenizer for the commands that use one (generate, evaluate).

A model is named by a folder or a Hub id, and users get both wrong in predictable ways; each gets an answer that
names the problem instead of a library's guess at it:
- a path that looks local (`./x`, `outputs/x` when `outputs/` exists, an absolute path) and does not exist is "no
  such folder", at once, not a Hub lookup that retries for a minute;
- a folder without tokenizer files, or with a config.json that is not JSON or not a CharRNN's, says which file;
- a Hub id when the Hub cannot be reached loads from the local cache, or fails in seconds with a message that
  mentions HF_HUB_OFFLINE.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import urllib.parse
from pathlib import Path

import torch
from huggingface_hub import constants as hub_constants
from transformers import AutoModelForCausalLM, AutoTokenizer

from .configuration_charrnn import CharRNNConfig
from .remote_code import stale_code_warning

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"  # a sharded checkpoint: the index and the shards it names
HUB_PROBE_TIMEOUT_S = 3.0


class ModelNotFoundError(OSError):
    """The model named on the command line is not where it was said to be (the CLI prints it as one line)."""


def looks_local(name: str) -> bool:
    """Whether `name` is meant as a path: explicit (`./`, `../`, `~`, absolute) or under a folder that exists."""
    path = Path(name).expanduser()
    if name.startswith((".", "~")) or path.is_absolute() or name.endswith(os.sep):
        return True
    return len(path.parts) > 2 or (len(path.parts) == 2 and path.parent.is_dir())


def check_model_folder(folder: Path) -> None:
    """Everything generate, evaluate and push need in a local model folder, named when it is missing or damaged."""
    if not folder.is_dir():
        raise ModelNotFoundError(f"No such folder: {str(folder)!r} (a model folder written by hf-charrnn train, or "
                                 "a Hub id such as user/name).")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelNotFoundError(f"{str(folder)!r} is not a model folder: it has no config.json.")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{config_path} is not valid JSON ({error}): restore it from the training output.") from None
    if config.get("model_type") != CharRNNConfig.model_type:
        raise ValueError(f"{config_path} describes a {config.get('model_type')!r} model, not a CharRNN one.")
    try:
        CharRNNConfig.from_dict(config)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{config_path} is invalid: {error}") from None
    missing = [name for name in TOKENIZER_FILES if not (folder / name).is_file()]
    if missing:
        raise ModelNotFoundError(
            f"{str(folder)!r} has no tokenizer: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            "missing. Copy them from the folder the model was trained in (hf-charrnn train saves them next to the "
            "model), or save the tokenizer there with tokenizer.save_pretrained()."
        )
    if (folder / WEIGHTS_FILE).is_file():
        return
    if not (folder / WEIGHTS_INDEX).is_file():
        raise ModelNotFoundError(f"{str(folder)!r} has no weights: {WEIGHTS_FILE} is missing.")
    missing = [shard for shard in index_shards(folder) if not (folder / shard).is_file()]
    if missing:
        raise ModelNotFoundError(f"{str(folder)!r} has only part of its weights: {', '.join(missing)} "
                                 f"(named in {WEIGHTS_INDEX}) missing.")


def index_shards(folder: Path) -> list[str]:
    """The shard files a sharded checkpoint's index names; ValueError naming the index when it is damaged."""
    try:
        index = json.loads((folder / WEIGHTS_INDEX).read_text(encoding="utf-8"))
        return sorted(set(index["weight_map"].values()))
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{folder / WEIGHTS_INDEX} is not a valid weights index: {error}") from None


def hub_is_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """One TCP connection to the Hub endpoint (HF_ENDPOINT), with a short timeout."""
    endpoint = urllib.parse.urlparse(hub_constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _load(name: str, **options):
    tokenizer = AutoTokenizer.from_pretrained(name, **options)
    model = AutoModelForCausalLM.from_pretrained(name, **options)
    return model, tokenizer


def load_from_hub(repo_id: str, *, online: bool | None = None, **options):
    """A Hub model; from the local cache alone when the Hub cannot be reached (`online` False, probed when None),
    with an answer in seconds."""
    if online is None:
        online = hub_constants.HF_HUB_OFFLINE or hub_is_reachable()
    if online:
        return _load(repo_id, **options)
    try:
        return _load(repo_id, local_files_only=True, **options)
    except OSError:
        raise ModelNotFoundError(
            f"{repo_id!r} is not a local folder, and the Hub ({hub_constants.ENDPOINT}) cannot be reached from "
            "here to download it, nor is it in the local cache. If you meant a folder, check the path; to use "
            "models you downloaded before without trying the network, set HF_HUB_OFFLINE=1."
        ) from None


def check_device(device: str) -> None:
    """A device this torch can use, or an error that says why not and what to give instead (before any loading)."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {device!r} is not a device torch knows; use cpu, cuda, cuda:1, mps, ...") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: this torch ({torch.__version__}) sees no CUDA GPU (a CPU build, or no GPU "
                         "visible); use --device cpu.")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: this machine has no Apple MPS device; use --device cpu.")


def load_model_and_tokenizer(name: str, revision: str | None = None, device: str | None = None,
                             trust_remote_code: bool = False):
    """A checkpoint folder or Hub id, ready to sample or score: eval mode, on `device` (CUDA when there is one)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    check_device(device)
    folder = Path(name).expanduser()
    if folder.is_dir() or looks_local(name):
        check_model_folder(folder)
        model, tokenizer = _load(str(folder), trust_remote_code=trust_remote_code)
        stale_code = stale_code_warning(name)
    else:
        online = hub_constants.HF_HUB_OFFLINE or hub_is_reachable()
        model, tokenizer = load_from_hub(name, online=online, revision=revision, trust_remote_code=trust_remote_code)
        stale_code = stale_code_warning(name, revision, local_files_only=not online or hub_constants.HF_HUB_OFFLINE)
    if stale_code:
        print(f"warning: {stale_code}", file=sys.stderr)
    return model.to(device).eval(), tokenizer
