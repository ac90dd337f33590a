"""Tests for hf_charrnn.tokenization_charrnn."""

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from hf_charrnn.tokenization_charrnn import (
    SPECIAL_TOKENS,
    _chunked,
    build_char_tokenizer,
    build_tokenizer,
    build_word_tokenizer,
    count_unknown_characters,
    unknown_warning,
)
import hf_charrnn.tokenization_charrnn as tokmod

# Everything hypothesis may draw: ASCII, whitespace of all kinds, accents, CJK, emoji,
# a combining mark and the characters that spell special tokens.
ALPHABET = "ab cXYZ\t\n\r\x0b\x0c\u00a0\u2028é€ß日本😀\u0301<>/unkpadbosé,.;'\"-"
CHAR_TOK = build_char_tokenizer([ALPHABET])


def specials(tok):
    return [tok.pad_token_id, tok.unk_token_id, tok.bos_token_id, tok.eos_token_id]


def test_special_tokens_fixed_ids():
    assert SPECIAL_TOKENS == ("<pad>", "<unk>", "<bos>", "<eos>")
    assert specials(CHAR_TOK) == [0, 1, 2, 3]
    assert [CHAR_TOK.convert_ids_to_tokens(i) for i in range(4)] == list(SPECIAL_TOKENS)
    assert CHAR_TOK.padding_side == "left"
    assert CHAR_TOK.model_max_length >= 10**9


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=200))
def test_char_round_trip(text):
    ids = CHAR_TOK(text)["input_ids"]
    assert len(ids) == len(text)  # one id per code point, nothing added
    assert 1 not in ids
    assert CHAR_TOK.decode(ids) == text


def test_round_trip_whitespace_and_unicode():
    text = "a b\tc\r\nd\n\n  é日本😀\u0301"
    tok = build_char_tokenizer([text])
    assert tok.decode(tok(text).input_ids) == text
    assert tok.tokenize("\r\n") == ["\r", "\n"]


def test_no_bos_eos_added_and_long_prompt_does_not_warn(recwarn):
    tok = build_char_tokenizer(["ab"])
    assert tok("ab").input_ids == tok.convert_tokens_to_ids(["a", "b"])
    ids = tok("a" * 1_000_000).input_ids
    assert len(ids) == 1_000_000
    assert not [w for w in recwarn if "length" in str(w.message)]


def test_unknown_characters_map_to_unk():
    tok = build_char_tokenizer(["abc"])
    ids = tok("axb😀c").input_ids
    assert ids == [tok.convert_tokens_to_ids("a"), 1, tok.convert_tokens_to_ids("b"), 1,
                   tok.convert_tokens_to_ids("c")]
    assert tok.decode(ids) == "a<unk>b<unk>c"
    assert tok.decode(ids, skip_special_tokens=True) == "abc"


@pytest.mark.parametrize("literal", ["<unk>", "<eos>", "<pad>", "<bos>"])
def test_literal_special_token_text_is_plain_text(literal, tmp_path):
    tok = build_char_tokenizer(["<>unkeospadbos x"])
    text = f"x{literal}x"
    ids = tok(text).input_ids
    assert len(ids) == len(text)
    assert not set(ids) & {0, 1, 2, 3}
    assert tok.decode(ids) == text
    tok.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(text).input_ids == ids
    assert reloaded([text, "x"]).input_ids == [ids, ids[:1]]


def test_save_and_autotokenizer_reload(tmp_path):
    tok = build_char_tokenizer(["hello, world\nÉté"])
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").exists()
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.get_vocab() == tok.get_vocab()
    assert reloaded.padding_side == "left"
    assert specials(reloaded) == [0, 1, 2, 3]
    assert reloaded.model_max_length == tok.model_max_length
    assert reloaded.clean_up_tokenization_spaces is False
    text = "hello , world\n"  # clean-up would turn " ," into ","
    assert reloaded.decode(reloaded(text).input_ids) == text


def test_vocab_order_frequency_then_code_point():
    # counts: b=3, a=2, z=2, é=2, c=1, ' '=1, '\r'=1, '\n'=1
    tok = build_char_tokenizer(["bbbaac\r\nzzé é"])
    by_id = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    assert [t for t, _ in by_id] == [*SPECIAL_TOKENS, "b", "a", "z", "é", "\n", "\r", " ", "c"]


def test_max_vocab_counts_special_tokens():
    tok = build_char_tokenizer(["bbbaac\r\nzzé é"], max_vocab=7)
    assert len(tok.get_vocab()) == len(tok) == 7
    assert set(tok.get_vocab()) == {*SPECIAL_TOKENS, "b", "a", "z"}
    assert tok("é").input_ids == [1]
    only_specials = build_char_tokenizer(["abc"], max_vocab=4)
    assert set(only_specials.get_vocab()) == set(SPECIAL_TOKENS)
    with pytest.raises(ValueError, match="max_vocab"):
        build_char_tokenizer(["abc"], max_vocab=3)


def test_min_frequency():
    tok = build_char_tokenizer(["aaab", "bc"], min_frequency=2)  # a=3, b=2, c=1
    assert set(tok.get_vocab()) == {*SPECIAL_TOKENS, "a", "b"}
    assert tok.get_vocab()["a"] == 4 and tok.get_vocab()["b"] == 5
    tok3 = build_char_tokenizer(["aaab", "bc"], min_frequency=3, max_vocab=100)
    assert set(tok3.get_vocab()) == {*SPECIAL_TOKENS, "a"}
    with pytest.raises(ValueError, match="min_frequency"):
        build_char_tokenizer(["a"], min_frequency=0)


