"""The classic char-rnn training recipe with `accelerate`: stateful truncated back-propagation through time.

Unlike the Trainer path (independent blocks, every block starts from a zero state), this loop reads the training
text as karpathy/char-rnn does:

* The training token stream (documents separated by `<eos>`, see `hf_charrnn.data.tokenize_stream`) is read as
  `batch_size` rows. Batch `k` is the next `block_size` tokens of every row. Each epoch the rows read the stream in
  chunks of up to `stream_chunk_blocks` blocks in a fresh order seeded by the seed and the epoch
  (`hf_charrnn.bptt_stream.StreamRows`), so that epochs differ: within a chunk, row `i` of batch `k + 1` continues
  row `i` of batch `k`. `--stream_chunk_blocks 0` keeps char-rnn's one fixed layout of contiguous rows
  (`hf_charrnn.data.batchify`).
* The recurrent state (`CharRNNCache`) is carried from one batch to the next, detached (`cache.detach()`), so the
  model learns from context longer than `block_size` while gradients stop at the batch boundary. It restarts from
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
* Precision: `auto` (the default) trains in bf16 autocast where this machine has bf16 kernels for the cell and a
  short measurement at the start shows them faster, else in fp32 (`hf_charrnn.precision`); `--bf16` / `--no_bf16`
  decide instead. `--max_train_minutes` plans the steps for a wall-clock budget (`hf_charrnn.time_budget`).
* Validation loss, bits per character and perplexity are computed with the state carried over the whole validation
  stream (`hf_charrnn.evaluation.score_stream`), every `eval_steps` and at the end.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
from accelerate.utils import set_seed
from transformers import TrainerCallback, get_scheduler

from . import data as data_module
from . import records
from .accelerator_setup import make_accelerator, resolve_mixed_precision, training_device_type
from .bptt import BPTTLoop, BPTTStreams
from .checkpoints import BPTT_STATE_FILE, resolve_checkpoint
from .bptt_args import BPTT_IDENTITY_FIELDS, DEPRECATED_NAMES, BPTTArguments
from .evaluation import dataset_stream
from .precision import PrecisionChoice, resumed_precision
from .memorisation import training_run_report
from .reporting import generate_samples, kept_weights_note, training_summary, write_run_report
from .run_folder import OutputDirClaim, atomic_write_json, read_json_file
from .bptt_budget import plan_bptt_budget, print_on_main_process, size_bptt_run
from .bptt_stream import StreamRows
from .configuration_charrnn import REGULARIZATION_FIELDS
from .time_budget import TimeBudget, run_started, save_plan
from .token_encoding import id_dtype
from .trainer_utils import (
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
    validation_note,
)
from .training_args import CorpusArguments, ModelArguments

TRAINING_PATH = "accelerate_bptt"


# ----------------------------------------------------------------------------------------------------------------------
# Set-up helpers
# ----------------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------------


def train_bptt(
    args: BPTTArguments | None = None,
    model_args=None,
    data_args: CorpusArguments | None = None,
    *,
    model=None,
    tokenizer=None,
    dataset=None,
    dataset_name: str | None = None,
    callback: Callable[[dict], None] | None = None,
    callbacks: Sequence[TrainerCallback] = (),
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
    on every process after each optimizer step with `{"step", "epoch", "loss", "learning_rate"}`. `callbacks` are
    TrainerCallbacks, driven as the Trainer drives them (`on_step_end`, `on_log`, `on_evaluate`, `on_save`, ...);
    a `control.should_training_stop` ends the run normally (set it on every process alike).

    Returns the training summary (as written to training_summary.json) plus `"output_dir"` and `"checkpoint"` (the
    last checkpoint saved, or None). Raises `hf_charrnn.trainer_utils.TrainingSetupError` for bad options or data,
    `TrainingDivergedError` for a NaN/inf loss or gradient (nothing is saved after that step), and
    `TrainingInterrupted` after SIGINT/SIGTERM saved a checkpoint.
    """
    started = run_started()  # a time budget counts from here (from the process's start for the command)
    args = BPTTArguments() if args is None else args
    if not isinstance(args, BPTTArguments):
        raise TypeError(f"args must be BPTTArguments, not {type(args).__name__} (pass model_args=..., data_args=...).")
    if overrides:
        unknown = set(overrides) - {f.name for f in fields(BPTTArguments)}
        if unknown:
            raise TypeError(f"Unknown training option(s) {sorted(unknown)}; see BPTTArguments.")
        # the options still unset go back to None, so that the new arguments know them (and old names) as unset
        args = BPTTArguments(**{**asdict(args), **dict.fromkeys(args.unset_options), **overrides})
    budget = TimeBudget(args.max_train_minutes, started) if args.max_train_minutes else None
    model_args = ModelArguments() if model_args is None else model_args
    data_args = CorpusArguments() if data_args is None else data_args
    try:  # every check before anything is written into the output folder
        check_training_length(args.max_steps)
        claim = OutputDirClaim(args.output_dir,
                               bptt_run_identity(model_args, data_args, args, model, dataset, dataset_name),
                               overwrite=data_args.overwrite_output_dir, extend=bool(args.resume_from_checkpoint),
                               is_main_process=os.environ.get("RANK", "0") == "0")  # the launcher's; set early
        claim.check()
    except (OSError, ValueError) as error:
        raise TrainingSetupError(str(error)) from error
    try:
        return _train_claimed(args, model_args, data_args, claim, model=model, tokenizer=tokenizer,
                              dataset=dataset, dataset_name=dataset_name, callback=callback, callbacks=callbacks,
                              accelerator=accelerator, budget=budget)
    finally:
        claim.release()


