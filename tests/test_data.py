"""Tests for hf_charrnn.data."""

import pytest
import torch
from datasets import Dataset, DatasetDict, IterableDatasetDict
from transformers import default_data_collator

from hf_charrnn.data import (
    batchify,
    load_named_dataset,
    load_text_files,
    num_stream_blocks,
    split_text,
    stream_blocks,
    tokenize_and_group,
    tokenize_stream,
)
from hf_charrnn.shakespeare import (
    clean_play_markdown,
    load_shakespeare,
    load_shakespeare_play,
    play_title,
    shakespeare_plays,
    shakespeare_split_of,
)
from hf_charrnn.tokenization_charrnn import build_char_tokenizer
from testing_utils import write

# ------------------------------------------------------------------ cleaning

SNIPPET = """\
# The Comedy of Errors

## ACT I

### SCENE I. A hall in DUKE SOLINUS'S palace.

_Enter DUKE SOLINUS, AEGEON, Gaoler, Officers, and
other Attendants_

**AEGEON**  \n\
Proceed, Solinus, to procure my fall  \n\
And by the doom\\. \\[sic] \\--of death.

**DUKE SOLINUS**  \n\
__\\[Awaking]_  \n\
Merchant of Syracuse, _\\[Aside]_  \n\
plead no more, &amp; c.

**PAGE**  \n\
[Within]_  \n\
Who's there?

*Enter King Edward, Derby, and \n\
Artois.*

*Sound a horn.*

A messenger?—Lord Audley.

**ALL**  \n\
_\\[Sing]_

_Exeunt_
"""

SNIPPET_CLEAN = """\
AEGEON:
Proceed, Solinus, to procure my fall
And by the doom. [sic] --of death.

DUKE SOLINUS:
Merchant of Syracuse,
plead no more, & c.

PAGE:
Who's there?

A messenger?—Lord Audley.
"""


def test_clean_play_markdown_snippet():
    assert clean_play_markdown(SNIPPET) == SNIPPET_CLEAN
    assert play_title(SNIPPET) == "The Comedy of Errors"
    assert play_title("## ACT I\n", "measure-for-measure") == "Measure for measure"


def test_clean_unclosed_direction_ends_at_blank_line():
    md = "_Enter A and\nB\n\n**A**  \nHello.\n"
    assert clean_play_markdown(md) == "A:\nHello.\n"


def test_clean_real_play_has_no_markdown_left():
    text = clean_play_markdown(shakespeare_plays()["the-comedy-of-errors"].read_text("utf-8"))
    assert text.startswith("AEGEON:\nProceed, Solinus, to procure my fall\n")
    assert not set(text) & set("_*#\\[]")
    assert "  \n" not in text and "\n\n\n" not in text and text.endswith("\n")
    assert 80_000 < len(text) < 90_000


# ------------------------------------------------------------------ splitting

def test_split_text_cuts_after_boundaries():
    text = "A:\nx\n\nB:\ny\n\nC:\nz\n\nD:\nw\n"
    parts = split_text(text, (0.4, 0.3, 0.3))  # 23 chars: targets 9 and 16
    assert "".join(parts) == text
    assert parts == ["A:\nx\n\nB:\ny\n\n", "C:\nz\n\n", "D:\nw\n"]
    assert split_text("abc", (0.5, 0.5)) == ["a", "bc"]  # no boundary at all: cut at the character position
    assert split_text("ab\ncdefgh", (0.5, 0.5), boundary="\n") == ["ab\nc", "defgh"]  # none after the target
    with pytest.raises(ValueError, match="add up to 1"):
        split_text(text, (0.5, 0.2))


def test_shakespeare_split_by_play_is_fixed():
    slugs = list(shakespeare_plays())
    assert len(slugs) == 38 and slugs == sorted(slugs)
    splits = {s: shakespeare_split_of(i) for i, s in enumerate(slugs)}
    assert [s for s in slugs if splits[s] == "validation"] == ["henry-iv-part-2",
                                                              "the-merry-wives-of-windsor"]
    assert [s for s in slugs if splits[s] == "test"] == ["henry-v", "the-taming-of-the-shrew"]


def test_load_shakespeare_all(tmp_path):
    data = load_shakespeare(cache_dir=str(tmp_path))
    assert [len(data[s]) for s in ("train", "validation", "test")] == [34, 2, 2]
    assert list(data["test"]["title"]) == ["Henry V", "The Taming of the Shrew"]
    assert data["train"].column_names == ["title", "text"]
    assert 4_200_000 < sum(map(len, data["train"]["text"])) < 4_300_000  # of 4.79 M
    again = load_shakespeare(cache_dir=str(tmp_path))
    assert again["validation"]["text"][:] == data["validation"]["text"][:]
    assert again["train"].cache_files == data["train"].cache_files


