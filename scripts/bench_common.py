"""What the benchmark scripts share: progress on stderr, the tutorial's plain model, a quiet BPTT configuration.

The scripts import it as a sibling module (`python scripts/bench_*.py` puts `scripts/` on the path); the tests put
`scripts/` on the path through pytest's `pythonpath` setting.
"""

from __future__ import annotations

import sys
import time

import torch
from torch import nn

from hf_charrnn.bptt_args import BPTTArguments


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(action):
    """`action()`'s result and the seconds it took."""
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def quiet_bptt_arguments(**options) -> BPTTArguments:
    """`BPTTArguments` for a measured run: no evaluation, checkpoints, samples, test split, trackers or autocast."""
    return BPTTArguments(mixed_precision="no", eval_steps=0, save_steps=0, sample_every_steps=0, sample_length=1,
                         evaluate_test_split=False, report_to="none", **options)


class PlainLSTM(nn.Module):
    """Embedding + LSTM + Linear, as a tutorial writes it."""

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, num_layers: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        output, _ = self.lstm(self.embedding(input_ids))
        return self.head(output)
