"""Text to token ids fast and compact, for corpora of any size.

The ``tokenizers`` library builds an ``Encoding`` object per text (tokens, offsets, masks: hundreds of bytes per
character) and returns Python lists of ints, which is what made a 20 MB file take 8 GB and 45 s to tokenize. A
character tokenizer needs none of that: each code point maps to one id. So for character tokenizers
:func:`encode_to_array` looks the code points up in a table (``numpy``, in pieces of ``PIECE_CHARACTERS``), and every
tokenizer's ids are kept in the smallest unsigned type that holds the vocabulary (:func:`id_dtype`: ``uint8`` up to
256 tokens, ``uint16`` up to 65,536), which is also how :mod:`hf_charrnn.data` stores them in ``datasets``' Arrow
cache. The lookup gives exactly the tokenizer's own ids (unknown characters become ``<unk>``; special-token names in
the text are plain characters, as the tokenizer is built with ``split_special_tokens``): tested against it.
"""

from __future__ import annotations

import numpy as np

from .tokenization_charrnn import SPECIAL_TOKENS, UNK_TOKEN, is_char_level

PIECE_CHARACTERS = 1 << 22
"""Characters converted at a time (4 M): the code points of a piece take 16 MB, whatever the text's length."""


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds ids below `vocab_size`."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    raise ValueError(f"A vocabulary of {vocab_size} tokens does not fit 32-bit ids.")


def _lookup_table(tokenizer) -> np.ndarray:
    """Code point -> id for a character tokenizer; the last entry (one past the highest known code point) is
    `<unk>`'s, which every higher code point is clipped to."""
    vocab = tokenizer.get_vocab()
    pieces = {piece: index for piece, index in vocab.items() if piece not in SPECIAL_TOKENS and len(piece) == 1}
    top = max((ord(piece) for piece in pieces), default=0)
    table = np.full(top + 2, vocab[UNK_TOKEN], dtype=id_dtype(len(tokenizer)))
    for piece, index in pieces.items():
        table[ord(piece)] = index
    return table


def encode_to_array(tokenizer, text: str, table: np.ndarray | None = None) -> np.ndarray:
    """The token ids of `text` (no special tokens added) as a 1-D array of :func:`id_dtype`: a table lookup for a
    character tokenizer (`table`: :func:`lookup_table_for`'s, to reuse one), the tokenizer itself otherwise."""
    if table is None and not is_char_level(tokenizer):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return np.asarray(ids, dtype=id_dtype(len(tokenizer)))
    table = _lookup_table(tokenizer) if table is None else table
    pieces = []
    for start in range(0, len(text), PIECE_CHARACTERS):
        piece = text[start : start + PIECE_CHARACTERS].encode("utf-32-le", errors="surrogatepass")
        code_points = np.frombuffer(piece, dtype=np.uint32)
        pieces.append(table[np.minimum(code_points, len(table) - 1)])
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=table.dtype)


def lookup_table_for(tokenizer) -> np.ndarray | None:
    """The code-point table of a character tokenizer (None for other tokenizers), to encode many texts with."""
    return _lookup_table(tokenizer) if is_char_level(tokenizer) else None


def encode_batch(tokenizer, texts: list[str], eos_id: int | None = None,
                 document_end: list[bool] | None = None) -> list[np.ndarray]:
    """:func:`encode_to_array` for each text, with `eos_id` appended when given (after the texts that end a
    document, where `document_end` says which: `hf_charrnn.text_pieces`' rows); one table for the batch."""
    table = lookup_table_for(tokenizer)
    if table is None:  # tokenizers' batch encoding, in parallel threads
        encoded = [np.asarray(ids, dtype=id_dtype(len(tokenizer)))
                   for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    else:
        encoded = [encode_to_array(tokenizer, text, table) for text in texts]
    if eos_id is None:
        return encoded
    ends = document_end if document_end is not None else [True] * len(encoded)
    return [np.append(ids, np.asarray(eos_id, dtype=ids.dtype)) if end else ids for ids, end in zip(encoded, ends)]


__all__ = ["PIECE_CHARACTERS", "id_dtype", "encode_to_array", "lookup_table_for", "encode_batch"]
