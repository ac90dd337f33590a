"""bf16 autocast or fp32: chosen per run from what this machine's recurrent kernels do, not from a rule of thumb.

bf16 autocast (fp32 master weights, bf16 matrix products) is much faster than fp32 on some CPUs (those with
avx512_bf16 or AMX: 1.4-1.9x for a training step) and on recent GPUs, and much slower where the CPU emulates it, or
missing altogether (oneDNN has no bf16 LSTM on many CPUs). So by default a run (`hf-charrnn train` and
`train-accelerate` alike):

1. uses fp32 where the device has no bf16 kernels for the model's cell (checked by running one), or where the CPU
   has no bf16 instructions (x86 without avx512_bf16 or AMX: autocast is emulated there, 2-13x slower for a GRU
   step, so measuring it would only cost start-up time: 25 s for a 2x512 GRU);
2. otherwise times a few real training steps of a copy of the model in both precisions (`step_timing`) and takes bf16
   only when it is at least `BF16_MIN_SPEEDUP` times faster.

`--bf16` forces bf16 (refused with a clear message where the kernels do not exist), `--no_bf16` forces fp32. With
several processes the measurement is skipped (every process must take the same decision): bf16 on GPUs that support
it, else fp32. The choice and its reason go to the log and into training_summary.json.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .step_timing import training_step_seconds

BF16_MIN_SPEEDUP = 1.05
"""bf16 must beat fp32 by this factor to be chosen: below it the difference is within a measurement's noise."""
PROBE_ROWS, PROBE_LENGTH = 64, 32
"""The measurement's batch shape at most (rows x tokens): the real batch's rows (the kernels' speed in either precision
depends on them), fewer time steps (an emulated bf16 then costs seconds, not minutes)."""


@dataclass(frozen=True)
class PrecisionChoice:
    """What a run trains in, why, and the measurement behind it (milliseconds per probe step; None: not measured)."""

    mixed_precision: str  # accelerate's and TrainingArguments' names: "bf16", "no" (fp32), "fp16"
    reason: str
    fp32_ms_per_step: float | None = None
    bf16_ms_per_step: float | None = None

    @property
    def bf16(self) -> bool:
        return self.mixed_precision == "bf16"

    def as_dict(self) -> dict:
        return asdict(self)


def resumed_precision(recorded: str | None, checkpoint_name: str, cell_type: str,
                      device_type: str) -> PrecisionChoice | None:
    """The precision a resumed run left to choose takes: the one its checkpoint recorded (measuring again could choose
    the other one where the two are close, and the run would not continue exactly). None (choose afresh): nothing
    recorded, or a half precision this device has no kernels for (a checkpoint from another machine)."""
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(recorded)
    if not recorded or (half is not None and not bf16_kernels_work(device_type, cell_type, half)):
        return None
    kind = f"{recorded} autocast" if half is not None else "fp32"
    return PrecisionChoice(recorded, f"{kind}: the precision {checkpoint_name} was trained in (a resumed run keeps it)")


def bf16_kernels_work(device_type: str, cell_type: str = "lstm", dtype: torch.dtype = torch.bfloat16) -> bool:
    """Whether a recurrent layer of `cell_type` runs forward and backward under autocast to `dtype` on this device."""
    if device_type == "cuda" and not torch.cuda.is_available():
        return False
    with torch.random.fork_rng(devices=[]):  # the run's random numbers stay where they were
        module = {"lstm": nn.LSTM, "gru": nn.GRU}.get(cell_type, nn.RNN)(4, 4, batch_first=True).to(device_type)
    try:
        with torch.autocast(device_type, dtype=dtype):
            output, _ = module(torch.zeros(1, 2, 4, device=device_type))
        output.float().sum().backward()
    except RuntimeError:
        return False
    return True


