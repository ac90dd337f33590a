"""The Accelerator of a stateful-BPTT run: the precision chosen for this machine (hf_charrnn.precision), and
accelerate's one process-wide state forgotten between runs in one process."""

from __future__ import annotations

import os

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState

from .bptt_args import BPTTArguments
from .precision import PrecisionChoice, bf16_kernels_work, choose_precision, unsupported_message


def resolve_mixed_precision(args: BPTTArguments, model) -> PrecisionChoice:
    """The run's precision: `--mixed_precision auto` measures (hf_charrnn.precision), bf16/no are checked or taken
    as they are, fp16 (GPUs) is checked."""
    device_type = training_device_type(args)
    cell_type = model.config.cell_type
    if args.mixed_precision == "fp16":
        if not bf16_kernels_work(device_type, cell_type, torch.float16):
            raise ValueError(unsupported_message("fp16", cell_type, device_type))
        return PrecisionChoice("fp16", "fp16 autocast: asked for (--mixed_precision fp16)")
    return choose_precision(model, precision_request(args), args.batch_size, args.block_size, device_type,
                            is_single_process())


def precision_request(args: BPTTArguments) -> bool | None:
    """--mixed_precision bf16 (True), no (False) or auto (None); fp16 counts as not bf16."""
    return {"auto": None, "bf16": True}.get(args.mixed_precision, False)


def training_device_type(args: BPTTArguments) -> str:
    return "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"


def is_single_process() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) == 1


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


def make_accelerator(args: BPTTArguments, precision: PrecisionChoice) -> Accelerator:
    """An Accelerator for this run, in the precision `resolve_mixed_precision` chose."""
    mixed_precision = precision.mixed_precision
    _forget_previous_accelerator_settings(mixed_precision, args.cpu)
    return Accelerator(
        mixed_precision=mixed_precision,
        cpu=args.cpu,
        log_with="tensorboard" if args.report_to == "tensorboard" else None,
        project_dir=str(args.output_dir),
        step_scheduler_with_optimizer=False,  # one scheduler step per optimizer step, whatever the process count
    )
