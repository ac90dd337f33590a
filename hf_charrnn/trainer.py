"""Training a CharRNN with transformers' `Trainer` (`hf-charrnn train`; options in `training_args`).

The run, end to end:

1. load the text (the embedded Shakespeare corpus by default; text files; or any `datasets` data set),
2. build a character (or word) tokenizer from the training text, or load one,
3. build a `CharRNNForCausalLM` sized for that vocabulary (or load a checkpoint to fine-tune),
4. cut the text into blocks of `block_size` tokens (labels = input_ids; the model shifts them), the training text
   at a fresh offset each epoch (`shifted_blocks`),
5. train with `Trainer`: AdamW, learning-rate schedule, gradient clipping, periodic evaluation reporting `eval_loss`
   (nats/token), `eval_bpc` (bits per character) and `eval_perplexity`, checkpoints, TensorBoard logs, a generated
   sample every `sample_every_steps` steps, optional early stopping;
6. save the model, tokenizer and generation config (`save_pretrained`), `training_summary.json` and `loss_curve.png`
   into `output_dir`.

Robustness: the output folder belongs to one run (`run_folder`): the same run resumes from its last checkpoint, any
other is refused before anything is written (`--overwrite_output_dir` starts over); Ctrl-C (SIGINT) or SIGTERM
finishes the current step and saves a checkpoint (`TrainingInterrupted`); a NaN or infinite loss stops the run with
a message naming the step, and no checkpoint is written after it (`TrainingDivergedError`). Expected problems (a
missing file, an empty split, a missing column, ...) raise `TrainingSetupError`.

Programmatic use: `train(model_args, data_args, training_args)` returns the training summary (a dict);
`CharRNNTrainingArguments(**overrides)` gives `TrainingArguments` with this command's defaults.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    EarlyStoppingCallback,
    ProgressCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from . import data, records
from .checkpoints import CHECKPOINT_PREFIX, TRAINER_STATE_FILE, complete_checkpoints, resolve_checkpoint
from .evaluation import bits_per_character, eval_mode
from .hub import push_output_dir
from .precision import PrecisionChoice
from .run_folder import (
    OutputDirClaim,
    refused_pickle_message,
)
from .shifted_blocks import ShiftBlocksCallback, ShiftedBlocks
from .trainer_callback import (
    EvaluateLastStepCallback,
    GracefulInterruptCallback,
    NonFiniteLossCallback,
    PlannedProgressCallback,
    PrecisionRecordCallback,
    SampleCallback,
)
from .time_budget import TimeBudget, TimeBudgetCallback, save_plan
from .trainer_budget import choose_trainer_precision, plan_trainer_budget, size_trainer_run
from .trainer_summary import save_and_summarize
from .trainer_utils import (
    TrainingDivergedError,
    TrainingInterrupted,
    TrainingSetupError,
    build_model,
    check_training_length,
    data_identity,
    dataset_label,
    is_char_tokenizer,
    load_or_build_tokenizer,
    load_raw_data,
    model_identity,
    sample_prompt_for,
    training_texts,
)
from .training_args import DataArguments, ModelArguments

logger = logging.getLogger(__name__)


# The TrainingArguments that change what a run computes: resuming a folder needs the same values (run_folder).
TRAINER_IDENTITY_FIELDS = (
    "learning_rate", "lr_scheduler_type", "warmup_steps", "train_batch_size",
    "gradient_accumulation_steps", "num_train_epochs", "max_steps", "weight_decay", "adam_beta1", "adam_beta2",
    "adam_epsilon", "optim", "max_grad_norm", "seed", "bf16", "fp16", "label_smoothing_factor", "max_train_minutes",
)


class CharRNNTrainer(Trainer):
    """`Trainer` whose evaluations also report `<prefix>_bpc` and `<prefix>_perplexity`, and that reports each loss
    to a `NonFiniteLossCallback`.

    Only the loss is computed during evaluation (no logits are kept). bpc = loss (nats/token) * tokens / characters
    / ln 2, with the tokens-per-character ratio of the split in `tokens_per_character` (1.0 for a character
    tokenizer: every token, `<eos>` included, counts as one character). Perplexity is per token.
    """

    def __init__(self, *args, tokens_per_character: dict[str, tuple[int, int]] | None = None,
                 records: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        # {metric prefix: (tokens, characters)}; "eval" is the fallback for any prefix.
        self.tokens_per_character = dict(tokens_per_character or {})
        self.records = records  # padded batches of records: the loss is recomputed per token (`_loss_per_token`)

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

    def evaluation_loop(self, dataloader, *args, **kwargs):
        output = super().evaluation_loop(dataloader, *args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", "eval")
        if self.records and f"{prefix}_loss" in output.metrics:
            output.metrics[f"{prefix}_loss"] = self._loss_per_token(dataloader)
        loss = output.metrics.get(f"{prefix}_loss")
        if loss is not None:
            tokens, characters = self.tokens_per_character.get(prefix, self.tokens_per_character.get("eval", (1, 1)))
            output.metrics[f"{prefix}_bpc"] = bits_per_character(loss * tokens, characters)
            output.metrics[f"{prefix}_perplexity"] = math.exp(loss) if loss < 700 else float("inf")
        return output

    @torch.no_grad()
    def _loss_per_token(self, dataloader) -> float:
        """The mean loss over every predicted token of the split. The Trainer averages each batch's mean over the
        batches (weighted by rows), which is per token only when all rows have the same length; records differ."""
        totals = torch.zeros(2, dtype=torch.float64, device=self.args.device)
        with eval_mode(self.model):
            for batch in dataloader:
                batch = self._prepare_inputs(batch)
                nats, tokens = records.batch_nats(self.model, batch["input_ids"][:, :-1], batch["labels"][:, 1:])
                totals += torch.stack([nats, tokens.double()])
        totals = self.accelerator.reduce(totals, "sum")
        return float(totals[0] / totals[1].clamp(min=1))


def _count_ratio(tokenizer, texts) -> tuple[int, int]:
    """(tokens, characters) of `texts` as the data layer lays them out (one <eos> after each document)."""
    if is_char_tokenizer(tokenizer):
        return 1, 1
    texts = list(texts)
    tokens = sum(len(ids) + 1 for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    characters = sum(len(text) + 1 for text in texts)
    return tokens, max(characters, 1)


def _select(dataset, count: int | None):
    """The first `count` rows (all when None), for a map-style or a streaming data set."""
    if count is None:
        return dataset
    if isinstance(dataset, ShiftedBlocks):
        return dataset.first(count)
    if hasattr(dataset, "__len__"):
        return dataset.select(range(min(count, len(dataset))))
    return dataset.take(count)


@dataclass
class TrainerRun:
    """What `prepare_run` builds for one run: the Trainer, where it resumes from, and what the summary needs."""

    trainer: CharRNNTrainer
    checkpoint: str | None
    tokenizer: Any
    nonfinite: NonFiniteLossCallback
    interrupt: GracefulInterruptCallback
    sampler: SampleCallback
    sample_prompt: str
    test_dataset: Any
    train_blocks: int | None  # None for a streaming data set
    validation_blocks: int | None
    precision: PrecisionChoice
    budget: TimeBudgetCallback | None = None  # with --max_train_minutes: its plan, and where it stopped the run
    train_texts: Any = None  # the training split's texts, read lazily (the memorisation report reads its start)


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
    Trainer's (tests use them to inject failures). The caller's `training_args` are left as they are.
    """
    budget = TimeBudget(training_args.max_train_minutes) if training_args.max_train_minutes else None
    set_seed(training_args.seed)
    training_args, push_repo_id = _take_push_request(training_args)
    data_args = copy.copy(data_args)  # the plan of a time budget sets the sampling interval
    try:  # every check before anything is written into the output folder
        check_training_length(training_args.max_steps)
        claim = OutputDirClaim(training_args.output_dir, trainer_run_identity(model_args, data_args, training_args),
                               overwrite=data_args.overwrite_output_dir,
                               extend=bool(training_args.resume_from_checkpoint),
                               is_main_process=training_args.process_index == 0)
        claim.check()
        run = prepare_run(model_args, data_args, training_args, callbacks, budget)
    except TrainingSetupError:
        raise
    except (OSError, ValueError) as error:
        raise TrainingSetupError(str(error)) from error
    try:
        claim.acquire(resumed_from=run.checkpoint)
        if run.budget is not None:
            save_plan(training_args.output_dir, run.budget)
        runtime = _run_trainer(run, training_args.output_dir)
        summary = save_and_summarize(run, runtime, model_args, data_args, training_args)
        claim.complete(summary["steps"], summary["validation"]["bpc"])
    finally:
        claim.release()
    if push_repo_id is not None:
        commit = push_output_dir(training_args.output_dir, push_repo_id, private=bool(training_args.hub_private_repo),
                                 revision=training_args.hub_revision, token=training_args.hub_token)
        logger.info("Pushed %s to %s", training_args.output_dir, commit.commit_url)
    return summary


