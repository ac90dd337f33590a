"""Dynamic evaluation: the model adapts its weights to a text while it reads it (Krause et al., 2018).

A char model trained on one text meets new material in another: names it never saw, a new speaker's words. A static
model can only hold them in its state; dynamic evaluation also learns them. The text is read in segments of
`segment_length` tokens with the state carried, as `hf_charrnn.evaluation` reads it; each segment is scored first,
with the weights as they are, and then the weights take one step on that segment's mean loss. The step is Krause et
al.'s RMS-normalised rule, with a decay that pulls the weights back toward the trained ones:

    ms    <- beta * ms + (1 - beta) * grad ** 2                    (per weight)
    theta <- theta - learning_rate * grad / (sqrt(ms / (1 - beta ** t)) + 1e-8) + decay * (theta_trained - theta)

They gathered the mean squares `ms` over the training data; a checkpoint does not keep that, so here they are gathered
from the text as it is read, with Adam's bias correction for the first steps (`torch.optim.Adam` without momentum).
On the first 20,000 held-out characters of the 1 MB corpus of `scripts/bench_small_corpus.py` (a 2x384 LSTM trained
there), their plain gradient step gained at most 0.020 bpc (learning rate 0.3; 1 and more made it worse), this rule
0.029 (1e-3, segments of 64), both without decay.

Every token is predicted before the model has learnt from it, so the figure is an honest online prediction score;
but it is not the static figure (a model that adapts is another model), and `hf-charrnn evaluate` reports both. The
weights are restored when the reading ends (`adapted_weights`), so scoring never changes the model handed in.

The defaults (`DynamicEvaluation`) were chosen on held-out plays of the small-corpus benchmark
(`scripts/bench_small_corpus.py`); see the README ("Adapting while reading").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .evaluation import dataset_stream, eval_mode, summarize_scores
from .modeling_charrnn import CharRNNCache


@dataclass(frozen=True)
class DynamicEvaluation:
    """The settings of the update rule (see the module docstring)."""

    learning_rate: float = 1e-3
    segment_length: int = 64
    decay: float = 0.0
    beta: float = 0.99

    def __post_init__(self):
        if not self.learning_rate >= 0:
            raise ValueError(f"The dynamic evaluation learning rate must be 0 or more, got {self.learning_rate}.")
        if self.segment_length < 2:
            raise ValueError(f"The dynamic evaluation segment length must be at least 2, got {self.segment_length}.")
        if not 0 <= self.decay <= 1:
            raise ValueError(f"The dynamic evaluation decay must be between 0 and 1, got {self.decay}.")
        if not 0 <= self.beta < 1:
            raise ValueError(f"The dynamic evaluation beta must be at least 0 and below 1, got {self.beta}.")


@contextlib.contextmanager
def adapted_weights(model) -> Iterator[None]:
    """Inside the block the model's weights may be adapted; on leaving it (even after an error) they are the trained
    weights again, bit for bit."""
    trained = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, tensor in model.state_dict().items():
                tensor.copy_(trained[name])


class _Adaptation:
    """The update rule over one reading: `torch.optim.Adam` without momentum (`betas=(0, beta)`) is the normalised
    step, with its bias correction; the decay toward the trained weights follows each step."""

    def __init__(self, parameters: list[torch.nn.Parameter], settings: DynamicEvaluation):
        self.parameters, self.decay = parameters, settings.decay
        self.optimizer = torch.optim.Adam(parameters, lr=settings.learning_rate, betas=(0.0, settings.beta), eps=1e-8)
        self.trained = [parameter.detach().clone() for parameter in parameters] if settings.decay else None

    def step(self, mean_loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        mean_loss.backward()
        self.optimizer.step()
        if self.trained is not None:
            with torch.no_grad():
                for parameter, trained in zip(self.parameters, self.trained):
                    parameter.add_(trained - parameter, alpha=self.decay)


def adapting_log_probabilities(model, token_ids: torch.Tensor, settings: DynamicEvaluation) -> Iterator[torch.Tensor]:
    """The natural log-probability of each token of the 1-D `token_ids` after the first, segment by segment, each
    segment predicted before the weights learn from it. The weights stay adapted afterwards: call inside
    `adapted_weights`."""
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    adaptation = _Adaptation(parameters, settings)
    device = parameters[0].device
    ids = torch.as_tensor(token_ids).flatten().to(device=device, dtype=torch.long)
    cache = CharRNNCache.zeros(model.config, 1, device=device, dtype=parameters[0].dtype)
    with eval_mode(model), torch.enable_grad():
        for start in range(0, ids.numel() - 1, settings.segment_length):
            inputs = ids[start : start + settings.segment_length][None]
            targets = ids[start + 1 : start + 1 + inputs.shape[1]]
            inputs = inputs[:, : targets.numel()]
            out = model(input_ids=inputs, cache=cache, use_cache=True)
            cache = out.cache
            log_probs = F.log_softmax(out.logits[0].float(), dim=-1).gather(-1, targets[:, None])[:, 0]
            yield log_probs.detach().double().cpu()
            if settings.learning_rate or settings.decay:
                adaptation.step(-log_probs.mean())
            cache.detach()
    adaptation.optimizer.zero_grad(set_to_none=True)  # no gradients left on the model


def dynamic_score_stream(model, token_ids, settings: DynamicEvaluation) -> dict:
    """`evaluation.score_stream`'s `{"nats", "tokens"}` for one stream read with dynamic evaluation; the model's
    weights are the trained ones again afterwards."""
    nats, tokens = 0.0, 0
    with adapted_weights(model):
        for log_probs in adapting_log_probabilities(model, token_ids, settings):
            nats -= float(log_probs.sum())
            tokens += log_probs.numel()
    return {"nats": nats, "tokens": tokens}


def evaluate_dataset_dynamically(model, tokenizer, dataset, settings: DynamicEvaluation,
                                 text_column: str = "text") -> dict:
    """`evaluation.evaluate_dataset`'s figures for a split read with dynamic evaluation (one stream, the documents
    separated by `<eos>` as in training)."""
    ids, characters = dataset_stream(dataset, tokenizer, text_column=text_column, compact=True)
    scores = dynamic_score_stream(model, ids, settings)
    return summarize_scores(scores["nats"], scores["tokens"], characters)


def adapt_to(model, token_ids, settings: DynamicEvaluation) -> None:
    """Adapt the weights to `token_ids` (a prompt) as dynamic evaluation reads them, and leave them adapted (the
    caller restores them: `adapted_weights`)."""
    for _ in adapting_log_probabilities(model, token_ids, settings):
        pass


__all__ = ["DynamicEvaluation", "adapt_to", "adapted_weights", "adapting_log_probabilities", "dynamic_score_stream",
           "evaluate_dataset_dynamically"]
