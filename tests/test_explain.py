"""`hf_charrnn.explain` and `hf-charrnn explain`: activations against the model run one token at a time (its cache is
the reference for hidden and cell states), unit rankings against hand-computed properties and numpy's correlation,
the page's data against what it was made from, and the command's mistakes. The page in a browser:
test_explain_browser.py."""

import base64
import gzip
import json
import math
import re

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from testing_utils import one_token_at_a_time, tiny_model
from hf_charrnn import CharRNNConfig, CharRNNForCausalLM
from hf_charrnn.cli import main as hf_charrnn_command
from hf_charrnn.explain import TextActivations, activations
from hf_charrnn.explain.report import (
    NEGATIVE_RGB,
    POSITIVE_RGB,
    SURPRISAL_RGB,
    is_explain_report,
    render_report,
    report_data,
    report_model_fingerprint,
    surprisal_colour,
    unit_colour,
)
from hf_charrnn.explain.units import correlations, rank_units, text_properties
from hf_charrnn.modeling_charrnn import INFERENCE_CHUNK_LENGTH
from hf_charrnn.states import model_fingerprint
from hf_charrnn.tokenization_charrnn import build_char_tokenizer, build_word_tokenizer

TEXT = ('She said "hello (twice)" and left.\nHe wrote [a list] of "words" {and more}.\n'
        'Then: "nothing" (at all)!\n')
TOKENIZER = build_char_tokenizer([TEXT])


def make_model(cell_type="lstm", seed=0, tokenizer=TOKENIZER) -> CharRNNForCausalLM:
    return tiny_model(seed, vocab_size=len(tokenizer), cell_type=cell_type, hidden_size=12, embedding_dim=6)


@torch.no_grad()
def states_one_token_at_a_time(model, ids: list[int]):
    """The reference: the model fed one token per call with its cache (`testing_utils.one_token_at_a_time`), read
    after each token: hidden and cell states of the one row, and its logits."""
    logits, _, states = one_token_at_a_time(model, torch.tensor([ids]))
    return ([hidden[:, 0] for hidden, _ in states], [None if cell is None else cell[:, 0] for _, cell in states],
            list(logits[0]))


