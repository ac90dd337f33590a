"""Dynamic evaluation (hf_charrnn.dynamic_evaluation): each segment scored before the weights learn from it, the update
rule against a hand-written one, the trained weights restored, and the option on `evaluate`, `score` and `generate`."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from testing_utils import PROMPT, TEXT, hf_charrnn_in_process, make_output_dir, tiny_config, tiny_model
from torch.nn import functional as F

from hf_charrnn import CharRNNForCausalLM
from hf_charrnn.dynamic_evaluation import (
    DynamicEvaluation,
    adapt_to,
    adapted_weights,
    adapting_log_probabilities,
    dynamic_score_stream,
)
from hf_charrnn.evaluation import score_stream
from hf_charrnn.model_loading import load_model_and_tokenizer
from hf_charrnn.scoring import encode_text, score_texts
from hf_charrnn.states import prime


def random_ids(length: int, vocab_size: int = 24, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (length,), generator=generator)


def reference_dynamic_nats(model, ids: torch.Tensor, settings: DynamicEvaluation) -> float:
    """The rule of the module docstring written out on a copy of the model: score a segment, then for each weight
    ms = beta ms + (1 - beta) g^2; w -= lr g / (sqrt(ms / (1 - beta^t)) + 1e-8); w += decay (w_trained - w)."""
    model = copy.deepcopy(model).eval()
    weights = list(model.parameters())
    trained = [weight.detach().clone() for weight in weights]
    mean_squares = [torch.zeros_like(weight) for weight in weights]
    hidden, nats, step = None, 0.0, 0
    for start in range(0, len(ids) - 1, settings.segment_length):
        inputs = ids[start : start + settings.segment_length]
        targets = ids[start + 1 : start + 1 + len(inputs)]
        out = model(input_ids=inputs[: len(targets)][None], cache=hidden, use_cache=True)
        loss = F.cross_entropy(out.logits[0], targets, reduction="sum")
        nats += loss.item()
        gradients = torch.autograd.grad(loss / len(targets), weights)
        step += 1
        with torch.no_grad():
            for weight, start_weight, mean_square, gradient in zip(weights, trained, mean_squares, gradients):
                mean_square.copy_(settings.beta * mean_square + (1 - settings.beta) * gradient**2)
                weight -= settings.learning_rate * gradient / (
                    torch.sqrt(mean_square / (1 - settings.beta**step)) + 1e-8)
                weight += settings.decay * (start_weight - weight)
        hidden = out.cache.detach()
    return nats


@pytest.mark.parametrize("decay", [0.0, 0.05])
def test_the_update_rule_matches_the_rule_written_out(cell_type, decay):
    model = tiny_model(cell_type=cell_type)
    ids = random_ids(150)
    settings = DynamicEvaluation(learning_rate=3e-2, segment_length=20, decay=decay)
    scores = dynamic_score_stream(model, ids, settings)
    assert scores["tokens"] == 149
    assert scores["nats"] == pytest.approx(reference_dynamic_nats(model, ids, settings), rel=1e-6)
    assert scores["nats"] != pytest.approx(score_stream(model, ids)["nats"], rel=1e-3)  # it did adapt


def test_without_steps_each_token_gets_the_static_probability(cell_type):
    """Learning rate 0 and no decay: the weights never move, and every token's log-probability is the one a plain
    forward over the same segments with the state carried gives (to float32 rounding: with gradients enabled the
    model may take other kernels)."""
    model = tiny_model(cell_type=cell_type)
    ids = random_ids(130)
    frozen = torch.cat(list(adapting_log_probabilities(model, ids, DynamicEvaluation(learning_rate=0.0,
                                                                                     segment_length=32))))
    expected, cache = [], None
    with torch.no_grad():
        for start in range(0, 129, 32):
            targets = ids[start + 1 : start + 33]
            out = model(input_ids=ids[start : start + len(targets)][None], cache=cache, use_cache=True)
            cache = out.cache
            expected.append(F.log_softmax(out.logits[0], dim=-1).gather(-1, targets[:, None])[:, 0].double())
    torch.testing.assert_close(frozen, torch.cat(expected), rtol=1e-5, atol=1e-6)


def test_the_trained_weights_come_back_bit_for_bit_even_after_an_error():
    model = tiny_model()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    dynamic_score_stream(model, random_ids(100), DynamicEvaluation(learning_rate=1e-2, segment_length=10))
    with pytest.raises(RuntimeError, match="interrupted"), adapted_weights(model):
        with torch.no_grad():
            next(model.parameters()).add_(1.0)
        raise RuntimeError("interrupted")
    after = model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert all(parameter.grad is None for parameter in model.parameters())
    assert not model.training


def test_a_text_that_repeats_is_learnt_while_reading():
    """A random pattern of 8 tokens, 30 times over: the static model cannot learn it, the adapting one does, so the
    repeats cost it far less (each token still scored before the step that learns from it)."""
    torch.manual_seed(0)
    model = CharRNNForCausalLM(tiny_config(hidden_size=48, num_layers=1)).eval()
    ids = random_ids(8, seed=3).repeat(30)
    static = score_stream(model, ids)["nats"]
    dynamic = dynamic_score_stream(model, ids, DynamicEvaluation(learning_rate=3e-2, segment_length=8))["nats"]
    assert dynamic < 0.6 * static


@pytest.mark.parametrize("options, message", [
    (dict(learning_rate=-1.0), "learning rate must be 0 or more"),
    (dict(segment_length=1), "segment length must be at least 2"),
    (dict(decay=1.5), "decay must be between 0 and 1"),
    (dict(beta=1.0), "beta must be at least 0 and below 1"),
])
def test_bad_settings_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        DynamicEvaluation(**options)


# ----------------------------------------------------------------------------------------------------------------------
# The commands
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def model_folder(tmp_path):
    return make_output_dir(tmp_path / "model")


def test_evaluate_reports_the_dynamic_figure_beside_the_static_one(model_folder, tmp_path):
    text_file = tmp_path / "held_out.txt"
    text_file.write_text(TEXT * 3, encoding="utf-8")
    argv = ("evaluate", str(model_folder), "--text_file", str(text_file), "--output_file")
    assert hf_charrnn_in_process(*argv, str(tmp_path / "static.json")).returncode == 0
    done = hf_charrnn_in_process(*argv, str(tmp_path / "both.json"), "--dynamic_evaluation",
                                 "--dynamic_learning_rate", "0.01", "--dynamic_segment_length", "16")
    assert done.returncode == 0, done.stderr
    static = json.loads((tmp_path / "static.json").read_text())
    both = json.loads((tmp_path / "both.json").read_text())
    assert both["bpc"] == static["bpc"]  # the static figure is unchanged by the option
    dynamic = both["dynamic_evaluation"]
    assert (dynamic["learning_rate"], dynamic["segment_length"], dynamic["decay"]) == (0.01, 16, 0.0)
    model, tokenizer = load_model_and_tokenizer(str(model_folder))
    ids = [tokenizer.eos_token_id, *tokenizer(TEXT * 3, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    expected = dynamic_score_stream(model, torch.tensor(ids), DynamicEvaluation(0.01, 16))
    assert dynamic["bpc"] == pytest.approx(expected["nats"] / math.log(2) / (len(TEXT) * 3 + 1), rel=1e-9)
    assert dynamic["characters"] == static["characters"] and dynamic["bpc"] < static["bpc"]  # it read TEXT 3 times


def test_evaluate_refuses_rows_in_parallel_with_dynamic_evaluation(model_folder, tmp_path):
    text_file = tmp_path / "held_out.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    done = hf_charrnn_in_process("evaluate", str(model_folder), "--text_file", str(text_file), "--batch_size", "4",
                                 "--dynamic_evaluation")
    assert done.returncode == 2 and "one stream" in done.stderr and "Traceback" not in done.stderr


def test_score_reads_each_text_with_dynamic_evaluation_from_the_trained_weights(model_folder):
    model, tokenizer = load_model_and_tokenizer(str(model_folder))
    settings = DynamicEvaluation(learning_rate=0.01, segment_length=8)
    texts = [TEXT, TEXT[:30]]
    results = score_texts(model, tokenizer, texts, surprisal=True, dynamic=settings)
    for text, result in zip(texts, results):
        ids, _ = encode_text(tokenizer, text)
        expected = dynamic_score_stream(model, torch.tensor(ids), settings)["nats"]
        assert -result["log_probability"] == pytest.approx(expected, rel=1e-9)
        assert len(result["surprisal"]) == len(text)
    done = hf_charrnn_in_process("score", str(model_folder), "--text", TEXT, "--dynamic_evaluation",
                                 "--dynamic_learning_rate", "0.01", "--dynamic_segment_length", "8")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["log_probability"] == pytest.approx(results[0]["log_probability"], rel=1e-9)


def test_generate_continues_a_prompt_with_the_weights_adapted_to_it(model_folder, tmp_path):
    """Greedy continuation of a long prompt: the command continues as a copy of the model adapted to the prompt
    (`adapt_to`, whose steps the tests above check) and then primed with it does, which differs from the trained
    model's continuation."""
    prompt = TEXT * 2
    model, tokenizer = load_model_and_tokenizer(str(model_folder))
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    settings = DynamicEvaluation(learning_rate=0.02, segment_length=16)
    adapted = copy.deepcopy(model)
    adapt_to(adapted, ids[0], settings)
    expected = {}
    for name, which in (("static", model), ("dynamic", adapted)):
        state = prime(which, ids)
        output = which.generate(state.prompt_ids, cache=state.cache, attention_mask=torch.ones_like(ids),
                                do_sample=False, max_new_tokens=24)
        expected[name] = tokenizer.decode(output[0], skip_special_tokens=True)
    assert expected["dynamic"] != expected["static"]
    done = hf_charrnn_in_process("generate", str(model_folder), "--prompt", prompt, "--greedy", "--max_new_tokens",
                                 "24", "--no_stream", "--dynamic_evaluation", "--dynamic_learning_rate", "0.02",
                                 "--dynamic_segment_length", "16")
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip("\n") == expected["dynamic"]


@pytest.mark.parametrize("extra", [(), ("--prompt", PROMPT, "--save_state", "state.safetensors")])
def test_generate_refuses_dynamic_evaluation_without_a_prompt_of_its_own(model_folder, extra):
    done = hf_charrnn_in_process("generate", str(model_folder), "--dynamic_evaluation", *extra)
    assert done.returncode == 2 and "give a --prompt" in done.stderr and "Traceback" not in done.stderr

