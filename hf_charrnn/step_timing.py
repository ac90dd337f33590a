"""Timing real training and evaluation steps of a model before a run, without touching the run.

The precision choice (`precision`), the wall-clock budget (`time_budget`) and the sized defaults (`sizing`) plan from
what this machine does, not from a table: a few forward/backward/clip/AdamW steps of a throwaway copy of the model on
random tokens of the run's batch shape. The copy keeps the caller's weights, optimizer and random state untouched, so
a measured run trains exactly as an unmeasured one.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time

import torch


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _random_batch(model, rows: int, length: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, model.config.vocab_size, (rows, length), generator=generator).to(_device_of(model))


def _autocast(device: torch.device, bf16: bool):
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _fork_rng(device: torch.device):
    """Dropout in the timed steps draws random numbers: keep the run's generators where they were."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def training_step_seconds(model, rows: int, length: int, *, bf16: bool = False, steps: int = 2,
                          device: str | torch.device | None = None, typical: bool = False) -> float:
    """The best (or with `typical`, the median) of `steps` timed training steps, after one warm-up step that pays
    for kernel set-up, of a copy of `model` (on `device`, default the model's) on `rows` x `length` random tokens:
    forward, backward, gradient clipping, AdamW. Comparisons take the best; plans the median."""
    probe = copy.deepcopy(model).to(device or _device_of(model)).train()
    device = _device_of(probe)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=1e-4)
    batch = _random_batch(probe, rows, length)
    timings = []
    with _fork_rng(device):
        for _ in range(steps + 1):
            start = time.perf_counter()
            with _autocast(device, bf16):
                loss = probe(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(probe.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            _synchronize(device)
            timings.append(time.perf_counter() - start)
    return statistics.median(timings[1:]) if typical else min(timings[1:])


@torch.no_grad()
def evaluation_step_seconds(model, rows: int, length: int, *, bf16: bool = False, steps: int = 2,
                            device: str | torch.device | None = None) -> float:
    """The best of `steps` timed forward passes (loss only, no gradients) of a copy of `model` on `rows` x `length`
    random tokens."""
    probe = copy.deepcopy(model).to(device or _device_of(model)).eval()
    device = _device_of(probe)
    batch = _random_batch(probe, rows, length)
    timings = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with _autocast(device, bf16):
            probe(input_ids=batch, labels=batch)
        _synchronize(device)
        timings.append(time.perf_counter() - start)
    return min(timings[1:])
