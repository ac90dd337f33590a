"""hf_charrnn.token_encoding: the lookup-table encoding gives exactly the tokenizer's ids, in the smallest type."""

from __future__ import annotations

import random

import numpy as np
import pytest
from datasets import Dataset

from hf_charrnn import token_encoding
from hf_charrnn.data import tokenize_and_group, tokenize_stream
from hf_charrnn.token_encoding import encode_batch, encode_to_array, id_dtype
from hf_charrnn.tokenization_charrnn import build_char_tokenizer, build_word_tokenizer

ALPHABET = "abc XYZ\n\r\t.,;é€😀<>/"  # ASCII, Latin-1, the BMP, beyond it; the pieces of "<eos>" and "</s>"


def random_texts(seed: int, count: int = 50) -> list[str]:
    rng = random.Random(seed)
    extra = "ñ𝔘\u3042"  # characters the tokenizer will not know
    return ["".join(rng.choice(ALPHABET + extra) for _ in range(rng.randrange(0, 80))) + rng.choice(["", "<eos>"])
            for _ in range(count)]


@pytest.mark.parametrize("build", [build_char_tokenizer, build_word_tokenizer])
def test_the_encoding_is_the_tokenizers_own(build):
    tokenizer = build(["".join(ALPHABET) * 3, "<eos> hello world"])
    texts = random_texts(0)
    expected = tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert [ids.tolist() for ids in encode_batch(tokenizer, texts)] == expected
    assert [encode_to_array(tokenizer, text).tolist() for text in texts] == expected
    with_eos = encode_batch(tokenizer, texts, eos_id=tokenizer.eos_token_id)
    assert [ids.tolist() for ids in with_eos] == [ids + [tokenizer.eos_token_id] for ids in expected]
    assert all(ids.dtype == np.uint8 for ids in with_eos)


def test_long_texts_are_converted_piece_by_piece(monkeypatch):
    tokenizer = build_char_tokenizer([ALPHABET])
    text = "".join(random_texts(1, 200))
    monkeypatch.setattr(token_encoding, "PIECE_CHARACTERS", 7)  # many pieces, cut between any two code points
    assert encode_to_array(tokenizer, text).tolist() == tokenizer(text, add_special_tokens=False)["input_ids"]


def test_ids_take_the_smallest_type_that_holds_the_vocabulary():
    assert [id_dtype(n) for n in (1, 256, 257, 65_536, 65_537)] == [np.uint8, np.uint8, np.uint16, np.uint16,
                                                                   np.uint32]
    with pytest.raises(ValueError, match="does not fit"):
        id_dtype(2**32 + 1)


def test_the_cached_blocks_and_streams_are_stored_compactly():
    small = build_char_tokenizer(["abc"])
    large = build_char_tokenizer(["".join(chr(0x4E00 + i) for i in range(300))])  # 304 tokens: uint16
    for tokenizer, dtype in ((small, "uint8"), (large, "uint16")):
        blocks = tokenize_and_group(Dataset.from_dict({"text": ["abcabcabc" * 4]}), tokenizer, block_size=4)
        assert blocks.features["input_ids"].feature.dtype == dtype
        assert blocks.features["labels"].feature.dtype == dtype
    stream = tokenize_stream(Dataset.from_dict({"text": ["ab", "c"]}), small)
    assert str(stream.dtype) == "torch.int64"
    assert stream.tolist() == [small.convert_tokens_to_ids(c) for c in "ab"] + [small.eos_token_id,
                                                                                small.convert_tokens_to_ids("c"),
                                                                                small.eos_token_id]
