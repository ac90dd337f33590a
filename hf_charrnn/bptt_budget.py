"""The stateful-BPTT path's decisions for a time budget, from measurements on this machine: the sized defaults
(`hf_charrnn.sizing`) and the plan (`hf_charrnn.time_budget`), set in its `BPTTArguments` (the Trainer path's
counterpart is `trainer_budget`)."""

from __future__ import annotations

import dataclasses
import math
import os

from .accelerator_setup import is_single_process, precision_request, training_device_type
from .bptt import BPTTStreams
from .bptt_args import BPTTArguments
from .precision import precisions_to_time
from .sizing import SizedRecipe, size_for_budget
from .step_timing import evaluation_step_seconds, training_step_seconds
from .time_budget import TimeBudget, TimeBudgetCallback, plan_budget, saved_plan
from .trainer_utils import TrainingSetupError, training_texts


def print_on_main_process(*values) -> None:
    """`print` on the launcher's main process (before the Accelerator exists)."""
    if os.environ.get("RANK", "0") == "0":
        print(*values, flush=True)


def size_bptt_run(budget: TimeBudget, args: BPTTArguments, model_args, model, tokenizer, train_split,
                  checkpoint, carried_state: bool = True) -> tuple[BPTTArguments, object, SizedRecipe]:
    """`args` and `model_args` with the sized defaults for what was not given (a resumed run takes its first
    session's; a model passed in keeps its shape), and the recipe: rows of the stream (`carried_state`) take the
    stream's rows and truncation length (both, or neither when either was given), records (no state carried) the
    Trainer path's batch with their own length."""
    previous = saved_plan(args.output_dir) if checkpoint else None
    if previous and previous.get("sized_defaults"):
        sized = SizedRecipe(**previous["sized_defaults"])
    else:
        unset = getattr(args, "unset_options", set())
        characters = sum(len(text) + 1 for text in training_texts(train_split))
        layout_sized = carried_state and {"batch_size", "block_size"} <= unset  # rows and their length: one recipe
        sized = size_for_budget(budget.minutes, budget.remaining(), model_args,
                                None if "batch_size" in unset else args.batch_size,
                                None if "learning_rate" in unset else args.learning_rate,
                                len(tokenizer), characters, None if layout_sized else args.block_size,
                                "cpu" if args.cpu else None, model_given=model is not None,
                                carried_state=carried_state,
                                bf16_options=precisions_to_time(precision_request(args), model_args.cell_type or "lstm",
                                                                training_device_type(args), is_single_process()),
                                given_weight_decay=None if "weight_decay" in unset else args.weight_decay)
    changes = {name: getattr(sized, name) for name in ("batch_size", "learning_rate", "block_size", "weight_decay")
               if getattr(sized, name) is not None}
    if changes:
        args = dataclasses.replace(args, **changes)
    model_args = sized.model_arguments(model_args)  # unchanged for a model passed in (not sized)
    print_on_main_process(f"Sized for the budget: {sized.reason}.")
    return args, model_args, sized


def plan_bptt_budget(budget: TimeBudget, args: BPTTArguments, model, streams: BPTTStreams, precision,
                     accelerator, checkpoint, sized: SizedRecipe | None) -> tuple[BPTTArguments, TimeBudgetCallback]:
    """The steps that fit the budget, timed on this model and batch: `args` with them, and the evaluation,
    checkpoint, log and sample intervals, set; and the callback that watches the clock."""
    device, bf16 = accelerator.device, precision.bf16
    step = training_step_seconds(model, streams.local_rows, args.block_size, bf16=bf16, device=device, steps=3,
                                 typical=True)
    calls = math.ceil(streams.eval_tokens("validation") / args.eval_batch_size / args.eval_chunk_length)
    evaluation = calls * evaluation_step_seconds(model, args.eval_batch_size, args.eval_chunk_length, bf16=bf16,
                                                 device=device)
    previous = saved_plan(args.output_dir) if checkpoint else None
    try:
        plan = plan_budget(budget, step * args.gradient_accumulation_steps, evaluation,
                           sum(p.numel() for p in model.parameters()), args.max_steps,
                           final_evaluations=1 + ("test" in streams.eval_sets),
                           planned_steps=previous and previous["replanned_steps"])
    except ValueError as error:
        raise TrainingSetupError(str(error)) from error
    accelerator.print(plan.describe(budget.minutes))
    every = plan.eval_every
    args = dataclasses.replace(args, max_steps=plan.ceiling, eval_steps=every if args.eval_steps else 0,
                               save_steps=every, logging_steps=max(1, min(args.logging_steps, every)),
                               sample_every_steps=every if args.sample_every_steps else 0)
    return args, TimeBudgetCallback(plan, budget.minutes, sized, announce=accelerator.print,
                                    clock=budget.clock)
