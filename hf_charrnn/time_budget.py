"""`--max_train_minutes`: a wall-clock budget for a whole training run, on either training path.

A user's question is "how good a model do I get in N minutes on this machine?". The budget counts from the start of
the run, so loading, tokenizing, the start-up measurements, the evaluations, the checkpoints and the final save are
all inside it. Once the data and the model are ready, `plan_budget` turns what is left into a number of optimizer
steps from timed real steps (`step_timing`): the learning-rate schedule (warm-up, cosine decay) is laid over exactly
those steps, and `EVALUATIONS` evaluations (each followed by a checkpoint) are spread over them, the last at the end.
What a run needs after its last step (the final evaluation, the test split, saving, samples) is reserved first.

Machines drift, so `TimeBudgetCallback` also watches the clock: a run whose steps turn out slower than planned stops
at the planned time with a checkpoint, the summary and the model saved, and says so. The plan is kept in the output
folder (`budget_plan.json`), so a resumed run continues the same schedule and sized defaults, with the time the
budget gives it anew.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

EVALUATIONS = 5
"""Evaluations over a budgeted run (each followed by a checkpoint), the last one at its end."""
PLANNING_MARGIN = 0.92
"""The share of the time left for steps that the plan fills: the training loop adds a little per step (data, logging,
callbacks) that a timed bare step does not show, and a busy machine varies."""
FINISH_SECONDS = 5.0
"""Fixed time reserved after the last step besides the final evaluation: writing the model, the summary, the plot."""
CHECKPOINT_BYTES_PER_SECOND = 100e6
"""A checkpoint writes the weights and the optimizer's two moments (12 bytes per parameter) at least this fast."""
PACE_FROM_STEP, REPLAN_SHARE = 10, 0.15
"""The plan is checked against the pace of the real steps from this session's `PACE_FROM_STEP`-th (the first ones
pay for start-up) once `REPLAN_SHARE` of the planned steps are done (at least 50 more), before the first
evaluation (at 1 / `EVALUATIONS` of them) would count in the pace."""
EXTENSION_LIMIT = 2.0
"""Re-planning may find more steps fit than planned (a pessimistic start-up timing): up to this factor. The training
loop is given that many steps, the schedule laid over the planned ones, and the budget's callback ends the run. On a
2-core Xeon with AMX the start-up steps in bf16 took 71 ms where the run's took 43 ms: at 1.5 a three-minute run
stopped at the limit with a fifth of its time unused."""
PLAN_FILE = "budget_plan.json"
Clock = Callable[[], float]
"""Seconds on a monotonic clock: `time.monotonic` in a run; tests pass one they move by hand, so nothing sleeps."""


_process_started: float | None = None


def count_from_process_start() -> None:
    """Let budgets count from the start of this process (time.monotonic() units): the `hf-charrnn` command calls it,
    since Python's start-up and imports are part of the minutes its user waits for."""
    global _process_started
    import psutil  # accelerate's dependency

    _process_started = time.monotonic() - max(0.0, time.time() - psutil.Process().create_time())


def run_started() -> float:
    """When a run that starts now began: the process's start for the `hf-charrnn` command, else now."""
    return _process_started if _process_started is not None else time.monotonic()


@dataclass
class TimeBudget:
    """`minutes` of wall-clock time on `clock`, counted from `started` (by default the start of the run: of the
    process for the `hf-charrnn` command, else now)."""

    minutes: float
    started: float | None = None
    clock: Clock = field(default=time.monotonic, repr=False, compare=False)

    def __post_init__(self):
        if self.started is None:
            self.started = run_started() if self.clock is time.monotonic else self.clock()

    @property
    def deadline(self) -> float:
        return self.started + self.minutes * 60

    def remaining(self) -> float:
        return self.deadline - self.clock()


@dataclass(frozen=True)
class BudgetPlan:
    """The steps that fit a budget, what they were planned from, and when training must stop at the latest."""

    steps: int
    step_seconds: float
    evaluation_seconds: float
    checkpoint_seconds: float
    finish_seconds: float
    stop_at: float  # the budget's clock() at which the last step must have ended
    ceiling: int = 0  # the most steps re-planning may extend to (the training loop's own limit); 0: `steps`

    def __post_init__(self):
        if not self.ceiling:
            object.__setattr__(self, "ceiling", self.steps)

    @property
    def eval_every(self) -> int:
        return evaluation_interval(self.steps)

    def describe(self, minutes: float) -> str:
        return (f"Time budget {minutes:g} min: one training step takes {self.step_seconds * 1e3:.0f} ms here, an "
                f"evaluation {self.evaluation_seconds:.1f} s; planned {self.steps} steps, evaluating and saving every "
                f"{self.eval_every}.")

    def as_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if key not in ("stop_at", "ceiling")}


