"""The model card rendered from a training output folder (hf_charrnn.model_card), parsed back as the Hub parses it."""

import json

from huggingface_hub import ModelCard

from testing_utils import make_output_dir
from hf_charrnn.model_card import render_model_card


def test_model_card_metadata_and_sections(tmp_path):
    folder = make_output_dir(tmp_path / "out")
    card = render_model_card(folder, "someone/charrnn-romeo")
    parsed = ModelCard(str(card))  # parse the text back, as the Hub does
    data = parsed.data
    assert data.library_name == "transformers" and data.pipeline_tag == "text-generation"
    assert data.license == "apache-2.0" and "charrnn" in data.tags and "lstm" in data.tags
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in data.eval_results}
    assert results[("validation", "bpc")] == 3.9674 and results[("test", "bpc")] == 4.0395
    assert data.model_name == "charrnn-romeo"
    text = parsed.text
    for heading in ("## How to use", "## Training data", "## Training procedure", "### Hyperparameters",
                    "## Evaluation results", "## Sample generations", "## Limitations", "### Loss curve"):
        assert heading in text, heading
    assert "![" in text and "(loss_curve.png)" in text
    assert "trust_remote_code=True" in text and "modeling_charrnn.py" in text and "import hf_charrnn" in text
    summary = json.loads((folder / "training_summary.json").read_text())
    assert summary["samples"][0]["text"] in text and "`learning_rate`" in text
    assert str(tmp_path) not in str(card)  # nothing of this machine
    assert str(render_model_card(folder, "someone/charrnn-romeo")) == str(card)  # deterministic


def test_model_card_degrades_gracefully_without_a_summary(tmp_path):
    folder = make_output_dir(tmp_path / "bare", summary=False, loss_curve=False)
    card = ModelCard(str(render_model_card(folder, "someone/bare")))
    assert card.data.eval_results is None and card.data.library_name == "transformers"
    assert "not recorded" in card.text and "No evaluation results" in card.text and "![" not in card.text
    assert "## How to use" in card.text

    (folder / "training_summary.json").write_text(json.dumps({"dataset": "/home/me/secret/corpus.txt",
                                                              "validation": {"bpc": None, "loss": 1.5}}))
    card = ModelCard(str(render_model_card(folder, "someone/bare")))
    assert "/home/me" not in str(card) and "corpus.txt" in card.text
    assert [(r.metric_type, r.metric_value) for r in card.data.eval_results] == [("loss", 1.5)]


def test_hub_dataset_ids_go_to_the_metadata(tmp_path):
    folder = make_output_dir(tmp_path / "out")
    summary = json.loads((folder / "training_summary.json").read_text())
    summary["dataset"] = "karpathy/tiny_shakespeare"
    (folder / "training_summary.json").write_text(json.dumps(summary))
    card = ModelCard(str(render_model_card(folder, "someone/x")))
    assert card.data.datasets == ["karpathy/tiny_shakespeare"]
    assert {r.dataset_type for r in card.data.eval_results} == {"karpathy/tiny_shakespeare"}


def test_the_memorisation_report_is_a_sentence_in_the_card(tmp_path):
    folder = make_output_dir(tmp_path / "out")
    summary = json.loads((folder / "training_summary.json").read_text())
    summary["memorisation"] = {"samples": 4, "sampled_characters": 1200, "longest_copied_span": 57,
                               "longest_copied_text": "x" * 57, "copied_share": 0.125, "min_span": 20,
                               "indexed_characters": 5000, "whole_training_text": True, "seed": 0}
    (folder / "training_summary.json").write_text(json.dumps(summary))
    text = ModelCard(str(render_model_card(folder, "someone/r"))).text
    assert ("**Memorisation.** Of 1,200 characters in 4 seeded samples, 12.5% lie in spans of 20 or more characters "
            "copied verbatim from the training text; the longest copied span is 57 characters.") in text
    summary["memorisation"].update(indexed_characters=2000, whole_training_text=False)  # a larger corpus says so
    (folder / "training_summary.json").write_text(json.dumps(summary))
    assert "checked against the first 2,000 characters" in ModelCard(str(render_model_card(folder, "someone/r"))).text
