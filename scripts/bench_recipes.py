"""(b) and (c) of scripts/bench_quality.py: the project's two training paths, each stopped when its budget is spent."""

from __future__ import annotations

import contextlib
import statistics
import sys
import time

import torch
from bench_common import quiet_bptt_arguments
from transformers import AutoTokenizer, TrainerCallback, set_seed

from hf_charrnn.configuration_charrnn import CharRNNConfig
from hf_charrnn.modeling_charrnn import CharRNNForCausalLM
from hf_charrnn.trainer import train
from hf_charrnn.trainer_utils import build_model
from hf_charrnn.training_accelerate import train_bptt
from hf_charrnn.training_args import CharRNNTrainingArguments, DataArguments, ModelArguments

class WallClockBudget(TrainerCallback):
    """Stops a Trainer run at the end of the first step that finds `budget_seconds` spent since training began
    (on `clock`: a test passes one it moves by hand)."""

    def __init__(self, budget_seconds: float, clock=time.perf_counter):
        self.budget_seconds, self.clock = budget_seconds, clock
        self.started: float | None = None
        self.elapsed = 0.0
        self.stopped_early = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.clock()

    def on_step_end(self, args, state, control, **kwargs):
        self.elapsed = self.clock() - self.started
        if self.elapsed >= self.budget_seconds and state.global_step < state.max_steps:
            control.should_training_stop = True
            self.stopped_early = True
        return control


class _BudgetSpent(Exception):
    """Raised from train_bptt's callback to stop it when its budget is spent."""


def calibrate_seconds_per_step(model_kwargs: dict, vocab_size: int, batch_size: int, block_size: int,
                               learning_rate: float, device: str = "cpu", steps: int = 5) -> float:
    """Seconds per real forward/backward/AdamW step of this model and batch shape, as `hf_charrnn.demo.seconds_per_step`
    measures the demo model, but the median of `steps` (after a warm-up step) rather than the best: the library loops
    add a little per step, and a busy machine makes the best step an optimistic plan."""
    torch.manual_seed(0)
    model = CharRNNForCausalLM(CharRNNConfig(vocab_size=vocab_size, **model_kwargs)).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    batch = torch.randint(4, vocab_size, (batch_size, block_size), device=device)
    timings = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        model(batch, labels=batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings[1:])


def train_default_recipe(dataset: str, model_kwargs: dict, batch_size: int, block_size: int, learning_rate: float,
                         max_steps: int, budget_seconds: float, output_dir: str, seed: int = 42,
                         device: str = "cpu"):
    """(b): `hf_charrnn.trainer.train()` with the demo's settings, `max_steps` planned, stopped at the budget."""
    budget = WallClockBudget(budget_seconds)
    training_args = CharRNNTrainingArguments(
        output_dir=output_dir,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=max(1, max_steps // 20),
        report_to="none",
        seed=seed,
        use_cpu=device == "cpu",
    )
    data_args = DataArguments(dataset=dataset, block_size=block_size, sample_every_steps=0, sample_length=1,
                              max_eval_samples=2, overwrite_output_dir=True)
    with contextlib.redirect_stdout(sys.stderr):  # Trainer prints its final metrics; stdout is for the JSON
        summary = train(ModelArguments(**model_kwargs), data_args, training_args, callbacks=[budget])
    model = CharRNNForCausalLM.from_pretrained(output_dir).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    steps = summary["steps"]
    info = {
        "steps": steps,
        "planned_steps": max_steps,
        "stopped_by_budget": budget.stopped_early,
        "train_seconds": round(budget.elapsed, 2),
        "chars_processed": steps * batch_size * block_size,
        "predictions_trained": steps * batch_size * (block_size - 1),
        "train_loss_mean": summary["train_loss"],
        "hyperparameters": {key: summary["hyperparameters"][key] for key in (
            "block_size", "per_device_train_batch_size", "learning_rate", "lr_scheduler_type", "warmup_steps",
            "optimizer", "max_grad_norm", "embedding_dim", "hidden_size", "num_layers", "state_between_blocks")},
    }
    return model, tokenizer, info


def train_bptt_recipe(splits, dataset: str, tokenizer, model_kwargs: dict, batch_size: int, block_size: int,
                      learning_rate: float, max_steps: int, budget_seconds: float, step_seconds: float,
                      output_dir: str, seed: int = 42, device: str = "cpu"):
    """(c): `train_bptt` with (b)'s model, batch shape, optimizer settings and schedule, stopped at the budget."""
    set_seed(seed)
    model = build_model(ModelArguments(**model_kwargs), tokenizer)
    args = quiet_bptt_arguments(
        output_dir=output_dir,
        batch_size=batch_size,
        block_size=block_size,
        max_steps=max_steps,
        learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_ratio=0.02,
        max_grad_norm=1.0,
        cpu=device == "cpu",
        seed=seed,
        logging_steps=max(1, max_steps // 20),
        max_eval_tokens=block_size,
    )
    # train_bptt calls back at the end of each step; its first step began about one calibrated step before that.
    clock = {"started": None, "elapsed": 0.0, "losses": []}

    def watch(info: dict) -> None:
        now = time.perf_counter()
        if clock["started"] is None:
            clock["started"] = now - step_seconds
        clock["elapsed"] = now - clock["started"]
        clock["losses"].append(info["loss"])
        if clock["elapsed"] >= budget_seconds and info["step"] < max_steps:
            raise _BudgetSpent

    stopped = False
    try:
        with contextlib.redirect_stdout(sys.stderr):
            train_bptt(args, model=model, tokenizer=tokenizer, dataset=splits, dataset_name=dataset, callback=watch)
    except _BudgetSpent:
        stopped = True
    steps = len(clock["losses"])
    recent = clock["losses"][-max(1, min(20, steps)):]
    info = {
        "steps": steps,
        "planned_steps": max_steps,
        "stopped_by_budget": stopped,
        "train_seconds": round(clock["elapsed"], 2),
        "chars_processed": steps * batch_size * block_size,
        "predictions_trained": steps * batch_size * block_size,
        "train_loss_recent": sum(recent) / len(recent) if recent else None,
        "hyperparameters": {key: getattr(args, key) for key in (
            "batch_size", "block_size", "learning_rate", "lr_scheduler_type", "warmup_ratio", "optimizer",
            "max_grad_norm")} | {"state_between_blocks": "carried (detached)"},
    }
    return model.eval(), tokenizer, info
