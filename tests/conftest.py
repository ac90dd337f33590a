"""Shared fixtures: every cell type, the signal handlers each test starts with, the Hub test server. Plain helpers
(tiny models, a trained output folder, the command in this process) are in testing_utils.py."""

import os
import signal

import pytest
import torch

# Tests run tiny models: one intra-op thread is faster for them, and on a busy machine several OpenMP threads spin-wait
# on each other (a 2-thread run of the training tests was 100x slower under load). Child processes inherit the setting.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

from testing_utils import CELL_TYPES, training_corpus  # noqa: E402  (after the thread setting: they import torch)


@pytest.fixture(autouse=True)
def isolated_signal_handlers():
    """Every test starts with the SIGINT/SIGTERM handlers the one before found: the training runs install their own
    and must put them back (tested), and nothing a test or library leaves behind reaches the next test."""
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    yield
    for number, handler in handlers.items():
        if handler is not None:
            signal.signal(number, handler)


@pytest.fixture(params=CELL_TYPES)
def cell_type(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, str]:
    """The Trainer-path tests' generated text files (`testing_utils.training_corpus`), written once per module."""
    return training_corpus(tmp_path_factory.mktemp("corpus"))


from fake_hub.fixtures import *  # noqa: E402,F401,F403  (Hub test server fixtures)
