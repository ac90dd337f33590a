"""The Trainer path's decisions from measurements on this machine, set in its `TrainingArguments` before `Trainer`
exists: the precision (`hf_charrnn.precision`), the sized defaults (`hf_charrnn.sizing`) and the plan of a time
budget (`hf_charrnn.time_budget`)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from .checkpoints import TRAINER_STATE_FILE
from .precision import PrecisionChoice, choose_precision, precisions_to_time, resumed_precision
from .run_folder import read_json_file
from .sizing import SizedRecipe, size_for_budget
from .step_timing import evaluation_step_seconds, training_step_seconds
from .time_budget import BudgetPlan, TimeBudget, plan_budget, saved_plan
from .trainer_callback import PrecisionRecordCallback
from .training_args import DataArguments, ModelArguments

logger = logging.getLogger(__name__)


def precision_request(training_args) -> bool | None:
    """--bf16 (True), --no_bf16 (False) or the run's choice (None)."""
    return getattr(training_args, "precision_request", training_args.bf16 or None)  # a plain TrainingArguments too


def choose_trainer_precision(model, training_args, data_args: DataArguments,
                             checkpoint: str | None = None) -> PrecisionChoice:
    """bf16 autocast or fp32, set in `training_args` as Trainer reads it; a resumed run left to choose takes the one
    its checkpoint recorded (`PrecisionRecordCallback`)."""
    device_type, request = training_args.device.type, precision_request(training_args)
    choice = None
    if checkpoint and request is None:
        choice = resumed_precision(checkpoint_precision(checkpoint), Path(checkpoint).name, model.config.cell_type,
                                   device_type)
    choice = choice or choose_precision(model, request, training_args.per_device_train_batch_size,
                                        data_args.block_size, device_type, single_process=training_args.world_size == 1)
    training_args.bf16, training_args.mixed_precision = choice.bf16, choice.mixed_precision
    if choice.bf16 and device_type == "cpu":
        training_args.use_cpu = True  # TrainingArguments' rule for bf16 without a GPU
    logger.info("Precision: %s.", choice.reason)
    return choice


def checkpoint_precision(checkpoint: str) -> str | None:
    """The precision a Trainer checkpoint was trained in, as `PrecisionRecordCallback` recorded it (None: not
    recorded, e.g. by an earlier version)."""
    state = read_json_file(Path(checkpoint) / TRAINER_STATE_FILE, "trainer state") or {}
    record = state.get("stateful_callbacks", {}).get(PrecisionRecordCallback.__name__, {})
    return (record[0] if isinstance(record, list) and record else record or {}).get("args", {}).get("mixed_precision")


def size_trainer_run(budget: TimeBudget, model_args: ModelArguments, training_args, tokenizer, train_blocks,
                     data_args: DataArguments, checkpoint: str | None) -> SizedRecipe:
    """The sized defaults for a budgeted run (a resumed run takes its first session's), set in `training_args`."""
    previous = saved_plan(training_args.output_dir) if checkpoint else None
    if previous and previous.get("sized_defaults"):
        sized = SizedRecipe(**previous["sized_defaults"])
    else:
        unset = getattr(training_args, "unset_options", set())
        characters = len(train_blocks) * data_args.block_size if hasattr(train_blocks, "__len__") else 10**9
        sized = size_for_budget(
            budget.minutes, budget.remaining(), model_args,
            None if "per_device_train_batch_size" in unset else training_args.per_device_train_batch_size,
            None if "learning_rate" in unset else training_args.learning_rate,
            len(tokenizer), characters, data_args.block_size, training_args.device,
            bf16_options=precisions_to_time(precision_request(training_args), model_args.cell_type or "lstm",
                                            training_args.device.type, training_args.world_size == 1),
            given_weight_decay=None if "weight_decay" in unset else training_args.weight_decay)
    if sized.batch_size:
        training_args.per_device_train_batch_size = sized.batch_size
    if sized.learning_rate:
        training_args.learning_rate = sized.learning_rate
    if sized.weight_decay is not None:
        training_args.weight_decay = sized.weight_decay
    logger.info("Sized for the budget: %s.", sized.reason)
    return sized


def _validation_batches(blocks, data_args: DataArguments, training_args) -> int:
    count = len(blocks) if hasattr(blocks, "__len__") else (data_args.max_eval_samples or 100 * 64)
    return math.ceil(count / training_args.per_device_eval_batch_size)


def plan_trainer_budget(budget: TimeBudget, model, blocks, precision: PrecisionChoice, checkpoint: str | None,
                        data_args: DataArguments, training_args) -> BudgetPlan:
    """The steps that fit the budget, timed on this model and batch; sets them, and the evaluation, checkpoint, log
    and sample intervals, in `training_args` and `data_args`."""
    batch, eval_batch, device = (training_args.per_device_train_batch_size, training_args.per_device_eval_batch_size,
                                 training_args.device)
    step = training_step_seconds(model, batch, data_args.block_size, bf16=precision.bf16, device=device, steps=3,
                                 typical=True)
    evaluation = _validation_batches(blocks["validation"], data_args, training_args) * evaluation_step_seconds(
        model, eval_batch, data_args.block_size, bf16=precision.bf16, device=device)
    previous = saved_plan(training_args.output_dir) if checkpoint else None
    plan = plan_budget(budget, step * training_args.gradient_accumulation_steps, evaluation,
                       sum(p.numel() for p in model.parameters()), training_args.max_steps,
                       final_evaluations=1 + ("test" in blocks), planned_steps=previous and previous["replanned_steps"])
    training_args.max_steps = plan.ceiling  # the budget's callback ends the run at the steps that fit
    if training_args.eval_strategy != "no":
        training_args.eval_steps = training_args.save_steps = plan.eval_every
    training_args.logging_steps = max(1, min(int(training_args.logging_steps), plan.eval_every))
    if data_args.sample_every_steps:
        data_args.sample_every_steps = plan.eval_every
    logger.info(plan.describe(budget.minutes))
    return plan