@pytest.fixture(scope="session")
def play(tmp_path_factory):
    return load_shakespeare_play(cache_dir=str(tmp_path_factory.mktemp("play")))


def test_one_play_corpus(play):
    text = clean_play_markdown(shakespeare_plays()["the-comedy-of-errors"].read_text("utf-8"))
    parts = [play[s]["text"][0] for s in ("train", "validation", "test")]
    assert "".join(parts) == text
    assert all(len(play[s]) == 1 for s in play)
    assert 0.88 < len(parts[0]) / len(text) < 0.92
    for part in parts[1:]:
        assert part.split("\n")[0].endswith(":")  # starts with a speaker
        assert 0.03 < len(part) / len(text) < 0.07
    with pytest.raises(ValueError, match="Unknown play"):
        load_shakespeare("no-such-play")


# ------------------------------------------------------------------ text files

def test_load_text_files_keeps_line_breaks(tmp_path):
    write(tmp_path / "a.txt", "First line\n\nSecond\tline é\n")
    write(tmp_path / "b.txt", "no final newline")
    write(tmp_path / "val.txt", "valid\n")
    data = load_text_files(str(tmp_path / "[ab].txt"), validation_file=tmp_path / "val.txt",
                           cache_dir=str(tmp_path / "cache"))
    assert list(data) == ["train", "validation"]
    assert data["train"]["text"][:] == ["First line\n\nSecond\tline é\n", "no final newline"]
    assert data["validation"]["text"][:] == ["valid\n"]
    lines = load_text_files(tmp_path / "a.txt", sample_by="line", cache_dir=str(tmp_path / "c2"))
    assert "".join(lines["train"]["text"]) == "First line\n\nSecond\tline é\n"


def test_validation_fraction_one_document_takes_the_tail(tmp_path):
    text = "".join(f"line {i}\n" for i in range(20))  # 140 characters, 7 per line
    write(tmp_path / "input.txt", text)
    data = load_text_files(tmp_path / "input.txt", validation_fraction=0.1,
                           cache_dir=str(tmp_path / "cache"))
    # cut at int(140 * 0.9) = 126 = start of "line 18", moved past the next "\n"
    assert data["validation"]["text"][:] == ["line 19\n"]
    assert data["train"]["text"][0] + data["validation"]["text"][0] == text


def test_validation_fraction_many_documents_is_seeded(tmp_path):
    for i in range(40):
        write(tmp_path / f"doc{i:02d}.txt", f"document {i}\n")
    def load(seed):
        return load_text_files(str(tmp_path / "doc*.txt"), validation_fraction=0.05, seed=seed,
                               cache_dir=str(tmp_path / "cache"))
    first, again, other = load(0), load(0), load(1)
    assert len(first["validation"]) == 2 and len(first["train"]) == 38
    assert first["validation"]["text"][:] == again["validation"]["text"][:]
    assert first["validation"]["text"][:] != other["validation"]["text"][:]
    assert set(first["validation"]["text"]).isdisjoint(first["train"]["text"])


def test_validation_fraction_lines_keep_order(tmp_path):
    write(tmp_path / "input.txt", "".join(f"{i}\n" for i in range(40)))
    data = load_text_files(tmp_path / "input.txt", validation_fraction=0.05, sample_by="line",
                           cache_dir=str(tmp_path / "cache"))
    assert data["validation"]["text"][:] == ["38\n", "39\n"]


def test_text_file_errors(tmp_path):
    write(tmp_path / "ok.txt", "some text\n")
    write(tmp_path / "empty.txt", "")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load_text_files(tmp_path / "missing.txt")
    with pytest.raises(FileNotFoundError, match="matches no file"):
        load_text_files(str(tmp_path / "*.csv"))
    with pytest.raises(ValueError, match="empty.txt.*is empty"):
        load_text_files(tmp_path / "ok.txt", validation_file=tmp_path / "empty.txt")
    with pytest.raises(ValueError, match="streaming"):
        load_text_files(tmp_path / "ok.txt", validation_fraction=0.1, streaming=True)
    with pytest.raises(ValueError, match="'validation' split is empty"):
        load_text_files(tmp_path / "ok.txt", validation_fraction=0.05,
                        cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="sample_by"):
        load_text_files(tmp_path / "ok.txt", sample_by="sentence")


# ------------------------------------------------------------------ named data sets

