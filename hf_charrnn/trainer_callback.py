"""The Trainer path's callbacks: generated samples during training, a stop on a non-finite loss, and Ctrl-C/SIGTERM
that finish the current step and save a checkpoint before exiting."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import DefaultFlowCallback, ExportableState, ProgressCallback

from .reporting import generate_samples

if TYPE_CHECKING:  # an annotation only: the stateful-BPTT path uses these callbacks without loading Trainer
    from transformers import Trainer

logger = logging.getLogger(__name__)


class SampleCallback(TrainerCallback):
    """Every `every_steps` optimizer steps, sample a continuation of `prompt` and log it (logger + TensorBoard).

    Sampling uses its own seed and leaves the global random state alone, so it does not change the training run.
    The samples are kept in `self.history` as `{"step", "text"}`.
    """

    def __init__(self, tokenizer, prompt: str = "", every_steps: int = 200, max_new_tokens: int = 200, seed: int = 0,
                 log_text: Callable[[str, int], None] | None = None, **generation_options):
        self.tokenizer, self.prompt = tokenizer, prompt
        self.every_steps, self.max_new_tokens, self.seed = every_steps, max_new_tokens, seed
        self.log_text, self.generation_options = log_text, generation_options  # log_text(text, step): a tracker
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
            model, self.tokenizer, [self.prompt], seed=self.seed + state.global_step, max_new_tokens=self.max_new_tokens,
            **self.generation_options,
        )[0]
        self.history.append({"step": state.global_step, "text": sample["text"]})
        logger.info("Sample at step %d:\n%s", state.global_step, sample["text"])
        if self.log_text is not None:
            self.log_text(sample["text"], state.global_step)
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
    """On SIGINT (Ctrl-C) or SIGTERM: finish the current step, save a checkpoint, stop. A second Ctrl-C aborts.

    The stateful-BPTT loop uses it too, through `install()` / `restore()` and `signal_number`."""

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
        self.install()

    def install(self) -> None:
        """Catch SIGINT and SIGTERM until `restore()` (both training paths; only the main thread can)."""
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


class EvaluateLastStepCallback(TrainerCallback):
    """With load_best_model_at_end, the step a run ends at (its planned last step, or where a time budget stopped it)
    is evaluated before its checkpoint is saved, so that the best-model choice sees the final weights too: Trainer
    otherwise evaluates only every eval_steps and would go back to an earlier checkpoint that only looked best. A
    stop by a signal (`interrupt`) or a non-finite loss is left as those callbacks set it: no evaluation."""

    def __init__(self, interrupt: GracefulInterruptCallback):
        self.interrupt = interrupt

    def on_step_end(self, args, state, control, **kwargs):
        if (args.load_best_model_at_end and args.eval_strategy != "no" and control.should_training_stop
                and control.should_save and self.interrupt.signal_number is None):
            control.should_evaluate = True
        return control


class PrecisionRecordCallback(TrainerCallback, ExportableState):
    """Records the run's precision in every checkpoint (trainer_state.json's `stateful_callbacks`, where Trainer keeps
    its callbacks' states), so that a resumed run takes it (`trainer_budget.choose_trainer_precision`) instead of
    measuring again: on a machine where bf16 and fp32 are close the measurement can go either way."""

    def __init__(self, mixed_precision: str = "no", reason: str = ""):
        self.mixed_precision, self.reason = mixed_precision, reason

    def on_train_begin(self, args, state, control, **kwargs):
        # What the run trains in, from its arguments (a record restored by --restore_callback_states_from_checkpoint
        # could be stale), and an entry Trainer's save can update: a checkpoint written before this callback
        # existed has none, and Trainer's save looks it up.
        self.mixed_precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "no"
        state.stateful_callbacks[type(self).__name__] = self.state()

    def state(self) -> dict:
        return {"args": {"mixed_precision": self.mixed_precision, "reason": self.reason}, "attributes": {}}


class BPTTFlowCallback(DefaultFlowCallback):
    """When the BPTT loop logs, evaluates and saves (what DefaultFlowCallback decides for the Trainer): every
    `logging_steps`, `eval_steps` and `save_steps` (0: never; kept in the TrainerState, as the Trainer does, so a
    time budget can re-space them), logging and saving also at the last step (the final evaluation follows the
    loop). The same on every process: the decisions depend on the step only."""

    def on_step_end(self, args, state, control, **kwargs):
        step, last = state.global_step, state.global_step >= state.max_steps
        control.should_log = bool(state.logging_steps) and (step % state.logging_steps == 0 or last)
        control.should_evaluate = bool(state.eval_steps) and step % state.eval_steps == 0 and not last
        control.should_save = bool(state.save_steps) and (step % state.save_steps == 0 or last)
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        return control


def follow_plan(bar, total: int) -> None:
    """Make a progress bar's total the steps a run now plans (a tqdm; None when the bar is off)."""
    if bar is not None and bar.total != total:
        bar.total = total
        bar.refresh()


class PlannedProgressCallback(ProgressCallback):
    """transformers' training progress bar, counting to the steps a time budget plans (`budget.steps`, a
    `TimeBudgetCallback`'s, which follows its re-planning) rather than to the loop's limit, which is the most
    re-planning may extend to (twice the plan): the bar's total and time left are then the run's."""

    def __init__(self, budget, max_str_len: int = 100):
        super().__init__(max_str_len)
        self.budget = budget

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        follow_plan(self.training_bar, self.budget.steps)

    def on_step_end(self, args, state, control, **kwargs):
        follow_plan(self.training_bar, self.budget.steps)
        super().on_step_end(args, state, control, **kwargs)
