"""
Record mode: a corpus of many short texts (names, titles, tweets, lyrics lines), each learned on its own.

By default the data layer treats a file as one long document and cuts the stream into blocks, so a block starts in
the middle of a name and a name's first letters are predicted from the names before it. In record mode
(`--records line`: each line of the text files or documents; `--records row`: each row of a data set's text
column) every record becomes its own example: `<eos>` (the token that starts a document in the training stream,
so `generate` and `score` start records as they start documents), the record's tokens, and `<eos>` to end it. Each
example starts from the initial state, and a batch pads its records on the right to the longest one with labels
-100 there: a recurrent model reads left to right, so padding after a record cannot change anything inside it, and
the loss is exactly that of the records one by one. A record longer than `block_size` tokens is cut there (counted
in a warning).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Features, List, Value
from torch.nn import functional as F

from .token_encoding import encode_batch, id_dtype

logger = logging.getLogger(__name__)

RECORD_MODES = ("none", "line", "row")


def split_records(texts: list[str], mode: str) -> list[str]:
    """The records of some rows: each non-empty line (`line`), or each non-empty row (`row`)."""
    if mode == "line":
        return [line for text in texts for line in text.split("\n") if line]
    if mode == "row":
        return [text for text in texts if text]
    raise ValueError(f"--records must be one of {', '.join(RECORD_MODES[1:])} to read records, got {mode!r}.")


def _tokenize_records_batch(batch: dict, tokenizer, mode: str, max_length: int) -> dict:
    eos = tokenizer.eos_token_id
    encoded = encode_batch(tokenizer, split_records(batch["text"], mode), eos_id=eos)
    examples = [np.concatenate([np.asarray([eos], dtype=ids.dtype), ids]) for ids in encoded]
    return {"input_ids": [ids[:max_length] for ids in examples],
            "cut": [len(ids) > max_length for ids in examples]}


def tokenize_records(dataset, tokenizer, mode: str, max_length: int, num_proc: int | None = None, split=None):
    """One example per record (`input_ids`: `<eos>`, the record, `<eos>`; at most `max_length` tokens), cached by
    datasets' fingerprints like the blocks of the default layout."""
    if tokenizer.eos_token_id is None:
        raise ValueError("Record mode needs a tokenizer with an eos token (it starts and ends each record).")
    if mode == "row" and "document_end" in dataset.column_names:
        raise ValueError("--records row makes each row of a data set a record, but these rows are pieces of text "
                         "files (read in pieces of 64 K characters): use --records line (each line a record).")
    features = Features({"input_ids": List(Value(id_dtype(len(tokenizer)).name)), "cut": Value("bool")})
    records = dataset.map(
        _tokenize_records_batch, batched=True, remove_columns=dataset.column_names, num_proc=num_proc,
        features=features, fn_kwargs={"tokenizer": tokenizer, "mode": mode, "max_length": max_length},
        desc=f"Tokenizing {split or 'the'} records",
    )
    if len(records) == 0:
        raise ValueError(f"The {split or 'data'} split has no record: with --records {mode} every "
                         f"{'line' if mode == 'line' else 'row'} is one, and all of them are empty.")
    cut = int(np.asarray(records["cut"]).sum())
    if cut:
        logger.warning("%d of %d %srecords are longer than --block_size %d tokens (with their start and end) and "
                       "were cut there: raise --block_size to learn them whole.", cut, len(records),
                       f"{split} " if split else "", max_length)
    return records.remove_columns("cut")


def predicted_tokens(records) -> int:
    """Tokens a pass over tokenized records predicts (all but each record's start token)."""
    lengths = pc.list_value_length(records.data.column("input_ids"))
    return int(pc.sum(lengths).as_py() or 0) - len(records)


def record_characters(texts, mode: str) -> int:
    """Characters the records of `texts` hold, each with its end (the `<eos>` counts as one, as in evaluation)."""
    return sum(len(record) + 1 for text in texts for record in split_records([text], mode))


@dataclass
class RecordBatches:
    """
    The records of a stateful-BPTT run (`train-accelerate --records`) in batches of `batch_size` (all processes
    together), in an order drawn afresh each epoch from `seed` and the epoch: batch `index` of `epoch` is the same
    whenever it is asked for, so a checkpoint resumes exactly. `rank` takes its `batch_size // world` rows of each.
    """

    records: object  # a Dataset of tokenized records (`tokenize_records`)
    batch_size: int
    rank: int
    world: int
    seed: int
    pad_token_id: int

    def __post_init__(self):
        self._order: tuple[int, np.ndarray] | None = None

    @property
    def batches_per_epoch(self) -> int:
        return len(self.records) // self.batch_size

    def order(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.records)))
        return self._order[1]

    def batch(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's rows of a batch: the input tokens and the tokens they predict (-100 after a record)."""
        local = self.batch_size // self.world
        chosen = self.order(epoch)[index * self.batch_size : (index + 1) * self.batch_size]
        return shifted_batch(self.records, chosen[self.rank * local : (self.rank + 1) * local], self.pad_token_id)


def shifted_batch(records, indices, pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The records at `indices`, padded: the input tokens and the tokens they predict (-100 after a record)."""
    padded = RecordCollator(pad_token_id)([{"input_ids": ids} for ids in
                                           records[[int(i) for i in indices]]["input_ids"]])
    return padded["input_ids"][:, :-1], padded["labels"][:, 1:]


def batch_nats(model, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed negative log-likelihood (float64) and count of the `targets` a padded batch of records predicts, -100
    ignored: with every record's own length counted, a split's mean is per token, whatever the batches."""
    logits = model(input_ids=inputs).logits.float()
    nats = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                           reduction="sum")
    return nats.double(), (targets != -100).sum()


@torch.no_grad()
def score_records(model, records, rows: range, batch_size: int, pad_token_id: int) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) and count of the tokens the records at `rows` predict, each record
    from the initial state; the rows of several processes add up to the whole split."""
    device = next(model.parameters()).device
    nats, tokens = 0.0, 0
    chosen = list(rows)
    for start in range(0, len(chosen), batch_size):
        inputs, targets = shifted_batch(records, chosen[start : start + batch_size], pad_token_id)
        batch, count = batch_nats(model, inputs.to(device), targets.to(device))
        nats, tokens = nats + float(batch), tokens + int(count)
    return nats, tokens


@dataclass
class RecordCollator:
    """A batch of records padded on the right to the longest: `pad_token_id` in the inputs, -100 in the labels
    (ignored by the loss). No attention mask: the padding comes after every record, so the fast kernels run."""

    pad_token_id: int

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(feature["input_ids"]) for feature in features)
        input_ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), -100, dtype=torch.long)
        for row, feature in enumerate(features):
            ids = torch.as_tensor(np.asarray(feature["input_ids"]), dtype=torch.long)
            input_ids[row, : len(ids)] = ids
            labels[row, : len(ids)] = ids
        return {"input_ids": input_ids, "labels": labels}


__all__ = ["RECORD_MODES", "split_records", "tokenize_records", "predicted_tokens", "record_characters",
           "RecordBatches", "shifted_batch", "batch_nats", "score_records", "RecordCollator"]