def test_activations_equal_the_model_run_one_token_at_a_time(cell_type):
    model = make_model(cell_type)
    acts = activations(model, TEXT, tokenizer=TOKENIZER)
    ids = [TOKENIZER.eos_token_id, *acts.token_ids]
    assert "".join(acts.tokens) == TEXT and len(acts.tokens) == len(TEXT)
    hidden, cell, logits = states_one_token_at_a_time(model, ids)
    for i in range(len(TEXT)):  # position i: after reading token i, i.e. after ids[: i + 2]
        for layer in range(2):
            torch.testing.assert_close(acts.hidden[layer][i], hidden[i + 1][layer], atol=2e-5, rtol=1e-5)
            if cell_type == "lstm":
                torch.testing.assert_close(acts.cell[layer][i], cell[i + 1][layer], atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(acts.next_logits[i], logits[i + 1], atol=2e-5, rtol=1e-5)
        expected_bits = -F.log_softmax(logits[i].double(), -1)[ids[i + 1]].item() / math.log(2)
        assert acts.surprisal[i].item() == pytest.approx(expected_bits, rel=1e-4, abs=1e-5)
    assert (acts.cell is None) == (cell_type != "lstm")
    assert acts.bits_per_character() == pytest.approx(acts.surprisal.double().sum().item() / len(TEXT))
    if cell_type != "lstm":
        with pytest.raises(ValueError, match="no cell states"):
            acts.states("cell")


def test_cell_states_past_an_inference_window_match_the_final_cache():
    """The recomputed cell recurrence runs across the model's inference windows; its last state is the cache's."""
    text = (TEXT * (INFERENCE_CHUNK_LENGTH // len(TEXT) + 2))[: INFERENCE_CHUNK_LENGTH + 300]
    model = make_model("lstm", seed=1)
    acts = activations(model, text, tokenizer=TOKENIZER)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([[TOKENIZER.eos_token_id, *acts.token_ids]]), use_cache=True)
    for layer in range(2):
        torch.testing.assert_close(acts.cell[layer][-1], out.cache.cell[layer, 0], atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(acts.hidden[layer][-1], out.cache.hidden[layer, 0], atol=1e-5, rtol=1e-5)


def test_activations_find_the_saved_tokenizer_or_ask_for_one(tmp_path):
    model = make_model()
    model.save_pretrained(tmp_path)
    TOKENIZER.save_pretrained(tmp_path)
    loaded = CharRNNForCausalLM.from_pretrained(tmp_path)
    torch.testing.assert_close(activations(loaded, "said").hidden[1],
                               activations(model, "said", tokenizer=TOKENIZER).hidden[1])
    with pytest.raises(ValueError, match="pass tokenizer="):
        activations(make_model(), "said")
    with pytest.raises(ValueError, match="empty"):
        activations(model, "", tokenizer=TOKENIZER)


def test_a_word_model_explains_words_with_the_text_between_them():
    tokenizer = build_word_tokenizer([TEXT])
    model = make_model("gru", tokenizer=tokenizer)
    text = 'He said "hello" (twice).\nThen left'
    acts = activations(model, text, tokenizer=tokenizer)
    assert "".join(acts.tokens) == text and acts.tokens[:4] == ["He", " ", "said", " "]
    assert acts.hidden[0].shape == (len(acts.tokens), 12) and acts.next_logits.shape == (len(acts.tokens),
                                                                                          len(tokenizer))
    hidden, _, logits = states_one_token_at_a_time(model, [tokenizer.eos_token_id, *acts.token_ids])
    torch.testing.assert_close(acts.hidden[1][-1], hidden[-1][1], atol=2e-5, rtol=1e-5)
    assert text_properties(acts.tokens)["inside quotes"].tolist()[4:8] == [1, 1, 0, 0]  # '"', 'hello', '"', ' '
    assert acts.bits_per_character() == pytest.approx(acts.surprisal.sum().item() / len(text), rel=1e-6)


def test_text_properties_by_hand():
    tokens = list('a "b" (c)\nd')
    assert {name: values.tolist() for name, values in text_properties(tokens).items()} == {
        "inside quotes":    [0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0],
        "inside brackets":  [0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0],
        "position in line": [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1],
        "inside a word":    [1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1],
        "after a newline":  [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],
    }
    assert text_properties(["“Hi”", " (a", "))"])["inside quotes"].tolist() == [0, 0, 0]
    assert text_properties(["“Hi", "” (a", "))"])["inside brackets"].tolist() == [0, 1, 0]


def test_correlations_equal_numpy_and_are_zero_for_constants():
    generator = torch.Generator().manual_seed(0)
    states = torch.randn(200, 6, generator=generator)
    states[:, 4] = 2.5  # a unit that never moves
    values = torch.randn(200, generator=generator) + states[:, 1]
    expected = [np.corrcoef(states[:, u].numpy(), values.numpy())[0, 1] for u in (0, 1, 2, 3, 5)]
    found = correlations(states, values)
    assert found[4] == 0 and correlations(states, torch.ones(200)).abs().max() == 0
    np.testing.assert_allclose(found[[0, 1, 2, 3, 5]].numpy(), expected, rtol=1e-9)


def test_rank_units_finds_a_planted_line_position_unit_and_skips_constant_properties():
    tokens = list("ab cd\nefg hi\njk\n" * 10)
    generator = torch.Generator().manual_seed(0)
    hidden = [torch.randn(len(tokens), 8, generator=generator) for _ in range(2)]
    cell = [torch.randn(len(tokens), 8, generator=generator) for _ in range(2)]
    position = text_properties(tokens)["position in line"].float()
    cell[1][:, 5] = -0.3 * position + 0.01 * torch.randn(len(tokens), generator=generator)
    acts = TextActivations(tokens, list(range(len(tokens))), tuple(hidden), tuple(cell),
                           torch.zeros(len(tokens), 3), torch.zeros(len(tokens)))
    ranked = rank_units(acts, top=4)
    assert "inside quotes" not in ranked and "inside brackets" not in ranked  # the text has neither
    best = ranked["position in line"][0]
    assert (best.layer, best.kind, best.unit) == (1, "cell", 5) and best.correlation < -0.99
    assert len(ranked["position in line"]) == 4
    assert [abs(u.correlation) for u in ranked["inside a word"]] == sorted(
        (abs(u.correlation) for u in ranked["inside a word"]), reverse=True)


def test_short_or_uniform_texts_rank_nothing_they_cannot_support():
    acts = activations(make_model(), 'a "b" c (d) e\nf g h i j k', tokenizer=TOKENIZER)  # 22 positions
    ranked = rank_units(acts)
    assert set(ranked) == {"position in line", "inside a word"}  # quotes, brackets, line ends: fewer than 3 positions
    assert rank_units(activations(make_model(), "said it", tokenizer=TOKENIZER)) == {}  # 7 positions


def test_colours_by_hand():
    assert unit_colour(0.0) == (255, 255, 255) and unit_colour(1.0) == POSITIVE_RGB
    assert unit_colour(-7.0) == NEGATIVE_RGB  # clamped
    assert unit_colour(-0.5) == (217, 140, 149)  # halfway from white to (178, 24, 43), rounded half up
    assert surprisal_colour(0.0) == (255, 255, 255) and surprisal_colour(20.0) == SURPRISAL_RGB


def unpacked_states(block, length):
    values = np.frombuffer(gzip.decompress(base64.b64decode(block["data"])), dtype=np.int8)
    return torch.tensor(values.reshape(block["units"], length).T.copy(), dtype=torch.float32)


def test_report_data_round_trips_states_predictions_and_scales():
    model = make_model("lstm")
    acts = activations(model, TEXT, tokenizer=TOKENIZER)
    data = report_data(acts, TOKENIZER, "tiny", model.config)
    assert data["tokens"] == acts.tokens and len(data["states"]) == 4
    for block in data["states"]:
        states = acts.states(block["kind"])[block["layer"]]
        largest = states.abs().amax(0)
        quantised = unpacked_states(block, len(TEXT)) * torch.tensor(block["largest"]) / 127
        assert ((quantised - states).abs() <= largest / 254 + 1e-6).all()
        expected_display = torch.ones(12) if block["kind"] == "hidden" else largest
        torch.testing.assert_close(torch.tensor(block["display"]), expected_display, rtol=1e-5, atol=0)
    top = torch.softmax(acts.next_logits, -1).topk(5)
    assert data["top_ids"] == top.indices.flatten().tolist()
    np.testing.assert_allclose(data["top_probabilities"], top.values.flatten().numpy(), atol=1e-5)
    assert data["vocabulary"][data["top_ids"][0]] == TOKENIZER.convert_ids_to_tokens(top.indices[0, 0].item())
    first = data["ranked_units"]["position in line"][0]
    r = correlations(acts.states(first["kind"])[first["layer"]], text_properties(acts.tokens)["position in line"])
    assert first["correlation"] == pytest.approx(r.abs().max().item() * np.sign(first["correlation"]), abs=1e-4)


def test_ids_beyond_the_tokenizer_are_named_by_number_on_the_page():
    model = tiny_model(0, vocab_size=len(TOKENIZER) + 3, hidden_size=12, embedding_dim=6)
    vocabulary = report_data(activations(model, TEXT, tokenizer=TOKENIZER), TOKENIZER, "m", model.config)["vocabulary"]
    assert vocabulary[: len(TOKENIZER)] == TOKENIZER.convert_ids_to_tokens(list(range(len(TOKENIZER))))
    assert vocabulary[len(TOKENIZER):] == [f"<id {i}>" for i in range(len(TOKENIZER), len(TOKENIZER) + 3)]


def test_the_page_holds_its_data_verbatim_and_nothing_escapes_the_script(tmp_path):
    text = TEXT + '</script><script>document.title="{{TITLE}}"</script><!--'
    tokenizer = build_char_tokenizer([text])
    model = make_model("gru", tokenizer=tokenizer)
    acts = activations(model, text, tokenizer=tokenizer)
    page = render_report(acts, tokenizer, "a <b>name</b>", model.config, model_fingerprint="0a1b")
    assert page.count("</script>") == 2 and page.count("<script") == 2
    assert "<title>Inside a &lt;b&gt;name&lt;/b&gt;</title>" in page
    embedded = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)[1]
    assert json.loads(embedded) == json.loads(json.dumps(report_data(acts, tokenizer, "a <b>name</b>",
                                                                     model.config)))
    assert "".join(json.loads(embedded)["tokens"]) == text
    page_file = tmp_path / "page.html"
    page_file.write_text(page, encoding="utf-8")
    assert is_explain_report(page_file) and report_model_fingerprint(page_file) == "0a1b"
    assert [block["kind"] for block in json.loads(embedded)["states"]] == ["hidden", "hidden"]  # a GRU: no cells


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain_model")
    make_model("lstm").save_pretrained(folder)
    TOKENIZER.save_pretrained(folder)
    return folder


def page_data(path) -> dict:
    page = path.read_text(encoding="utf-8")
    return json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S)[1])


