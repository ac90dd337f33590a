"""Tests for hf_charrnn.evaluation and the `evaluate` metric module bits_per_character."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset

from hf_charrnn import CharRNNForCausalLM
from hf_charrnn.cli import main as hf_charrnn_command
from hf_charrnn.cli.evaluate import main
from hf_charrnn.data import tokenize_stream
from hf_charrnn.evaluation import (
    LN2,
    bits_per_character,
    dataset_stream,
    evaluate_dataset,
    evaluate_text,
    metric_path,
    score_stream,
    stream_row_bounds,
)
from hf_charrnn.tokenization_charrnn import build_char_tokenizer, build_word_tokenizer
from testing_utils import scaled_model

REPO = Path(__file__).resolve().parents[1]

TEXT = (
    "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
    "The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles\n"
)
CHAR_TOKENIZER = build_char_tokenizer([TEXT])
WORD_TOKENIZER = build_word_tokenizer([TEXT])


def make_model(tokenizer, cell_type="lstm", seed=0) -> CharRNNForCausalLM:
    return scaled_model(seed, 4.0, vocab_size=len(tokenizer), cell_type=cell_type, hidden_size=24, embedding_dim=8)


def single_pass_loss(model, ids) -> float:
    ids = torch.tensor([ids])
    with torch.no_grad():
        return model(ids, labels=ids).loss.item()


# ----------------------------------------------------------------------------------------------------------------------
# evaluate_text: the carried state makes the score independent of the chunk length
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell_type", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("chunk_length", [7, 64])
def test_evaluate_text_equals_one_forward_pass(cell_type, chunk_length):
    model = make_model(CHAR_TOKENIZER, cell_type)
    ids = CHAR_TOKENIZER(TEXT, add_special_tokens=False)["input_ids"]
    result = evaluate_text(model, CHAR_TOKENIZER, TEXT, chunk_length=chunk_length)
    assert result["loss"] == pytest.approx(single_pass_loss(model, ids), abs=1e-5)
    assert result["tokens"] == len(ids) - 1  # the first token is context only
    assert result["characters"] == len(TEXT) - 1
    assert result["bpc"] == pytest.approx(result["loss"] / LN2, rel=1e-12)  # char tokenizer: token == character
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]), rel=1e-12)


def test_chunk_lengths_agree_with_each_other():
    model = make_model(CHAR_TOKENIZER)
    text = TEXT * 20  # longer than the model's internal inference chunk would matter for nothing; many chunks here
    scores = [evaluate_text(model, CHAR_TOKENIZER, text, chunk_length=n)["loss"] for n in (1, 13, 128, 100_000)]
    assert max(scores) - min(scores) < 1e-5


def test_state_matters():
    """Cutting the text into independent windows (state reset) gives another number: the carry is real."""
    model = make_model(CHAR_TOKENIZER)
    ids = CHAR_TOKENIZER(TEXT, add_special_tokens=False)["input_ids"]
    carried = evaluate_text(model, CHAR_TOKENIZER, TEXT, chunk_length=16)["loss"]
    windows = [ids[i : i + 17] for i in range(0, len(ids) - 1, 16)]
    nats = sum(single_pass_loss(model, w) * (len(w) - 1) for w in windows if len(w) > 1)
    assert abs(nats / (len(ids) - 1) - carried) > 1e-3


def test_word_tokenizer_counts_characters_not_tokens():
    model = make_model(WORD_TOKENIZER)
    ids = WORD_TOKENIZER(TEXT, add_special_tokens=False)["input_ids"]
    first_piece = "To"
    result = evaluate_text(model, WORD_TOKENIZER, TEXT, chunk_length=5)
    assert result["tokens"] == len(ids) - 1
    assert result["characters"] == len(TEXT) - len(first_piece)
    assert result["loss"] == pytest.approx(single_pass_loss(model, ids), abs=1e-5)
    assert result["bpc"] == pytest.approx(result["nats"] / LN2 / result["characters"], rel=1e-12)
    assert result["bpc"] < result["loss"] / LN2  # a word token covers several characters


def test_start_with_eos_scores_every_character():
    model = make_model(CHAR_TOKENIZER)
    result = evaluate_text(model, CHAR_TOKENIZER, TEXT, start_with_eos=True)
    ids = [CHAR_TOKENIZER.eos_token_id] + CHAR_TOKENIZER(TEXT, add_special_tokens=False)["input_ids"]
    assert result["characters"] == len(TEXT) == result["tokens"]
    assert result["loss"] == pytest.approx(single_pass_loss(model, ids), abs=1e-5)


def test_batch_rows_predict_every_token_once():
    model = make_model(CHAR_TOKENIZER)
    n = len(CHAR_TOKENIZER(TEXT, add_special_tokens=False)["input_ids"])
    for batch_size in (1, 2, 5, 16):
        result = evaluate_text(model, CHAR_TOKENIZER, TEXT, chunk_length=9, batch_size=batch_size)
        assert result["tokens"] == n - 1
    bounds = stream_row_bounds(n, 5)
    assert bounds[0] == 0 and bounds[-1] == n - 1 and len(bounds) == 6
    # Rows scored separately add up to the batched score.
    ids = CHAR_TOKENIZER(TEXT, add_special_tokens=False)["input_ids"]
    together = score_stream(model, ids, chunk_length=9, batch_size=5)
    parts = [score_stream(model, ids, chunk_length=9, batch_size=5, rows=[r]) for r in range(5)]
    assert sum(p["tokens"] for p in parts) == together["tokens"]
    assert sum(p["nats"] for p in parts) == pytest.approx(together["nats"], abs=1e-4)
    # Each row is the exact score of its own slice.
    r = 2
    segment = ids[bounds[r] : bounds[r + 1] + 1]
    assert parts[r]["nats"] == pytest.approx(single_pass_loss(model, segment) * (len(segment) - 1), abs=1e-4)


def test_mode_is_restored():
    model = make_model(CHAR_TOKENIZER).train()
    evaluate_text(model, CHAR_TOKENIZER, TEXT)
    assert model.training


# ----------------------------------------------------------------------------------------------------------------------
# evaluate_dataset: documents separated by <eos>, as the training stream lays them out
# ----------------------------------------------------------------------------------------------------------------------


def test_evaluate_dataset_scores_the_training_layout():
    documents = [TEXT[:120], TEXT[120:200], "", TEXT[200:]]
    dataset = Dataset.from_dict({"text": documents})
    model = make_model(CHAR_TOKENIZER)
    ids, characters = dataset_stream(dataset, CHAR_TOKENIZER)
    eos = CHAR_TOKENIZER.eos_token_id
    # <eos> first (context only), then exactly the stream hf_charrnn.data.tokenize_stream builds for training.
    assert ids[0].item() == eos
    assert torch.equal(ids[1:], tokenize_stream(dataset, CHAR_TOKENIZER))
    assert characters == sum(len(d) for d in documents) + len(documents)

    result = evaluate_dataset(model, CHAR_TOKENIZER, dataset, chunk_length=11)
    assert result["documents"] == 4
    assert result["tokens"] == result["characters"] == characters
    assert result["loss"] == pytest.approx(single_pass_loss(model, ids.tolist()), abs=1e-5)
    # A plain list of rows (or an iterable data set) works too.
    rows = [{"text": d} for d in documents]
    assert evaluate_dataset(model, CHAR_TOKENIZER, rows, chunk_length=11)["nats"] == result["nats"]
    assert evaluate_dataset(model, CHAR_TOKENIZER, dataset.to_iterable_dataset())["tokens"] == result["tokens"]
    limited = evaluate_dataset(model, CHAR_TOKENIZER, dataset, max_documents=2)
    assert limited["documents"] == 2 and limited["characters"] == len(documents[0]) + len(documents[1]) + 2
    # The compact stream (1 byte a token here) holds the same ids and scores the same, window by window.
    compact, compact_characters = dataset_stream(dataset, CHAR_TOKENIZER, compact=True)
    assert compact.dtype == torch.uint8 and compact_characters == characters
    assert torch.equal(compact.long(), ids)
    for batch_size in (1, 3):
        assert score_stream(model, compact, chunk_length=11, batch_size=batch_size)["nats"] == pytest.approx(
            score_stream(model, ids, chunk_length=11, batch_size=batch_size)["nats"], abs=1e-6)


def test_bad_inputs():
    model = make_model(CHAR_TOKENIZER)
    with pytest.raises(ValueError, match="at least 2"):
        evaluate_text(model, CHAR_TOKENIZER, "T")
    with pytest.raises(ValueError, match="at least 2"):
        evaluate_text(model, CHAR_TOKENIZER, "")
    with pytest.raises(TypeError, match="str"):
        evaluate_text(model, CHAR_TOKENIZER, ["a list"])
    with pytest.raises(ValueError, match="chunk_length"):
        score_stream(model, [4, 5, 6], chunk_length=0)
    with pytest.raises(ValueError, match="batch_size"):
        score_stream(model, [4, 5, 6], batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        evaluate_dataset(model, CHAR_TOKENIZER, Dataset.from_dict({"text": []}))
    with pytest.raises(ValueError, match="column"):
        evaluate_dataset(model, CHAR_TOKENIZER, Dataset.from_dict({"content": ["abc"]}))
    with pytest.raises(ValueError, match="positive"):
        bits_per_character(1.0, 0)


# ----------------------------------------------------------------------------------------------------------------------
# The `evaluate` metric module
# ----------------------------------------------------------------------------------------------------------------------


def load_metric():
    import evaluate

    return evaluate.load(metric_path())


def test_metric_path_is_inside_the_package():
    path = Path(metric_path())
    assert (path / "bits_per_character.py").is_file()
    assert (path / "README.md").is_file()


def test_metric_numbers_by_hand():
    metric = load_metric()
    result = metric.compute(predictions=[10 * math.log(2), 3.0], references=[10, 5], token_counts=[10, 2])
    total_nats, characters, tokens = 10 * math.log(2) + 3.0, 15, 12
    assert result["bpc"] == pytest.approx(total_nats / math.log(2) / characters, rel=1e-12)
    assert result["nats_per_character"] == pytest.approx(total_nats / characters, rel=1e-12)
    assert result["character_perplexity"] == pytest.approx(2 ** result["bpc"], rel=1e-12)
    assert result["loss"] == pytest.approx(total_nats / tokens, rel=1e-12)
    assert result["perplexity"] == pytest.approx(math.exp(total_nats / tokens), rel=1e-12)
    assert (result["characters"], result["tokens"]) == (characters, tokens)
    # Without token counts, one token per character (the character tokenizer).
    simple = metric.compute(predictions=[10 * math.log(2)], references=[10])
    assert simple["bpc"] == pytest.approx(1.0, rel=1e-12)
    assert simple["perplexity"] == pytest.approx(2.0, rel=1e-12)


def test_metric_add_batch_and_agreement_with_evaluate_text():
    model = make_model(WORD_TOKENIZER)
    metric = load_metric()
    results = [evaluate_text(model, WORD_TOKENIZER, t) for t in (TEXT, TEXT[::-1], TEXT.upper()[:150])]
    for r in results:
        metric.add_batch(predictions=[r["nats"]], references=[r["characters"]])
    combined = metric.compute(token_counts=[r["tokens"] for r in results])
    nats = sum(r["nats"] for r in results)
    assert combined["bpc"] == pytest.approx(nats / LN2 / sum(r["characters"] for r in results), rel=1e-9)
    assert combined["loss"] == pytest.approx(nats / sum(r["tokens"] for r in results), rel=1e-9)
    single = load_metric().compute(predictions=[results[0]["nats"]], references=[results[0]["characters"]],
                                   token_counts=[results[0]["tokens"]])
    assert single["bpc"] == pytest.approx(results[0]["bpc"], rel=1e-9)
    assert single["perplexity"] == pytest.approx(results[0]["perplexity"], rel=1e-9)


def test_metric_rejects_bad_inputs():
    metric = load_metric()
    with pytest.raises(ValueError, match="nats"):
        metric.compute(predictions=[-1.0], references=[3])
    with pytest.raises(ValueError, match="token_counts"):
        load_metric().compute(predictions=[1.0, 2.0], references=[3, 4], token_counts=[1])
    with pytest.raises(ValueError, match="no characters"):
        load_metric().compute(predictions=[1.0], references=[0])


def test_metric_loads_offline_in_a_fresh_process(tmp_path):
    """No Hub access: evaluate.load(<local folder>) with HF_HUB_OFFLINE / HF_DATASETS_OFFLINE and an empty cache."""
    code = (
        "import evaluate, json, math\n"
        "from hf_charrnn.evaluation import metric_path\n"
        "m = evaluate.load(metric_path())\n"
        "print(json.dumps(m.compute(predictions=[4 * math.log(2)], references=[2])))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HF_ENDPOINT": "http://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["bpc"] == pytest.approx(2.0)


# ----------------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------------


def saved_model(tmp_path) -> Path:
    folder = tmp_path / "model"
    make_model(CHAR_TOKENIZER).save_pretrained(folder)
    CHAR_TOKENIZER.save_pretrained(folder)
    return folder


def test_main_scores_a_text_file(tmp_path, capsys):
    folder = saved_model(tmp_path)
    text_file = tmp_path / "text.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    assert main([str(folder), "--text_file", str(text_file), "--chunk_length", "10"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["characters"] == len(TEXT) + 1  # every character plus the closing <eos>
    model = CharRNNForCausalLM.from_pretrained(folder)
    expected = evaluate_dataset(model, CHAR_TOKENIZER, [{"text": TEXT}])
    assert report["loss"] == pytest.approx(expected["loss"], abs=1e-6)
    assert {"bpc", "perplexity", "tokens", "seconds"} <= set(report)


def test_main_scores_a_saved_dataset_split(tmp_path, capsys):
    folder = saved_model(tmp_path)
    from datasets import DatasetDict

    DatasetDict({"train": Dataset.from_dict({"text": [TEXT]}),
                 "validation": Dataset.from_dict({"text": [TEXT[:100], TEXT[100:]]})}).save_to_disk(tmp_path / "d")
    output = tmp_path / "result.json"
    assert main([str(folder), "--dataset", str(tmp_path / "d"), "--batch_size", "2",
                 "--output_file", str(output)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "validation" and report["documents"] == 2
    assert report["characters"] == len(TEXT) + 2
    assert json.loads(output.read_text()) == report


def test_the_embedded_corpus_is_scored_by_name_on_the_split_asked_for(tmp_path, capsys):
    """The README's `hf-charrnn evaluate MODEL --dataset shakespeare[:PLAY] [--split test]`: the split of the embedded
    corpus, scored as evaluate_dataset scores it."""
    from hf_charrnn.shakespeare import load_shakespeare_play

    folder = saved_model(tmp_path)
    assert main([str(folder), "--dataset", "shakespeare:the-comedy-of-errors", "--split", "test"]) == 0
    report = json.loads(capsys.readouterr().out)
    test_split = load_shakespeare_play("the-comedy-of-errors")["test"]
    expected = evaluate_dataset(CharRNNForCausalLM.from_pretrained(folder), CHAR_TOKENIZER, test_split)
    assert report["split"] == "test" and report["loss"] == pytest.approx(expected["loss"], abs=1e-6)
    assert report["characters"] == sum(len(text) + 1 for text in test_split["text"])


def test_command_errors_are_one_line(tmp_path, capsys):
    assert hf_charrnn_command(["evaluate", str(tmp_path / "no-such-model"), "--text_file", "x.txt"]) == 2
    assert "No such folder" in capsys.readouterr().err
    folder = saved_model(tmp_path)
    assert hf_charrnn_command(["evaluate", str(folder), "--text_file", str(tmp_path / "missing.txt")]) == 2
    assert hf_charrnn_command(["evaluate", str(folder), "--dataset", "shakespeare:no-such-play"]) == 2
    errors = capsys.readouterr().err
    assert "missing.txt" in errors and "no-such-play" in errors and "Traceback" not in errors


def test_script_runs(tmp_path):
    folder = saved_model(tmp_path)
    text_file = tmp_path / "text.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "evaluate.py"), str(folder), "--text_file",
                           str(text_file)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "bpc" in json.loads(done.stdout)
