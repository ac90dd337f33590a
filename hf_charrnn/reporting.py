"""Output helpers shared by both training paths (Trainer and Accelerate/BPTT).

- :func:`write_training_summary` writes ``training_summary.json`` (the model card reads it);
- :func:`plot_loss_curve` draws training and validation loss against the optimizer step into a PNG;
- :func:`generate_samples` samples continuations of a few prompts, in the summary's ``samples`` format.

The summary's layout (keys in :data:`REQUIRED_SUMMARY_KEYS`, ``"test"`` optional)::

    {"dataset": str, "tokenizer": "char" | "word", "training_path": "trainer" | "accelerate_bptt",
     "train_tokens": int, "validation_tokens": int, "steps": int, "epochs": float, "train_runtime_s": float,
     "hyperparameters": {...}, "train_loss": float,
     "validation": {"loss": float (nats/token), "bpc": float, "perplexity": float},
     "validation_note": str | None,                          # when validation continues the training text
     "test": {...same...},                                   # optional
     "samples": [{"prompt": str, "settings": {...}, "text": str}],
     "loss_curve": "loss_curve.png"}
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .evaluation import eval_mode
from .run_folder import atomic_write_text
from .scoring import document_start_id

SUMMARY_FILE = "training_summary.json"
LOSS_CURVE_FILE = "loss_curve.png"
REQUIRED_SUMMARY_KEYS = (
    "dataset",
    "tokenizer",
    "training_path",
    "train_tokens",
    "validation_tokens",
    "steps",
    "epochs",
    "train_runtime_s",
    "hyperparameters",
    "train_loss",
    "validation",
    "samples",
    "loss_curve",
)
# The generation settings recorded with each sample (those that change what comes out).
_SAMPLE_SETTINGS = ("do_sample", "temperature", "top_k", "top_p", "num_beams", "repetition_penalty", "max_new_tokens")


def _to_json(value: Any) -> Any:
    """Plain JSON values: tensors and numpy scalars become numbers, paths strings, NaN/inf null (valid JSON)."""
    if isinstance(value, Mapping):
        return {str(key): _to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(item) for item in value]
    if isinstance(value, torch.Tensor):
        return _to_json(value.item() if value.numel() == 1 else value.tolist())
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):  # numpy scalars
        try:
            return _to_json(value.item())
        except (TypeError, ValueError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "value") and isinstance(getattr(value, "value"), (str, int)):  # enums (e.g. SchedulerType)
        return value.value
    return str(value)


def write_training_summary(output_dir: str | os.PathLike, summary: Mapping[str, Any]) -> Path:
    """
    Write `summary` as ``output_dir/training_summary.json`` and return the path.

    Raises `ValueError` when a key of :data:`REQUIRED_SUMMARY_KEYS` is missing, so both training paths keep the
    layout the model card expects. Non-finite numbers are written as ``null`` (strict JSON has no NaN).
    """
    missing = [key for key in REQUIRED_SUMMARY_KEYS if key not in summary]
    if missing:
        raise ValueError(f"The training summary lacks the keys {missing}; see hf_charrnn.reporting for the layout.")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / SUMMARY_FILE
    text = json.dumps(_to_json(summary), indent=2, ensure_ascii=False, allow_nan=False)
    atomic_write_text(path, text + "\n")  # never leave a half-written summary behind
    return path


def training_summary(*, dataset: str, tokenizer_kind: str, training_path: str, train_tokens: int,
                     validation_tokens: int, steps: int, epochs: float, runtime_s: float, hyperparameters: dict,
                     log_history: Sequence[Mapping[str, Any]], resumed_from: str | None, validation: dict,
                     test: dict | None = None, samples: Sequence[dict] = (), **extra) -> dict[str, Any]:
    """The summary both training paths write, in the layout above: `train_loss` is the mean over the whole run
    (`whole_run_train_loss`, with what it covers), `extra` adds path-specific figures."""
    train_loss, train_loss_covers = whole_run_train_loss(log_history)
    summary = {
        "dataset": dataset, "tokenizer": tokenizer_kind, "training_path": training_path,
        "train_tokens": int(train_tokens), "validation_tokens": int(validation_tokens), "steps": int(steps),
        "epochs": epochs, "train_runtime_s": runtime_s, **extra, "hyperparameters": hyperparameters,
        "train_loss": train_loss, "train_loss_covers": train_loss_covers, "resumed_from": resumed_from,
        "validation": validation, "samples": list(samples), "loss_curve": LOSS_CURVE_FILE,
    }
    if test is not None:
        summary["test"] = test
    return summary


def kept_weights_note(kept_step: int, last_step: int, last_validation: Mapping[str, Any] | None) -> dict[str, Any]:
    """Which step's weights a run saved (`kept_step`: its best evaluation's, when they beat the last step's) and,
    when that is not the last step, the validation figures the last step had (`last_validation`)."""
    note: dict[str, Any] = {"kept_step": int(kept_step)}
    if kept_step != last_step and last_validation is not None:
        note["last_step_validation"] = {key: last_validation.get(key) for key in ("loss", "bpc", "perplexity")}
    return note


def write_run_report(output_dir: str | os.PathLike, summary: Mapping[str, Any],
                     log_history: Iterable[Mapping[str, Any]], title: str) -> Path:
    """The end of a run on disk, both paths: the loss curve, then the summary (written whole, last)."""
    plot_loss_curve(log_history, Path(output_dir) / LOSS_CURVE_FILE, title=title)
    return write_training_summary(output_dir, summary)


def whole_run_train_loss(log_history: Iterable[Mapping[str, Any]]) -> tuple[float | None, str]:
    """
    The mean training loss over every step of the run, from the logged losses (each the mean of the steps since
    the previous log, so weighted by that span), resumed parts included; and a note of what it covers.
    """
    previous_step, weighted_sum, steps = 0, 0.0, 0
    for entry in log_history:
        if "loss" in entry and "step" in entry and entry["step"] > previous_step:
            span = entry["step"] - previous_step
            weighted_sum += float(entry["loss"]) * span
            steps += span
            previous_step = entry["step"]
    if not steps:
        return None, "no logged training loss"
    return weighted_sum / steps, f"steps 1-{previous_step} of the run (the logged losses, resumed parts included)"


def read_training_summary(output_dir: str | os.PathLike) -> dict[str, Any]:
    """Read ``training_summary.json`` back from a folder."""
    return json.loads((Path(output_dir) / SUMMARY_FILE).read_text(encoding="utf-8"))


def plot_loss_curve(
    history: Iterable[Mapping[str, Any]], path: str | os.PathLike, title: str | None = None
) -> Path:
    """
    Plot training loss and validation loss (nats/token) against the optimizer step and save a PNG at `path`.

    `history` is a list of dicts like `Trainer.state.log_history`: entries with ``"step"`` and ``"loss"`` are training
    losses, entries with ``"step"`` and ``"eval_loss"`` validation losses; other entries are ignored. Non-finite values
    are skipped. Uses matplotlib's Agg backend (no display needed).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import (
        Figure,  # Figure without pyplot: no global state, thread-safe
    )

    train_points, eval_points = [], []
    for entry in history:
        step = entry.get("step")
        if step is None:
            continue
        for key, points in (("loss", train_points), ("eval_loss", eval_points)):
            value = entry.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                points.append((step, float(value)))

    figure = Figure(figsize=(7, 4.5), dpi=100)
    axes = figure.add_subplot()
    if train_points:
        axes.plot(*zip(*train_points), label="training loss", color="tab:blue", linewidth=1.2)
    if eval_points:
        axes.plot(*zip(*eval_points), label="validation loss", color="tab:orange", marker="o", markersize=3)
    if not train_points and not eval_points:
        axes.text(0.5, 0.5, "no losses logged", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("cross-entropy (nats/token)")
    axes.set_title(title or "CharRNN training")
    axes.grid(True, alpha=0.3)
    if train_points or eval_points:
        axes.legend()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


@contextlib.contextmanager
def seeded_sampling(model, seed: int | None):
    """The model in eval mode and, with `seed`, the random state seeded for the block, then both back as they were:
    samples drawn during or after training are reproducible and do not change the training run's random stream."""
    device = next(model.parameters()).device
    fork_devices = [device] if device.type == "cuda" else []
    with eval_mode(model), torch.random.fork_rng(devices=fork_devices,
                                                 device_type=device.type if fork_devices else "cuda"):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def generate_samples(
    model,
    tokenizer,
    prompts: Sequence[str] | str,
    seed: int | None = None,
    **generation_kwargs,
) -> list[dict[str, Any]]:
    """
    Sample one continuation per prompt and return ``[{"prompt", "settings", "text"}, ...]``.

    ``text`` is the prompt followed by the generated continuation (decoded, special tokens dropped). An empty prompt
    starts from the tokenizer's ``eos_token`` (the data layer puts ``<eos>`` between documents, so after it comes the
    start of a document), or ``bos_token`` when there is no eos. ``generation_kwargs`` override the model's generation_config (e.g.
    ``max_new_tokens=300, temperature=0.7``); ``settings`` records the values that were used. With `seed`, sampling
    is reproducible and leaves the global random state untouched (so calling this during training does not change
    the training run). The model's train/eval mode is restored afterwards.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    device = next(model.parameters()).device
    settings_source = model.generation_config.to_dict()
    settings_source.update(generation_kwargs)
    settings = {key: _to_json(settings_source[key]) for key in _SAMPLE_SETTINGS if settings_source.get(key) is not None}
    if seed is not None:
        settings["seed"] = seed

    samples = []
    with seeded_sampling(model, seed):
        for prompt in prompts:
            ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
            if not ids:
                ids = [document_start_id(tokenizer)]
            input_ids = torch.tensor([ids], device=device)
            with torch.no_grad():
                output = model.generate(
                    input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    pad_token_id=tokenizer.pad_token_id,
                    **generation_kwargs,
                )
            continuation = tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True)
            samples.append({"prompt": prompt, "settings": dict(settings), "text": prompt + continuation})
    return samples


__all__ = [
    "LOSS_CURVE_FILE",
    "REQUIRED_SUMMARY_KEYS",
    "SUMMARY_FILE",
    "generate_samples",
    "plot_loss_curve",
    "read_training_summary",
    "write_training_summary",
]