def bptt_run_identity(model_args, data_args: CorpusArguments, args: BPTTArguments, model=None, dataset=None,
                      dataset_name: str | None = None) -> dict:
    """Everything that makes a BPTT run this run (see hf_charrnn.run_folder); objects passed in count by shape."""
    if dataset is not None:
        data = {"dataset": dataset_name or "passed to train_bptt", "rows": {k: len(v) for k, v in dataset.items()}}
    else:
        data = data_identity(data_args)
    if model is not None:
        shape = ("vocab_size", "cell_type", "hidden_size", "num_layers", "embedding_dim", "input_encoding")
        model_part = {"passed_to_train_bptt": {name: getattr(model.config, name) for name in shape}}
    else:
        model_part = model_identity(model_args)
    training = {key: value for key, value in asdict(args).items() if key in BPTT_IDENTITY_FIELDS}
    return {"training_path": TRAINING_PATH, "data": data, "model": model_part, "training": training}


def _checkpoint_to_resume(args: BPTTArguments, data_args: CorpusArguments) -> Path | None:
    """--resume_from_checkpoint, else the newest checkpoint of this run in the folder (the claim checked it is)."""
    try:
        return resolve_checkpoint(args.resume_from_checkpoint, args.output_dir, BPTT_STATE_FILE,
                                  data_args.overwrite_output_dir, announce=print_on_main_process)
    except ValueError as error:
        raise TrainingSetupError(str(error)) from error


def _load_data(args, model_args, data_args, checkpoint, tokenizer, dataset, dataset_name):
    """The data set and tokenizer, each built the way `hf-charrnn train` builds it unless given; checked."""
    try:
        if dataset is None:
            dataset = load_raw_data(data_args, seed=args.seed)
            dataset_name = dataset_name or dataset_label(data_args)
        for split in ("train", "validation"):
            if split not in dataset:
                raise ValueError(f"The data set needs a {split!r} split; it has {sorted(dataset)}.")
        if tokenizer is None:
            resumed = str(checkpoint) if checkpoint else None
            tokenizer, _ = load_or_build_tokenizer(model_args, training_texts(dataset["train"]), resumed)
        if tokenizer.eos_token_id is None:
            raise ValueError("The tokenizer needs an eos token (it separates the documents of the stream).")
    except TrainingSetupError:
        raise
    except (OSError, ValueError) as error:
        raise TrainingSetupError(str(error)) from error
    return dataset, dataset_name or "custom", tokenizer


def _checked_model(model, model_args, tokenizer, checkpoint):
    """The model given, else built as `hf-charrnn train` builds it; its vocabulary checked against the tokenizer's."""
    try:
        if model is None:
            model = build_model(model_args, tokenizer, str(checkpoint) if checkpoint else None)
        if model.config.vocab_size < len(tokenizer):
            raise ValueError(
                f"The model's vocab_size ({model.config.vocab_size}) is smaller than the tokenizer's "
                f"vocabulary ({len(tokenizer)}): build the model with vocab_size=len(tokenizer)."
            )
    except (OSError, ValueError) as error:
        raise TrainingSetupError(str(error)) from error
    return model