def cpu_has_bf16_instructions() -> bool | None:
    """Whether this CPU computes in bf16 natively (x86: avx512_bf16 or AMX tiles); None where torch cannot tell (other
    architectures, whose bf16 support varies: measure there)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return None
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if not all(callable(probe) for probe in probes):
        return None
    return any(probe() for probe in probes)


def unsupported_message(choice: str, cell_type: str, device_type: str) -> str:
    return (f"{choice} does not work for {cell_type} layers on this {device_type.upper()} (its recurrent kernels have "
            f"no such precision here); train in fp32 (--no_bf16), or leave the choice to the run.")


def choose_precision(model, requested: bool | None, batch_rows: int, block_size: int, device_type: str,
                     single_process: bool = True) -> PrecisionChoice:
    """bf16 autocast or fp32 for training `model` on `device_type` (see the module docstring). `requested`: True
    (--bf16), False (--no_bf16) or None (measure). Raises ValueError when bf16 is asked for and cannot run."""
    decided = decided_precision(requested, model.config.cell_type, device_type, single_process)
    if decided is not None:
        return decided
    return measured_choice(model, min(batch_rows, PROBE_ROWS), min(block_size, PROBE_LENGTH), device_type)


def decided_precision(requested: bool | None, cell_type: str, device_type: str,
                      single_process: bool = True) -> PrecisionChoice | None:
    """The choice `choose_precision` makes without measuring (asked for, or the only one that can be faster); None
    where it measures the two. Raises ValueError when bf16 is asked for and cannot run."""
    if requested is False:
        return PrecisionChoice("no", "fp32: asked for (--no_bf16)")
    works = bf16_kernels_work(device_type, cell_type)
    if requested:
        if not works:
            raise ValueError(unsupported_message("bf16", cell_type, device_type))
        return PrecisionChoice("bf16", "bf16 autocast: asked for (--bf16)")
    if not works:
        return PrecisionChoice("no", f"fp32: this {device_type.upper()} has no bf16 kernels for {cell_type} layers")
    if device_type == "cpu" and cpu_has_bf16_instructions() is False:
        return PrecisionChoice("no", "fp32: this CPU has no bf16 instructions (avx512_bf16 or AMX), so bf16 autocast "
                                     "would be emulated and slower")
    if not single_process:
        bf16 = device_type == "cuda" and torch.cuda.is_bf16_supported()
        reason = "several processes do not measure (they must agree): bf16 on GPUs that support it"
        return PrecisionChoice("bf16" if bf16 else "no", f"{'bf16 autocast' if bf16 else 'fp32'}: {reason}")
    return None


def precisions_to_time(requested: bool | None, cell_type: str, device_type: str,
                       single_process: bool = True) -> tuple[bool, ...]:
    """The precisions (bf16 or not) a run's training step may take, for timing it before the run's model exists (the
    sized defaults): the one `decided_precision` gives, or both where the run will measure them and take the faster."""
    try:
        decided = decided_precision(requested, cell_type, device_type, single_process)
    except ValueError:  # bf16 asked for but unworkable: the run says so when it chooses
        return (False,)
    return (False, True) if decided is None else (decided.bf16,)


def measured_choice(model, rows: int, length: int, device_type: str) -> PrecisionChoice:
    """Time both precisions on a copy of `model` (on `device_type`) and take bf16 only where it is clearly faster.
    The two are timed in turns, twice, so that a machine busy with something else slows both alike; the second
    round is skipped when bf16 is far behind (an emulated bf16 is many times slower)."""
    fp32, bf16 = [], []
    for _ in range(2):
        fp32.append(training_step_seconds(model, rows, length, bf16=False, steps=1, device=device_type))
        bf16.append(training_step_seconds(model, rows, length, bf16=True, steps=1, device=device_type))
        if bf16[0] > 1.5 * fp32[0]:
            break
    return decide_from_timings(min(fp32), min(bf16))


def decide_from_timings(fp32_seconds: float, bf16_seconds: float) -> PrecisionChoice:
    """bf16 when a step in it takes at most 1 / `BF16_MIN_SPEEDUP` of an fp32 step, with the figures in the reason."""
    speedup = fp32_seconds / bf16_seconds
    timings = dict(fp32_ms_per_step=round(fp32_seconds * 1e3, 2), bf16_ms_per_step=round(bf16_seconds * 1e3, 2))
    if speedup >= BF16_MIN_SPEEDUP:
        return PrecisionChoice("bf16", f"bf16 autocast: measured {speedup:.2f}x the speed of fp32 here", **timings)
    return PrecisionChoice("no", f"fp32: bf16 autocast measured {speedup:.2f}x the speed of fp32 here", **timings)
