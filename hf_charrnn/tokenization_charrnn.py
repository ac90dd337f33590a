"""Character- and word-level tokenizers that load with plain ``AutoTokenizer``.

Both tokenizers are ``tokenizers`` ``WordLevel`` models wrapped in transformers'
``PreTrainedTokenizerFast`` (``TokenizersBackend`` in transformers 5). They save as
``tokenizer.json`` + ``tokenizer_config.json`` and reload with
``AutoTokenizer.from_pretrained(folder)``, with no custom code.

Design choices (each one is tested in ``tests/test_tokenization.py``):

* **Pieces.** The character tokenizer has one token per Unicode code point, cut by the
  pre-tokenizer ``Split(Regex(r"[\\s\\S]"), behavior="isolated")``; the word tokenizer
  cuts text into words (``\\w+``), single punctuation/symbol characters and whitespace
  runs (``\\s+``). There is no normalizer, and the ``Fuse`` decoder joins the pieces back
  with nothing in between, so ``decode(encode(s)) == s`` for any text whose pieces are in
  the vocabulary: spaces, tabs, newlines, ``"\\r\\n"`` and non-ASCII included.
* **Unknown pieces** map to ``<unk>`` (id 1); they never raise.
  :func:`count_unknown_characters` and :func:`unknown_warning` report them.
* **Special tokens** have fixed ids: ``<pad>=0, <unk>=1, <bos>=2, <eos>=3``
  (:data:`SPECIAL_TOKENS`). Nothing is added on encode: no ``<bos>``/``<eos>`` unless the
  caller adds them (the data layer appends ``<eos>`` per document).
* **Special-token text is plain text.** The tokenizer is built with
  ``split_special_tokens=True`` (tokenizers' ``encode_special_tokens``), which is saved in
  ``tokenizer_config.json`` and restored by ``AutoTokenizer``: a literal ``"<eos>"``
  written in the text encodes as the characters ``<``, ``e``, ``o``, ``s``, ``>``, never
  as the special token. (A raw ``tokenizers.Tokenizer.from_file("tokenizer.json")`` does
  not know this flag; set ``tok.encode_special_tokens = True`` there.)
* **Vocabulary order** is deterministic: the four special tokens, then pieces by
  descending frequency, ties broken by code point order (this is the order
  ``WordLevelTrainer`` produces: it sorts by count, then by the UTF-8 bytes, which for
  UTF-8 is code point order).
* **``min_frequency``** keeps pieces seen at least that many times.
* **``max_vocab`` counts the special tokens**: it is the total vocabulary size, i.e. the
  model's ``vocab_size``; ``max_vocab=10`` keeps the 4 special tokens and the 6 most
  frequent pieces. It must be at least 4.
* **Padding is on the left** (``padding_side="left"`` passed to the constructor so that
  it is saved), as recurrent models need for batched generation.
* ``model_max_length`` is ``int(1e9)`` so that very long prompts do not warn;
  ``clean_up_tokenization_spaces=False`` so that decoding never rewrites spaces.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD_TOKEN, UNK_TOKEN, BOS_TOKEN, EOS_TOKEN = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, UNK_TOKEN, BOS_TOKEN, EOS_TOKEN)
"""Special tokens in id order: ``<pad>=0``, ``<unk>=1``, ``<bos>=2``, ``<eos>=3``."""

CHAR_PATTERN = r"[\s\S]"
"""One piece per code point (``(?s:.)`` does not compile in Oniguruma)."""
WORD_PATTERN = r"\w+|[^\w\s]|\s+"
"""Words, single punctuation/symbol characters, whitespace runs."""

MODEL_MAX_LENGTH = int(1e9)
_CHUNK_CHARS = 1 << 10  # training input is cut into pieces of about this size (4x faster)
_CUT = re.compile(r"(?<=\S)(?=\s)")  # a cut here never splits a word or whitespace run


def build_char_tokenizer(
    texts: Iterable[str], min_frequency: int = 1, max_vocab: int | None = None
) -> PreTrainedTokenizerFast:
    """A character (code point) tokenizer for ``texts``; see the module docstring. The vocabulary is the one
    ``WordLevelTrainer`` would make (tested against it), from code-point counts taken piece by piece with numpy:
    ~100x faster, and the memory of one piece whatever the corpus."""
    _check_limits(min_frequency, max_vocab)
    kept = _characters_by_frequency(texts, min_frequency)
    if max_vocab is not None:
        kept = kept[: max_vocab - len(SPECIAL_TOKENS)]
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({character: len(SPECIAL_TOKENS) + index for index, character in enumerate(kept)})
    return _char_tokenizer(vocab)


def _char_tokenizer(vocab: dict[str, int]) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(CHAR_PATTERN), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return wrap_tokenizer(tok)


def _characters_by_frequency(texts: Iterable[str], min_frequency: int = 1) -> list[str]:
    """The characters of `texts` seen at least `min_frequency` times, most frequent first (ties by code point: the
    order of WordLevelTrainer)."""
    counts = count_code_points(texts)
    counts[0xD800:0xE000] = 0  # lone surrogates (only from undecodable bytes) are no characters: they become <unk>
    return [chr(code) for code in np.lexsort((np.arange(len(counts)), -counts)) if counts[code] >= min_frequency]


def extend_char_tokenizer(tokenizer, texts: Iterable[str]) -> tuple[PreTrainedTokenizerFast, list[str]]:
    """
    `tokenizer` with the characters of `texts` it lacks added after its last id (most frequent first), and the list
    of those characters. Every character it had keeps its id, so a model's rows for them keep their meaning; the
    model grows by the added rows (`CharRNNForCausalLM.resize_token_embeddings`).
    """
    if not is_char_level(tokenizer):
        raise ValueError("--extend_vocabulary adds characters to a character tokenizer; this one is word-level "
                         "(build a new tokenizer from the new text instead).")
    vocab = tokenizer.get_vocab()
    added = [character for character in _characters_by_frequency(texts) if character not in vocab]
    if not added:
        return tokenizer, []
    first = max(vocab.values()) + 1
    return _char_tokenizer({**vocab, **{character: first + index for index, character in enumerate(added)}}), added


def count_code_points(texts: Iterable[str], piece_characters: int = 1 << 22) -> np.ndarray:
    """How often each code point occurs in ``texts`` (index: code point), counted ``piece_characters`` at a time."""
    if isinstance(texts, str):
        texts = [texts]
    counts = np.zeros(0, dtype=np.int64)
    for text in texts:
        for start in range(0, len(text), piece_characters):
            piece = text[start : start + piece_characters].encode("utf-32-le", errors="surrogatepass")
            found = np.bincount(np.frombuffer(piece, dtype=np.uint32))
            if len(found) > len(counts):
                counts = np.pad(counts, (0, len(found) - len(counts)))
            counts[: len(found)] += found
    return counts


def build_word_tokenizer(
    texts: Iterable[str], min_frequency: int = 1, max_vocab: int | None = None
) -> PreTrainedTokenizerFast:
    """Train a word-level tokenizer (words, punctuation, whitespace runs) on ``texts``."""
    return _build(WORD_PATTERN, texts, min_frequency, max_vocab)


def build_tokenizer(texts: Iterable[str], level: str = "char", **kwargs) -> PreTrainedTokenizerFast:
    """Dispatch on ``level``: ``"char"`` or ``"word"``."""
    builders = {"char": build_char_tokenizer, "word": build_word_tokenizer}
    if level not in builders:
        raise ValueError(f"Unknown tokenizer level {level!r}; use 'char' or 'word'.")
    return builders[level](texts, **kwargs)


def _check_limits(min_frequency: int, max_vocab: int | None) -> None:
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}.")
    if max_vocab is not None and max_vocab < len(SPECIAL_TOKENS):
        raise ValueError(
            f"max_vocab={max_vocab} is smaller than the {len(SPECIAL_TOKENS)} special tokens "
            f"{list(SPECIAL_TOKENS)} it includes; use max_vocab >= {len(SPECIAL_TOKENS)} or None."
        )


def _build(pattern: str, texts: Iterable[str], min_frequency: int, max_vocab: int | None):
    _check_limits(min_frequency, max_vocab)
    tok = Tokenizer(models.WordLevel(vocab={}, unk_token=UNK_TOKEN))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    tok.decoder = decoders.Fuse()
    trainer = trainers.WordLevelTrainer(
        vocab_size=max_vocab if max_vocab is not None else 2**31 - 1,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
    )
    tok.train_from_iterator(_chunked(texts), trainer=trainer)
    return wrap_tokenizer(tok)


def wrap_tokenizer(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a ``tokenizers.Tokenizer`` whose vocab starts with :data:`SPECIAL_TOKENS`."""
    for i, token in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(token) != i:
            raise ValueError(f"Special token {token!r} must have id {i}, has {tok.token_to_id(token)}.")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        split_special_tokens=True,
        model_max_length=MODEL_MAX_LENGTH,
    )