def evaluation_interval(steps: int) -> int:
    """Evaluate (and save, and sample) every this many of `steps`: `EVALUATIONS` times in all."""
    return max(1, math.ceil(steps / EVALUATIONS))


def checkpoint_seconds(num_parameters: int) -> float:
    return 0.5 + 12 * num_parameters / CHECKPOINT_BYTES_PER_SECOND


def plan_budget(budget: TimeBudget, step_seconds: float, evaluation_seconds: float, num_parameters: int,
                max_steps: int = -1, final_evaluations: int = 1, planned_steps: int | None = None) -> BudgetPlan:
    """The optimizer steps that fit what is left of `budget` (see the module docstring). `final_evaluations`: the
    evaluations after the last step (validation, and test when it is scored); `max_steps` > 0 caps the plan;
    `planned_steps` (a resumed run's plan) is kept as it is. Raises ValueError when not even a few steps fit."""
    saving = checkpoint_seconds(num_parameters)
    finish = final_evaluations * evaluation_seconds + saving + FINISH_SECONDS
    along_the_way = (EVALUATIONS - 1) * (evaluation_seconds + saving)
    left = budget.remaining()
    available = left - finish - along_the_way
    steps = planned_steps or int(available * PLANNING_MARGIN / step_seconds)
    if steps < EVALUATIONS:
        spent = budget.minutes * 60 - left
        needed = (spent + finish + along_the_way + EVALUATIONS * step_seconds / PLANNING_MARGIN) / 60
        raise ValueError(
            f"--max_train_minutes {budget.minutes:g} leaves no time to train: {spent:.0f} s went to loading and "
            f"setting up, and a step takes {step_seconds:.2f} s here. Give at least {max(1, math.ceil(needed))} "
            f"minute{'s' if needed > 1 else ''}, or a "
            "smaller model or batch."
        )
    ceiling = steps if planned_steps else math.ceil(steps * EXTENSION_LIMIT)
    if max_steps > 0:
        steps, ceiling = min(steps, max_steps), min(ceiling, max_steps)
    return BudgetPlan(steps=steps, step_seconds=step_seconds, evaluation_seconds=evaluation_seconds,
                      checkpoint_seconds=saving, finish_seconds=finish, stop_at=budget.deadline - finish,
                      ceiling=ceiling)


def saved_plan(output_dir: str | Path) -> dict | None:
    """What a previous session of this run planned (`TimeBudgetCallback.summary()`; None: nothing there)."""
    try:
        plan = json.loads((Path(output_dir) / PLAN_FILE).read_text(encoding="utf-8"))
        return plan if isinstance(plan, dict) and isinstance(plan.get("replanned_steps"), int) else None
    except (OSError, ValueError):
        return None


def save_plan(output_dir: str | Path, budget: TimeBudgetCallback) -> None:
    path = Path(output_dir)
    path.mkdir(parents=True, exist_ok=True)
    (path / PLAN_FILE).write_text(json.dumps(budget.summary(), indent=2) + "\n", encoding="utf-8")


def rescale_schedule(scheduler, steps: int) -> bool:
    """Lay a transformers learning-rate schedule (a LambdaLR of `functools.partial`s, possibly inside accelerate's
    AcceleratedScheduler) over `steps` instead; False when it has no such length to change."""
    inner = getattr(scheduler, "scheduler", scheduler)
    lambdas = getattr(inner, "lr_lambdas", None) or []
    if lambdas and all(getattr(f, "__name__", "") == "_get_constant_lambda" for f in lambdas):
        return True  # transformers' constant schedule: no length to change
    if not lambdas or not all(isinstance(f, functools.partial) and "num_training_steps" in f.keywords
                              for f in lambdas):
        return False
    inner.lr_lambdas = [functools.partial(f.func, *f.args, **{**f.keywords, "num_training_steps": steps})
                        for f in lambdas]
    return True


