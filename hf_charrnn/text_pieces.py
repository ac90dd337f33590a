"""Text files of any size as rows of bounded pieces, so that no step holds a whole file in memory.

datasets' ``"text"`` builder with ``sample_by="document"`` reads a file with one ``f.read()`` into one row: a 1 GB
file is a 1 GB Python string, copied into Arrow, and every later step (splitting, tokenizing) materialises it again.
Here a file is read in pieces of about ``PIECE_CHARACTERS`` characters that end at a line break (or at
``2 * PIECE_CHARACTERS`` on a line longer than that), written to datasets' Arrow cache by ``Dataset.from_generator``
(fingerprinted by the files' paths, sizes and modification times, so an edited file is read again). Each row has the
columns ``text`` and ``document_end`` (True on a file's last piece: the data layer appends ``<eos>`` there and only
there, so a document is laid out exactly as when it was one row). A file shorter than a piece is one row, as before.

Reading a corpus of 64 MB or more shows a progress bar (MB/s, ETA), and is refused up front, with what it needs, when
the cache's disk cannot hold it (`check_disk_space`).

Held-out validation follows the data layer's rule (`hf_charrnn.data.split_validation`): with at least
``1 / fraction`` files, whole files are drawn (seeded); with fewer, the tail of every file is held out, cut just after
the first line break at or after ``(1 - fraction)`` of its characters (within the piece the position falls in; at
the position itself where that piece has none, as `hf_charrnn.data.split_text` cuts a text without line breaks).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from datasets import Dataset, Features, Value
from datasets import config as datasets_config
from datasets.utils import logging
from tqdm.auto import tqdm

PIECE_CHARACTERS = 1 << 16
"""About this many characters per row (64 K): a tokenizing batch of 1,000 rows is then 64 MB of text."""

FEATURES = Features({"text": Value("string"), "document_end": Value("bool")})

DISK_CHECK_BYTES = 64 * 2**20
"""Corpora from this size on are checked for disk space and get a reading progress bar."""
DISK_BYTES_PER_CHARACTER = 5
"""Cache bytes per corpus byte, at most: the text (1), input ids and labels (2 x 2 with a uint16 vocabulary)."""


def _pieces(path: str) -> Iterator[str]:
    """The file's text in pieces ending at line breaks (universal newlines, as datasets reads text)."""
    with open(path, encoding="utf-8") as file:
        while True:
            piece = file.read(PIECE_CHARACTERS)
            if not piece:
                return
            yield piece + (file.readline(PIECE_CHARACTERS) if not piece.endswith("\n") else "")


def _characters(path: str) -> int:
    with open(path, encoding="utf-8") as file:
        return sum(len(piece) for piece in iter(lambda: file.read(1 << 24), ""))


def _file_rows(path: str, part: str, fraction: float) -> Iterator[dict]:
    """The rows of one file: all of it (`part="all"`), or the part before (`"head"`) or after (`"tail"`) the cut at
    `1 - fraction` of its characters."""
    cut_at = int(_characters(path) * (1 - fraction)) if part != "all" else math.inf
    position, cut_done, previous = 0, False, None
    for piece in _pieces(path):
        rows: list[tuple[str, str]] = [("all", piece)]
        if part != "all" and not cut_done and position + len(piece) > cut_at:
            local = cut_at - position
            newline = piece.find("\n", local)
            split = local if newline < 0 else newline + 1
            rows = [("head", piece[:split]), ("tail", piece[split:])]
            cut_done = True
        elif part != "all":
            rows = [("tail" if cut_done else "head", piece)]
        position += len(piece)
        for where, text in rows:
            if text and (part == "all" or where == part):
                if previous is not None:
                    yield {"text": previous, "document_end": False}
                previous = text
    if previous is not None:
        yield {"text": previous, "document_end": True}