def _check_memory_for_stream(train_split, tokenizer) -> None:
    """A data set held in memory (no cache files: built in Python, or datasets' caching off) gives the BPTT path its
    training stream in memory too, tokenized and then concatenated (1-2 bytes a token each): a clear error up front
    when this machine cannot hold that. A cached data set's stream is a memory-mapped file (`data.tokenize_stream`),
    read as used: no check."""
    if train_split.cache_files:
        return
    text_bytes = getattr(getattr(train_split, "data", None), "nbytes", 0)
    needed = text_bytes * np.dtype(id_dtype(len(tokenizer))).itemsize * 2.2
    available = psutil.virtual_memory().available
    if needed > available:
        raise TrainingSetupError(
            f"The training text ({text_bytes / 1e9:.1f} GB, held in memory) needs about {needed / 1e9:.1f} GB of "
            f"memory as the BPTT path's token stream, and {available / 1e9:.1f} GB is available: give it as files "
            "(--train_file, --dataset_name FOLDER: read in pieces and memory-mapped), train with `hf-charrnn "
            "train --streaming`, or use a smaller corpus."
        )


def _token_streams(args: BPTTArguments, dataset, tokenizer, accelerator, records_mode: str = "none") -> BPTTStreams:
    """The training stream laid out as rows (this process's share) and the evaluation streams; in record mode, the
    records in batches (`_record_batches`)."""
    world, rank = accelerator.num_processes, accelerator.process_index
    if args.batch_size % world:
        raise TrainingSetupError(
            f"batch_size={args.batch_size} rows cannot be shared evenly by {world} processes: use a multiple of "
            f"{world}."
        )
    local_rows = args.batch_size // world
    if records_mode != "none":
        return _record_batches(args, dataset, tokenizer, records_mode, rank, world)
    _check_memory_for_stream(dataset["train"], tokenizer)
    train_ids = data_module.tokenize_stream(dataset["train"], tokenizer, compact=True)
    if data_module.num_stream_blocks(train_ids.numel(), args.batch_size, args.block_size, True) < 1:
        raise TrainingSetupError(
            f"The training split has {train_ids.numel()} tokens: too few for batch_size={args.batch_size} rows of "
            f"block_size={args.block_size} + 1 tokens. Lower --batch_size or --block_size, or give more text."
        )
    rows = StreamRows(train_ids, args.batch_size, args.block_size, args.stream_chunk_blocks, args.seed)
    eval_sets = {}
    for split in ("validation", "test"):
        if split in dataset and (split == "validation" or args.evaluate_test_split):
            ids, characters = dataset_stream(dataset[split], tokenizer, max_tokens=args.max_eval_tokens,
                                              compact=True)
            if args.max_eval_tokens is not None and ids.numel() > args.max_eval_tokens + 1:
                # Characters of a prefix: per-token lengths are exact for char tokenizers; scale for others.
                characters = round(characters * args.max_eval_tokens / (ids.numel() - 1))
                ids = ids[: args.max_eval_tokens + 1]
            eval_sets[split] = (ids, characters)
    return BPTTStreams(rows=rows, local_rows=local_rows, blocks_per_epoch=rows.blocks_per_epoch,
                       train_tokens=int(train_ids.numel()), eval_sets=eval_sets)


def _record_batches(args: BPTTArguments, dataset, tokenizer, mode: str, rank: int, world: int) -> BPTTStreams:
    """Record mode: every record (`<eos> record <eos>`, at most `block_size` + 1 tokens) from the initial state, in
    batches drawn afresh each epoch; evaluation scores each validation record alone, per token."""
    splits = ["train", "validation"] + (["test"] if "test" in dataset and args.evaluate_test_split else [])
    try:
        tokenized = {split: records.tokenize_records(dataset[split], tokenizer, mode, args.block_size + 1,
                                                     split=split) for split in splits}
    except ValueError as error:  # a split without records, or rows that are pieces of files
        raise TrainingSetupError(str(error)) from error
    train = tokenized.pop("train")
    batches = records.RecordBatches(train, args.batch_size, rank, world, args.seed, tokenizer.pad_token_id)
    if batches.batches_per_epoch < 1:
        raise TrainingSetupError(f"The training split has {len(train)} records: too few for batch_size="
                                 f"{args.batch_size}. Lower --batch_size, or give more records.")
    eval_sets = {split: (scored, records.record_characters(training_texts(dataset[split]), mode))
                 for split, scored in tokenized.items()}
    return BPTTStreams(rows=None, local_rows=args.batch_size // world, blocks_per_epoch=batches.batches_per_epoch,
                       train_tokens=records.predicted_tokens(train), eval_sets=eval_sets, records=batches)


