"""`hf_charrnn.scoring` and `hf-charrnn score`: per-text log-probabilities against a hand computation from the logits,
against `hf-charrnn evaluate` on the same text, and the command's reading of texts, lines and mistakes."""

import json
import math

import pytest
import torch
from torch.nn import functional as F

from hf_charrnn import CharRNNForCausalLM
from hf_charrnn.scoring import score_texts
from hf_charrnn.tokenization_charrnn import build_char_tokenizer, build_word_tokenizer

from testing_utils import hf_charrnn_in_process, scaled_model

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
NAMES = ["Anna", "Bob", "Constantine Alexandrovich", "Di"]
CHAR_TOKENIZER = build_char_tokenizer([TEXT + "".join(NAMES)])
WORD_TOKENIZER = build_word_tokenizer([TEXT])


def make_model(tokenizer, seed=0) -> CharRNNForCausalLM:
    return scaled_model(seed, 3.0, vocab_size=len(tokenizer), hidden_size=24, embedding_dim=8)


def by_hand(model, tokenizer, text: str, with_end: bool) -> list[float]:
    """-log2 p of each token of `text` (and its <eos>), read after <eos>, from one forward pass over the logits."""
    ids = [tokenizer.eos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]
    ids += [tokenizer.eos_token_id] if with_end else []
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, :-1].double()
    log_probs = F.log_softmax(logits, dim=-1)
    return [-float(log_probs[i, ids[i + 1]]) / math.log(2) for i in range(len(ids) - 1)]


@pytest.mark.parametrize("with_end", [False, True])
def test_scores_equal_a_hand_computation_from_the_logits(with_end):
    model = make_model(CHAR_TOKENIZER)
    (result,) = score_texts(model, CHAR_TOKENIZER, [TEXT], with_end=with_end, surprisal=True)
    expected = by_hand(model, CHAR_TOKENIZER, TEXT, with_end)
    assert result["tokens"] == len(expected) == len(TEXT) + with_end
    assert result["bits"] == pytest.approx(sum(expected), rel=1e-5)
    assert result["log_probability"] == pytest.approx(-sum(expected) * math.log(2), rel=1e-5)
    assert result["bpc"] == pytest.approx(sum(expected) / (len(TEXT) + with_end), rel=1e-5)
    assert [piece for piece, _ in result["surprisal"]] == list(TEXT) + (["<eos>"] if with_end else [])
    assert [bits for _, bits in result["surprisal"]] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_batching_and_chunking_do_not_change_the_scores():
    model = make_model(CHAR_TOKENIZER, seed=1)
    alone = [score_texts(model, CHAR_TOKENIZER, [name], with_end=True)[0] for name in NAMES]
    for batch_size, chunk_length in ((1, 1024), (4, 1024), (3, 2), (2, 1)):
        together = score_texts(model, CHAR_TOKENIZER, NAMES, with_end=True, batch_size=batch_size,
                                chunk_length=chunk_length)
        for mine, reference in zip(together, alone):  # in the order given, whatever the batching
            assert mine["tokens"] == reference["tokens"]
            assert mine["bits"] == pytest.approx(reference["bits"], rel=1e-5)


def test_a_word_tokenizer_reports_words_and_counts_characters():
    model = make_model(WORD_TOKENIZER)
    text = "to be or not"
    (result,) = score_texts(model, WORD_TOKENIZER, [text], surprisal=True)
    assert [piece for piece, _ in result["surprisal"]] == ["to", " ", "be", " ", "or", " ", "not"]  # spaces are tokens
    assert result["characters"] == len(text)
    assert result["bits"] == pytest.approx(sum(by_hand(model, WORD_TOKENIZER, text, False)), rel=1e-5)


def test_an_empty_text_has_no_rate_but_its_end_has_a_probability():
    model = make_model(CHAR_TOKENIZER)
    empty, ended = score_texts(model, CHAR_TOKENIZER, [""]), score_texts(model, CHAR_TOKENIZER, [""], with_end=True)
    assert empty[0]["tokens"] == 0 and empty[0]["bpc"] is None and empty[0]["bits"] == 0
    assert ended[0]["tokens"] == 1 and ended[0]["bits"] == pytest.approx(by_hand(model, CHAR_TOKENIZER, "", True)[0])


# ----------------------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "model"
    make_model(CHAR_TOKENIZER).save_pretrained(folder)
    CHAR_TOKENIZER.save_pretrained(folder)
    return folder


def run_command(argv) -> tuple[int, list[dict], str]:
    """`hf-charrnn ARGV` in this process: its exit code, the JSON lines it printed and its error output."""
    done = hf_charrnn_in_process(*argv)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")], done.stderr


