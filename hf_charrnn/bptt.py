"""The stateful truncated-BPTT loop of `hf-charrnn train-accelerate`, one short method per thing it does.

`training_accelerate.train_bptt` checks the options, builds the model, data and optimizer, and hands them to
`BPTTLoop`: it steps through the token stream with the recurrent state carried from batch to batch, logs, evaluates,
samples and saves checkpoints, and on a resume restores everything a checkpoint holds so that the run continues
exactly (the same weights as an uninterrupted run). Where the loop is lives in `BPTTProgress`, saved whole in every
checkpoint.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F
from tqdm.auto import tqdm
from transformers.trainer_callback import CallbackHandler, TrainerCallback, TrainerControl, TrainerState

from .evaluation import eval_mode, score_stream, stream_row_bounds, summarize_scores
from .bptt_stream import StreamRows
from .modeling_charrnn import CharRNNCache
from .records import RecordBatches, predicted_tokens, score_records
from .run_folder import atomic_write_json, read_json_file, refused_pickle_message
from .checkpoints import BEST_MODEL_DIR, BPTT_STATE_FILE, CHECKPOINT_PREFIX, RNN_STATE_FILE, complete_checkpoints
from .time_budget import TimeBudgetCallback
from .trainer_callback import BPTTFlowCallback, GracefulInterruptCallback, SampleCallback, follow_plan
from .trainer_utils import TrainingDivergedError, TrainingInterrupted, TrainingSetupError



@dataclass
class BPTTProgress:
    """Where the loop is: saved in every checkpoint (the "state" of bptt_state.json), restored on a resume."""

    step: int = 0
    epoch: int = 0
    block: int = 0  # the next batch of the epoch
    tokens_seen: int = 0
    log_history: list[dict[str, Any]] = field(default_factory=list)
    pending_loss_sum: float = 0.0  # step losses since the last logged one
    pending_loss_count: int = 0
    train_runtime_s: float = 0.0
    best_step: int | None = None  # the evaluation with the lowest validation loss so far (its weights: BEST_MODEL_DIR)
    best_loss: float | None = None


@dataclass
class BPTTStreams:
    """The token streams one process trains and evaluates on (or, in record mode, its records)."""

    rows: StreamRows | None  # the training stream's rows (each process reads its own); None for records
    local_rows: int
    blocks_per_epoch: int
    train_tokens: int
    eval_sets: dict[str, tuple[Any, int]]  # split -> (token ids, or tokenized records; characters)
    records: RecordBatches | None = None  # record mode: padded batches of records, no state carried

    def eval_tokens(self, split: str) -> int:
        """Tokens an evaluation of `split` predicts."""
        data = self.eval_sets[split][0]
        return predicted_tokens(data) if self.records is not None else data.numel() - 1


def _cache_to_global(accelerator, cache) -> dict[str, torch.Tensor]:
    """Gather every process's rows of the carried state into one `(num_layers, batch_size, hidden)` tensor each."""
    gathered = {}
    for name in ("hidden", "cell"):
        tensor = getattr(cache, name)
        if tensor is None:
            continue
        rows_first = tensor.detach().transpose(0, 1).contiguous()  # (rows, layers, hidden)
        gathered[name] = accelerator.gather(rows_first).transpose(0, 1).contiguous().cpu()
    return gathered


# ----------------------------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------------------------


