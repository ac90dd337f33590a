"""Scoring language models on long texts with the recurrent state carried: loss, bits per character, perplexity.

A recurrent model reads a text of any length in one pass: each chunk starts from the state the previous chunk left
(`cache`), so the score of a text does not depend on an arbitrary window length, unlike a fixed-context
transformer's "sliding window" perplexity. Every function here scores a token stream that way.

Definitions (the same everywhere in hf_charrnn: training summaries, model cards, the CLI):

* **loss** -- mean cross-entropy of the predicted tokens, in nats per token. The first token of a stream is only
  context: there is nothing to predict it from.
* **perplexity** -- `exp(loss)`, per token.
* **bits per character (bpc)** -- total nats / ln(2) / number of characters the predicted tokens cover. With the
  character tokenizer a token is one character; with the word tokenizer a token covers several. An `<eos>` token (the
  boundary the data layer appends after each document) counts as **one character**: it stands for the document break,
  as a final newline would.
* **Documents** of a data set are scored as training sees them (`hf_charrnn.data.tokenize_stream`): each document's
  tokens followed by `<eos>`, all concatenated, and the state carried across documents. The stream starts with one
  extra `<eos>` that is context only, so every character of every document and every `<eos>` is predicted:
  `characters = sum(len(document)) + number_of_documents`.
* **batch_size > 1** cuts the stream into that many contiguous rows scored in parallel (faster on any hardware).
  Consecutive rows overlap by one token, so every token after the first is still predicted exactly once; only the
  state restarts from zeros at each row start, which changes the score slightly. `batch_size=1` is the exact
  single-pass score.

The `evaluate` metric module `bits_per_character` (see :func:`metric_path`) computes the same numbers from summed
nats and character counts.
"""

from __future__ import annotations

import contextlib
import math
from importlib import resources

import numpy as np
import torch
from torch.nn import functional as F

from .token_encoding import encode_batch, id_dtype

LN2 = math.log(2.0)
DEFAULT_CHUNK_LENGTH = 1024


# ----------------------------------------------------------------------------------
# Numbers
# ----------------------------------------------------------------------------------


def bits_per_character(total_nats: float, num_characters: int) -> float:
    """`total_nats / ln(2) / num_characters`: the bits a model needs per character of text."""
    if num_characters <= 0:
        raise ValueError(f"num_characters must be positive, got {num_characters}.")
    return float(total_nats) / LN2 / num_characters


def summarize_scores(total_nats: float, tokens: int, characters: int) -> dict:
    """The result dict every scoring function returns: loss (nats/token), bpc, perplexity (per token), counts."""
    if tokens <= 0:
        raise ValueError("Nothing was scored: the text has fewer than two tokens.")
    loss = float(total_nats) / tokens
    return {
        "loss": loss,
        "bpc": bits_per_character(total_nats, characters),
        "perplexity": math.exp(loss) if loss < 700 else float("inf"),
        "characters": int(characters),
        "tokens": int(tokens),
        "nats": float(total_nats),
    }


def metric_path() -> str:
    """Folder of the `evaluate` metric module shipped with hf_charrnn: `evaluate.load(metric_path())` works offline."""
    return str(resources.files("hf_charrnn") / "metrics" / "bits_per_character")


# ----------------------------------------------------------------------------------
# Scoring a token stream with the state carried
# ----------------------------------------------------------------------------------