def _read_with_progress(files: list[str], part: str, fraction: float) -> Iterator[dict]:
    """The rows of `files`, with a progress bar in MB/s and its ETA (the characters read of the files' bytes)."""
    total = sum(os.path.getsize(path) for path in files) * (1 if part == "all" else 2)  # a split reads twice
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"Reading {_name(files)}", mininterval=1.0,
              disable=total < DISK_CHECK_BYTES or not logging.is_progress_bar_enabled()) as bar:
        for path in files:
            if part != "all":
                bar.update(os.path.getsize(path))  # the counting pass
            for row in _file_rows(path, part, fraction):
                bar.update(len(row["text"]))
                yield row


def _name(files: list[str]) -> str:
    return os.path.basename(files[0]) + (f" and {len(files) - 1} more" if len(files) > 1 else "")


def generate_rows(files: list[str], part: str = "all", fraction: float = 0.0, stamps=None) -> Iterator[dict]:
    """`Dataset.from_generator`'s generator: the rows of `files` in order (see `_file_rows` for `part`). `stamps`
    (sizes and modification times) are not read: they are in the arguments so that datasets' cache key changes with
    the files. Where there is no text at all, one empty row that ends no document (datasets cannot build a data set
    from a generator of nothing; the data layer's emptiness check then names the split)."""
    empty = True
    for row in _read_with_progress(files, part, fraction):
        empty = False
        yield row
    if empty:
        yield {"text": "", "document_end": False}


def _stamps(files: list[str]) -> list[tuple[str, int, int]]:
    return [(os.path.abspath(path), os.stat(path).st_size, os.stat(path).st_mtime_ns) for path in files]


def check_disk_space(files: list[str], cache_dir=None) -> None:
    """A clear error, before anything is written, when datasets' cache cannot hold what the corpus needs there: the
    text once and its token ids twice (inputs and labels, 1-2 bytes each). Small corpora are not checked."""
    size = sum(os.path.getsize(path) for path in files)
    if size < DISK_CHECK_BYTES:
        return
    folder = Path(cache_dir or datasets_config.HF_DATASETS_CACHE)
    existing = next((parent for parent in (folder, *folder.parents) if parent.exists()), Path("/"))
    free, needed = shutil.disk_usage(existing).free, size * DISK_BYTES_PER_CHARACTER
    if free < needed:
        raise ValueError(
            f"The corpus ({size / 1e9:.1f} GB) needs about {needed / 1e9:.1f} GB of disk in datasets' cache "
            f"({folder}: the text once, its token ids twice), and only {free / 1e9:.1f} GB is free there: free some "
            "space, point HF_DATASETS_CACHE at a larger disk, or train with --streaming (nothing cached)."
        )


def load_pieces(files: list[str], part: str = "all", fraction: float = 0.0, cache_dir=None) -> Dataset:
    """`files` as a Dataset of pieces (columns ``text``, ``document_end``), cached in datasets' Arrow cache."""
    check_disk_space(files, cache_dir)
    return Dataset.from_generator(generate_rows, features=FEATURES, cache_dir=cache_dir,
                                  gen_kwargs={"files": list(files), "part": part, "fraction": fraction,
                                              "stamps": _stamps(files)})


def holds_out_tails(units: int, fraction: float) -> bool:
    """Whether a validation fraction of `units` files (or documents) is held out as the end of each one, rather than
    as whole ones: when there are too few to spare one (fewer than 1 / fraction)."""
    return units * fraction < 1


def split_files(files: list[str], fraction: float, seed: int = 0,
                cache_dir=None) -> tuple[Dataset, Dataset]:
    """Train and validation pieces of `files`, held out by the rule in the module docstring."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation_fraction must be between 0 and 1, got {fraction}.")
    if not holds_out_tails(len(files), fraction):
        held_out = set(np.random.default_rng(seed).permutation(len(files))[: math.ceil(len(files) * fraction)])
        validation = [path for index, path in enumerate(files) if index in held_out]
        train = [path for index, path in enumerate(files) if index not in held_out]
        return load_pieces(train, cache_dir=cache_dir), load_pieces(validation, cache_dir=cache_dir)
    return (load_pieces(files, "head", fraction, cache_dir=cache_dir),
            load_pieces(files, "tail", fraction, cache_dir=cache_dir))


__all__ = ["PIECE_CHARACTERS", "FEATURES", "generate_rows", "holds_out_tails", "load_pieces", "split_files"]