def _optimizer_and_schedule(model, args: BPTTArguments, total_steps: int):
    optimizer = _build_optimizer(model, args)
    warmup = args.warmup_steps or math.ceil(args.warmup_ratio * total_steps)
    try:
        scheduler = get_scheduler(
            args.lr_scheduler_type, optimizer=optimizer, num_warmup_steps=warmup, num_training_steps=total_steps
        )
    except ValueError as error:
        raise TrainingSetupError(f"--lr_scheduler_type {args.lr_scheduler_type!r}: {error}") from error
    return optimizer, scheduler


def _hyperparameters(model, args: BPTTArguments, accelerator) -> dict[str, Any]:
    config = model.config
    return {
        **{key: getattr(config, key) for key in (
            "vocab_size", "cell_type", "embedding_dim", "hidden_size", "num_layers", "input_encoding",
            "tie_word_embeddings", *REGULARIZATION_FIELDS)},
        "num_parameters": sum(p.numel() for p in model.parameters()),
        **{key: value for key, value in asdict(args).items() if key not in (
            "output_dir", "resume_from_checkpoint", "report_to", "disable_tqdm", "cpu", "bf16", "no_bf16",
            *DEPRECATED_NAMES)},
        "mixed_precision": accelerator.mixed_precision,
        "num_processes": accelerator.num_processes,
        "tokens_per_step": args.batch_size * args.block_size * args.gradient_accumulation_steps,
    }


def _precision_and_accelerator(args: BPTTArguments, model, accelerator,
                               checkpoint: Path | None = None) -> tuple[PrecisionChoice, Any]:
    """The run's precision (hf_charrnn.precision) and an Accelerator in it; an Accelerator passed in keeps its own. A
    resumed run left to choose takes the precision its checkpoint was trained in: measuring again could choose the
    other one on a machine where the two are close, and the run would not continue exactly."""
    if accelerator is not None:
        return PrecisionChoice(accelerator.mixed_precision, "the Accelerator passed to train_bptt"), accelerator
    saved = read_json_file(checkpoint / BPTT_STATE_FILE, "state file") if checkpoint is not None else None
    try:
        precision = None
        if args.mixed_precision == "auto" and saved:
            precision = resumed_precision(saved.get("mixed_precision"), checkpoint.name, model.config.cell_type,
                                          training_device_type(args))
        precision = precision or resolve_mixed_precision(args, model)
    except ValueError as error:
        raise TrainingSetupError(str(error)) from error
    accelerator = make_accelerator(args, precision)
    accelerator.print(f"Precision: {precision.reason}.")
    return precision, accelerator