@contextlib.contextmanager
def eval_mode(model):
    """The model in eval mode for the block (dropout off), then back in the mode it was in, even after an error:
    scoring and sampling during training must not leave a training model in eval mode, or the reverse."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def stream_row_bounds(num_tokens: int, batch_size: int) -> list[int]:
    """Where the rows of :func:`score_stream` start: row `r` reads tokens `[b[r], b[r+1])` and predicts
    `[b[r] + 1, b[r+1] + 1)`; every token after the first is predicted exactly once."""
    predictions = num_tokens - 1
    if predictions < 1:
        raise ValueError(f"A stream of {num_tokens} token(s) has nothing to score: it needs at least 2 tokens.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    batch_size = min(batch_size, predictions)
    return [round(r * predictions / batch_size) for r in range(batch_size + 1)]


@torch.no_grad()
def score_stream(
    model,
    token_ids,
    chunk_length: int = DEFAULT_CHUNK_LENGTH,
    batch_size: int = 1,
    rows: range | list[int] | None = None,
) -> dict:
    """
    Score a 1-D token stream, feeding it `chunk_length` tokens at a time with the recurrent state carried.

    Returns `{"nats": summed negative log-likelihood of the predicted tokens, "tokens": how many were predicted}`.
    `batch_size` rows are scored in parallel (see the module docstring); `rows` restricts the work to some of them
    (each process of a multi-process evaluation takes its share; add up the sums afterwards).
    """
    if chunk_length < 1:
        raise ValueError(f"chunk_length must be >= 1, got {chunk_length}.")
    ids = token_ids if isinstance(token_ids, torch.Tensor) else torch.as_tensor(token_ids, dtype=torch.long)
    ids = ids.flatten()  # any integer type: a compact (uint8/uint16) stream is converted one window at a time
    bounds = stream_row_bounds(ids.numel(), batch_size)
    selected = list(range(len(bounds) - 1)) if rows is None else [r for r in rows if r < len(bounds) - 1]
    device = next(model.parameters()).device
    if not selected:
        return {"nats": 0.0, "tokens": 0}

    starts = [bounds[r] for r in selected]
    lengths = [bounds[r + 1] - bounds[r] for r in selected]
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    with eval_mode(model):
        cache = None
        nats = torch.zeros((), dtype=torch.float64, device=device)
        # Rows differ in length by at most one token: the common part runs unmasked (the fast fused kernels), and
        # only the last column, where some rows are padding, goes through the exact masked path.
        common, width = min(lengths), max(lengths)
        windows = [(start, min(start + chunk_length, common)) for start in range(0, common, chunk_length)]
        windows += [(start, min(start + chunk_length, width)) for start in range(common, width, chunk_length)]
        for window in windows:
            inputs, targets = _stream_window(ids, starts, lengths, window, pad_id)
            mask = targets != -100
            out = model(
                input_ids=inputs.to(device),
                attention_mask=None if bool(mask.all()) else mask.long().to(device),
                cache=cache,
                use_cache=True,
            )
            cache = out.cache
            logits = out.logits.float()
            nats += F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.to(device).reshape(-1), ignore_index=-100,
                reduction="sum",
            ).double()
    return {"nats": float(nats), "tokens": int(sum(lengths))}


def _stream_window(ids: torch.Tensor, starts: list[int], lengths: list[int], window: tuple[int, int], pad_id: int):
    """Columns `[begin, end)` of the rows that start at `starts`: the input tokens (padded with `pad_id` past a row's
    end) and the tokens they predict (-100 there), as int64. Cut per window so the stream itself stays compact."""
    begin, end = window
    inputs = torch.full((len(starts), end - begin), pad_id, dtype=torch.long)
    targets = torch.full((len(starts), end - begin), -100, dtype=torch.long)
    for row, (start, length) in enumerate(zip(starts, lengths)):
        width = max(0, min(end, length) - begin)
        inputs[row, :width] = ids[start + begin : start + begin + width]
        targets[row, :width] = ids[start + begin + 1 : start + begin + width + 1]
    return inputs, targets


def _first_token_characters(tokenizer, text: str) -> int:
    """How many characters the first token of `text` covers (it is context only, not predicted)."""
    head = text[:1000]
    encoding = tokenizer(head, add_special_tokens=False, return_offsets_mapping=True)
    start, end = encoding["offset_mapping"][0]
    return end if end > 0 else 1


def evaluate_text(
    model,
    tokenizer,
    text: str,
    chunk_length: int = DEFAULT_CHUNK_LENGTH,
    batch_size: int = 1,
    start_with_eos: bool = False,
) -> dict:
    """
    Score one long text with the recurrent state carried from chunk to chunk.

    Returns `{"loss", "bpc", "perplexity", "characters", "tokens", "nats"}` (see the module docstring). With the
    defaults the result is that of a single forward pass over the whole text (`model(ids, labels=ids).loss`): the
    first token is context only. `start_with_eos=True` puts an `<eos>` before the text as context (a document start,
    as in training), so every character is scored and `characters == len(text)`.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}.")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if start_with_eos:
        if tokenizer.eos_token_id is None:
            raise ValueError("start_with_eos=True needs a tokenizer with an eos token.")
        ids = [tokenizer.eos_token_id] + ids
        characters = len(text)
    else:
        if len(ids) < 2:
            raise ValueError(
                f"The text encodes to {len(ids)} token(s); scoring needs at least 2 (the first is only context). "
                "Give a longer text, or start_with_eos=True."
            )
        characters = len(text) - _first_token_characters(tokenizer, text)
    scores = score_stream(model, ids, chunk_length=chunk_length, batch_size=batch_size)
    return summarize_scores(scores["nats"], scores["tokens"], characters)


