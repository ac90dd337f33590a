"""
Scoring given texts: how likely a model finds each one (`hf-charrnn score`).

`hf_charrnn.evaluation` answers "how well does the model predict this corpus" (one figure for a whole stream);
this module answers it per text: a name, a sentence, each line of a file. Every text is read as a document starts
in training (after the document separator, so its first character is predicted too), and gets its total
log-probability, its bits per character and, on request, the surprisal of each token (-log2 p, in bits: how
unexpected the model found it). `with_end` also scores the end of the text (the `<eos>` that closes a document or
record): the probability of the text *as a whole*, not only as a prefix; `hf-charrnn evaluate` counts that end too.

Texts are scored in batches padded on the right: a recurrent model reads left to right, so padding after a text
cannot change the predictions inside it, and no mask is needed. Long texts go through in windows of
`chunk_length` tokens with the state carried, so memory does not grow with a text's length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn import functional as F

from .dynamic_evaluation import DynamicEvaluation, adapted_weights, adapting_log_probabilities
from .evaluation import DEFAULT_CHUNK_LENGTH, eval_mode


def document_start_id(tokenizer) -> int:
    """The token a text is read after: `<eos>`, which separates documents in the training stream
    (`hf_charrnn.data.tokenize_stream`), else `<bos>`."""
    start = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.bos_token_id
    if start is None:
        raise ValueError("Scoring needs a tokenizer with an eos (or bos) token: the text is read after it.")
    return start


def encode_text(tokenizer, text: str, with_end: bool = False) -> tuple[list[int], list[str]]:
    """The ids to feed (the document start token first) and, for each token after it, the text it stands for (a
    character's own text even where the tokenizer reads it as `<unk>`)."""
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = [document_start_id(tokenizer), *encoding["input_ids"]]
    pieces = [text[start:end] for start, end in encoding["offset_mapping"]]
    if with_end:
        ids.append(tokenizer.eos_token_id)
        pieces.append(tokenizer.eos_token)
    return ids, pieces


@torch.no_grad()
def _token_log_probabilities(model, batch: list[list[int]], chunk_length: int) -> list[torch.Tensor]:
    """For each id list, the natural log-probability of each id after the first, given those before it."""
    device = next(model.parameters()).device
    width = max(len(ids) for ids in batch)
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    inputs = torch.full((len(batch), width), pad_id, dtype=torch.long)
    for row, ids in enumerate(batch):
        inputs[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    inputs = inputs.to(device)
    scores, cache = [], None
    for start in range(0, width - 1, chunk_length):
        window = inputs[:, start : min(start + chunk_length, width - 1)]
        out = model(input_ids=window, cache=cache, use_cache=True)
        cache = out.cache
        targets = inputs[:, start + 1 : start + 1 + window.shape[1]]
        log_probs = F.log_softmax(out.logits.float(), dim=-1)
        scores.append(log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1).double().cpu())
    every = torch.cat(scores, dim=1)
    return [every[row, : len(ids) - 1] for row, ids in enumerate(batch)]


def score_texts(
    model,
    tokenizer,
    texts: Sequence[str],
    with_end: bool = False,
    surprisal: bool = False,
    batch_size: int = 32,
    chunk_length: int = DEFAULT_CHUNK_LENGTH,
    dynamic: DynamicEvaluation | None = None,
) -> list[dict]:
    """
    Score each text on its own (the state starts afresh, after `<eos>`). Returns, per text in the order given:
    `{"characters", "tokens", "log_probability" (natural log), "bits" (-log2 of the probability), "bpc"}`, plus
    `"surprisal"`, a list of `[token text, bits]`, when asked. `characters` counts the `<eos>` as one when
    `with_end` (as `hf_charrnn.evaluation` does); an empty text without its end has nothing to score (`bpc` None).
    `dynamic`: each text read with dynamic evaluation (`hf_charrnn.dynamic_evaluation`), from the trained weights.
    """
    if batch_size < 1 or chunk_length < 1:
        raise ValueError(f"batch_size and chunk_length must be >= 1, got {batch_size} and {chunk_length}.")
    encoded = [encode_text(tokenizer, text, with_end) for text in texts]
    if dynamic is not None:
        return [_text_result(text, _dynamic_log_probabilities(model, ids, dynamic), pieces, with_end, surprisal)
                for text, (ids, pieces) in zip(texts, encoded)]
    results: list[dict | None] = [None] * len(texts)
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i][0]), reverse=True)  # similar lengths together
    with eval_mode(model):
        for first in range(0, len(order), batch_size):
            chosen = [i for i in order[first : first + batch_size] if len(encoded[i][0]) > 1]
            if not chosen:
                continue
            for i, log_probs in zip(chosen, _token_log_probabilities(model, [encoded[i][0] for i in chosen],
                                                                     chunk_length)):
                results[i] = _text_result(texts[i], log_probs, encoded[i][1], with_end, surprisal)
    return [result or _text_result(texts[i], torch.zeros(0), [], with_end, surprisal)
            for i, result in enumerate(results)]


def _dynamic_log_probabilities(model, ids: list[int], settings: DynamicEvaluation) -> torch.Tensor:
    """The log-probability of each id after the first, read with dynamic evaluation from the trained weights."""
    if len(ids) < 2:
        return torch.zeros(0, dtype=torch.float64)
    with adapted_weights(model):
        return torch.cat(list(adapting_log_probabilities(model, torch.tensor(ids), settings)))


def _text_result(text: str, log_probs: torch.Tensor, pieces: list[str], with_end: bool, surprisal: bool) -> dict:
    characters = len(text) + (1 if with_end else 0)
    log_probability = float(log_probs.sum())
    bits = -log_probability / math.log(2)
    result = {"characters": characters, "tokens": int(log_probs.numel()), "log_probability": log_probability,
              "bits": bits, "bpc": bits / characters if characters else None}
    if surprisal:
        result["surprisal"] = [[piece, -float(value) / math.log(2)] for piece, value in zip(pieces, log_probs)]
    return result


__all__ = ["document_start_id", "encode_text", "score_texts"]