def _chunked(texts: Iterable[str]) -> Iterator[str]:
    """Cut long texts into ~1 k-character pieces (the trainer is much faster on those).

    Cuts fall only between a non-space and a space character, so that neither a word nor
    a whitespace run is split and the counts equal those of the whole text.
    """
    if isinstance(texts, str):
        texts = [texts]
    for text in texts:
        start = 0
        while len(text) - start > _CHUNK_CHARS:
            match = _CUT.search(text, start + _CHUNK_CHARS)
            if match is None:
                break
            yield text[start : match.start()]
            start = match.start()
        yield text[start:]


def _pre_tokenizer(tokenizer) -> pre_tokenizers.PreTokenizer:
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    return backend.pre_tokenizer


def is_char_level(tokenizer) -> bool:
    """Whether ``tokenizer`` cuts text into single code points (a character tokenizer)."""
    pre = _pre_tokenizer(tokenizer)
    return pre is not None and pre.pre_tokenize_str("ab\r\n") == [
        ("a", (0, 1)), ("b", (1, 2)), ("\r", (2, 3)), ("\n", (3, 4))
    ]


_is_char_level = is_char_level  # older name, used by callers

def count_unknown_characters(tokenizer, texts: Iterable[str]) -> Counter:
    """Count the pieces of ``texts`` that ``tokenizer`` maps to ``<unk>``.

    For a character tokenizer the pieces are characters; for a word tokenizer they are
    the words / punctuation / whitespace runs of its pre-tokenizer. Special-token names
    are not in-vocabulary text: a ``"<"`` that the vocabulary lacks is counted.
    """
    if isinstance(texts, str):
        texts = [texts]
    vocab = tokenizer.get_vocab()
    known = {piece for piece in vocab if piece not in SPECIAL_TOKENS}
    counts: Counter = Counter()
    if is_char_level(tokenizer):
        found = count_code_points(texts)
        counts.update({chr(code): int(found[code]) for code in np.flatnonzero(found)})
    else:
        pre = _pre_tokenizer(tokenizer)
        for text in _chunked(texts):
            counts.update(piece for piece, _ in pre.pre_tokenize_str(text))
    return Counter({piece: n for piece, n in counts.items() if piece not in known})


def unknown_warning(unknown: Counter, max_shown: int = 20, unit: str = "characters") -> str | None:
    """A one-line warning for the result of :func:`count_unknown_characters`, or None.

    ``unit`` names the pieces (``"characters"``, or ``"words"`` for a word tokenizer).
    """
    if not unknown:
        return None
    total = sum(unknown.values())
    shown = ", ".join(repr(piece) for piece, _ in unknown.most_common(max_shown))
    more = ", ..." if len(unknown) > max_shown else ""
    return (
        f"{total} {unit} ({len(unknown)} distinct: {shown}{more}) are not in the "
        f"tokenizer's vocabulary and become {UNK_TOKEN}."
    )


__all__ = [
    "SPECIAL_TOKENS",
    "PAD_TOKEN",
    "UNK_TOKEN",
    "BOS_TOKEN",
    "EOS_TOKEN",
    "build_char_tokenizer",
    "build_word_tokenizer",
    "build_tokenizer",
    "wrap_tokenizer",
    "is_char_level",
    "count_unknown_characters",
    "unknown_warning",
]
