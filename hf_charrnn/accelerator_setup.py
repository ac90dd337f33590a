"""The Accelerator of a stateful-BPTT run: a mixed precision the recurrent kernels support here, and accelerate's one
process-wide state forgotten between runs in one process."""

from __future__ import annotations

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from torch import nn

from .bptt_args import BPTTArguments
from .trainer_utils import TrainingSetupError


def mixed_precision_works(choice: str, device_type: str, cell_type: str = "lstm") -> bool:
    """Whether the recurrent kernels run under autocast with `choice` here (oneDNN has no bf16 LSTM on many CPUs)."""
    if choice == "no":
        return True
    module = {"lstm": nn.LSTM, "gru": nn.GRU}.get(cell_type, nn.RNN)(4, 4, batch_first=True).to(device_type)
    dtype = torch.bfloat16 if choice == "bf16" else torch.float16
    try:
        with torch.autocast(device_type, dtype=dtype):
            output, _ = module(torch.zeros(1, 2, 4, device=device_type))
            output.float().sum().backward()
    except RuntimeError:
        return False
    return True


def resolve_mixed_precision(choice: str, cpu: bool, cell_type: str = "lstm") -> str:
    """'auto' -> bf16 on a GPU whose recurrent kernels support it, else 'no'. An explicit choice is checked."""
    device_type = "cuda" if torch.cuda.is_available() and not cpu else "cpu"
    if choice == "auto":
        if device_type == "cuda" and torch.cuda.is_bf16_supported() and mixed_precision_works("bf16", "cuda", cell_type):
            return "bf16"
        return "no"
    if not mixed_precision_works(choice, device_type, cell_type):
        raise ValueError(
            f"mixed_precision={choice!r} does not work for {cell_type} layers on this {device_type.upper()} (its "
            "recurrent kernels have no such precision here); use --mixed_precision no (or auto)."
        )
    return choice


def _forget_previous_accelerator_settings(mixed_precision: str, cpu: bool) -> None:
    """accelerate keeps one process-wide AcceleratorState and refuses a second Accelerator with other settings. In a
    single process (a notebook, the demo, benchmarks, tests calling train_bptt several times) forget the previous
    run's settings; a distributed run keeps its state (its settings come from the launcher and do not change)."""
    if not AcceleratorState._shared_state:
        return
    if PartialState().num_processes > 1:
        return
    state = AcceleratorState()
    if state.mixed_precision != mixed_precision or (cpu and state.device.type != "cpu"):
        AcceleratorState._reset_state()


def make_accelerator(args: BPTTArguments, model, model_args) -> Accelerator:
    """An Accelerator for this run, with a mixed precision the recurrent kernels support here."""
    try:
        cell_type = model.config.cell_type if model is not None else (model_args.cell_type or "lstm")
        mixed_precision = resolve_mixed_precision(args.mixed_precision, args.cpu, cell_type)
    except ValueError as error:
        raise TrainingSetupError(str(error)) from error
    _forget_previous_accelerator_settings(mixed_precision, args.cpu)
    return Accelerator(
        mixed_precision=mixed_precision,
        cpu=args.cpu,
        log_with="tensorboard" if args.report_to == "tensorboard" else None,
        project_dir=str(args.output_dir),
        step_scheduler_with_optimizer=False,  # one scheduler step per optimizer step, whatever the process count
    )