def trainer_run_identity(model_args: ModelArguments, data_args: DataArguments, training_args) -> dict[str, Any]:
    """Everything that makes a Trainer run this run: resuming is allowed only when it is the same."""
    return {
        "training_path": "trainer",
        "data": data_identity(data_args),
        "model": model_identity(model_args),
        # `train_batch_size`: the rows of a step on all processes together, so that a checkpoint resumes on another
        # number of processes with the per-device batch that keeps it
        "training": {name: (training_args.per_device_train_batch_size * max(1, training_args.world_size)
                            if name == "train_batch_size" else getattr(training_args, name))
                     for name in TRAINER_IDENTITY_FIELDS},
        "block_size": data_args.block_size,
        # only when set: a run recorded before the blocks shifted resumes with --shift_blocks false, as it was cut
        **({"shift_blocks": True} if _shifts_blocks(data_args) else {}),
    }


def _take_push_request(training_args: TrainingArguments) -> tuple[TrainingArguments, str | None]:
    """
    Honour `--push_to_hub` / `--hub_model_id` with one commit of the finished output folder (model, tokenizer, code,
    model card, plot) instead of Trainer's own pushes, which upload checkpoints and logs along the way: returns a copy
    of the arguments (the run sets its precision and budget plan in it) with Trainer's pushes off, and the repo id to
    push to (None: no push).
    """
    without_push = copy.copy(training_args)
    if not training_args.push_to_hub:
        return without_push, None
    without_push.push_to_hub = False
    return without_push, training_args.hub_model_id or Path(training_args.output_dir).name