class BPTTLoop:
    """
    Stateful truncated BPTT over `streams` (see `hf_charrnn.training_accelerate`): `restore(checkpoint)` to resume,
    then `run()`; `evaluate(split)` scores with the state carried over the whole split.
    """

    def __init__(self, args, accelerator, model, optimizer, scheduler, tokenizer, streams: BPTTStreams,
                 total_steps: int, prompts: list[str], callback: Callable[[dict], None] | None = None,
                 callbacks: Sequence[TrainerCallback] = ()):
        self.args, self.accelerator, self.model = args, accelerator, model
        self.optimizer, self.scheduler, self.tokenizer = optimizer, scheduler, tokenizer
        self.streams, self.total_steps, self.prompts, self.callback = streams, total_steps, prompts, callback
        self.unwrapped = accelerator.unwrap_model(model)
        self.output_dir = Path(args.output_dir)
        self.progress = BPTTProgress()
        self.cache: CharRNNCache | None = None
        self.last_checkpoint: Path | None = None
        self.progress_bar = None
        self._record_tokens = 0  # record mode: the tokens of the current step's batches
        # The Trainer path's callback machinery: TrainerState, TrainerControl and the same TrainerCallbacks.
        self.state = TrainerState(max_steps=total_steps, is_local_process_zero=accelerator.is_local_main_process,
                                  is_world_process_zero=accelerator.is_main_process, logging_steps=args.logging_steps,
                                  eval_steps=args.eval_steps, save_steps=args.save_steps)
        self.control = TrainerControl()
        self.sampler = SampleCallback(tokenizer, prompts[0], args.sample_every_steps, args.sample_length, args.seed,
                                      log_text=lambda text, step: accelerator.log({"samples": text}, step=step),
                                      temperature=args.sample_temperature, do_sample=True)
        # With a time budget, the progress bar counts to the steps it plans (the loop's limit is twice that).
        self.budget = next((c for c in callbacks if isinstance(c, TimeBudgetCallback)), None)
        self.callback_handler = CallbackHandler([BPTTFlowCallback(), self.sampler, *callbacks], self.unwrapped,
                                                tokenizer, optimizer, scheduler)

    @property
    def layout(self) -> dict[str, int]:
        """What a checkpoint's position means: resuming needs the same values."""
        layout = {"batch_size": self.args.batch_size, "block_size": self.args.block_size,
                  "gradient_accumulation_steps": self.args.gradient_accumulation_steps,
                  "train_tokens": self.streams.train_tokens}
        if self.streams.records is None:  # the stream's chunks and their order (records have their own)
            layout["stream_chunk_blocks"] = self.args.stream_chunk_blocks
            if self.args.stream_chunk_blocks:
                layout["seed"] = self.args.seed
        return layout

    # ---- resume ----------------------------------------------------------------------------------------------------

    def restore(self, checkpoint: Path) -> None:
        """Load a checkpoint: weights, optimizer, schedule, RNG states, the position and the carried state."""
        saved = read_json_file(checkpoint / BPTT_STATE_FILE, "state file")
        if saved is None:
            raise TrainingSetupError(f"{checkpoint / BPTT_STATE_FILE} is missing or damaged: resume from another "
                                     "checkpoint (--resume_from_checkpoint latest picks the newest complete one).")
        layout = dict(saved["layout"])
        layout.setdefault("block_size", layout.get("bptt_length"))  # the name checkpoints used before 0.x's rename
        layout.setdefault("stream_chunk_blocks", 0)  # checkpoints from before the per-epoch layout had a fixed one
        different = {key: (layout.get(key), value) for key, value in self.layout.items() if layout.get(key) != value}
        if different:
            raise TrainingSetupError(
                f"Cannot resume exactly from {checkpoint}: it was made with a different layout "
                + ", ".join(f"{key}={old} (now {new})" for key, (old, new) in different.items())
                + ". Resume with the same data and options."
            )
        try:
            self.accelerator.load_state(str(checkpoint))
        except pickle.UnpicklingError:
            raise TrainingSetupError(refused_pickle_message(checkpoint)) from None
        except (RuntimeError, OSError, KeyError) as error:
            raise TrainingSetupError(
                f"Cannot load the checkpoint {checkpoint} into this model/optimizer ({error}). Resume with the "
                "checkpoint's own tokenizer and model shape (leave --model_name_or_path / --tokenizer_name out)."
            ) from error
        self.progress = BPTTProgress(**saved["state"])
        self._sync_state()
        if self.progress.block > 0 and self.streams.records is None:
            self.cache = self._load_carried_state(checkpoint)
        self.last_checkpoint = checkpoint
        self.accelerator.print(f"Resumed from {checkpoint} at step {self.progress.step} (epoch {self.progress.epoch}).")

    def _load_carried_state(self, checkpoint: Path) -> CharRNNCache:
        try:
            tensors = torch.load(checkpoint / RNN_STATE_FILE, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise TrainingSetupError(refused_pickle_message(checkpoint)) from None
        rank, rows = self.accelerator.process_index, self.streams.local_rows
        mine, device = slice(rank * rows, (rank + 1) * rows), self.accelerator.device
        return CharRNNCache(tensors["hidden"][:, mine].to(device),
                            tensors["cell"][:, mine].to(device) if "cell" in tensors else None)

    # ---- the loop --------------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Train up to `total_steps`; raises `TrainingInterrupted` after a stop signal saved a checkpoint."""
        self.progress_bar = tqdm(
            total=self.planned_steps, initial=self.progress.step, desc="train (BPTT)", unit="step", dynamic_ncols=True,
            disable=self.args.disable_tqdm or not self.accelerator.is_local_main_process,
        )
        started = time.perf_counter() - self.progress.train_runtime_s
        rows = self.streams.rows  # compact (uint8/uint16) on the host; each block is converted as it is used
        # The Trainer path's Ctrl-C/SIGTERM handling; its stop is agreed by all processes below, not set per process.
        interrupt = GracefulInterruptCallback()
        interrupt.install()
        self._sync_state()
        self.control = self.callback_handler.on_train_begin(self.args, self.state, self.control)
        try:
            while self.progress.step < self.total_steps and not self.control.should_training_stop:
                self.control = self.callback_handler.on_step_begin(self.args, self.state, self.control)
                step_loss, grad_norm = self._optimizer_step(rows)
                self._after_step(step_loss, grad_norm)
                self.progress.train_runtime_s = time.perf_counter() - started
                if self.callback is not None:
                    self.callback({"step": self.progress.step, "epoch": self.epoch_float, "loss": step_loss,
                                   "learning_rate": self.scheduler.get_last_lr()[0]})
                if self._save_or_stop(interrupt.signal_number):
                    self.progress_bar.close()
                    raise self._interrupted(interrupt.signal_number)
        finally:
            interrupt.restore()
        self.control = self.callback_handler.on_train_end(self.args, self.state, self.control)
        self.progress_bar.close()

    @property
    def planned_steps(self) -> int:
        """The steps the run means to take: a time budget's plan (after re-planning), else `total_steps`."""
        return self.budget.steps if self.budget is not None else self.total_steps

    def _sync_state(self) -> None:
        """The TrainerState callbacks read, from the loop's own progress."""
        self.state.global_step, self.state.epoch = self.progress.step, self.epoch_float
        self.state.log_history = self.progress.log_history

    @property
    def epoch_float(self) -> float:
        return self.progress.epoch + self.progress.block / self.streams.blocks_per_epoch

    def _optimizer_step(self, rows: StreamRows | None) -> tuple[float, torch.Tensor | None]:
        """`gradient_accumulation_steps` batches (fewer at an epoch's end), then one optimizer step."""
        args, progress = self.args, self.progress
        if self.streams.records is None and (progress.block == 0 or self.cache is None):
            self.cache = CharRNNCache.zeros(self.unwrapped.config, self.streams.local_rows,
                                            device=self.accelerator.device, dtype=torch.float32)
        micro = min(args.gradient_accumulation_steps, self.streams.blocks_per_epoch - progress.block)
        step_loss = torch.zeros((), device=self.accelerator.device, dtype=torch.float64)
        for index in range(micro):
            step_loss += self._forward_backward(rows, micro, last=index == micro - 1).double() / micro
            progress.block += 1
        grad_norm = None
        if args.max_grad_norm > 0:
            grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), args.max_grad_norm)
            if grad_norm is not None and not torch.isfinite(grad_norm):
                raise self._diverged("gradient norm", float(grad_norm))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        progress.step += 1
        # the tokens predicted: every row's block, or the records' own tokens (this process's, times the processes)
        progress.tokens_seen += (self._record_tokens if self.streams.records is not None
                                 else micro * args.batch_size * args.block_size)
        self._record_tokens = 0
        if progress.block >= self.streams.blocks_per_epoch:
            progress.epoch, progress.block = progress.epoch + 1, 0
        return float(step_loss), grad_norm

    def _forward_backward(self, rows: StreamRows | None, micro: int, last: bool) -> torch.Tensor:
        """One of `micro` batches of a step: the next `block_size` tokens of every row from the carried state (in
        record mode, the next batch of records, each from the initial state), the gradients synchronized after the
        `last` one; returns the batch's loss (averaged over processes)."""
        inputs, targets = self._next_batch(rows)
        records = self.streams.records is not None  # each record from the initial state: nothing carried
        sync = contextlib.nullcontext() if last else self.accelerator.no_sync(self.model)
        with sync:
            with self.accelerator.autocast():
                out = self.model(input_ids=inputs, cache=None if records else self.cache, use_cache=not records)
            logits = out.logits.float()
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
            several = self.accelerator.num_processes > 1
            mean_loss = self.accelerator.reduce(loss.detach(), "mean") if several else loss.detach()
            if not torch.isfinite(mean_loss):
                raise self._diverged("training loss", float(mean_loss))
            self.accelerator.backward(loss / micro)
        self.cache = None if records else out.cache.detach()
        return mean_loss

    def _next_batch(self, rows: StreamRows | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The input tokens of this micro-batch and the tokens they predict (-100: none), on the device: the next
        `block_size` tokens of this process's rows of the stream, or the next batch of records (`RecordBatches`)."""
        device = self.accelerator.device
        if self.streams.records is not None:
            inputs, targets = self.streams.records.batch(self.progress.epoch, self.progress.block)
            self._record_tokens += int((targets != -100).sum()) * self.accelerator.num_processes
            return inputs.to(device), targets.to(device)
        first = self.accelerator.process_index * self.streams.local_rows
        inputs, targets = rows.block(self.progress.epoch, self.progress.block,
                                     slice(first, first + self.streams.local_rows))
        return inputs.to(device), targets.to(device)

    def _after_step(self, step_loss: float, grad_norm) -> None:
        """The end of an optimizer step, as the Trainer does it: callbacks decide (BPTTFlowCallback: log, evaluate,
        save at their intervals; SampleCallback samples), then the loop logs and evaluates as they asked."""
        self.progress.pending_loss_sum += step_loss
        self.progress.pending_loss_count += 1
        self.progress_bar.update(1)
        self._sync_state()
        self.control = self.callback_handler.on_step_end(self.args, self.state, self.control)
        follow_plan(self.progress_bar, self.planned_steps)
        if self.control.should_log:
            self._log_loss(grad_norm)
        if self.control.should_evaluate:
            metrics = self.evaluate("validation")
            self.record_evaluation(metrics)
            self.keep_if_best(metrics["loss"])
            self._say(f"step {self.progress.step}: validation loss {metrics['loss']:.4f}, bpc {metrics['bpc']:.4f}")

    def _log_loss(self, grad_norm) -> None:
        progress, learning_rate = self.progress, self.scheduler.get_last_lr()[0]
        mean = progress.pending_loss_sum / progress.pending_loss_count
        entry = {"step": progress.step, "epoch": round(self.epoch_float, 4), "loss": mean,
                 "learning_rate": learning_rate}
        if grad_norm is not None:
            entry["grad_norm"] = float(grad_norm)
        progress.log_history.append(entry)
        progress.pending_loss_sum, progress.pending_loss_count = 0.0, 0
        self.control.should_log = False
        self.control = self.callback_handler.on_log(self.args, self.state, self.control, logs=entry)
        self.accelerator.log({"train/loss": mean, "train/learning_rate": learning_rate,
                              "train/epoch": self.epoch_float}, step=progress.step)
        self.progress_bar.set_postfix(loss=f"{mean:.4f}", lr=f"{learning_rate:.2e}")

    def record_evaluation(self, metrics: dict[str, float]) -> None:
        step = self.progress.step
        named = {f"eval_{key}": value for key, value in metrics.items()}
        self.progress.log_history.append({"step": step, **named})
        self.accelerator.log({f"eval/{key}": value for key, value in metrics.items()}, step=step)
        self.control.should_evaluate = False
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics=named)

    def keep_if_best(self, loss: float) -> None:
        """The weights of the lowest validation `loss` so far, saved in BEST_MODEL_DIR with the step they are from (as
        the Trainer's load_best_model_at_end keeps the best checkpoint); the step and loss go into every checkpoint."""
        progress = self.progress
        if progress.best_loss is not None and loss >= progress.best_loss:
            return
        progress.best_step, progress.best_loss = progress.step, loss
        if self.accelerator.is_main_process:
            folder = self.output_dir / BEST_MODEL_DIR
            self.unwrapped.save_pretrained(folder)
            atomic_write_json(folder / "best.json", {"step": progress.step, "validation_loss": loss})
        self.accelerator.wait_for_everyone()

    def end_with_best(self, final_loss: float) -> int:
        """At the end of training: the best evaluation's weights back in the model when they beat the last step's
        (`final_loss`); returns the step whose weights the model holds. A best-model folder from another point of the
        run (written after the checkpoint a run resumed from, and not reached again) is not used."""
        progress, folder = self.progress, self.output_dir / BEST_MODEL_DIR
        saved = read_json_file(folder / "best.json", "best model record") if folder.is_dir() else None
        step = progress.step
        if progress.best_loss is not None and progress.best_loss < final_loss and saved \
                and saved.get("step") == progress.best_step:
            best = type(self.unwrapped).from_pretrained(folder)
            self.unwrapped.load_state_dict(best.state_dict())
            step = progress.best_step
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            shutil.rmtree(folder, ignore_errors=True)
        return step

    def _say(self, message: str) -> None:
        if self.accelerator.is_main_process:
            self.progress_bar.write(message)

    def _save_or_stop(self, received: int | None) -> bool:
        """Save a checkpoint when it is time (or a signal was `received`); True when a signal asks to stop."""
        stop = received is not None
        if self.accelerator.num_processes > 1:  # any process's signal stops all
            flag = self.accelerator.reduce(torch.tensor(float(stop), device=self.accelerator.device), "sum")
            stop = bool(flag > 0)
        step, every = self.progress.step, self.args.save_steps
        if (self.control.should_save or stop) and every:
            self.last_checkpoint = self.save_checkpoint()
            self.control.should_save = False
            self.control = self.callback_handler.on_save(self.args, self.state, self.control)
        if stop:
            self._say(f"Stopped by a signal at step {step}; " + (
                f"checkpoint saved in {self.last_checkpoint}. Resume with --resume_from_checkpoint latest."
                if every else "no checkpoint (save_steps=0)."))
        return stop

    # ---- evaluation, checkpoints, failures ---------------------------------------------------------------------------

    def evaluate(self, split: str) -> dict[str, float]:
        """Loss, bpc and perplexity of a split, the state carried within each of `eval_batch_size` rows."""
        accelerator, args = self.accelerator, self.args
        data, characters = self.streams.eval_sets[split]
        rank, world = accelerator.process_index, accelerator.num_processes
        with accelerator.autocast(), eval_mode(self.unwrapped):
            if self.streams.records is not None:
                nats, tokens = score_records(self.unwrapped, data, range(rank, len(data), world),
                                             args.eval_batch_size, self.tokenizer.pad_token_id)
                scores = {"nats": nats, "tokens": tokens}
            else:
                eval_rows = len(stream_row_bounds(data.numel(), args.eval_batch_size)) - 1
                scores = score_stream(self.unwrapped, data, chunk_length=args.eval_chunk_length,
                                      batch_size=args.eval_batch_size, rows=range(rank, eval_rows, world))
        totals = accelerator.reduce(torch.tensor([scores["nats"], float(scores["tokens"])], dtype=torch.float64,
                                                 device=accelerator.device), "sum")
        result = summarize_scores(float(totals[0]), int(totals[1]), characters)
        return {key: result[key] for key in ("loss", "bpc", "perplexity")}

    def save_checkpoint(self) -> Path:
        """`checkpoint-STEP`: accelerate's state, the carried RNN state, config, tokenizer, and the state file last."""
        accelerator = self.accelerator
        path = self.output_dir / f"{CHECKPOINT_PREFIX}{self.progress.step}"
        accelerator.wait_for_everyone()
        if accelerator.is_main_process and path.exists():
            shutil.rmtree(path)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(path))
        rnn_state = _cache_to_global(accelerator, self.cache) if self.cache is not None else None
        if accelerator.is_main_process:
            if rnn_state is not None:
                torch.save(rnn_state, path / f".{RNN_STATE_FILE}.tmp")
                os.replace(path / f".{RNN_STATE_FILE}.tmp", path / RNN_STATE_FILE)
            self.unwrapped.config.save_pretrained(path)
            self.tokenizer.save_pretrained(path)
            payload = {"state": asdict(self.progress), "layout": {**self.layout, "num_processes":
                                                                   accelerator.num_processes},
                       "args": asdict(self.args), "mixed_precision": accelerator.mixed_precision}
            atomic_write_json(path / BPTT_STATE_FILE, payload)  # written last, whole: it marks the checkpoint complete
            if self.args.save_total_limit:
                for old in complete_checkpoints(self.output_dir, BPTT_STATE_FILE)[: -self.args.save_total_limit]:
                    shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()
        return path

    def end_processes(self) -> None:
        """
        End the run's process group, on every way out. The DDP wrapper goes first: its Reducer holds gloo's process
        group, and freed after `destroy_process_group` it would destroy the group from Python with the GIL held,
        joining gloo's worker thread while that thread waits for the GIL to free the last barrier's tensors (a
        deadlock at exit, seen in about 1 run in 20 of 2 processes; native stacks in the commit that added this).
        """
        self.model = None
        self.accelerator.free_memory()  # accelerate's own references to the prepared model, optimizer and schedule
        gc.collect()
        self.accelerator.wait_for_everyone()
        self.accelerator.end_training()

    def _diverged(self, what: str, value: float) -> TrainingDivergedError:
        self.progress_bar.close()
        self.end_processes()
        last = str(self.last_checkpoint) if self.last_checkpoint else None
        where = f" (epoch {self.progress.epoch}, batch {self.progress.block} of the epoch)"
        return TrainingDivergedError.at(what, value, self.progress.step + 1, last, where)

    def _interrupted(self, received: int | None) -> TrainingInterrupted:
        self.end_processes()
        last = str(self.last_checkpoint) if self.last_checkpoint else None
        signal_number = received or signal.SIGINT  # another process may have received it
        return TrainingInterrupted.at(signal_number, self.progress.step, last, saved=bool(self.args.save_steps))