def test_explain_command_writes_a_page_and_replaces_only_its_own(model_folder, tmp_path, capsys):
    text_file = tmp_path / "sample.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    output = tmp_path / "page.html"
    assert hf_charrnn_command(["explain", str(model_folder), "--text_file", str(text_file),
                               "--output", str(output)]) == 0
    assert "open it in a web browser" in capsys.readouterr().out and is_explain_report(output)
    data = page_data(output)
    assert "".join(data["tokens"]) == TEXT and data["model"]["name"] == model_folder.name
    assert report_model_fingerprint(output) == model_fingerprint(CharRNNForCausalLM.from_pretrained(model_folder))
    assert hf_charrnn_command(["explain", str(model_folder), "--text", "said", "--output", str(output)]) == 0
    assert page_data(output)["tokens"] == list("said")  # its own earlier page is replaced
    assert hf_charrnn_command(["explain", str(model_folder), "--text_file", str(text_file), "--output",
                               str(output), "--max_characters", "10"]) == 0
    assert "first 10 characters" in capsys.readouterr().err and len(page_data(output)["tokens"]) == 10


def test_a_page_too_large_for_a_browser_is_refused_with_the_length_that_fits():
    from hf_charrnn.cli.explain import check_page_size

    config = CharRNNConfig(vocab_size=80, hidden_size=512, num_layers=2)  # 2 x 512 x 2 states: 2,731 bytes a character
    check_page_size(config, 115_000)  # about 299.5 MB
    with pytest.raises(ValueError, match=r"up to 521 MB.*use --max_characters 115,[12]\d\d or less"):
        check_page_size(config, 200_000)