def test_load_named_dataset_from_disk_renames_column(tmp_path):
    DatasetDict({
        "train": Dataset.from_dict({"content": ["hello\n", "world\n"], "id": [1, 2]}),
        "valid": Dataset.from_dict({"content": ["bye\n"], "id": [3]}),
    }).save_to_disk(tmp_path / "saved")
    data = load_named_dataset(str(tmp_path / "saved"), text_column="content")
    assert list(data) == ["train", "validation"]
    assert data["train"].column_names == ["text"]
    assert data["validation"]["text"][:] == ["bye\n"]
    with pytest.raises(ValueError, match=r"no column 'text'.*\['content', 'id'\]"):
        load_named_dataset(str(tmp_path / "saved"))
    streamed = load_named_dataset(str(tmp_path / "saved"), text_column="content", streaming=True)
    assert isinstance(streamed, IterableDatasetDict)
    assert [row["text"] for row in streamed["train"]] == ["hello\n", "world\n"]


def test_load_named_dataset_single_dataset_and_text_folder(tmp_path):
    Dataset.from_dict({"text": ["a\n"] * 30}).save_to_disk(tmp_path / "single")
    data = load_named_dataset(str(tmp_path / "single"), validation_fraction=0.1)
    assert len(data["train"]) == 27 and len(data["validation"]) == 3
    folder = tmp_path / "files"
    folder.mkdir()
    write(folder / "train.txt", "To be,\nor not to be\n")
    write(folder / "test.txt", "that is\n")
    data = load_named_dataset(str(folder), cache_dir=str(tmp_path / "cache"))
    assert data["train"]["text"][:] == ["To be,\nor not to be\n"]
    assert data["test"]["text"][:] == ["that is\n"]


# ------------------------------------------------------------------ tokenizing

TOK = build_char_tokenizer(["abcdef"])
A, B, C, D, E = TOK.convert_tokens_to_ids(list("abcde"))
EOS = TOK.eos_token_id


def test_tokenize_and_group_exact_blocks():
    ds = Dataset.from_dict({"text": ["abc", "de"]})
    blocks = tokenize_and_group(ds, TOK, block_size=3)
    # a b c <eos> d e <eos> -> two full blocks, the last <eos> dropped
    assert blocks["input_ids"][:] == [[A, B, C], [EOS, D, E]]
    assert blocks["labels"][:] == blocks["input_ids"][:]
    assert tokenize_and_group(ds, TOK, 3, add_eos=False)["input_ids"][:] == [[A, B, C]]
    # grouping is per map batch: with one document per batch each remainder is dropped
    assert tokenize_and_group(ds, TOK, 3, batch_size=1)["input_ids"][:] == [[A, B, C], [D, E, EOS]]


def test_tokenize_and_group_errors():
    ds = DatasetDict({"train": Dataset.from_dict({"text": ["abcdef"]}),
                      "validation": Dataset.from_dict({"text": ["ab"]})})
    with pytest.raises(ValueError, match="'validation' split yields no block of 4"):
        tokenize_and_group(ds, TOK, block_size=4)
    with pytest.raises(ValueError, match="block_size"):
        tokenize_and_group(ds, TOK, block_size=0)


def test_blocks_work_with_default_data_collator():
    blocks = tokenize_and_group(Dataset.from_dict({"text": ["abcdeabcde"]}), TOK, 4)
    batch = default_data_collator([blocks[0], blocks[1]])
    assert batch["input_ids"].shape == (2, 4) and batch["input_ids"].dtype == torch.long
    assert torch.equal(batch["labels"], batch["input_ids"])


def test_tokenize_and_group_is_cached_and_parallel(tmp_path, play):
    write(tmp_path / "input.txt", "abcde\n" * 200)
    data = load_text_files(tmp_path / "input.txt", cache_dir=str(tmp_path / "cache"))
    first = tokenize_and_group(data, TOK, block_size=8)
    files = first["train"].cache_files
    assert files and all(str(tmp_path / "cache") in f["filename"] for f in files)
    n_files = len(list((tmp_path / "cache").rglob("*.arrow")))
    fresh_tok = build_char_tokenizer(["abcdef"])  # an equal tokenizer hashes the same
    second = tokenize_and_group(data, fresh_tok, block_size=8)
    assert second["train"].cache_files == files
    assert len(list((tmp_path / "cache").rglob("*.arrow"))) == n_files
    parallel = tokenize_and_group(data, TOK, block_size=16, num_proc=2)
    serial = tokenize_and_group(data, TOK, block_size=16)
    assert parallel["train"]["input_ids"][:] == serial["train"]["input_ids"][:]
    play_tok = build_char_tokenizer(play["train"]["text"])
    play_blocks = tokenize_and_group(play, play_tok, block_size=64)
    assert len(play_blocks["validation"]) >= 50