def _run_trainer(run: TrainerRun, output_dir: str) -> float:
    """`trainer.train()`, resuming `run.checkpoint`; a divergence or a stop signal becomes its exception. Returns the
    training time in seconds."""
    started = time.time()
    try:
        output = run.trainer.train(resume_from_checkpoint=run.checkpoint)
    except pickle.UnpicklingError:
        raise TrainingSetupError(refused_pickle_message(run.checkpoint)) from None
    finally:
        run.interrupt.restore()
    if run.nonfinite.bad_step is not None:
        good = complete_checkpoints(output_dir, TRAINER_STATE_FILE)
        raise TrainingDivergedError.at("training loss", run.nonfinite.bad_loss, run.nonfinite.bad_step,
                                       str(good[-1]) if good else None)
    if run.interrupt.signal_number is not None:
        step = run.trainer.state.global_step
        raise TrainingInterrupted.at(run.interrupt.signal_number, step,
                                     os.path.join(output_dir, f"{CHECKPOINT_PREFIX}{step}"))
    return float(output.metrics.get("train_runtime", time.time() - started))


# ----------------------------------------------------------------------------------------------------------------------
# Setting up
# ----------------------------------------------------------------------------------------------------------------------


def _check_options(data_args: DataArguments, training_args: TrainingArguments) -> None:
    if data_args.block_size < 2:
        raise ValueError(f"--block_size must be at least 2 (got {data_args.block_size}).")
    if data_args.streaming and training_args.max_steps <= 0 and not training_args.max_train_minutes:
        raise ValueError("--streaming needs --max_steps or --max_train_minutes (a lazily read data set has no known "
                         "length).")
    if data_args.records != "none" and data_args.streaming:
        raise ValueError("--records reads the records of a data set it can count; without --streaming it does (the "
                         "cache is memory-mapped, so a large corpus fits).")
    if training_args.early_stopping_patience is not None:
        if training_args.eval_strategy == "no":
            raise ValueError("--early_stopping_patience needs evaluations: set --eval_strategy steps (or epoch).")
        if not training_args.metric_for_best_model:
            raise ValueError("--early_stopping_patience needs --metric_for_best_model eval_loss.")


def _shifts_blocks(data_args: DataArguments) -> bool:
    """Whether the training blocks start at a fresh offset each epoch: a stream cut into blocks, held in memory."""
    return data_args.shift_blocks and data_args.records == "none" and not data_args.streaming


def _blocks(raw, tokenizer, data_args: DataArguments, seed: int) -> dict[str, Any]:
    """The splits cut into blocks of `block_size` tokens (or, in record mode, one example per record): train and
    validation (limited as asked), and test."""
    wanted = {"train": raw["train"], "validation": raw["validation"]}
    if data_args.evaluate_test_split and "test" in raw:
        wanted["test"] = raw["test"]
    if data_args.records != "none":
        grouped = {split: records.tokenize_records(ds, tokenizer, data_args.records, data_args.block_size,
                                                   num_proc=data_args.preprocessing_num_workers, split=split)
                   for split, ds in wanted.items()}
    else:
        shifted = _shifts_blocks(data_args)
        grouped = {
            split: data.tokenize_and_group(
                ds, tokenizer, data_args.block_size, num_proc=data_args.preprocessing_num_workers,
                add_eos=not (data_args.streaming and data_args.train_file),
            )
            for split, ds in wanted.items() if split != "train" or not shifted
        }
        if shifted:
            ids = data.tokenize_stream(raw["train"], tokenizer, num_proc=data_args.preprocessing_num_workers,
                                       compact=True)  # 1-2 bytes a token, memory-mapped: blocks convert as read
            grouped["train"] = ShiftedBlocks(ids, data_args.block_size, seed)
    grouped["train"] = _select(grouped["train"], data_args.max_train_samples)
    grouped["validation"] = _select(grouped["validation"], data_args.max_eval_samples)
    return grouped


