"""hf_charrnn.text_pieces: large text files become bounded rows, laid out exactly as one document per file."""

from __future__ import annotations

import random

import pytest

from hf_charrnn import text_pieces
from hf_charrnn.data import load_text_files, split_text, tokenize_and_group, tokenize_stream
from hf_charrnn.evaluation import dataset_stream
from hf_charrnn.tokenization_charrnn import build_char_tokenizer
from testing_utils import write

PIECE = 40  # characters per piece in these tests: files of a few hundred characters become many rows


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch):
    monkeypatch.setattr(text_pieces, "PIECE_CHARACTERS", PIECE)


def random_lines(seed: int, count: int, longest: int = 30) -> str:
    rng = random.Random(seed)
    return "".join("".join(rng.choice("abcdé \t") for _ in range(rng.randrange(0, longest))) + "\n"
                   for _ in range(count))


def test_a_file_is_read_in_bounded_pieces_that_end_at_line_breaks(tmp_path):
    text = random_lines(0, 60) + "x" * 130  # and a last line longer than two pieces, without a final line break
    data = load_text_files(write(tmp_path / "big.txt", text), cache_dir=str(tmp_path / "cache"))["train"]
    rows = list(data)
    assert len(rows) > 10 and "".join(row["text"] for row in rows) == text
    assert [row["document_end"] for row in rows] == [False] * (len(rows) - 1) + [True]
    assert all(len(row["text"]) <= 2 * PIECE for row in rows)
    assert all(row["text"].endswith("\n") for row in rows[:-4])  # the long last line is cut where it must be


def test_pieces_are_laid_out_exactly_as_whole_documents(tmp_path):
    texts = [random_lines(1, 30), random_lines(2, 25), "short\n"]
    paths = [write(tmp_path / f"doc{i}.txt", text) for i, text in enumerate(texts)]
    data = load_text_files([str(path) for path in paths], cache_dir=str(tmp_path / "cache"))["train"]
    tokenizer = build_char_tokenizer(texts)
    expected = []
    for text in texts:  # each document's tokens, then <eos>: one row per document did exactly this
        expected += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert tokenize_stream(data, tokenizer).tolist() == expected
    blocks = tokenize_and_group(data, tokenizer, block_size=8, batch_size=10_000)
    assert [token for block in blocks["input_ids"] for token in block] == expected[: len(expected) // 8 * 8]
    ids, characters = dataset_stream(data, tokenizer)
    assert ids.tolist() == [tokenizer.eos_token_id] + expected
    assert characters == sum(len(text) + 1 for text in texts)


@pytest.mark.parametrize("seed", range(4))
def test_the_held_out_tail_is_the_one_of_the_whole_document(tmp_path, seed):
    text = random_lines(seed, 40)
    data = load_text_files(write(tmp_path / "input.txt", text), validation_fraction=0.1,
                           cache_dir=str(tmp_path / "cache"))
    train, validation = ("".join(data[split]["text"]) for split in ("train", "validation"))
    assert [train, validation] == split_text(text, (0.9, 0.1), boundary="\n")
    assert [row["document_end"] for row in data["validation"]][-1] is True
    assert [row["document_end"] for row in data["train"]][-1] is True  # the train part is a document of its own


def test_an_edited_file_is_read_again(tmp_path):
    path = write(tmp_path / "input.txt", "first version\n")
    cache = str(tmp_path / "cache")
    assert load_text_files(path, cache_dir=cache)["train"]["text"] == ["first version\n"]
    assert load_text_files(path, cache_dir=cache)["train"]["text"] == ["first version\n"]  # from the cache
    write(path, "the second version\n")
    assert load_text_files(path, cache_dir=cache)["train"]["text"] == ["the second version\n"]


def test_a_corpus_the_cache_disk_cannot_hold_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    path = write(tmp_path / "input.txt", random_lines(5, 200))
    size = path.stat().st_size
    monkeypatch.setattr(text_pieces, "DISK_CHECK_BYTES", 1)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage(10**12, 10**12 - 4 * size, 4 * size))
    with pytest.raises(ValueError, match=r"needs about .* GB of disk in datasets' cache .*HF_DATASETS_CACHE"):
        load_text_files(path, cache_dir=str(tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage(10**12, 10**12 - 5 * size, 5 * size))
    assert "".join(load_text_files(path, cache_dir=str(tmp_path / "cache"))["train"]["text"]) == path.read_text()


def test_a_text_without_line_breaks_is_cut_at_the_position(tmp_path):
    text = "abcd" * 100  # 400 characters, no line break: pieces of 40 (+ up to 40 more where the line goes on)
    data = load_text_files(write(tmp_path / "flat.txt", text), validation_fraction=0.05,
                           cache_dir=str(tmp_path / "cache"))
    assert "".join(data["validation"]["text"]) == text[380:]
    assert "".join(data["train"]["text"]) == text[:380]


def test_a_folder_of_text_files_is_read_in_pieces_with_the_splits_its_file_names_give(tmp_path):
    from hf_charrnn.data import load_named_dataset

    folder = tmp_path / "corpus"
    folder.mkdir()
    texts = {"train": random_lines(6, 50), "dev": random_lines(7, 20)}
    for name, text in texts.items():
        write(folder / f"{name}.txt", text)
    data = load_named_dataset(str(folder), cache_dir=str(tmp_path / "cache"))
    assert sorted(data) == ["train", "validation"]
    assert len(data["train"]) > 1 and "".join(data["train"]["text"]) == texts["train"]
    assert "".join(data["validation"]["text"]) == texts["dev"]
    assert data["train"]["document_end"][-1] and not any(data["train"]["document_end"][:-1])