def dataset_stream(dataset, tokenizer, text_column: str = "text", max_documents: int | None = None,
                   max_tokens: int | None = None, compact: bool = False):
    """
    The token stream of a data set split as evaluation scores it: `<eos>`, then every document's tokens followed by
    `<eos>` (as `hf_charrnn.data.tokenize_stream` lays out training data). Returns `(token_ids, characters)` where
    `characters` is what the predicted tokens cover: all document characters plus one per `<eos>`. Rows that are
    pieces of a document (`hf_charrnn.text_pieces`: a `document_end` column) get `<eos>` only after its last piece.
    `max_tokens`: stop reading once the stream has more than that many (the caller cuts it; the characters are those
    of the rows read). `compact`: the ids in the vocabulary's smallest unsigned type (1-2 bytes a token, not 8), as
    :func:`score_stream` takes them.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("Scoring a data set needs a tokenizer with an eos token (the document separator).")
    pieces, characters, documents = [np.asarray([eos], dtype=id_dtype(len(tokenizer)))], 0, 0
    batch: list[str] = []
    ends: list[bool] = []
    tokens = 1

    def flush():
        nonlocal tokens
        encoded = encode_batch(tokenizer, batch, eos, ends)
        pieces.extend(encoded)
        tokens += sum(len(piece) for piece in encoded)  # the new pieces only: a split of many rows stays linear
        batch.clear()
        ends.clear()

    for row in dataset:
        if max_documents is not None and documents >= max_documents:
            break
        if max_tokens is not None and tokens > max_tokens:
            break
        if text_column not in row:
            raise ValueError(f"The data set has no column {text_column!r}; its columns are {list(row)}.")
        text, end = row[text_column], row.get("document_end", True)
        batch.append(text)
        ends.append(end)
        characters += len(text) + end
        documents += end
        if len(batch) >= 256:
            flush()
    flush()
    if characters == 0:
        raise ValueError("The data set split is empty: there is nothing to score.")
    dtype = id_dtype(len(tokenizer)) if compact else np.int64
    return torch.from_numpy(np.concatenate(pieces).astype(dtype, copy=False)), characters


def evaluate_dataset(
    model,
    tokenizer,
    dataset,
    chunk_length: int = DEFAULT_CHUNK_LENGTH,
    batch_size: int = 1,
    text_column: str = "text",
    max_documents: int | None = None,
) -> dict:
    """
    Score a `datasets` split (a `Dataset` or `IterableDataset` with a text column) with the state carried across
    its documents, separated by `<eos>` as in training. Returns the dict of :func:`evaluate_text` plus `documents`.
    """
    ids, characters = dataset_stream(dataset, tokenizer, text_column=text_column, max_documents=max_documents,
                                      compact=True)
    scores = score_stream(model, ids, chunk_length=chunk_length, batch_size=batch_size)
    result = summarize_scores(scores["nats"], scores["tokens"], characters)
    result["documents"] = int((ids == tokenizer.eos_token_id).sum()) - 1
    return result


__all__ = [
    "DEFAULT_CHUNK_LENGTH",
    "LN2",
    "bits_per_character",
    "dataset_stream",
    "evaluate_dataset",
    "evaluate_text",
    "metric_path",
    "score_stream",
    "stream_row_bounds",
    "summarize_scores",
]