def _train_claimed(args, model_args, data_args, claim: OutputDirClaim, *, model, tokenizer, dataset, dataset_name,
                   callback, callbacks, accelerator, budget: TimeBudget | None) -> dict:
    """`train_bptt` once its options are checked: builds everything, takes `claim`, trains, and completes it."""
    checkpoint = _checkpoint_to_resume(args, data_args)
    set_seed(args.seed)
    dataset, dataset_name, tokenizer = _load_data(args, model_args, data_args, checkpoint, tokenizer, dataset,
                                                  dataset_name)
    sized = None
    if budget is not None:
        args, model_args, sized = size_bptt_run(budget, args, model_args, model, tokenizer, dataset["train"],
                                                checkpoint, carried_state=data_args.records == "none")
    model = _checked_model(model, model_args, tokenizer, checkpoint)
    precision, accelerator = _precision_and_accelerator(args, model, accelerator, checkpoint)
    streams = _token_streams(args, dataset, tokenizer, accelerator, data_args.records)
    budget_callback = None
    if budget is not None:
        args, budget_callback = plan_bptt_budget(budget, args, model, streams, precision, accelerator, checkpoint,
                                                 sized)
        callbacks = [*callbacks, budget_callback]
    steps_per_epoch = math.ceil(streams.blocks_per_epoch / args.gradient_accumulation_steps)
    total_steps = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * steps_per_epoch)
    model.train()
    optimizer, scheduler = _optimizer_and_schedule(model, args, total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    hyperparameters = _hyperparameters(accelerator.unwrap_model(model), args, accelerator)

    claim.acquire(resumed_from=str(checkpoint) if checkpoint else None)  # the folder is this run's from here on
    if budget_callback is not None and accelerator.is_main_process:
        save_plan(args.output_dir, budget_callback)
    accelerator.wait_for_everyone()
    prompts = [sample_prompt_for(args.sample_prompt, dataset_name, dataset["validation"])]
    loop = BPTTLoop(args, accelerator, model, optimizer, scheduler, tokenizer, streams, total_steps, prompts, callback,
                    callbacks)
    del model, optimizer, scheduler  # the loop holds them: its `end_processes` frees the DDP wrapper before the group
    if budget_callback is not None:
        budget_callback.sampler = loop.sampler
    if checkpoint is not None:
        loop.restore(checkpoint)
    if args.report_to == "tensorboard":
        accelerator.init_trackers("runs", config={k: v for k, v in hyperparameters.items()
                                                  if isinstance(v, (int, float, str, bool))})
    loop.run()
    about_the_run = {"precision": precision.as_dict(), "validation_note": validation_note(data_args)}
    if budget_callback is not None:
        about_the_run["time_budget"] = budget_callback.summary()
    summary = _finish(loop, dataset_name, hyperparameters, checkpoint, about_the_run,
                      training_texts(dataset["train"]))
    claim.complete(loop.progress.step, summary["validation"]["bpc"])
    loop.end_processes()
    return {"output_dir": str(args.output_dir),
            "checkpoint": str(loop.last_checkpoint) if loop.last_checkpoint else None, **summary}


def _finish(loop: BPTTLoop, dataset_name: str, hyperparameters: dict, checkpoint: Path | None,
            about_the_run: dict[str, Any], train_texts) -> dict[str, Any]:
    """The end of a run: final evaluation, samples, the memorisation report (against `train_texts`), the saved model,
    summary (with `about_the_run`: precision, time budget), loss curve and log history."""
    args, accelerator, progress, tokenizer = loop.args, loop.accelerator, loop.progress, loop.tokenizer
    validation = loop.evaluate("validation")
    loop.record_evaluation(validation)
    about_the_run = {**about_the_run, **kept_weights_note(loop.end_with_best(validation["loss"]), progress.step,
                                                           validation)}
    if about_the_run["kept_step"] != progress.step:
        validation = loop.evaluate("validation")
    test = loop.evaluate("test") if "test" in loop.streams.eval_sets else None
    runtime = progress.train_runtime_s
    summary = training_summary(
        dataset=dataset_name, tokenizer_kind="char" if is_char_tokenizer(tokenizer) else "word",
        training_path=TRAINING_PATH, train_tokens=loop.streams.train_tokens,
        validation_tokens=loop.streams.eval_tokens("validation"), steps=progress.step,
        epochs=round(loop.epoch_float, 4), runtime_s=round(runtime, 3), hyperparameters=hyperparameters,
        log_history=progress.log_history, resumed_from=str(checkpoint) if checkpoint else None,
        validation=validation, test=test, train_tokens_per_s=round(progress.tokens_seen / max(runtime, 1e-9), 1),
    )
    summary.update(about_the_run)
    if accelerator.is_main_process:
        summary["samples"] = generate_samples(
            loop.unwrapped, tokenizer, loop.prompts, seed=args.seed, max_new_tokens=args.sample_length,
            temperature=args.sample_temperature, do_sample=True,
        )
        summary["memorisation"] = training_run_report(loop.unwrapped, tokenizer, train_texts, args.seed)
        loop.output_dir.mkdir(parents=True, exist_ok=True)
        loop.unwrapped.save_pretrained(loop.output_dir)
        tokenizer.save_pretrained(loop.output_dir)
        write_run_report(loop.output_dir, summary, progress.log_history, title=f"CharRNN BPTT on {dataset_name}")
        atomic_write_json(loop.output_dir / "log_history.json", progress.log_history)
    return summary


__all__ = ["TRAINING_PATH", "bptt_run_identity", "train_bptt"]