class TimeBudgetCallback(TrainerCallback):
    """Keeps a run inside its budget. The training loop is given `plan.ceiling` steps and the learning-rate schedule
    laid over `plan.steps` at the start. Once `REPLAN_SHARE` of them are done, it re-plans from the real steps' pace
    (the loop's data, logging and sampling included, which a timed bare step does not show): the schedule is laid
    over the steps that fit (fewer, or up to the ceiling more), so the run still ends annealed, and training ends
    there, with the evaluations, checkpoints and samples re-spaced over them (the TrainerState's intervals and
    `sampler`'s, where they follow the plan's). At `plan.stop_at` it stops whatever happened, with a checkpoint, so
    the final evaluation and saving fit in the budget. Both training paths drive it (`on_train_begin`,
    `on_step_end`). `clock` must be the one `plan.stop_at` was planned on (`TimeBudget.clock`)."""

    def __init__(self, plan: BudgetPlan, minutes: float, sized=None, announce=logger.warning, sampler=None,
                 clock: Clock = time.monotonic):
        self.plan, self.minutes, self.sized, self.announce, self.clock = plan, minutes, sized, announce, clock
        self.sampler = sampler  # the run's SampleCallback: its interval is re-spaced with the evaluations
        self.steps = plan.steps  # after re-planning, the steps that fit
        self.rescalable = False
        self.stopped_at_step: int | None = None
        self._first: tuple[float, int] | None = None  # (time, step) where the pace is measured from
        self._session_steps = 0

    def summary(self) -> dict:
        """What training_summary.json (and budget_plan.json) record of the budget: the plan, the sized defaults
        (`sizing.SizedRecipe`), the steps after re-planning, and the step the clock stopped the run at (None: it ran
        as planned)."""
        return {"max_train_minutes": self.minutes, **self.plan.as_dict(), "replanned_steps": self.steps,
                "sized_defaults": self.sized.as_dict() if self.sized else None,
                "stopped_early_at_step": self.stopped_at_step}

    def on_train_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        self.rescalable = rescale_schedule(lr_scheduler, self.steps)

    def _replan(self, args, state, lr_scheduler, now: float) -> None:
        started, first_step = self._first
        pace = (now - started) / (state.global_step - first_step)
        pauses = max(0, EVALUATIONS - 1 - state.global_step // self.plan.eval_every) * (
            self.plan.evaluation_seconds + self.plan.checkpoint_seconds)
        fit = state.global_step + int((self.plan.stop_at - now - pauses) * PLANNING_MARGIN / pace)
        fit = max(state.global_step + 1, min(fit, self.plan.ceiling))
        if fit != self.steps and self.rescalable and rescale_schedule(lr_scheduler, fit):
            self.announce(f"Steps take {pace * 1e3:.0f} ms here, against the {self.plan.step_seconds * 1e3:.0f} ms "
                          f"measured at the start: {fit} steps fit the budget instead of {self.steps}; the "
                          f"learning-rate schedule now ends there, evaluating every {evaluation_interval(fit)}.")
            self._respace(state, evaluation_interval(self.steps), evaluation_interval(fit))
            self.steps = fit
            if state.is_world_process_zero:  # a resumed run continues this schedule
                save_plan(args.output_dir, self)

    def _respace(self, state, planned: int, every: int) -> None:
        """Evaluate, save and sample every `every` steps instead of `planned`, where those intervals follow the plan
        (an interval the user set otherwise, or 0 for never, stays)."""
        for name in ("eval_steps", "save_steps"):
            if getattr(state, name) == planned:
                setattr(state, name, every)
        state.logging_steps = min(state.logging_steps, every) if state.logging_steps else 0
        if self.sampler is not None and self.sampler.every_steps == planned:
            self.sampler.every_steps = every

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
        now = self.clock()
        self._session_steps += 1
        if self._session_steps == PACE_FROM_STEP:
            self._first = (now, state.global_step)
        elif self._first and state.global_step - self._first[1] == max(50, int(REPLAN_SHARE * self.plan.steps)):
            self._replan(args, state, lr_scheduler, now)
        if state.global_step >= self.steps and self.steps < self.plan.ceiling:
            control.should_training_stop = control.should_save = True
        elif self.stopped_at_step is None and now >= self.plan.stop_at and state.global_step < self.steps:
            self.stopped_at_step = state.global_step
            control.should_training_stop = control.should_save = True
            self.announce(f"The time budget is spent at step {state.global_step} of the {self.steps} planned: "
                          "stopping here, saving and scoring the model.")
        return control