def _callbacks(tokenizer, prompt: str, data_args: DataArguments, training_args,
               extra: Sequence[TrainerCallback]) -> list:
    """The run's callbacks, the project's first: non-finite loss, interrupt, samples, the blocks' epoch, (early
    stopping), `extra`."""
    sampler = SampleCallback(tokenizer, prompt, data_args.sample_every_steps, data_args.sample_length,
                             training_args.seed)
    callbacks = [NonFiniteLossCallback(), GracefulInterruptCallback(), sampler, ShiftBlocksCallback()]
    if training_args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(training_args.early_stopping_patience,
                                               training_args.early_stopping_threshold))
    return callbacks + list(extra)


def prepare_run(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    extra_callbacks: Sequence[TrainerCallback] = (),
    budget: TimeBudget | None = None,
) -> TrainerRun:
    """Everything before `trainer.train()`: checks, data, tokenizer, model, blocks, precision, the plan of a time
    budget, callbacks, the Trainer."""
    _check_options(data_args, training_args)
    checkpoint = resolve_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir,
                                    TRAINER_STATE_FILE, data_args.overwrite_output_dir)
    checkpoint = str(checkpoint) if checkpoint else None  # Trainer takes a str
    raw = load_raw_data(data_args, seed=training_args.seed)
    train_texts = training_texts(raw["train"], max_characters=20_000_000 if data_args.streaming else None)
    if not any(train_texts):
        raise ValueError("The training text is empty.")
    tokenizer, tokenizer_source = load_or_build_tokenizer(model_args, train_texts, checkpoint)
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError(f"The tokenizer from {tokenizer_source} needs a pad token and an eos token.")
    blocks = _blocks(raw, tokenizer, data_args, training_args.seed)
    ratios = {split: _count_ratio(tokenizer, training_texts(raw[name], max_characters=2_000_000))
              for split, name in (("eval", "validation"), ("test", "test")) if name in blocks}
    prompt = sample_prompt_for(data_args.sample_prompt, dataset_label(data_args), raw["validation"])
    sized = budget and size_trainer_run(budget, model_args, training_args, tokenizer, blocks["train"], data_args,
                                        checkpoint)
    if sized:
        model_args = sized.model_arguments(model_args)
    model = build_model(model_args, tokenizer, checkpoint)
    precision = choose_trainer_precision(model, training_args, data_args, checkpoint)
    plan = budget and plan_trainer_budget(budget, model, blocks, precision, checkpoint, data_args, training_args)
    callbacks = _callbacks(tokenizer, prompt, data_args, training_args, extra_callbacks)
    budget_callback = (TimeBudgetCallback(plan, budget.minutes, sized, sampler=callbacks[2], clock=budget.clock)
                       if plan else None)
    if budget_callback:
        callbacks.append(budget_callback)
    callbacks.append(PrecisionRecordCallback(precision.mixed_precision, precision.reason))
    callbacks.append(EvaluateLastStepCallback(interrupt=callbacks[1]))  # last: after every callback that stops
    trainer = CharRNNTrainer(
        model=model, args=training_args, train_dataset=blocks["train"],
        eval_dataset=blocks["validation"], processing_class=tokenizer,
        data_collator=records.RecordCollator(tokenizer.pad_token_id) if data_args.records != "none" else
        default_data_collator,
        callbacks=callbacks, tokens_per_character=ratios, records=data_args.records != "none",
    )
    callbacks[2].attach(trainer)
    if budget_callback and trainer.pop_callback(ProgressCallback):  # present unless disable_tqdm
        trainer.add_callback(PlannedProgressCallback(budget_callback))
    return TrainerRun(
        trainer=trainer, checkpoint=checkpoint, tokenizer=tokenizer, nonfinite=callbacks[0], interrupt=callbacks[1],
        sampler=callbacks[2], sample_prompt=prompt, test_dataset=blocks.get("test"),
        train_blocks=len(blocks["train"]) if hasattr(blocks["train"], "__len__") else None,
        validation_blocks=len(blocks["validation"]) if hasattr(blocks["validation"], "__len__") else None,
        precision=precision, budget=budget_callback, train_texts=train_texts,
    )
