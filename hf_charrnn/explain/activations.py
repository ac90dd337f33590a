"""What a model computes at each position of a text: every layer's hidden state, an LSTM's cell state, and the
distribution of the next token. These are the numbers behind Karpathy's pictures (text coloured by one neuron, the
model's guesses under each character); `hf-charrnn explain` draws them, notebooks use them directly.

The text is read as a document starts in training (after `<eos>`, from the zero state), as `hf-charrnn score` reads
it, so position `i` holds the state *after reading token i* and `surprisal[i]` is how unexpected token i was.

Hidden states come from the model's own `output_hidden_states=True` (every layer's outputs). `nn.LSTM` returns no
per-position cell states, so they are recomputed from those outputs: a layer's gates at step t depend only on its
input at t and its hidden state at t-1, both known, so all gates come from two matrix products and only the cell's
elementwise recurrence `c_t = f_t * c_(t-1) + i_t * g_t` is a loop. The last cell state equals the one the fused
kernel hands back in the cache (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..evaluation import eval_mode
from ..scoring import encode_text

STATE_KINDS = ("hidden", "cell")


@dataclass
class TextActivations:
    """Per-position results for one text of `length` tokens (float32, on the CPU).

    tokens: the text each position stands for (one character each with a character tokenizer).
    token_ids: the ids read, without the start token.
    hidden: one `(length, hidden_size)` tensor per layer, the layer's output (its hidden state) after each token.
    cell: the same for an LSTM's cell states; `None` for a GRU or a plain RNN, which have none.
    next_logits: `(length, vocab_size)`, the logits for the token after each position.
    surprisal: `(length,)`, each token's surprisal in bits, -log2 p(token | text before it).
    """

    tokens: list[str]
    token_ids: list[int]
    hidden: tuple[torch.Tensor, ...]
    cell: tuple[torch.Tensor, ...] | None
    next_logits: torch.Tensor
    surprisal: torch.Tensor

    def states(self, kind: str) -> tuple[torch.Tensor, ...]:
        """The hidden or cell states of every layer; a clear error for cell states of a model without them."""
        if kind not in STATE_KINDS:
            raise ValueError(f"state kind {kind!r}: choose 'hidden' or 'cell'.")
        if kind == "cell" and self.cell is None:
            raise ValueError("This model has no cell states (only LSTMs do); use its hidden states.")
        return self.hidden if kind == "hidden" else self.cell

    def bits_per_character(self) -> float:
        characters = sum(len(token) for token in self.tokens)
        return float(self.surprisal.double().sum()) / characters if characters else math.nan


@torch.no_grad()
def activations(model, text: str, tokenizer=None) -> TextActivations:
    """
    Run `model` (a `CharRNNForCausalLM`) over `text` and return what it computed at every position. `tokenizer`
    defaults to the one saved with the model (`model.name_or_path`). The model is put in eval mode for the call.
    """
    if not text:
        raise ValueError("The text to explain is empty.")
    tokenizer = tokenizer if tokenizer is not None else _saved_tokenizer(model)
    ids, tokens = encode_text(tokenizer, text)
    device = next(model.parameters()).device
    with eval_mode(model):
        out = model(input_ids=torch.tensor([ids], device=device), output_hidden_states=True, use_cache=True)
    layer_outputs = [state[0].float().cpu() for state in out.hidden_states]  # inputs, then each layer's outputs
    logits = out.logits[0].float().cpu()
    targets = torch.tensor(ids[1:])
    surprisal = -F.log_softmax(logits[:-1], dim=-1).gather(-1, targets[:, None]).squeeze(-1) / math.log(2)
    cell = None
    if model.config.cell_type == "lstm":
        cell = tuple(lstm_cell_states(model.model.rnn, layer, layer_outputs[layer], layer_outputs[layer + 1])[1:]
                     for layer in range(model.config.num_layers))
    return TextActivations(tokens=tokens, token_ids=ids[1:], hidden=tuple(o[1:] for o in layer_outputs[1:]),
                           cell=cell, next_logits=logits[1:], surprisal=surprisal)


def lstm_cell_states(lstm: torch.nn.LSTM, layer: int, inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """
    The cell states `(length, hidden_size)` of one layer of `lstm` that read `inputs` from the zero state and
    produced the hidden states `outputs`: the gates from both at once (PyTorch's order: input, forget, cell, output),
    then the cell recurrence step by step.
    """
    weight_ih, weight_hh, bias_ih, bias_hh = (w.detach().float().cpu() for w in lstm.all_weights[layer])
    previous_hidden = torch.cat([torch.zeros_like(outputs[:1]), outputs[:-1]])
    gates = inputs @ weight_ih.T + bias_ih + previous_hidden @ weight_hh.T + bias_hh
    input_gate, forget_gate, candidate, _ = gates.chunk(4, dim=-1)
    written = torch.sigmoid(input_gate) * torch.tanh(candidate)
    kept = torch.sigmoid(forget_gate)
    cells = torch.empty_like(written)
    cell = torch.zeros_like(written[0])
    for t in range(len(cells)):
        cell = torch.addcmul(written[t], kept[t], cell)
        cells[t] = cell
    return cells


def _saved_tokenizer(model):
    from transformers import AutoTokenizer

    name = getattr(model, "name_or_path", "") or ""
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as error:
        raise ValueError(f"activations() needs the model's tokenizer and found none saved with {name!r}; pass "
                         "tokenizer=... (the one the model was trained with).") from error


__all__ = ["STATE_KINDS", "TextActivations", "activations", "lstm_cell_states"]
