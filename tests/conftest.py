"""Shared fixtures: tiny CharRNN models of every cell type, seeded for reproducibility."""

import os

import pytest
import torch

# Tests run tiny models: one intra-op thread is faster for them, and on a busy machine several OpenMP threads spin-wait
# on each other (a 2-thread run of the training tests was 100x slower under load). Child processes inherit the setting.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

from hf_charrnn import CharRNNConfig, CharRNNForCausalLM

CELL_TYPES = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


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
from fake_hub.fixtures import *  # noqa: E402,F401,F403  (Hub test server fixtures)
