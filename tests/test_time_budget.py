"""`--max_train_minutes` (hf_charrnn.time_budget): the plan's arithmetic, the schedule laid over the steps that fit,
the clock's stop, and whole runs of both paths that end inside their budget with a checkpoint and the model saved."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments, get_scheduler

from hf_charrnn.time_budget import (
    EVALUATIONS,
    EXTENSION_LIMIT,
    FINISH_SECONDS,
    PLAN_FILE,
    PLANNING_MARGIN,
    BudgetPlan,
    TimeBudget,
    TimeBudgetCallback,
    checkpoint_seconds,
    plan_budget,
    rescale_schedule,
    save_plan,
    saved_plan,
)
from hf_charrnn.trainer_callback import PlannedProgressCallback, SampleCallback

REPO = Path(__file__).resolve().parents[1]
PLAY = "shakespeare:the-comedy-of-errors"


def test_the_plan_fills_what_is_left_after_evaluations_checkpoints_and_finishing():
    budget = TimeBudget(minutes=2.0)
    plan = plan_budget(budget, step_seconds=0.1, evaluation_seconds=1.5, num_parameters=1_000_000)
    saving = 0.5 + 12 * 1_000_000 / 100e6
    left = 120 - (1.5 + saving + FINISH_SECONDS) - (EVALUATIONS - 1) * (1.5 + saving)
    assert abs(plan.steps - left * PLANNING_MARGIN / 0.1) <= 2  # the clock moved a little since the budget began
    assert plan.checkpoint_seconds == pytest.approx(checkpoint_seconds(1_000_000)) == pytest.approx(saving)
    assert plan.eval_every == -(-plan.steps // EVALUATIONS)
    assert plan.stop_at == pytest.approx(budget.deadline - plan.finish_seconds)
    assert plan_budget(budget, 0.1, 1.5, 1_000_000, max_steps=100).steps == 100  # --max_steps caps it
    assert plan_budget(budget, 0.1, 1.5, 1_000_000, planned_steps=321).steps == 321  # a resumed run keeps its plan


def test_a_budget_too_short_to_train_says_how_much_is_needed():
    budget = TimeBudget(minutes=0.2, started=time.monotonic() - 10)
    with pytest.raises(ValueError, match=r"--max_train_minutes 0.2 leaves no time to train: 10 s went to loading.*"
                                         r"a step takes 2.00 s here. Give at least 1 minute"):
        plan_budget(budget, step_seconds=2.0, evaluation_seconds=0.1, num_parameters=1000)


def schedule(name: str, steps: int):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return optimizer, get_scheduler(name, optimizer, num_warmup_steps=5, num_training_steps=steps)


@pytest.mark.parametrize("name", ["cosine", "linear", "polynomial"])
def test_a_rescaled_schedule_is_the_schedule_of_the_new_length(name):
    optimizer, rescaled = schedule(name, 200)
    for _ in range(30):
        optimizer.step()
        rescaled.step()
    assert rescale_schedule(rescaled, 80)
    reference_optimizer, reference = schedule(name, 80)
    for _ in range(30):
        reference_optimizer.step()
        reference.step()
    for _ in range(50):  # from the next step on (a scheduler recomputes its rate when it steps)
        optimizer.step(), rescaled.step(), reference_optimizer.step(), reference.step()
        assert rescaled.get_last_lr() == pytest.approx(reference.get_last_lr())
    assert reference.get_last_lr()[0] == pytest.approx(0.0, abs=1e-6)  # it ends annealed at the new length


def test_a_constant_schedule_needs_no_rescaling_and_an_unknown_one_is_left_alone():
    _, constant = schedule("constant", 100)
    assert rescale_schedule(constant, 10) and constant.get_last_lr() == [1.0]
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert not rescale_schedule(torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step), 10)


def test_the_clock_stops_training_with_a_checkpoint():
    plan = BudgetPlan(steps=100, step_seconds=0.1, evaluation_seconds=1, checkpoint_seconds=1, finish_seconds=5,
                      stop_at=time.monotonic() - 1)
    said = []
    callback = TimeBudgetCallback(plan, 1.0, announce=said.append)
    state, control = TrainerState(global_step=7, max_steps=100), TrainerControl()
    callback.on_step_end(None, state, control)
    assert control.should_training_stop and control.should_save and callback.stopped_at_step == 7
    assert said == ["The time budget is spent at step 7 of the 100 planned: stopping here, saving and scoring the "
                    "model."]
    assert callback.summary()["stopped_early_at_step"] == 7


@pytest.mark.parametrize("seconds_left, expected", [(1000.0, 150), (0.45, None)])
def test_replanning_lays_the_schedule_over_the_steps_that_fit(tmp_path, seconds_left, expected):
    """The loop gets the ceiling, the schedule the plan; from the real pace the run extends (up to the ceiling) or
    shrinks, the schedule follows, the evaluations, checkpoints and samples are spread over it (still EVALUATIONS
    in all; an interval the user set stays), the plan file records it, and the run ends there."""
    now = time.monotonic()
    plan = BudgetPlan(steps=100, step_seconds=0.1, evaluation_seconds=0.0, checkpoint_seconds=0.0, finish_seconds=0,
                      stop_at=now + seconds_left, ceiling=150)
    sampler = SampleCallback(tokenizer=None, every_steps=plan.eval_every)
    callback = TimeBudgetCallback(plan, 1.0, announce=lambda message: None, sampler=sampler)
    optimizer, scheduler = schedule("cosine", plan.ceiling)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    state = TrainerState(max_steps=150, eval_steps=plan.eval_every, save_steps=plan.eval_every, logging_steps=50)
    assert plan.eval_every == 20
    callback.on_train_begin(args, state, TrainerControl(), lr_scheduler=scheduler)
    assert scheduler.lr_lambdas[0].keywords["num_training_steps"] == 100
    for step in range(1, 10 + 50 + 1):  # the pace is measured from the 10th step over 50 more
        time.sleep(0.005)  # a 5 ms step: 0.3 s for the 60
        state.global_step = step
        control = callback.on_step_end(args, state, TrainerControl(), lr_scheduler=scheduler)
    fitted = callback.steps
    if expected is not None:
        assert fitted == expected and not control.should_training_stop
    else:
        assert 60 < fitted < 100  # about 0.15 s left at 5 ms a step: fewer than planned
        state.global_step = fitted
        assert callback.on_step_end(args, state, TrainerControl(), lr_scheduler=scheduler).should_training_stop
    assert scheduler.lr_lambdas[0].keywords["num_training_steps"] == fitted
    assert saved_plan(tmp_path)["replanned_steps"] == fitted
    every = math.ceil(fitted / EVALUATIONS)
    assert (state.eval_steps, state.save_steps, sampler.every_steps) == (every, every, every)
    assert state.logging_steps == min(50, every)


def test_replanning_keeps_intervals_that_do_not_follow_the_plan(tmp_path):
    plan = BudgetPlan(steps=100, step_seconds=0.1, evaluation_seconds=0.0, checkpoint_seconds=0.0, finish_seconds=0,
                      stop_at=time.monotonic() + 1000, ceiling=150)
    sampler = SampleCallback(tokenizer=None, every_steps=0)
    callback = TimeBudgetCallback(plan, 1.0, announce=lambda message: None, sampler=sampler)
    optimizer, scheduler = schedule("cosine", plan.ceiling)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    state = TrainerState(max_steps=150, eval_steps=0, save_steps=7, logging_steps=0)
    callback.on_train_begin(args, state, TrainerControl(), lr_scheduler=scheduler)
    for step in range(1, 61):
        state.global_step = step
        callback.on_step_end(args, state, TrainerControl(), lr_scheduler=scheduler)
    assert callback.steps == 150  # re-planned (extended) ...
    assert (state.eval_steps, state.save_steps, state.logging_steps, sampler.every_steps) == (0, 7, 0, 0)  # ... alone


def test_the_plan_is_kept_for_a_resumed_run(tmp_path):
    plan = BudgetPlan(steps=42, step_seconds=0.1, evaluation_seconds=1, checkpoint_seconds=1, finish_seconds=5,
                      stop_at=0.0)
    save_plan(tmp_path, TimeBudgetCallback(plan, 3.0))
    assert saved_plan(tmp_path)["steps"] == 42 and saved_plan(tmp_path)["max_train_minutes"] == 3.0
    (tmp_path / PLAN_FILE).write_text("{broken", encoding="utf-8")
    assert saved_plan(tmp_path) is None and saved_plan(tmp_path / "missing") is None


def test_a_budget_that_cannot_train_is_a_usage_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "hf_charrnn.cli", "train", "--dataset", PLAY, "--output_dir",
                             str(tmp_path / "run"), "--max_train_minutes", "0.01", "--report_to", "none"],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 2, result.stderr
    assert "--max_train_minutes 0.01 leaves no time to train" in result.stderr
    assert "Traceback" not in result.stderr


def check_budgeted_run(output_dir: Path, minutes: float, wall: float) -> dict:
    summary = json.loads((output_dir / "training_summary.json").read_text())
    budget = summary["time_budget"]
    assert wall <= minutes * 60 + 5, (wall, budget)  # the process, start-up included, within the budget
    assert summary["steps"] >= min(budget["steps"], budget["replanned_steps"]) * 0.5 or budget["stopped_early_at_step"]
    assert summary["steps"] <= budget["replanned_steps"] <= math.ceil(EXTENSION_LIMIT * budget["steps"])
    assert budget["sized_defaults"]["hidden_size"] is not None  # no shape given: sized
    assert json.loads((output_dir / PLAN_FILE).read_text())["steps"] == budget["steps"]
    assert list(output_dir.glob("checkpoint-*")), "no checkpoint"
    assert (output_dir / "model.safetensors").is_file()
    return summary


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "train-accelerate"])
def test_a_budgeted_run_ends_inside_its_budget_with_the_model_saved(tmp_path, command):
    minutes = 1.0
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "hf_charrnn.cli", command, "--dataset", PLAY, "--output_dir",
                             str(tmp_path / "run"), "--max_train_minutes", str(minutes), "--report_to", "none"],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    wall = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Time budget 1 min: one training step takes" in result.stdout
    assert "Sized for the budget: 2x" in result.stdout
    summary = check_budgeted_run(tmp_path / "run", minutes, wall)
    # The progress bar counted to the steps planned (after re-planning), not to the loop's limit (twice the plan).
    shown = {(int(n), int(total)) for n, total in re.findall(r"(\d+)/(\d+) \[", result.stderr)}
    assert (summary["steps"], summary["time_budget"]["replanned_steps"]) in shown, sorted(shown)[-5:]
    if command == "train":
        history = json.loads((tmp_path / "run" / "trainer_state.json").read_text())["log_history"]
    else:
        history = json.loads((tmp_path / "run" / "log_history.json").read_text())
        hyperparameters = json.loads((tmp_path / "run" / "training_summary.json").read_text())["hyperparameters"]
        assert (hyperparameters["batch_size"], hyperparameters["block_size"]) == (64, 32)  # the stream's sized batch
    evaluations = [entry for entry in history if "eval_loss" in entry]
    assert 2 <= len(evaluations) <= EVALUATIONS + 1, evaluations


def test_the_progress_bar_counts_to_the_planned_steps_and_follows_replanning(tmp_path):
    """A budgeted run's loop may go up to twice the plan (the ceiling): the Trainer path's bar counts to the plan
    instead (a 10-minute run once showed twice its steps and a 13-minute ETA), and to the new plan after
    re-planning; the BPTT loop's bar does the same (`BPTTLoop.planned_steps`; both checked in whole runs below)."""
    plan = BudgetPlan(steps=100, step_seconds=0.1, evaluation_seconds=0.0, checkpoint_seconds=0.0, finish_seconds=0,
                      stop_at=time.monotonic() + 1000, ceiling=200)
    budget = TimeBudgetCallback(plan, 1.0, announce=lambda message: None)
    progress = PlannedProgressCallback(budget)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    state = TrainerState(max_steps=plan.ceiling, is_world_process_zero=True)
    progress.on_train_begin(args, state, TrainerControl())
    assert progress.training_bar.total == 100
    budget.steps = 150  # what re-planning does when more steps fit
    state.global_step = 60
    progress.on_step_end(args, state, TrainerControl())
    assert (progress.training_bar.total, progress.training_bar.n) == (150, 60)
    progress.training_bar.close()
