"""The options of the stateful truncated-BPTT loop (`hf-charrnn train-accelerate`).

The model and data options are the Trainer path's: `training_args.ModelArguments` and `training_args.CorpusArguments`
(the part of `DataArguments` that makes sense for one token stream).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields

from .evaluation import DEFAULT_CHUNK_LENGTH


@dataclass
class BPTTArguments:
    """Options of the stateful truncated-BPTT training loop (`hf-charrnn train-accelerate`)."""

    output_dir: str = field(
        default="outputs/charrnn-bptt",
        metadata={"help": "Where the model, checkpoints, training_summary.json and TensorBoard logs go."},
    )
    batch_size: int | None = field(
        default=None,
        metadata={"help": "Parallel rows of the token stream (global, over all processes; must divide by them) "
                          "(default: 64; with --max_train_minutes, sized to the budget)."},
    )
    block_size: int | None = field(
        default=None,
        metadata={"help": "Tokens per row per batch: the truncated-BPTT length (the state is carried across batches) "
                          "(default: 128; with --max_train_minutes and no --batch_size, sized to the budget with it, "
                          "except for --records)."},
    )
    stream_chunk_blocks: int = field(
        default=32,
        metadata={"help": "Each epoch, the rows read the training stream in chunks of up to this many blocks "
                          "(evened out to the rows' length), in a fresh random order (seeded by --seed and the epoch), "
                          "so that the batches differ from epoch to epoch; 0 keeps one fixed layout (char-rnn's)."},
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Consecutive batches per optimizer step (the state flows through them)."}
    )
    num_train_epochs: float = field(default=3.0, metadata={"help": "Passes over the training stream."})
    max_steps: int = field(default=-1, metadata={"help": "If > 0: total optimizer steps (overrides epochs)."})
    learning_rate: float | None = field(
        default=None,
        metadata={"help": "Peak learning rate (default: 2e-3; with --max_train_minutes, sized to the budget)."},
    )
    optimizer: str = field(
        default="adamw", metadata={"help": "'adamw', or 'rmsprop' (char-rnn's: alpha 0.95)."}
    )
    weight_decay: float | None = field(
        default=None, metadata={"help": "AdamW weight decay (default: 0; with --max_train_minutes, sized from the passes over the text)."}
    )
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2."})
    rmsprop_alpha: float = field(default=0.95, metadata={"help": "RMSprop smoothing constant."})
    optimizer_eps: float = field(default=1e-8, metadata={"help": "Optimizer epsilon."})
    lr_scheduler_type: str = field(
        default="cosine", metadata={"help": "Any transformers.get_scheduler name: linear, cosine, constant, ..."}
    )
    # The Trainer path's warm-up and clipping (TrainingArguments' max_grad_norm): measured with ten minutes on the
    # embedded corpus, char-rnn's (no warm-up, clipping at 5) left 0.04-0.06 bpc more on the held-out plays.
    warmup_steps: int = field(default=0, metadata={"help": "Linear warm-up steps (overrides --warmup_ratio)."})
    warmup_ratio: float = field(default=0.02, metadata={"help": "Linear warm-up as a fraction of the steps."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (char-rnn: 5); 0 = off."})
    mixed_precision: str = field(
        default="auto",
        metadata={"help": "'auto' (bf16 autocast where this machine has the kernels and a short measurement at the "
                          "start shows it faster, else fp32), 'bf16', 'no' (fp32) or 'fp16' (GPUs)."},
    )
    bf16: bool = field(default=False, metadata={"help": "Train in bf16 autocast: --mixed_precision bf16."})
    no_bf16: bool = field(default=False, metadata={"help": "Train in fp32: --mixed_precision no."})
    max_train_minutes: float | None = field(
        default=None,
        metadata={"help": "A wall-clock budget for the whole run (loading, evaluations and saving included): the "
                          "steps and the learning-rate schedule are planned from timing real steps, and the run stops "
                          "in time with a checkpoint and the model saved. Overrides --num_train_epochs; --max_steps "
                          "caps it."},
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
    evaluate_test_split: bool = field(
        default=True, metadata={"help": "Score the test split at the end, when there is one."}
    )
    sample_every_steps: int = field(
        default=500, metadata={"help": "Print/log a generated sample every this many steps; 0 turns it off."}
    )
    sample_prompt: str | None = field(
        default=None, metadata={"help": "Prompt for the samples (default: 'ROMEO:' for Shakespeare, else the start of "
                                        "a validation line)."}
    )
    sample_length: int = field(default=200, metadata={"help": "Tokens to generate per sample."})
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
    # The names this path used before both paths took the same names; accepted for one release, with a warning.
    bptt_length: int | None = field(default=None, metadata={"help": "Deprecated: use --block_size."})
    sample_steps: int | None = field(default=None, metadata={"help": "Deprecated: use --sample_every_steps."})
    sample_prompts: list[str] | None = field(default=None, metadata={"help": "Deprecated: use --sample_prompt."})
    sample_max_new_tokens: int | None = field(default=None, metadata={"help": "Deprecated: use --sample_length."})
    do_test: bool | None = field(default=None, metadata={"help": "Deprecated: use --evaluate_test_split."})

    def __post_init__(self):
        # Options left unset: a time budget sizes them (hf_charrnn.sizing), anything else takes the defaults.
        self.unset_options = {name for name, value in UNSET_DEFAULTS.items() if getattr(self, name) is None}
        for name in self.unset_options:
            setattr(self, name, UNSET_DEFAULTS[name])
        self._take_deprecated_names()
        positive = ("batch_size", "block_size", "gradient_accumulation_steps", "eval_batch_size", "eval_chunk_length")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        for name in ("logging_steps", "eval_steps", "sample_every_steps", "save_steps", "warmup_steps",
                     "stream_chunk_blocks"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.max_steps <= 0 and not self.num_train_epochs > 0:
            raise ValueError("Give num_train_epochs > 0 or max_steps > 0.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}.")
        if self.optimizer not in ("adamw", "rmsprop"):
            raise ValueError(f"optimizer must be 'adamw' or 'rmsprop', got {self.optimizer!r}.")
        self._take_precision_flags()
        if self.max_train_minutes is not None and not self.max_train_minutes > 0:
            raise ValueError(f"max_train_minutes must be positive, got {self.max_train_minutes}.")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be 'auto', 'no', 'bf16' or 'fp16', got {self.mixed_precision!r}.")
        if self.report_to not in ("tensorboard", "none"):
            raise ValueError(f"report_to must be 'tensorboard' or 'none', got {self.report_to!r}.")
        if self.max_grad_norm < 0:
            raise ValueError(f"max_grad_norm must be >= 0, got {self.max_grad_norm}.")


    def _take_precision_flags(self) -> None:
        """--bf16 / --no_bf16, the Trainer path's flags, as --mixed_precision."""
        if self.bf16 and self.no_bf16:
            raise ValueError("--bf16 and --no_bf16 contradict each other: give one.")
        if self.bf16 or self.no_bf16:
            self.mixed_precision = "bf16" if self.bf16 else "no"
            self.bf16 = self.no_bf16 = False

    def _take_deprecated_names(self) -> None:
        """An old option name sets its new one (the new one wins when both are given), with a FutureWarning."""
        for old, new in DEPRECATED_NAMES.items():
            value = getattr(self, old)
            if value is None:
                continue
            warnings.warn(f"--{old} is now --{new} (the same on both training paths); the old name goes in the next "
                          "release.", FutureWarning, stacklevel=4)
            if old == "sample_prompts":
                value = value[0] if value else None
            if new in self.unset_options or getattr(self, new) == UNSET_DEFAULTS.get(new, BPTT_DEFAULTS[new]):
                setattr(self, new, value)
                self.unset_options.discard(new)
            setattr(self, old, None)


UNSET_DEFAULTS = {"batch_size": 64, "block_size": 128, "learning_rate": 2e-3, "weight_decay": 0.0}
# Old name -> new name (the names both training paths now share).
DEPRECATED_NAMES = {"bptt_length": "block_size", "sample_steps": "sample_every_steps", "sample_prompts": "sample_prompt",
                    "sample_max_new_tokens": "sample_length", "do_test": "evaluate_test_split"}
BPTT_DEFAULTS = {f.name: f.default for f in fields(BPTTArguments)}

# The BPTTArguments that change what a run computes: resuming a folder needs the same values (run_folder).
BPTT_IDENTITY_FIELDS = (
    "batch_size", "block_size", "gradient_accumulation_steps", "num_train_epochs", "max_steps", "learning_rate",
    "optimizer", "weight_decay", "adam_beta1", "adam_beta2", "rmsprop_alpha", "optimizer_eps", "lr_scheduler_type",
    "warmup_steps", "warmup_ratio", "max_grad_norm", "mixed_precision", "seed",
)