def test_tokenize_and_group_streaming_equals_map(tmp_path):
    write(tmp_path / "a.txt", "abc\nde\n" * 5)
    write(tmp_path / "b.txt", "edcba\n" * 3)
    pattern = str(tmp_path / "*.txt")
    static = tokenize_and_group(load_text_files(pattern, cache_dir=str(tmp_path / "c")), TOK, 5)
    streamed = tokenize_and_group(load_text_files(pattern, streaming=True), TOK, 5)
    assert isinstance(streamed, IterableDatasetDict)
    assert [row["input_ids"] for row in streamed["train"]] == static["train"]["input_ids"][:]


def test_tokenize_stream():
    stream = tokenize_stream(Dataset.from_dict({"text": ["ab", "c"]}), TOK)
    assert stream.tolist() == [A, B, EOS, C, EOS] and stream.dtype == torch.long
    assert tokenize_stream(Dataset.from_dict({"text": ["ab"]}), TOK, add_eos=False).tolist() == [A, B]


# ------------------------------------------------------------------ stateful BPTT

def test_stream_blocks_layout():
    tokens = torch.arange(22)
    assert batchify(tokens, 2).tolist() == [list(range(11)), list(range(11, 22))]
    blocks = list(stream_blocks(tokens, batch_size=2, block_size=4))
    assert [x.tolist() for x, _ in blocks] == [
        [[0, 1, 2, 3], [11, 12, 13, 14]],
        [[4, 5, 6, 7], [15, 16, 17, 18]],
        [[8, 9], [19, 20]],
    ]
    assert [y.tolist() for _, y in blocks] == [
        [[1, 2, 3, 4], [12, 13, 14, 15]],
        [[5, 6, 7, 8], [16, 17, 18, 19]],
        [[9, 10], [20, 21]],
    ]
    assert num_stream_blocks(22, 2, 4) == 3 and num_stream_blocks(22, 2, 4, drop_last=True) == 2
    assert len(list(stream_blocks(tokens, 2, 4, drop_last=True))) == 2
    resumed = list(stream_blocks(tokens, 2, 4, start_block=1))
    assert [x.tolist() for x, _ in resumed] == [x.tolist() for x, _ in blocks[1:]]


def test_stream_blocks_rows_are_continuous():
    tokens = torch.randint(0, 50, (1000,))
    rows = batchify(tokens, 7)
    blocks = list(stream_blocks(tokens.tolist(), 7, 9))
    assert len(blocks) == num_stream_blocks(1000, 7, 9)
    inputs = torch.cat([x for x, _ in blocks], dim=1)
    targets = torch.cat([y for _, y in blocks], dim=1)
    assert torch.equal(inputs, rows[:, :-1]) and torch.equal(targets, rows[:, 1:])


def test_stream_blocks_too_few_tokens():
    with pytest.raises(ValueError, match="too few for batch_size=4"):
        list(stream_blocks(torch.arange(7), batch_size=4, block_size=2))


def test_single_split_error_names_the_split(tmp_path):
    write(tmp_path / "short.txt", "ab")
    data = load_text_files(tmp_path / "short.txt", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="'train' split yields no block of 8"):
        tokenize_and_group(data["train"], TOK, block_size=8)
    with pytest.raises(ValueError, match="The data set yields no block"):
        tokenize_and_group(Dataset.from_dict({"text": ["ab"]}), TOK, block_size=8)


def test_a_stream_holds_every_kth_window_out_and_validation_ends():
    from itertools import count

    from datasets import IterableDataset

    from hf_charrnn.data import hold_out_stream

    lines = [f"{i:03d}\n" for i in range(300)]  # 4 characters each: windows of 40 are 10 lines
    stream = IterableDataset.from_generator(lambda: ({"text": line} for line in lines))
    train, validation = hold_out_stream(stream, every=3, window=40, max_characters=60)
    held = [row["text"] for row in validation]
    assert held == lines[20:30] + lines[50:55]  # windows 2 and 5 (the 3rd and 6th), until 60 characters
    assert [row["text"] for row in train] == [line for line in lines if line not in held]
    endless = IterableDataset.from_generator(lambda: ({"text": f"{i}\n"} for i in count()))
    assert sum(len(row["text"]) for row in hold_out_stream(endless, every=2, window=100, max_characters=500)[1]) < 520