def test_explain_mistakes_are_one_line_errors(model_folder, tmp_path, capsys):
    notes = tmp_path / "notes.html"
    notes.write_text("<p>my own notes</p>", encoding="utf-8")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Zürich".encode("latin-1"))
    table = tmp_path / "table.parquet"
    table.write_bytes(b"PAR1\x00\x01")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\x00\x01\x02text")
    cases = {
        ("--output", str(notes), "--text", "said"): "not a page of hf-charrnn explain",
        ("--output", str(tmp_path), "--text", "said"): "is a folder",
        ("--output", str(tmp_path / "no" / "e.html"), "--text", "said"): "does not exist; create it first",
        ("--output", str(tmp_path / "a.html")): "--text TEXT or --text_file FILE",
        ("--output", str(tmp_path / "b.html"), "--text_file", str(latin1)): "UTF-8",
        ("--output", str(tmp_path / "c.html"), "--text", ""): "empty",
        ("--output", str(tmp_path / "c.html"), "--text", "Z\udcfcrich"): "not valid UTF-8",  # a shell's $'Z\xfcrich'
        ("--output", str(tmp_path / "c.html"), "--text_file", str(table)): "is a .parquet data file",
        ("--output", str(tmp_path / "c.html"), "--text_file", str(binary)): "binary file",
        ("--output", str(tmp_path / "c.html"), "--text_file", str(tmp_path / "none.txt")): "does not exist",
        ("--output", str(tmp_path / "d.html"), "--text", "said", "--max_characters", "0"): "at least 1",
    }
    for extra, message in cases.items():
        code = hf_charrnn_command(["explain", str(model_folder), *extra])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, (extra, err)
    assert notes.read_text(encoding="utf-8") == "<p>my own notes</p>"
    assert not any(tmp_path.glob("[a-d].html"))