def test_deterministic_across_input_order():
    a = build_char_tokenizer(["xyz", "abc", "zz"]).get_vocab()
    b = build_char_tokenizer(["zz", "abc", "xyz"]).get_vocab()
    assert a == b


def test_single_string_and_chunking_give_whole_text_counts(monkeypatch):
    monkeypatch.setattr(tokmod, "_CHUNK_CHARS", 5)
    assert list(_chunked(["hello world  foo\n\nbar baz", "x"])) == [
        "hello", " world", "  foo", "\n\nbar", " baz", "x"]
    text = "the cat  sat\n\non the  mat " * 3
    chunked = build_word_tokenizer(text).get_vocab()
    monkeypatch.setattr(tokmod, "_CHUNK_CHARS", 1 << 20)
    assert build_word_tokenizer([text]).get_vocab() == chunked


def test_left_padding_with_attention_mask():
    tok = build_char_tokenizer(["abcdef"])
    batch = tok(["abc", "a", "abcdef"], padding=True, return_tensors="pt")
    assert batch["input_ids"].shape == (3, 6)
    a, b, c = tok.convert_tokens_to_ids(["a", "b", "c"])
    assert batch["input_ids"][0].tolist() == [0, 0, 0, a, b, c]
    assert batch["input_ids"][1].tolist() == [0, 0, 0, 0, 0, a]
    assert batch["attention_mask"].tolist() == [
        [0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 1]]


WORD_TEXT = "The cat, the dog.\n\nThe end--\tfin. Été\r\n"


def test_word_tokenizer_round_trip_and_unk(tmp_path):
    tok = build_word_tokenizer([WORD_TEXT])
    assert specials(tok) == [0, 1, 2, 3]
    assert tok.tokenize("The cat,  dog") == ["The", " ", "cat", ",", "<unk>", "dog"]
    text = "the dog, The cat.\n\nÉté end--"
    assert tok.decode(tok(text).input_ids) == text
    ids = tok("the bird.").input_ids
    assert ids == [tok.convert_tokens_to_ids("the"), tok.convert_tokens_to_ids(" "), 1,
                   tok.convert_tokens_to_ids(".")]
    tok.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.get_vocab() == tok.get_vocab()
    assert reloaded.decode(reloaded(text).input_ids) == text
    assert reloaded.padding_side == "left"


# Texts of known pieces only: under the word pattern (\w+|[^\w\s]|\s+) a mark is always a piece of its own, so a
# word or whitespace run followed by a mark cannot fuse with its neighbour into an unknown piece ("catdog", "  ").
KNOWN_CHUNKS = st.one_of(
    st.tuples(st.sampled_from(["The", "cat", "dog", "Été", " ", "\n\n"]), st.sampled_from([",", ".", "-"])).map("".join),
    st.sampled_from([",", ".", "-"]),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(KNOWN_CHUNKS, max_size=30))
def test_word_round_trip_property(chunks):
    text = "".join(chunks)
    assert not count_unknown_characters(WORD_TOK, text)  # every draw is checked
    assert WORD_TOK.decode(WORD_TOK(text).input_ids) == text


WORD_TOK = build_word_tokenizer([WORD_TEXT])


def test_count_unknown_characters_and_warning():
    tok = build_char_tokenizer(["abc "])
    unknown = count_unknown_characters(tok, ["abx", "yy <unk>"])
    assert unknown == Counter({"y": 2, "x": 1, "<": 1, "u": 1, "n": 1, "k": 1, ">": 1})
    message = unknown_warning(unknown, max_shown=2)
    assert message.startswith("8 characters (7 distinct: 'y', ")
    assert message.endswith("are not in the tokenizer's vocabulary and become <unk>.")
    assert unknown_warning(count_unknown_characters(tok, "abc")) is None
    words = count_unknown_characters(WORD_TOK, "the bird, the dog!")
    assert words == Counter({"bird": 1, "!": 1})


def test_build_tokenizer_dispatch():
    assert build_tokenizer(["ab"], level="word").tokenize("ab") == ["ab"]
    assert build_tokenizer(["ab"]).tokenize("ab") == ["a", "b"]
    with pytest.raises(ValueError, match="level"):
        build_tokenizer(["ab"], level="bpe")


def test_is_char_level():
    from hf_charrnn.tokenization_charrnn import is_char_level
    assert is_char_level(CHAR_TOK) and not is_char_level(WORD_TOK)


@pytest.mark.parametrize("min_frequency, max_vocab", [(1, None), (2, None), (1, 9), (3, 12)])
def test_the_counted_char_vocabulary_is_the_trainers(min_frequency, max_vocab):
    """build_char_tokenizer counts code points itself; tokenizers' WordLevelTrainer is the reference: the same
    vocabulary (ties included: many characters occur equally often here), special tokens and ids."""
    import random

    from hf_charrnn.tokenization_charrnn import CHAR_PATTERN, _build

    rng = random.Random(min_frequency * 100 + (max_vocab or 0))
    texts = ["".join(rng.choice("aabcdeé€😀 \n\r\t<>") for _ in range(rng.randrange(0, 40))) for _ in range(30)]
    counted = build_char_tokenizer(texts, min_frequency=min_frequency, max_vocab=max_vocab)
    trained = _build(CHAR_PATTERN, texts, min_frequency, max_vocab)
    assert counted.get_vocab() == trained.get_vocab()
    assert {i: str(t) for i, t in counted.added_tokens_decoder.items()} == {
        i: str(t) for i, t in trained.added_tokens_decoder.items()}
    probe = "".join(texts) + "<eos>unknown ü"
    assert counted(probe)["input_ids"] == trained(probe)["input_ids"]
    assert counted.decode(counted(probe)["input_ids"]) == trained.decode(trained(probe)["input_ids"])
