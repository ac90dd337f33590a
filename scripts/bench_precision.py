"""bf16 autocast against fp32 on this machine: the same validation bpc at the same number of steps, and which one is
lower at the same wall-clock time.

    python scripts/bench_precision.py [--cell_type gru] [--hidden_size 256] [--steps 300] [--minutes 2] [--threads 2]

Progress on stderr, JSON on stdout.

Both runs go through `hf_charrnn.trainer.train()` (the `hf-charrnn train` code path) on the embedded Shakespeare
corpus with the same seed, model, batch and schedule, one with `--no_bf16` and one with `--bf16`:

1. **equal steps**: `--steps` optimizer steps each; the validation bpc of the two must agree within 0.02 (bf16
   autocast keeps fp32 master weights, so it should learn the same); the training time of each gives the speed ratio;
2. **equal time** (`--minutes` > 0): each with `--max_train_minutes`; the faster precision does more steps and should
   reach the lower bpc.

Where this machine has no bf16 kernels for the cell (oneDNN has no bf16 LSTM on many CPUs), the script says so and
reports the fp32 figures only. What `hf-charrnn train` would choose here by itself (`hf_charrnn.precision`) is
reported too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time

import torch
from bench_common import log

from hf_charrnn import CharRNNConfig, CharRNNForCausalLM
from hf_charrnn.precision import bf16_kernels_work, choose_precision
from hf_charrnn.trainer import train
from hf_charrnn.training_args import CharRNNTrainingArguments, DataArguments, ModelArguments

BATCH, BLOCK, LEARNING_RATE = 16, 128, 5e-3
SAME_BPC_TOLERANCE = 0.02


def run(model_kwargs: dict, precision: str, output_dir: str, steps: int = -1, minutes: float | None = None) -> dict:
    """One training run in `precision` ("bf16" or "fp32"); its steps, training seconds and validation bpc."""
    training_args = CharRNNTrainingArguments(
        output_dir=output_dir, max_steps=steps, max_train_minutes=minutes, per_device_train_batch_size=BATCH,
        learning_rate=LEARNING_RATE, eval_strategy="no", save_strategy="no", report_to="none", disable_tqdm=True,
        logging_steps=50, bf16=precision == "bf16", no_bf16=precision == "fp32",
    )
    data_args = DataArguments(dataset="shakespeare", block_size=BLOCK, sample_every_steps=0, sample_length=1,
                              overwrite_output_dir=True)
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        summary = train(ModelArguments(**model_kwargs), data_args, training_args)
    return {"steps": summary["steps"], "train_seconds": round(summary["train_runtime_s"], 2),
            "wall_seconds": round(time.perf_counter() - started, 2), "bpc": round(summary["validation"]["bpc"], 4),
            "precision": summary["precision"]["mixed_precision"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_precision", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell_type", default="gru", choices=["lstm", "gru", "rnn_tanh", "rnn_relu"])
    parser.add_argument("--hidden_size", type=int, default=256)
    parser.add_argument("--embedding_dim", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300, help="steps of the equal-steps comparison")
    parser.add_argument("--minutes", type=float, default=2.0, help="budget of the equal-time comparison (0: skip)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model_kwargs = dict(cell_type=args.cell_type, hidden_size=args.hidden_size, embedding_dim=args.embedding_dim,
                        num_layers=2)
    probe = CharRNNForCausalLM(CharRNNConfig(vocab_size=80, **model_kwargs))
    automatic = choose_precision(probe, None, BATCH, BLOCK, "cpu")
    results = {"model": model_kwargs, "batch": [BATCH, BLOCK], "learning_rate": LEARNING_RATE,
               "threads": torch.get_num_threads(), "automatic_choice": automatic.as_dict()}
    precisions = ["fp32", "bf16"] if bf16_kernels_work("cpu", args.cell_type) else ["fp32"]
    if len(precisions) == 1:
        results["bf16"] = f"this CPU has no bf16 kernels for {args.cell_type} layers: fp32 only"
    with tempfile.TemporaryDirectory() as scratch:
        for precision in precisions:
            log(f"equal steps: {args.steps} steps in {precision}")
            results.setdefault("equal_steps", {})[precision] = run(model_kwargs, precision, f"{scratch}/s-{precision}",
                                                                   steps=args.steps)
        for precision in precisions if args.minutes > 0 else []:
            log(f"equal time: {args.minutes} minutes in {precision}")
            results.setdefault("equal_time", {})[precision] = run(model_kwargs, precision, f"{scratch}/t-{precision}",
                                                                  minutes=args.minutes)
    if len(precisions) == 2:
        steps = results["equal_steps"]
        results["equal_steps_bpc_difference"] = round(steps["bf16"]["bpc"] - steps["fp32"]["bpc"], 4)
        results["same_bpc_at_equal_steps"] = abs(results["equal_steps_bpc_difference"]) <= SAME_BPC_TOLERANCE
        results["bf16_speed_ratio"] = round(steps["fp32"]["train_seconds"] / steps["bf16"]["train_seconds"], 3)
        if "equal_time" in results:
            timed = results["equal_time"]
            results["lower_bpc_at_equal_time"] = "bf16" if timed["bf16"]["bpc"] < timed["fp32"]["bpc"] else "fp32"
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
