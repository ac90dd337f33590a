"""The data layer: text corpora as ``datasets`` data sets, tokenized into blocks.

Every loader returns a ``DatasetDict`` (``IterableDatasetDict`` when streaming) with a
``"text"`` column and the splits ``train`` / ``validation`` (/ ``test``) it could make:

* :func:`hf_charrnn.shakespeare.load_shakespeare` (its own module) -- the embedded corpus.
* :func:`load_text_files` -- local text files and globs, through datasets' ``"text"``
  builder with line breaks kept.
* :func:`load_named_dataset` -- any ``datasets`` data set by name, a local data-files
  folder, or a folder written by ``save_to_disk``.

Then :func:`tokenize_and_group` turns a split (or a whole dict) into fixed blocks of
``block_size`` token ids (columns ``input_ids`` and ``labels``, equal: the model shifts),
which ``Trainer`` with ``default_data_collator`` consumes; and :func:`tokenize_stream` +
:func:`stream_blocks` lay one long token stream out as ``batch_size`` parallel rows for
stateful truncated back-propagation through time (karpathy/char-rnn style).

Splitting rule when a validation fraction is asked for and there is no validation file
(:func:`split_validation`): with at least ``1 / fraction`` documents, whole documents
are drawn (seeded shuffle; rows that are lines, ``sample_by="line"``, keep their order
and the last rows are taken); with fewer documents, the tail of every document, cut at a
line boundary, becomes validation (like char-rnn's "last 5 %").
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from datasets import (
    Dataset,
    DatasetDict,
    Features,
    IterableDataset,
    IterableDatasetDict,
    List,
    Value,
    load_dataset,
    load_from_disk,
)
from datasets.data_files import DataFilesDict, get_data_patterns

from . import text_files, text_pieces
from .token_encoding import encode_batch, id_dtype

# ----------------------------------------------------------------------------------
# Splitting a text
# ----------------------------------------------------------------------------------

TEXT_SPLIT_FRACTIONS = (0.90, 0.05, 0.05)
"""Train / validation / test shares of the text when a corpus has too few plays to split
by play (:func:`hf_charrnn.shakespeare.load_shakespeare_play`): cuts fall on the next speech boundary."""
def split_text(text: str, fractions: Sequence[float] = TEXT_SPLIT_FRACTIONS,
               boundary: str = "\n\n") -> list[str]:
    """Cut ``text`` into consecutive parts of about ``fractions`` of its length.

    Each cut moves forward to just after the next ``boundary`` (a speech boundary by
    default; ``"\\n"`` for lines); where none follows (a text without line breaks), the
    cut stays at the character position.
    ``"".join(parts) == text`` always.
    """
    if not math.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must add up to 1, got {list(fractions)}.")
    cuts, total = [0], 0.0
    for fraction in fractions[:-1]:
        total += fraction
        position = max(int(len(text) * total), cuts[-1])
        at = text.find(boundary, position)
        cuts.append(position if at < 0 else at + len(boundary))
    cuts.append(len(text))
    return [text[a:b] for a, b in zip(cuts, cuts[1:])]


# ----------------------------------------------------------------------------------
# Text files and named data sets
# ----------------------------------------------------------------------------------

def load_text_files(
    train_files,
    validation_file=None,
    test_file=None,
    validation_fraction: float | None = None,
    seed: int = 0,
    streaming: bool = False,
    sample_by: str = "document",
    cache_dir=None,
    text_column: str = "text",
) -> DatasetDict | IterableDatasetDict:
    """Local text files (paths or globs) as a DatasetDict with a ``"text"`` column.

    Every file is checked first (UTF-8 text, not binary: :mod:`hf_charrnn.text_files`).
    ``.json``/``.jsonl``/``.csv``/``.tsv``/``.parquet`` files are read the way ``datasets``
    and run_clm.py read them, one row per record, with the text from ``text_column``.

    ``sample_by="document"`` (default): one row per file, its text exactly as read (line
    breaks kept; Python's universal newlines turn ``"\\r\\n"`` into ``"\\n"``), so the
    data layer appends ``<eos>`` per file. For corpora larger than memory use
    ``sample_by="line"`` (rows are lines, ``"\\n"`` kept: their concatenation is the
    file) with ``streaming=True`` and ``tokenize_and_group(..., add_eos=False)``.
    ``validation_fraction`` (no validation file) splits train by :func:`split_validation`.
    """
    if sample_by not in ("document", "line", "paragraph"):
        raise ValueError(f"sample_by must be 'document', 'line' or 'paragraph', got {sample_by!r}.")
    data_files = {"train": text_files.resolve_files(train_files, "train")}
    if validation_file is not None:
        data_files["validation"] = text_files.resolve_files(validation_file, "validation")
    if test_file is not None:
        data_files["test"] = text_files.resolve_files(test_file, "test")
    if validation_fraction is not None and validation_file is not None:
        raise ValueError("Give either validation_file or validation_fraction, not both.")
    if validation_fraction is not None and streaming:
        raise ValueError("validation_fraction needs streaming=False; "
                         "for streaming, pass validation_file=... instead.")
    builder = text_files.builder_of_files([f for files in data_files.values() for f in files], "data")
    if builder == "text" and sample_by == "document" and not streaming:
        return _text_file_pieces(data_files, validation_fraction, seed, cache_dir)
    if builder == "text":
        data = load_dataset("text", data_files=data_files, sample_by=sample_by, keep_linebreaks=True,
                            streaming=streaming, cache_dir=cache_dir)
    else:
        options = {"delimiter": "\t"} if all(f.endswith(".tsv") for f in data_files["train"]) else {}
        data = load_dataset(builder, data_files=data_files, streaming=streaming, cache_dir=cache_dir, **options)
        data = type(data)({split: _text_only(ds, text_column, data_files[split][0], split)
                           for split, ds in data.items()})
    if validation_fraction is not None:
        data["train"], data["validation"] = split_validation(
            data["train"], validation_fraction, seed, keep_order=sample_by == "line")
    if not streaming:
        _check_not_empty(data)
    return data


def _text_file_pieces(data_files: dict[str, list[str]], validation_fraction: float | None, seed: int,
                      cache_dir) -> DatasetDict:
    """Text files read in bounded pieces (`hf_charrnn.text_pieces`), validation held out from them when asked; an
    empty split is a clear error."""
    data = DatasetDict({split: text_pieces.load_pieces(files, cache_dir=cache_dir)
                        for split, files in data_files.items()
                        if not (split == "train" and validation_fraction is not None)})
    if validation_fraction is not None:
        data["train"], data["validation"] = text_pieces.split_files(data_files["train"], validation_fraction, seed,
                                                                    cache_dir)
    data = DatasetDict({split: data[split] for split in ("train", "validation", "test") if split in data})
    _check_not_empty(data)
    return data


_SPLIT_ALIASES = {"valid": "validation", "val": "validation", "dev": "validation"}


def _is_saved_to_disk(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists())


def _is_text_folder(path: Path) -> bool:
    """A local data-files folder holding only .txt files (datasets' "text" builder)."""
    files = [f for f in path.rglob("*") if f.is_file() and not f.name.startswith(".")] if path.is_dir() else []
    return bool(files) and all(f.suffix == ".txt" for f in files)


def load_named_dataset(
    name_or_path: str,
    config_name: str | None = None,
    text_column: str = "text",
    streaming: bool = False,
    validation_fraction: float | None = None,
    seed: int = 0,
    cache_dir=None,
    **load_kwargs,
) -> DatasetDict | IterableDatasetDict:
    """Any ``datasets`` data set: a Hub name, a local data-files folder, or a folder
    written by ``save_to_disk``; returned with only a ``"text"`` column.

    A local folder of ``.txt`` files loads one row per file with line breaks kept (split
    names from the file names, as datasets infers them: ``train.txt``, ``test.txt``...).
    ``text_column`` is renamed to ``"text"``; splits named ``valid``/``val``/``dev``
    become ``validation``; a single Dataset becomes the ``train`` split.
    ``validation_fraction`` makes a validation split when there is none.
    """
    path = Path(name_or_path)
    if _is_text_folder(path) and not streaming and not load_kwargs:  # its files read in pieces, as load_text_files
        files = _text_folder_files(path)
        return _text_file_pieces(files, validation_fraction if "validation" not in files else None, seed, cache_dir)
    if _is_saved_to_disk(path):
        data = load_from_disk(str(path))
        if streaming:
            data = _as_dict(data)
            data = IterableDatasetDict({k: v.to_iterable_dataset() for k, v in data.items()})
    else:
        if _is_text_folder(path):  # keep line breaks: one row per file, as load_text_files
            load_kwargs = {"sample_by": "document", "keep_linebreaks": True, **load_kwargs}
        data = load_dataset(name_or_path, config_name, streaming=streaming, cache_dir=cache_dir,
                            **load_kwargs)
    data = _as_dict(data)
    data = type(data)({_SPLIT_ALIASES.get(k, k): _text_only(v, text_column, name_or_path, k)
                       for k, v in data.items()})
    if validation_fraction is not None and "validation" not in data:
        if streaming:
            raise ValueError("validation_fraction needs streaming=False.")
        data["train"], data["validation"] = split_validation(data["train"], validation_fraction, seed)
    if not streaming:
        _check_not_empty(data)
    return data


def _text_folder_files(path: Path) -> dict[str, list[str]]:
    """A folder's text files by split, as datasets' folder loading names the splits (train.txt, valid.txt,
    data/test-00000.txt, ...; "valid"/"val"/"dev" become "validation")."""
    found = DataFilesDict.from_patterns(get_data_patterns(str(path)), base_path=str(path))
    return {_SPLIT_ALIASES.get(split, split): [str(file) for file in files] for split, files in found.items()}


def _as_dict(data):
    if isinstance(data, Dataset):
        return DatasetDict({"train": data})
    if isinstance(data, IterableDataset):
        return IterableDatasetDict({"train": data})
    return data


def _column_names(ds) -> list[str]:
    if ds.column_names is not None:
        return list(ds.column_names)
    first = next(iter(ds), None)  # streaming data set with unknown features
    return list(first) if first is not None else []


def _text_only(ds, text_column: str, name: str, split: str):
    """Keep ``text_column`` only, renamed to ``"text"``; a clear error if it is missing."""
    columns = _column_names(ds)
    if text_column not in columns:
        raise ValueError(
            f"Data set {name!r} (split {split!r}) has no column {text_column!r}; its columns "
            f"are {columns}. Pass text_column= with one of them."
        )
    ds = ds.select_columns([text_column])
    return ds.rename_column(text_column, "text") if text_column != "text" else ds


def split_validation(ds: Dataset, fraction: float, seed: int = 0,
                     keep_order: bool = False) -> tuple[Dataset, Dataset]:
    """Split a validation part off ``ds`` (see the module docstring for the rule)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation_fraction must be between 0 and 1, got {fraction}.")
    if not text_pieces.holds_out_tails(len(ds), fraction):
        parts = ds.train_test_split(test_size=fraction, shuffle=not keep_order, seed=seed)
        return parts["train"], parts["test"]
    kwargs = {"fraction": fraction}
    train = ds.map(_text_part, fn_kwargs={**kwargs, "part": 0}, desc="Splitting off validation")
    validation = ds.map(_text_part, fn_kwargs={**kwargs, "part": 1}, desc="Splitting off validation")
    return train, validation.filter(_has_text)


STREAM_WINDOW_CHARACTERS = 10_000
STREAM_HOLD_OUT_EVERY = 20
STREAM_VALIDATION_CHARACTERS = 1_000_000


def hold_out_stream(ds: IterableDataset, every: int = STREAM_HOLD_OUT_EVERY,
                    window: int = STREAM_WINDOW_CHARACTERS,
                    max_characters: int = STREAM_VALIDATION_CHARACTERS) -> tuple[IterableDataset, IterableDataset]:
    """Train and validation from one stream (nothing else to hold out from when a corpus is larger than the disk):
    its rows, in order, fall into windows of about `window` characters, and every `every`-th window (the
    `every`-th, the `2 * every`-th, ...) is validation until it holds `max_characters`; every other row trains. Both
    parts read the stream from its start and decide row by row alike; validation stops reading once it is full, so it
    is finite however long the stream. A stream shorter than `every` windows has no validation (see
    `check_stream_validation`)."""
    options = {"source": ds, "every": every, "window": window, "max_characters": max_characters}
    features = Features({"text": Value("string")})
    return (IterableDataset.from_generator(_stream_part, features=features, gen_kwargs={**options, "held_out": False}),
            IterableDataset.from_generator(_stream_part, features=features, gen_kwargs={**options, "held_out": True}))


def _stream_part(source, every: int, window: int, max_characters: int, held_out: bool):
    position = held = 0
    for row in source:
        text = row["text"]
        validation = held < max_characters and (position // window) % every == every - 1
        position += len(text)
        if validation:
            held += len(text)
        if validation == held_out:
            yield {"text": text}
        elif held_out and held >= max_characters:
            return


def check_stream_validation(validation: IterableDataset, every: int = STREAM_HOLD_OUT_EVERY,
                            window: int = STREAM_WINDOW_CHARACTERS) -> None:
    """A clear error when `hold_out_stream` found nothing to hold out (it reads up to the first held-out window)."""
    if next(iter(validation), None) is None:
        raise ValueError(
            f"The training stream is too short to hold validation out of it (1 window in {every} of {window:,} "
            f"characters: it needs more than {every * window - window:,}): give --validation_file, or train without "
            "--streaming (--validation_split_fraction then holds a share of it out)."
        )


def _has_text(row: dict) -> bool:
    return len(row["text"]) > 0


def _text_part(row: dict, fraction: float, part: int) -> dict:
    return {"text": split_text(row["text"], (1 - fraction, fraction), boundary="\n")[part]}


def _check_not_empty(data: DatasetDict) -> None:
    for split, ds in data.items():
        if not any(row["text"] for row in ds):  # stops at the first row with text
            fix = ("the text is too short to hold part of it out: give a longer text or a --validation_file"
                   if split == "validation" else "the text is too short to train on (or the files are empty): give "
                   "a longer --train_file, or check the data set")
            raise ValueError(f"The {split!r} split is empty (no text): {fix}.")


# ----------------------------------------------------------------------------------
# Tokenizing
# ----------------------------------------------------------------------------------

def _tokenize_batch(batch: dict, tokenizer, eos_id: int | None) -> dict:
    return {"input_ids": encode_batch(tokenizer, batch["text"], eos_id, batch.get("document_end"))}


def _tokenize_and_group_batch(batch: dict, tokenizer, eos_id: int | None, block_size: int,
                              as_lists: bool = False) -> dict:
    """Tokenize a batch of documents, concatenate, cut into full blocks (rest dropped): arrays for the Arrow cache,
    no Python ints; `as_lists` for a streaming data set, whose rows reach the collator as returned."""
    ids = encode_batch(tokenizer, batch["text"], eos_id, batch.get("document_end"))
    flat = np.concatenate(ids) if ids else np.zeros(0, dtype=id_dtype(len(tokenizer)))
    blocks = flat[: len(flat) // block_size * block_size].reshape(-1, block_size)
    if as_lists:
        blocks = blocks.tolist()
    return {"input_ids": blocks, "labels": blocks}


def _id_features(tokenizer, columns: Sequence[str]) -> Features:
    """Token-id columns stored as compactly as the vocabulary allows (`token_encoding.id_dtype`)."""
    return Features({name: List(Value(id_dtype(len(tokenizer)).name)) for name in columns})


def _eos_id(tokenizer, add_eos: bool) -> int | None:
    if not add_eos:
        return None
    if tokenizer.eos_token_id is None:
        raise ValueError("add_eos=True needs a tokenizer with an eos token.")
    return tokenizer.eos_token_id


def tokenize_and_group(
    dataset,
    tokenizer,
    block_size: int,
    num_proc: int | None = None,
    add_eos: bool = True,
    batch_size: int = 1000,
):
    """Tokenize ``dataset`` (its ``"text"``) into blocks of ``block_size`` token ids.

    Each document gets ``<eos>`` appended (``add_eos``); the documents of each map batch
    of ``batch_size`` rows are concatenated and cut into full blocks, the remainder of
    each batch dropped (as transformers' run_clm does). Columns ``input_ids`` and
    ``labels`` (identical: the model shifts labels itself). Works on a Dataset (cached by
    datasets' fingerprints; ``num_proc`` parallel), an IterableDataset (lazy, streaming)
    or a dict of either.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}.")
    if isinstance(dataset, (DatasetDict, IterableDatasetDict)):
        return type(dataset)({
            split: _group_split(ds, tokenizer, block_size, num_proc, add_eos, batch_size, split)
            for split, ds in dataset.items()
        })
    split = getattr(dataset, "split", None)  # a loaded split knows its name
    return _group_split(dataset, tokenizer, block_size, num_proc, add_eos, batch_size,
                        str(split) if split else None)


def _group_split(ds, tokenizer, block_size, num_proc, add_eos, batch_size, split):
    kwargs = dict(batched=True, batch_size=batch_size, remove_columns=_column_names(ds),
                  fn_kwargs={"tokenizer": tokenizer, "eos_id": _eos_id(tokenizer, add_eos),
                             "block_size": block_size})
    if isinstance(ds, IterableDataset):
        return ds.map(_tokenize_and_group_batch, **{**kwargs, "fn_kwargs": {**kwargs["fn_kwargs"], "as_lists": True}})
    grouped = ds.map(_tokenize_and_group_batch, num_proc=num_proc, features=_id_features(tokenizer, ("input_ids",
                     "labels")), desc=f"Tokenizing {split} into blocks of {block_size}", **kwargs)
    if len(grouped) == 0:
        raise ValueError(
            f"{f'The {split!r} split' if split else 'The data set'} yields no block of "
            f"{block_size} tokens: it has fewer tokens "
            f"than that. Use a smaller block_size or give it more text."
        )
    return grouped


def tokenize_stream(dataset: Dataset, tokenizer, add_eos: bool = True,
                    num_proc: int | None = None, compact: bool = False) -> torch.Tensor:
    """All documents of ``dataset`` tokenized and concatenated (``<eos>`` after each) into
    one 1-D LongTensor, for :func:`stream_blocks`. Cached by datasets' fingerprints.
    ``compact``: in the smallest unsigned type of the vocabulary instead (``torch.uint8``
    or ``torch.uint16``: 1-2 bytes a token, not 8), for a consumer that converts per block;
    a data set in datasets' cache gives a memory-mapped file next to it (written once, as
    nanoGPT's data preparation does), so only the parts a process reads are in memory."""
    tokenized = dataset.map(
        _tokenize_batch, batched=True, remove_columns=_column_names(dataset), num_proc=num_proc,
        features=_id_features(tokenizer, ("input_ids",)),
        fn_kwargs={"tokenizer": tokenizer, "eos_id": _eos_id(tokenizer, add_eos)},
        desc="Tokenizing",
    )
    chunks = [chunk.flatten().to_numpy(zero_copy_only=False) for chunk in tokenized.data.column("input_ids").chunks]
    dtype = id_dtype(len(tokenizer))
    if compact and tokenized.cache_files:
        return torch.from_numpy(_memory_mapped_stream(Path(tokenized.cache_files[0]["filename"]), chunks, dtype))
    flat = np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)
    return torch.from_numpy(flat if compact else flat.astype(np.int64))


def _memory_mapped_stream(cache_file: Path, chunks: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """`chunks` one after the other in a file beside `cache_file` (its name carries datasets' fingerprint), opened
    copy-on-write: the file is never changed, and its pages are read as they are used."""
    total = sum(len(chunk) for chunk in chunks)
    if total == 0:
        return np.zeros(0, dtype=dtype)
    path = cache_file.with_name(f"{cache_file.stem}.{dtype.name}.stream")
    if not path.exists() or path.stat().st_size != total * dtype.itemsize:
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        with open(partial, "wb") as file:  # written, not mapped: the pages written do not stay in this process
            for chunk in chunks:
                chunk.astype(dtype, copy=False).tofile(file)
        os.replace(partial, path)  # whole or not at all: processes sharing the cache never read a part
    return np.memmap(path, dtype=dtype, mode="c", shape=(total,))


# ----------------------------------------------------------------------------------
# Stateful truncated BPTT
# ----------------------------------------------------------------------------------

def batchify(token_ids, batch_size: int) -> torch.Tensor:
    """Lay a 1-D token stream out as ``batch_size`` contiguous rows: row ``r`` holds
    tokens ``[r * n, (r + 1) * n)`` with ``n = len // batch_size`` (the rest is dropped).
    A tensor keeps its type (a compact stream stays compact); anything else becomes int64."""
    ids = (token_ids if isinstance(token_ids, torch.Tensor) else torch.as_tensor(token_ids, dtype=torch.long)).flatten()
    n = ids.numel() // batch_size
    if batch_size < 1 or n < 2:
        raise ValueError(
            f"{ids.numel()} tokens are too few for batch_size={batch_size}: each row needs at "
            f"least 2 tokens. Use a smaller batch_size or more text."
        )
    return ids[: n * batch_size].view(batch_size, n)


def num_stream_blocks(num_tokens: int, batch_size: int, block_size: int, drop_last: bool = False) -> int:
    """How many blocks :func:`stream_blocks` yields for a stream of ``num_tokens``."""
    steps = num_tokens // batch_size - 1  # positions that have a next token
    return steps // block_size if drop_last else -(-steps // block_size)


def stream_blocks(
    token_ids, batch_size: int, block_size: int, drop_last: bool = False, start_block: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(input_ids, targets)`` blocks for stateful truncated BPTT.

    The stream is :func:`batchify`-ed into ``batch_size`` rows; block ``k`` is columns
    ``[k * block_size, (k + 1) * block_size)``, so row ``i`` of block ``k + 1`` continues
    row ``i`` of block ``k`` and the recurrent state can be carried over. ``targets`` are
    the next tokens (``targets[:, t]`` follows ``input_ids[:, t]``, across block
    boundaries too): compute the loss against them directly (or pass them as
    ``shift_labels``), not as ``labels``, which the model would shift again. The last block
    may be shorter unless ``drop_last``; ``start_block`` skips blocks (exact resume).
    """
    data = batchify(token_ids, batch_size)
    last = data.size(1) - 1
    for i in range(start_block * block_size, last, block_size):
        length = min(block_size, last - i)
        if drop_last and length < block_size:
            break
        yield data[:, i : i + length], data[:, i + 1 : i + 1 + length]


__all__ = [
    "split_text",
    "load_text_files",
    "load_named_dataset",
    "split_validation",
    "hold_out_stream",
    "check_stream_validation",
    "tokenize_and_group",
    "tokenize_stream",
    "batchify",
    "num_stream_blocks",
    "stream_blocks",
]
