"""(a) of scripts/bench_quality.py: the classic char-RNN tutorial recipe, written in plain PyTorch as tutorials write it.

A 2-layer LSTM over an embedding, windows of 100 characters that may start at every position of the text (step 1; a
batch is random windows), the loss on the LAST character of each window only, Adam at 2e-3, constant; and its own
scoring regime (`windowed_bpc`: each character predicted from the `window` before it, from a zero state).
"""

from __future__ import annotations

import time

import torch
from bench_common import PlainLSTM, log
from torch.nn import functional as F

from hf_charrnn.configuration_charrnn import CharRNNConfig
from hf_charrnn.evaluation import (
    LN2,
)
from hf_charrnn.modeling_charrnn import CharRNNForCausalLM

TUTORIAL_WINDOW = 100
TUTORIAL_BATCH_SIZE = 128
TUTORIAL_LEARNING_RATE = 2e-3


class TutorialCharLSTM(PlainLSTM):
    """The tutorials' model: embedding, LSTM, and a linear layer on the LAST output only (the next character)."""

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """`(batch, window)` token ids -> `(batch, vocab)` logits of the next character."""
        output, _ = self.lstm(self.embedding(windows))
        return self.head(output[:, -1])


def sample_windows(stream: torch.Tensor, batch_size: int, window: int, generator: torch.Generator) -> torch.Tensor:
    """`batch_size` random slices of `window + 1` tokens of a 1-D stream; any position may start one (step 1)."""
    if stream.numel() < window + 2:
        raise ValueError(f"The training text has {stream.numel()} tokens: too few for windows of {window} + 1.")
    starts = torch.randint(0, stream.numel() - window, (batch_size, 1), generator=generator)
    return stream[starts + torch.arange(window + 1)]


def tutorial_loss(model: TutorialCharLSTM, windows: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the last character of each slice given the `window` characters before it."""
    return F.cross_entropy(model(windows[:, :-1]), windows[:, -1])


def train_tutorial(stream: torch.Tensor, vocab_size: int, budget_seconds: float, *, embedding_dim: int = 64,
                   hidden_size: int = 256, num_layers: int = 2, window: int = TUTORIAL_WINDOW,
                   batch_size: int = TUTORIAL_BATCH_SIZE, learning_rate: float = TUTORIAL_LEARNING_RATE,
                   seed: int = 42, device: str = "cpu") -> tuple[TutorialCharLSTM, dict]:
    """Train (a) until `budget_seconds` of optimizer steps are spent; returns the model and what it did."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = TutorialCharLSTM(vocab_size, embedding_dim, hidden_size, num_layers).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    steps, losses, started, next_report = 0, [], time.perf_counter(), 15.0
    while True:
        loss = tutorial_loss(model, sample_windows(stream, batch_size, window, generator).to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps += 1
        losses.append(loss.item())
        elapsed = time.perf_counter() - started
        if elapsed >= next_report:
            next_report += 15.0
            log(f"  tutorial: step {steps}, {elapsed:.0f} s, loss {sum(losses[-50:]) / len(losses[-50:]):.3f}")
        if elapsed >= budget_seconds:
            break
    recent = losses[-max(1, min(50, len(losses))):]
    return model.eval(), {
        "steps": steps,
        "train_seconds": round(elapsed, 2),
        "chars_processed": steps * batch_size * window,
        "predictions_trained": steps * batch_size,
        "train_loss_recent": sum(recent) / len(recent),
        "hyperparameters": {"window": window, "window_step": 1, "batch_size": batch_size, "optimizer": "Adam",
                            "learning_rate": learning_rate, "lr_schedule": "constant", "loss": "last character only",
                            "embedding_dim": embedding_dim, "hidden_size": hidden_size, "num_layers": num_layers},
    }


def tutorial_to_charrnn(model: TutorialCharLSTM, tokenizer) -> CharRNNForCausalLM:
    """The same weights in a `CharRNNForCausalLM` (same layers, same computation), to be scored like the others."""
    config = CharRNNConfig(
        vocab_size=model.head.out_features, cell_type="lstm", embedding_dim=model.embedding.embedding_dim,
        hidden_size=model.lstm.hidden_size, num_layers=model.lstm.num_layers, dropout=0.0,
        pad_token_id=tokenizer.pad_token_id, unk_token_id=tokenizer.unk_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    charrnn = CharRNNForCausalLM(config)
    charrnn.model.embeddings.load_state_dict(model.embedding.state_dict())
    charrnn.model.rnn.load_state_dict(model.lstm.state_dict())
    charrnn.lm_head.load_state_dict(model.head.state_dict())
    return charrnn.to(next(model.parameters()).device).eval()


@torch.no_grad()
def windowed_bpc(model, ids: torch.Tensor, window: int = TUTORIAL_WINDOW, predictions: int = 5000,
                 batch_size: int = 256) -> float:
    """Bits per character of tokens `window .. window + predictions - 1` of `ids`, each predicted from the `window`
    tokens before it with a zero state (the tutorial's own regime; char tokenizer: one token = one character)."""
    predictions = min(predictions, ids.numel() - window)
    if predictions < 1:
        raise ValueError(f"The validation text is shorter than the window ({window}).")
    slices = ids[: window + predictions].unfold(0, window + 1, 1)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    nats = 0.0
    try:
        for start in range(0, predictions, batch_size):
            part = slices[start : start + batch_size].to(device)
            logits = model(input_ids=part[:, :-1], use_cache=False, logits_to_keep=1).logits[:, -1].float()
            nats += float(F.cross_entropy(logits, part[:, -1], reduction="sum"))
    finally:
        model.train(was_training)
    return nats / LN2 / predictions