def test_a_file_scored_with_its_end_agrees_with_evaluate(model_folder, tmp_path):
    text_file = tmp_path / "text.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    code, (scored,), _ = run_command(["score", str(model_folder), "--text_file", str(text_file), "--with_end"])
    assert code == 0 and scored["text_file"] == str(text_file)
    evaluation = hf_charrnn_in_process("evaluate", model_folder, "--text_file", text_file)
    assert evaluation.returncode == 0
    evaluated = json.loads(evaluation.stdout)
    assert scored["characters"] == evaluated["characters"] and scored["tokens"] == evaluated["tokens"]
    assert -scored["log_probability"] == pytest.approx(evaluated["nats"], rel=1e-6)
    assert scored["bpc"] == pytest.approx(evaluated["bpc"], rel=1e-6)


def test_per_line_scores_each_line_afresh_and_skips_empty_lines(model_folder, tmp_path):
    names_file = tmp_path / "names.txt"
    names_file.write_text(f"{NAMES[0]}\n\n{NAMES[1]}\n{NAMES[2]}\n", encoding="utf-8")
    code, lines, _ = run_command(["score", str(model_folder), "--text_file", str(names_file), "--per_line",
                                  "--surprisal", "--batch_size", "2"])
    assert code == 0
    assert [(line["line"], line["text"]) for line in lines] == [(1, NAMES[0]), (3, NAMES[1]), (4, NAMES[2])]
    model = CharRNNForCausalLM.from_pretrained(model_folder).eval()
    for line in lines:
        assert line["bits"] == pytest.approx(sum(by_hand(model, CHAR_TOKENIZER, line["text"], False)), rel=1e-5)
        assert len(line["surprisal"]) == len(line["text"])


def test_text_from_the_command_line_and_standard_input(model_folder, monkeypatch):
    import io

    code, (direct,), _ = run_command(["score", str(model_folder), "--text", NAMES[2]])
    monkeypatch.setattr("sys.stdin", io.StringIO(NAMES[2]))
    code_stdin, (piped,), _ = run_command(["score", str(model_folder), "--text", "-"])
    assert code == code_stdin == 0
    assert direct["text"] == piped["text"] == NAMES[2] and direct["bits"] == piped["bits"]


def test_mistakes_are_one_line_errors(model_folder, tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café au lait\n".encode("latin-1"))
    cases = [
        ([], "--text TEXT or --text_file FILE"),
        (["--text", "a", "--text_file", str(latin1)], "--text TEXT or --text_file FILE"),
        (["--text", ""], "empty"),
        (["--text_file", str(tmp_path / "missing.txt")], "does not exist"),
        (["--text_file", str(latin1)], "iconv"),
        (["--text", "\n\n", "--per_line"], "no line with text"),
        (["--text_file", str(tmp_path / "two" / "*.txt")], "matches 2 files"),
    ]
    (tmp_path / "two").mkdir()
    for name in ("a.txt", "b.txt"):
        (tmp_path / "two" / name).write_text("a text\n", encoding="utf-8")
    for extra, message in cases:
        code, _, err = run_command(["score", str(model_folder), *extra])
        assert code == 2, (extra, err)
        assert message in err and "Traceback" not in err, (extra, err)


def test_unknown_characters_are_named_in_a_warning(model_folder):
    code, (result,), err = run_command(["score", str(model_folder), "--text", "Zürich"])
    assert code == 0 and result["tokens"] == len("Zürich")
    assert "warning:" in err and "ü" in err


def test_lines_are_scored_in_batches_as_they_are_read_and_written_to_a_file(model_folder, tmp_path, monkeypatch):
    import hf_charrnn.cli.score as score_command

    monkeypatch.setattr(score_command, "LINES_PER_BATCH", 2)  # five lines: three batches
    names_file, output = tmp_path / "names.txt", tmp_path / "scores.jsonl"
    names_file.write_text("\n".join(NAMES + ["Eve"]) + "\n", encoding="utf-8")
    code, lines, _ = run_command(["score", str(model_folder), "--text_file", str(names_file), "--per_line",
                                  "--output_file", str(output)])
    assert code == 0 and [line["line"] for line in lines] == [1, 2, 3, 4, 5]
    assert [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()] == lines
    alone = score_texts(CharRNNForCausalLM.from_pretrained(model_folder).eval(), CHAR_TOKENIZER, NAMES + ["Eve"])
    assert [line["bits"] for line in lines] == pytest.approx([result["bits"] for result in alone], rel=1e-5)


def test_a_file_too_large_to_score_whole_points_to_evaluate_and_per_line(model_folder, tmp_path, monkeypatch):
    import hf_charrnn.cli.score as score_command

    monkeypatch.setattr(score_command, "MAX_WHOLE_FILE_BYTES", 10)
    text_file = tmp_path / "big.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    code, _, err = run_command(["score", str(model_folder), "--text_file", str(text_file)])
    assert code == 2 and "hf-charrnn evaluate MODEL --text_file" in err and "--per_line" in err
    code, lines, _ = run_command(["score", str(model_folder), "--text_file", str(text_file), "--per_line"])
    assert code == 0 and len(lines) == 2
