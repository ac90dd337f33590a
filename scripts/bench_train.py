"""Characters per second of the Trainer path and the Accelerate (stateful BPTT) path against a plain PyTorch loop.

    python scripts/bench_train.py [--steps 20] [--hidden_size 512] [--batch_size 64] [--seq_len 128] [--threads 2]

Progress on stderr, JSON on stdout.

Characters (tokens) per second of four ways to train the same model shape on the same batch shape, in one process:

* ``trainer``: `hf_charrnn.trainer.train()` -- the real `hf-charrnn train` code path (CharRNNTrainer, its callbacks,
  the blocked Shakespeare data set and `default_data_collator`), with evaluation, checkpoints, logging, samples and
  reporting turned off;
* ``accelerate``: `hf_charrnn.training_accelerate.train_bptt()` -- the real `hf-charrnn train-accelerate` loop
  (stateful truncated BPTT, the state carried and detached between batches), with the same things turned off;
* ``plain_charrnn``: a hand-written PyTorch loop over the same `CharRNNForCausalLM` (AdamW, gradient clipping), run
  before and after the two library paths (their mean is the reference, so a drift of the machine's speed shows);
* ``plain_nn_lstm``: the same loop over a plain `nn.Embedding` + `nn.LSTM` + `nn.Linear` of the same sizes (what a
  tutorial writes; shows what the `CharRNNForCausalLM` wrapper costs).

Every path runs `warmup_steps + steps` optimizer steps; only the last `steps` are timed, from the end of the last
warm-up step to the end of the last step (the set-up before training and the saving after it are not counted).
The library paths are timed with their own per-step hooks: a `TrainerCallback.on_step_end` for the Trainer, the
`callback` argument of `train_bptt`. A step processes `batch_size * seq_len` tokens on every path (the Trainer's
blocks predict `seq_len - 1` of them, the others `seq_len`); with the character tokenizer, tokens are characters.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_common import PlainLSTM, log, quiet_bptt_arguments
from torch import nn
from torch.nn import functional as F
from transformers import TrainerCallback

from hf_charrnn import data
from hf_charrnn.configuration_charrnn import CharRNNConfig
from hf_charrnn.modeling_charrnn import CharRNNForCausalLM
from hf_charrnn.trainer import train
from hf_charrnn.trainer_utils import load_or_build_tokenizer, load_raw_data
from hf_charrnn.training_accelerate import train_bptt
from hf_charrnn.training_args import CharRNNTrainingArguments, CorpusArguments, DataArguments, ModelArguments

LEARNING_RATE = 2e-3
MAX_GRAD_NORM = 1.0


class StepTimes(TrainerCallback):
    """Records `time.perf_counter()` at the end of every optimizer step (a Trainer callback, or call it directly)."""

    def __init__(self):
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter())

    def __call__(self, info=None):  # train_bptt's `callback(info)`
        self.times.append(time.perf_counter())


def timed_rate(times: list[float], warmup_steps: int, steps: int, tokens_per_step: int) -> dict:
    """Tokens per second over the steps after the warm-up, from per-step end times: `chars_per_s` over the whole
    timed span, and `chars_per_s_median_step` from the median step (robust to a few steps slowed by other processes)."""
    if warmup_steps < 1:
        raise ValueError("warmup_steps must be >= 1 (the timing starts at the end of the last warm-up step).")
    if len(times) < warmup_steps + steps:
        raise RuntimeError(f"Only {len(times)} steps ran; expected {warmup_steps + steps}.")
    timed = times[warmup_steps - 1 : warmup_steps + steps]
    seconds = timed[-1] - timed[0]
    median_step = statistics.median(b - a for a, b in itertools.pairwise(timed))
    return {"chars_per_s": round(steps * tokens_per_step / seconds, 1),
            "chars_per_s_median_step": round(tokens_per_step / median_step, 1),
            "seconds": round(seconds, 3), "steps": steps}


# ----------------------------------------------------------------------------------
# Plain PyTorch loops
# ----------------------------------------------------------------------------------


def random_blocks(stream: torch.Tensor, batch_size: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
    """`batch_size` blocks of `seq_len` tokens starting at random positions of a 1-D token stream."""
    starts = torch.randint(0, stream.numel() - seq_len, (batch_size, 1), generator=generator)
    return stream[starts + torch.arange(seq_len)]


def plain_loop(model: nn.Module, stream: torch.Tensor, batch_size: int, seq_len: int, warmup_steps: int, steps: int,
               device: str, charrnn: bool) -> dict:
    """AdamW + clipping, `warmup_steps + steps` steps on random blocks of `stream`; the last `steps` are timed."""
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(warmup_steps + steps):
        # The model shifts labels inside (seq_len inputs); the nn.LSTM loop shifts by hand (seq_len + 1 tokens).
        batch = random_blocks(stream, batch_size, seq_len + (0 if charrnn else 1), generator).to(device)
        if charrnn:
            loss = model(input_ids=batch, labels=batch).loss
        else:
            logits = model(batch[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter())
    return timed_rate(times, warmup_steps, steps, batch_size * seq_len)


# ----------------------------------------------------------------------------------
# The library paths
# ----------------------------------------------------------------------------------


def trainer_path(dataset: str, model_kwargs: dict, batch_size: int, seq_len: int, warmup_steps: int, steps: int,
                 device: str, output_dir: str, cli_logging: bool = True) -> tuple[dict, dict]:
    """`hf_charrnn.trainer.train()` with evaluation, saving and samples off, and (with `cli_logging`) the logging
    `hf-charrnn train` does during steps: a loss line every 10 steps, TensorBoard, the progress bar; returns (rate,
    training summary)."""

    timer = StepTimes()
    training_args = CharRNNTrainingArguments(
        output_dir=output_dir,
        max_steps=warmup_steps + steps,
        per_device_train_batch_size=batch_size,
        learning_rate=LEARNING_RATE,
        max_grad_norm=MAX_GRAD_NORM,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="steps" if cli_logging else "no",
        logging_steps=10,
        logging_first_step=cli_logging,
        report_to="tensorboard" if cli_logging else "none",
        disable_tqdm=not cli_logging,
        no_bf16=True,  # the plain loops train in fp32
        use_cpu=device == "cpu",
    )
    data_args = DataArguments(dataset=dataset, block_size=seq_len, sample_every_steps=0, sample_length=1,
                              max_eval_samples=1, overwrite_output_dir=True)
    with contextlib.redirect_stdout(sys.stderr):  # Trainer prints its final metrics; stdout is for the JSON
        summary = train(ModelArguments(**model_kwargs), data_args, training_args, callbacks=[timer])
    return timed_rate(timer.times, warmup_steps, steps, batch_size * seq_len), summary


def accelerate_path(dataset: str, model_kwargs: dict, batch_size: int, seq_len: int, warmup_steps: int, steps: int,
                    device: str, output_dir: str, cli_logging: bool = True) -> tuple[dict, dict]:
    """`hf_charrnn.training_accelerate.train_bptt()` with evaluation, saving and samples off, and (with
    `cli_logging`) the logging `hf-charrnn train-accelerate` does during steps."""

    timer = StepTimes()
    args = quiet_bptt_arguments(
        output_dir=output_dir,
        batch_size=batch_size,
        block_size=seq_len,
        max_steps=warmup_steps + steps,
        learning_rate=LEARNING_RATE,
        max_grad_norm=MAX_GRAD_NORM,
        cpu=device == "cpu",
        logging_steps=10 if cli_logging else 0,
        max_eval_tokens=seq_len,
    )
    if cli_logging:
        args.report_to, args.disable_tqdm = "tensorboard", False
    with contextlib.redirect_stdout(sys.stderr):
        summary = train_bptt(args, ModelArguments(**model_kwargs),
                             CorpusArguments(dataset=dataset, overwrite_output_dir=True), callback=timer)
    return timed_rate(timer.times, warmup_steps, steps, batch_size * seq_len), summary


# ----------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------


def run_training_benchmark(hidden_size: int = 512, num_layers: int = 2, embedding_dim: int = 128,
                           batch_size: int = 64, seq_len: int = 128, steps: int = 20, warmup_steps: int = 3,
                           dataset: str = "shakespeare", device: str = "cpu", output_dir: str | None = None,
                           cli_logging: bool = True) -> dict:
    """Measure the four paths (see the module docstring); returns the figures and the ratios to the plain loop."""

    model_kwargs = dict(cell_type="lstm", hidden_size=hidden_size, num_layers=num_layers, embedding_dim=embedding_dim,
                        dropout=0.0)
    splits = load_raw_data(CorpusArguments(dataset=dataset))
    texts = [row["text"] for row in splits["train"]]
    tokenizer, _ = load_or_build_tokenizer(ModelArguments(**model_kwargs), texts)
    stream = data.tokenize_stream(splits["train"], tokenizer)
    config = CharRNNConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                           unk_token_id=tokenizer.unk_token_id, bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id, **model_kwargs)
    shape = dict(batch_size=batch_size, seq_len=seq_len, warmup_steps=warmup_steps, steps=steps, device=device)

    def plain_charrnn():
        torch.manual_seed(0)
        return plain_loop(CharRNNForCausalLM(config), stream, charrnn=True, **shape)

    results: dict = {
        "device": device,
        "threads": torch.get_num_threads(),
        "model": f"{num_layers}x{hidden_size} LSTM, embedding {embedding_dim}, vocab {len(tokenizer)}",
        "dataset": dataset,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "timed_steps": steps,
        "warmup_steps": warmup_steps,
        "optimizer": "AdamW lr 2e-3, clip 1.0 (the Trainer path uses TrainingArguments' default optim)",
    }
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(output_dir or scratch)
        log(f"[1/5] plain PyTorch loop over CharRNNForCausalLM ({steps} timed steps)")
        first = plain_charrnn()
        log(f"      {first['chars_per_s']} chars/s")
        log("[2/5] plain PyTorch loop over nn.Embedding + nn.LSTM + nn.Linear")
        torch.manual_seed(0)
        lstm = plain_loop(PlainLSTM(len(tokenizer), embedding_dim, hidden_size, num_layers), stream,
                          charrnn=False, **shape)
        log(f"      {lstm['chars_per_s']} chars/s")
        log("[3/5] Trainer path (hf_charrnn.trainer.train)")
        trainer, trainer_summary = trainer_path(dataset, model_kwargs, output_dir=str(root / "trainer"),
                                                cli_logging=cli_logging, **shape)
        log(f"      {trainer['chars_per_s']} chars/s")
        log("[4/5] Accelerate stateful-BPTT path (hf_charrnn.training_accelerate.train_bptt)")
        accelerate, bptt_summary = accelerate_path(dataset, model_kwargs, output_dir=str(root / "accelerate"), cli_logging=cli_logging,
                                                   **shape)
        log(f"      {accelerate['chars_per_s']} chars/s")
        log("[5/5] plain PyTorch loop over CharRNNForCausalLM again (drift check)")
        second = plain_charrnn()
        log(f"      {second['chars_per_s']} chars/s")

    for summary, name in ((trainer_summary, "trainer"), (bptt_summary, "accelerate")):
        if summary["hyperparameters"]["vocab_size"] != len(tokenizer):
            raise RuntimeError(f"The {name} path built a different vocabulary; the comparison would not be fair.")
    results.update(ratios(first, second, lstm, trainer, accelerate))
    return results


def ratios(first: dict, second: dict, lstm: dict, trainer: dict, accelerate: dict) -> dict:
    """The library paths against the mean of the two plain CharRNN loops (their difference shows the drift)."""
    plain = (first["chars_per_s"] + second["chars_per_s"]) / 2
    plain_median = (first["chars_per_s_median_step"] + second["chars_per_s_median_step"]) / 2
    return {
        "trainer": trainer,
        "accelerate": accelerate,
        "plain_charrnn": {"chars_per_s": round(plain, 1), "chars_per_s_median_step": round(plain_median, 1),
                          "first_run": first, "second_run": second},
        "plain_nn_lstm": lstm,
        "trainer_over_plain": round(trainer["chars_per_s"] / plain, 3),
        "accelerate_over_plain": round(accelerate["chars_per_s"] / plain, 3),
        "trainer_over_plain_median_step": round(trainer["chars_per_s_median_step"] / plain_median, 3),
        "accelerate_over_plain_median_step": round(accelerate["chars_per_s_median_step"] / plain_median, 3),
        "plain_charrnn_over_plain_nn_lstm": round(plain / lstm["chars_per_s"], 3),
        "plain_drift": round(second["chars_per_s"] / first["chars_per_s"], 3),
        "target": "trainer_over_plain >= 0.9 and accelerate_over_plain >= 0.9",
    }


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="bench_train",
        description="Characters per second of the Trainer path and the Accelerate (stateful BPTT) path against a "
        "plain PyTorch loop, same model and batch, in one run. Progress goes to stderr, the JSON result to stdout.",
    )
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps per path")
    parser.add_argument("--warmup_steps", type=int, default=3, help="untimed steps before them")
    parser.add_argument("--hidden_size", type=int, default=512)
    parser.add_argument("--num_layers", type=int, default=2)
    parser.add_argument("--embedding_dim", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--demo_recipe", action="store_true",
                        help="the demo's shape: 2x256 LSTM, embedding 64, batches of 16 x 128 (overrides the above)")
    parser.add_argument("--no_cli_logging", action="store_true",
                        help="turn off the library paths' per-step logging, TensorBoard and progress bar")
    parser.add_argument("--dataset", default="shakespeare", help="as `hf-charrnn train --dataset`")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output_dir", help="keep the two library runs' outputs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup_steps < 1:
        raise ValueError("--steps and --warmup_steps must be at least 1.")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.demo_recipe:
        args.hidden_size, args.embedding_dim, args.batch_size, args.seq_len = 256, 64, 16, 128
    results = run_training_benchmark(
        hidden_size=args.hidden_size, num_layers=args.num_layers, embedding_dim=args.embedding_dim,
        batch_size=args.batch_size, seq_len=args.seq_len, steps=args.steps, warmup_steps=args.warmup_steps,
        dataset=args.dataset, device=args.device, output_dir=args.output_dir, cli_logging=not args.no_cli_logging,
    )
    print(json.dumps(results, indent=2))
    return 0


__all__ = ["PlainLSTM", "StepTimes", "main", "plain_loop", "random_blocks", "run_training_benchmark", "timed_rate"]


if __name__ == "__main__":
    raise SystemExit(main())
