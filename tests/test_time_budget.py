"""`--max_train_minutes` (hf_charrnn.time_budget): the plan's arithmetic, the schedule laid over the steps that fit,
the clock's stop, and whole runs of both paths that end inside their budget with a checkpoint and the model saved."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments, get_scheduler

from hf_charrnn.time_budget import (
    EVALUATIONS,
    EXTENSION_LIMIT,
    PLAN_FILE,
    BudgetPlan,
    TimeBudget,
    TimeBudgetCallback,
    plan_budget,
    rescale_schedule,
    save_plan,
    saved_plan,
)
from hf_charrnn.trainer_callback import PlannedProgressCallback, SampleCallback
from testing_utils import FakeClock, assert_same_weights, copy_as_running, hf_charrnn_in_process

REPO = Path(__file__).resolve().parents[1]
PLAY = "shakespeare:the-comedy-of-errors"


def test_the_plan_fills_what_is_left_after_evaluations_checkpoints_and_finishing():
    budget = TimeBudget(minutes=2.0, started=0.0, clock=lambda: 10.0)  # 10 of the 120 s went to loading
    plan = plan_budget(budget, step_seconds=0.1, evaluation_seconds=1.5, num_parameters=1_000_000)
    # By hand: a checkpoint 0.5 s + 12 B x 1 M / 100 MB/s = 0.62 s; after the last step 1.5 + 0.62 + 5 = 7.12 s; along
    # the way 4 x (1.5 + 0.62) = 8.48 s; left for steps 110 - 7.12 - 8.48 = 94.4 s, x 0.92 / 0.1 s = 868.48 steps.
    assert (plan.steps, plan.ceiling, plan.eval_every) == (868, 1736, 174)
    assert plan.checkpoint_seconds == pytest.approx(0.62) and plan.finish_seconds == pytest.approx(7.12)
    assert plan.stop_at == pytest.approx(120 - 7.12)
    capped = plan_budget(budget, 0.1, 1.5, 1_000_000, max_steps=100)
    assert (capped.steps, capped.ceiling) == (100, 100)  # --max_steps caps both
    kept = plan_budget(budget, 0.1, 1.5, 1_000_000, planned_steps=321)
    assert (kept.steps, kept.ceiling) == (321, 321)  # a resumed run keeps its plan, and is not extended


def test_a_budget_on_a_given_clock_counts_from_when_it_is_made():
    clock = FakeClock(50.0)
    assert TimeBudget(1.0, clock=clock).started == 50.0  # (the command's own counts from the process start)
    assert TimeBudget(1.0, started=20.0, clock=clock).remaining() == pytest.approx(30.0)


def test_a_budget_too_short_to_train_says_how_much_is_needed():
    budget = TimeBudget(minutes=0.2, started=0.0, clock=lambda: 10.0)
    # By hand: 10 s spent + 5.6 s to finish + 2.4 s of evaluations + 5 steps of 2 s / 0.92 = 28.9 s: 1 minute.
    with pytest.raises(ValueError, match=r"--max_train_minutes 0.2 leaves no time to train: 10 s went to loading.*"
                                         r"a step takes 2.00 s here. Give at least 1 minute,"):
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
    clock = FakeClock()
    plan = BudgetPlan(steps=100, step_seconds=0.1, evaluation_seconds=1, checkpoint_seconds=1, finish_seconds=5,
                      stop_at=clock() + 1.0)
    said = []
    callback = TimeBudgetCallback(plan, 1.0, announce=said.append, clock=clock)
    clock.advance(0.5)
    control = callback.on_step_end(None, TrainerState(global_step=6, max_steps=100), TrainerControl())
    assert not control.should_training_stop and callback.stopped_at_step is None
    clock.advance(0.5)  # exactly at stop_at
    control = callback.on_step_end(None, TrainerState(global_step=7, max_steps=100), TrainerControl())
    assert control.should_training_stop and control.should_save and callback.stopped_at_step == 7
    assert said == ["The time budget is spent at step 7 of the 100 planned: stopping here, saving and scoring the "
                    "model."]
    assert callback.summary()["stopped_early_at_step"] == 7


def replanned(tmp_path, seconds_left: float, state: TrainerState, sampler: SampleCallback):
    """A budget callback (plan: 100 steps of 0.1 s, the loop's ceiling 150) after 60 steps of 5 ms on a fake clock,
    and the cosine schedule it re-scaled."""
    clock = FakeClock()
    plan = BudgetPlan(steps=100, step_seconds=0.1, evaluation_seconds=0.0, checkpoint_seconds=0.0, finish_seconds=0,
                      stop_at=clock() + seconds_left, ceiling=150)
    callback = TimeBudgetCallback(plan, 1.0, announce=lambda message: None, sampler=sampler, clock=clock)
    _, scheduler = schedule("cosine", plan.ceiling)
    args = SimpleNamespace(output_dir=str(tmp_path))  # all the callback reads of TrainingArguments
    callback.on_train_begin(args, state, TrainerControl(), lr_scheduler=scheduler)
    assert scheduler.lr_lambdas[0].keywords["num_training_steps"] == 100
    for step in range(1, 10 + 50 + 1):  # the pace is measured from the 10th step over 50 more
        clock.advance(0.005)
        state.global_step = step
        control = callback.on_step_end(args, state, TrainerControl(), lr_scheduler=scheduler)
    assert not control.should_training_stop
    return callback, scheduler, args


@pytest.mark.parametrize("seconds_left, expected", [(1000.0, 150), (0.45, 87)])
def test_replanning_lays_the_schedule_over_the_steps_that_fit(tmp_path, seconds_left, expected):
    """The loop gets the ceiling, the schedule the plan; from the real pace the run extends (up to the ceiling) or
    shrinks, the schedule follows, the evaluations, checkpoints and samples are spread over it (still EVALUATIONS
    in all; an interval the user set stays), the plan file records it, and the run ends there. By hand for 0.45 s:
    0.15 s are left after 60 steps of 5 ms, x 0.92 / 5 ms = 27.6: 60 + 27 = 87 steps, evaluating every 18."""
    state = TrainerState(max_steps=150, eval_steps=20, save_steps=20, logging_steps=50)
    sampler = SampleCallback(tokenizer=None, every_steps=20)
    callback, scheduler, args = replanned(tmp_path, seconds_left, state, sampler)
    assert callback.steps == expected
    state.global_step = expected
    ends = callback.on_step_end(args, state, TrainerControl(), lr_scheduler=scheduler).should_training_stop
    assert ends == (expected < 150)  # at the ceiling the training loop itself ends
    assert scheduler.lr_lambdas[0].keywords["num_training_steps"] == expected
    assert saved_plan(tmp_path)["replanned_steps"] == expected
    every = {150: 30, 87: 18}[expected]
    assert (state.eval_steps, state.save_steps, sampler.every_steps, state.logging_steps) == (every, every, every,
                                                                                              every)


def test_replanning_keeps_intervals_that_do_not_follow_the_plan(tmp_path):
    state = TrainerState(max_steps=150, eval_steps=0, save_steps=7, logging_steps=0)
    sampler = SampleCallback(tokenizer=None, every_steps=0)
    callback, _, _ = replanned(tmp_path, 1000.0, state, sampler)
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
    result = hf_charrnn_in_process("train", "--dataset", PLAY, "--output_dir", tmp_path / "run",
                                   "--max_train_minutes", "0.01", "--report_to", "none")
    assert result.returncode == 2, result.stderr
    assert "--max_train_minutes 0.01 leaves no time to train" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_budgeted_run_resumed_keeps_its_plan_and_ends_as_the_whole_run(tmp_path):
    """README: a budgeted run's plan and sized defaults are kept in its folder, so a resumed session continues the
    same schedule (not one planned afresh from its own timing) and ends with the whole run's weights, bit for bit."""
    def budgeted(output_dir: Path, *extra: str) -> dict:
        result = hf_charrnn_in_process(
            "train", "--dataset", PLAY, "--output_dir", output_dir, "--max_train_minutes", "1", "--max_steps", "60",
            "--hidden_size", "16", "--embedding_dim", "8", "--num_layers", "1", "--no_bf16", "--save_total_limit", "10",
            "--sample_every_steps", "0", "--report_to", "none", "--disable_tqdm", "true", *extra)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads((output_dir / "training_summary.json").read_text())

    whole = budgeted(tmp_path / "whole")
    assert whole["time_budget"]["steps"] == whole["steps"] == 60  # --max_steps caps the plan
    resumed = tmp_path / "resumed"
    copy_as_running(tmp_path / "whole", "checkpoint-24", resumed)
    shutil.copy(tmp_path / "whole" / PLAN_FILE, resumed / PLAN_FILE)  # written when the first session began
    again = budgeted(resumed, "--resume_from_checkpoint", "latest")
    assert again["hyperparameters"]["resumed_from"].endswith("checkpoint-24") and again["steps"] == 60
    assert again["time_budget"]["sized_defaults"] == whole["time_budget"]["sized_defaults"]
    assert again["time_budget"]["steps"] == whole["time_budget"]["steps"]
    assert_same_weights(tmp_path / "whole", resumed)


def check_budgeted_run(output_dir: Path) -> dict:
    """What a budgeted run leaves: its plan kept, the steps it planned (or the clock's stop), a checkpoint, the model.
    How close to its minutes a run ends is measured by scripts/bench_budget.py (`within_budget`), not asserted here."""
    summary = json.loads((output_dir / "training_summary.json").read_text())
    budget = summary["time_budget"]
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
    result = subprocess.run([sys.executable, "-m", "hf_charrnn.cli", command, "--dataset", PLAY, "--output_dir",
                             str(tmp_path / "run"), "--max_train_minutes", "0.75", "--report_to", "none"],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Time budget 0.75 min: one training step takes" in result.stdout
    assert "Sized for the budget: 2x" in result.stdout
    summary = check_budgeted_run(tmp_path / "run")
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
    clock = FakeClock()
    plan = BudgetPlan(steps=100, step_seconds=0.1, evaluation_seconds=0.0, checkpoint_seconds=0.0, finish_seconds=0,
                      stop_at=clock() + 1000, ceiling=200)
    budget = TimeBudgetCallback(plan, 1.0, announce=lambda message: None, clock=clock)
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
