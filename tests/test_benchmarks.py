"""Tests for the benchmarks (scripts/bench_train.py, scripts/bench_quality.py, scripts/bench_generate.py).

The fast tests check the pieces against hand computations (the tutorial recipe's last-character loss, its window
sampling, the timing arithmetic, the budget stop, the scoring helpers); the slow ones run both scripts end to end with
tiny models and budgets and check the JSON they print.
"""

import importlib.util
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F
from transformers import TrainerControl, TrainerState

from hf_charrnn import CharRNNConfig, CharRNNForCausalLM
from hf_charrnn.evaluation import score_stream
from hf_charrnn.tokenization_charrnn import build_char_tokenizer
from testing_utils import FakeClock

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """A benchmark script as a module. Not through sys.path: scripts/ also holds evaluate.py, which would shadow the
    `evaluate` library for every later import in the session."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # the scripts import bench_common as a sibling module
    spec.loader.exec_module(module)
    return module


bench_common, bench_tutorial, bench_recipes = (load_script(name) for name in ("bench_common", "bench_tutorial",
                                                                               "bench_recipes"))
bench_quality, bench_train = load_script("bench_quality"), load_script("bench_train")
bench_generate = load_script("bench_generate")
TutorialCharLSTM, WallClockBudget = bench_tutorial.TutorialCharLSTM, bench_recipes.WallClockBudget
carried_state_bpc, sample_windows = bench_quality.carried_state_bpc, bench_tutorial.sample_windows
tutorial_loss, tutorial_to_charrnn = bench_tutorial.tutorial_loss, bench_tutorial.tutorial_to_charrnn
validation_stream, windowed_bpc = bench_quality.validation_stream, bench_tutorial.windowed_bpc
StepTimes, random_blocks, timed_rate = bench_train.StepTimes, bench_train.random_blocks, bench_train.timed_rate


def tiny_tutorial(seed: int = 0, vocab_size: int = 7) -> TutorialCharLSTM:
    torch.manual_seed(seed)
    return TutorialCharLSTM(vocab_size, embedding_dim=3, hidden_size=5, num_layers=2)


# ----------------------------------------------------------------------------------
# The tutorial recipe
# ----------------------------------------------------------------------------------


def test_tutorial_loss_is_the_cross_entropy_of_the_last_character_only():
    model = tiny_tutorial()
    windows = torch.randint(0, 7, (4, 6), generator=torch.Generator().manual_seed(1))
    loss = tutorial_loss(model, windows)

    # By hand: run the layers over the 5 input characters, take the LAST output, and score only the 6th character.
    outputs, _ = model.lstm(model.embedding(windows[:, :5]))
    logits = model.head(outputs[:, -1])
    expected = torch.stack([torch.logsumexp(logits[i], 0) - logits[i, windows[i, 5]] for i in range(4)]).mean()
    assert torch.allclose(loss, expected, atol=1e-6)

    # Gradient of the output bias, by hand: mean over the batch of softmax(last logits) - one_hot(last character).
    # A loss over every position would add the other positions' terms to it.
    loss.backward()
    probabilities = torch.softmax(logits.detach(), dim=-1)
    expected_grad = (probabilities - F.one_hot(windows[:, 5], 7).float()).mean(0)
    assert torch.allclose(model.head.bias.grad, expected_grad, atol=1e-6)


def test_tutorial_model_predicts_one_character_per_window():
    """The model gives one prediction per window (the character after it), so the loss has one target per window."""
    model = tiny_tutorial()
    windows = torch.randint(0, 7, (3, 9), generator=torch.Generator().manual_seed(2))
    assert model(windows[:, :-1]).shape == (3, 7)
    other_last = windows.clone()
    other_last[:, -1] = (windows[:, -1] + 1) % 7
    assert not torch.allclose(tutorial_loss(model, windows), tutorial_loss(model, other_last))


def test_sample_windows_takes_contiguous_slices_starting_anywhere():
    stream = torch.arange(30)
    windows = sample_windows(stream, 2000, 10, torch.Generator().manual_seed(0))
    assert windows.shape == (2000, 11)
    assert bool((windows[:, 1:] - windows[:, :-1] == 1).all())  # contiguous
    starts = set(windows[:, 0].tolist())
    assert starts == set(range(30 - 10))  # step 1: every start whose window + target fits, and only those
    with pytest.raises(ValueError, match="too few"):
        sample_windows(torch.arange(5), 1, 10, torch.Generator())


def test_tutorial_model_copied_into_charrnn_predicts_the_same():
    model = tiny_tutorial()
    tokenizer = build_char_tokenizer(["abc"])  # 3 characters + 4 special tokens = 7
    charrnn = tutorial_to_charrnn(model, tokenizer)
    windows = torch.randint(0, 7, (4, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(windows)
        got = charrnn(input_ids=windows, use_cache=False).logits[:, -1]
    assert torch.allclose(got, expected, atol=1e-5)
    assert charrnn.config.eos_token_id == tokenizer.eos_token_id


# ----------------------------------------------------------------------------------
# Scoring helpers
# ----------------------------------------------------------------------------------


def test_windowed_bpc_scores_each_character_from_the_window_before_it():
    torch.manual_seed(0)
    model = CharRNNForCausalLM(CharRNNConfig(vocab_size=9, hidden_size=8, embedding_dim=4, num_layers=1)).eval()
    ids = torch.randint(0, 9, (40,), generator=torch.Generator().manual_seed(4))
    window, predictions = 6, 10
    nats = 0.0
    with torch.no_grad():
        for t in range(window, window + predictions):  # one zero-state forward per predicted character
            logits = model(input_ids=ids[None, t - window : t], use_cache=False).logits[0, -1]
            nats -= float(torch.log_softmax(logits, -1)[ids[t]])
    expected = nats / math.log(2) / predictions
    assert windowed_bpc(model, ids, window, predictions, batch_size=3) == pytest.approx(expected, rel=1e-5)


def test_carried_state_bpc_and_validation_cap():
    torch.manual_seed(0)
    tokenizer = build_char_tokenizer(["to be or not"])
    model = CharRNNForCausalLM(CharRNNConfig(vocab_size=len(tokenizer), hidden_size=8, embedding_dim=4,
                                             num_layers=1, eos_token_id=tokenizer.eos_token_id)).eval()
    split = [{"text": "to be or not to be"}, {"text": "not to be"}]
    ids, characters = validation_stream(split, tokenizer)
    assert characters == len("to be or not to be") + 1 + len("not to be") + 1
    capped_ids, capped_characters = validation_stream(split, tokenizer, max_chars=10)
    assert capped_ids.tolist() == ids[:11].tolist() and capped_characters == 10
    result = carried_state_bpc(model, ids, characters, batch_size=1)
    scores = score_stream(model, ids)
    assert result["bpc"] == pytest.approx(scores["nats"] / math.log(2) / characters)


# ----------------------------------------------------------------------------------
# Timing and budgets
# ----------------------------------------------------------------------------------


def test_timed_rate_excludes_the_warm_up_steps():
    times = [10.0, 11.0, 11.5, 12.0, 12.5]  # the end of each of 5 steps
    rate = timed_rate(times, warmup_steps=2, steps=3, tokens_per_step=100)
    assert rate["seconds"] == pytest.approx(1.5)  # from the end of step 2 to the end of step 5
    assert rate["chars_per_s"] == pytest.approx(300 / 1.5)
    assert rate["chars_per_s_median_step"] == pytest.approx(100 / 0.5)  # steps of 0.5, 0.5, 0.5 s
    with pytest.raises(RuntimeError, match="Only 5 steps"):
        timed_rate(times, warmup_steps=2, steps=4, tokens_per_step=100)
    with pytest.raises(ValueError, match="warmup_steps"):
        timed_rate(times, warmup_steps=0, steps=3, tokens_per_step=100)


def test_step_times_records_trainer_and_bptt_steps():
    timer = StepTimes()
    timer.on_step_end(None, None, None)
    timer({"step": 2})
    assert len(timer.times) == 2 and timer.times[0] <= timer.times[1]


def test_random_blocks_are_contiguous_slices():
    blocks = random_blocks(torch.arange(100), 16, 8, torch.Generator().manual_seed(0))
    assert blocks.shape == (16, 8) and bool((blocks[:, 1:] - blocks[:, :-1] == 1).all())


def test_wall_clock_budget_stops_training_once_spent():
    clock = FakeClock()  # (times in binary fractions: the sums are exact)
    budget = WallClockBudget(budget_seconds=1.0, clock=clock)
    state, control = TrainerState(max_steps=100), TrainerControl()
    budget.on_train_begin(None, state, control)
    clock.advance(0.75)
    state.global_step = 1
    budget.on_step_end(None, state, control)
    assert not control.should_training_stop and not budget.stopped_early
    clock.advance(0.25)  # exactly spent
    state.global_step = 2
    budget.on_step_end(None, state, control)
    assert control.should_training_stop and budget.stopped_early and budget.elapsed == 1.0
    last = WallClockBudget(1.0, clock=clock)  # at the loop's last step there is nothing left to stop
    last.on_train_begin(None, state, TrainerControl())
    clock.advance(2.0)
    state.global_step = 100
    assert not last.on_step_end(None, state, TrainerControl()).should_training_stop and not last.stopped_early


def test_the_train_benchmark_divides_by_the_mean_of_its_two_plain_runs():
    def figures(rate, median):
        return {"chars_per_s": rate, "chars_per_s_median_step": median}

    out = bench_train.ratios(first=figures(1000, 1100), second=figures(800, 900), lstm=figures(1800, 1800),
                             trainer=figures(810, 950), accelerate=figures(990, 1000))
    assert out["plain_charrnn"]["chars_per_s"] == 900.0  # (1000 + 800) / 2
    assert (out["trainer_over_plain"], out["accelerate_over_plain"]) == (0.9, 1.1)
    assert (out["trainer_over_plain_median_step"], out["accelerate_over_plain_median_step"]) == (0.95, 1.0)
    assert (out["plain_charrnn_over_plain_nn_lstm"], out["plain_drift"]) == (0.5, 0.8)


def test_the_quality_benchmark_reports_the_differences_its_targets_name():
    def scored(bpc):
        return {"bpc": bpc, "windowed_bpc": bpc + 0.125, "validation_loss": 1.0}

    out = bench_quality._with_comparisons({"recipes": {"tutorial": scored(3.0), "default": scored(2.5),
                                                       "bptt": scored(2.25)}}, window_eval_predictions=100)
    assert (out["tutorial_minus_default_bpc"], out["default_minus_bptt_bpc"]) == (0.5, 0.25)
    assert out["tutorial_minus_default_windowed_bpc"] == 0.5


# ----------------------------------------------------------------------------------
# End to end (tiny sizes)
# ----------------------------------------------------------------------------------


def run_script(name: str, *argv: str) -> dict:
    completed = subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *argv], check=False, capture_output=True, text=True, timeout=600,
        cwd=REPO,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout)  # stdout holds only the JSON (progress goes to stderr)


@pytest.mark.slow
def test_bench_train_reports_every_path_and_the_ratios():
    result = run_script(
        "bench_train.py", "--hidden_size", "16", "--embedding_dim", "8", "--batch_size", "4", "--seq_len", "16",
        "--steps", "3", "--warmup_steps", "1", "--threads", "1", "--dataset", "shakespeare:the-comedy-of-errors",
    )
    for path in ("trainer", "accelerate", "plain_charrnn", "plain_nn_lstm"):
        assert result[path]["chars_per_s"] > 0, path
    for run in ("first_run", "second_run"):
        assert result["plain_charrnn"][run]["steps"] == 3
    assert {"trainer_over_plain", "accelerate_over_plain", "plain_drift"} <= set(result)  # (ratios: tested above)
    assert result["batch_size"] == 4 and result["seq_len"] == 16 and result["threads"] == 1


@pytest.mark.slow
def test_bench_quality_trains_each_recipe_within_its_budget_and_scores_it():
    budget = 2.0
    result = run_script(
        "bench_quality.py", "--budget_seconds", str(budget), "--dataset", "shakespeare:the-comedy-of-errors",
        "--hidden_size", "16", "--embedding_dim", "8", "--batch_size", "4", "--block_size", "16",
        "--tutorial_batch_size", "8", "--window", "10", "--max_eval_chars", "1000", "--window_eval_predictions", "100",
        "--sample_length", "10", "--threads", "1",
    )
    recipes = result["recipes"]
    assert set(recipes) == {"tutorial", "default", "bptt"}
    for name, info in recipes.items():
        assert math.isfinite(info["bpc"]) and 0 < info["bpc"] < 10, name
        assert math.isfinite(info["windowed_bpc"]), name
        assert info["steps"] >= 1 and info["sample"].startswith("ROMEO:"), name
    for name in ("default", "bptt"):  # stopped by the budget, or at the plan: never past it
        assert 1 <= recipes[name]["steps"] <= recipes[name]["planned_steps"], name
    tutorial = recipes["tutorial"]
    assert tutorial["predictions_trained"] == tutorial["steps"] * 8  # one target per window: the last character
    assert tutorial["hyperparameters"]["loss"] == "last character only"
    assert result["scoring"]["validation_characters"] == 1000
    assert {"tutorial_minus_default_bpc", "default_minus_bptt_bpc"} <= set(result)  # (the differences: tested above)
    assert result["calibration"]["planned_steps"] == recipes["default"]["planned_steps"] == recipes["bptt"][
        "planned_steps"]


def test_the_fused_step_limit_samples_what_a_stateful_nn_lstm_samples():
    """Same weights, same seed, the same multinomial draws: the limit bench_generate measures does the same work."""
    torch.manual_seed(0)
    model = CharRNNForCausalLM(CharRNNConfig(vocab_size=30, hidden_size=24, num_layers=2, eos_token_id=None)).eval()
    modules, prompt = bench_generate.plain_torch_copy(model), torch.randint(4, 30, (1, 12))
    torch.manual_seed(1)
    expected = bench_generate.sample_stateful_nn_lstm(modules, prompt, 60)
    torch.manual_seed(1)
    assert torch.equal(bench_generate.sample_fused_step_limit(modules, prompt, 60), expected)


def test_the_generation_benchmark_reports_every_ratio():
    results = bench_generate.run_generation_benchmark(lengths=(10, 20), hidden_size=16, repeats=3, window=8)
    figures = results["lengths"]["20"]
    per_round = figures.pop("generate_vs_fused_step_limit_per_round")
    assert {"generate_vs_stateful_nn_lstm", "generate_vs_rerun_window", "generate_vs_fused_step_limit"} <= set(figures)
    assert all(value > 0 for value in figures.values())
    assert len(per_round) == 3 and figures["generate_vs_fused_step_limit"] == statistics.median(per_round)


def test_speed_ratios_pair_the_runs_of_each_round():
    """A slow spell in round 2 slows both samplers; pairing by round cancels it where best over best would not."""
    seconds = {"generate": [1.0, 2.0, 1.2], "limit": [0.8, 1.6, 0.6]}
    assert bench_generate.round_speed_ratios(seconds, "generate", "limit") == pytest.approx([0.8, 0.8, 0.5])
    assert bench_generate.paired_speed_ratio(seconds, "generate", "limit") == pytest.approx(0.8)  # best over best: 0.6


def test_bench_data_writes_the_corpus_it_says_and_times_both_encodings(tmp_path):
    bench_data = load_script("bench_data")
    corpus = tmp_path / "corpus.txt"
    bench_data.write_corpus(corpus, 0.3)
    text = corpus.read_text(encoding="utf-8")
    assert corpus.stat().st_size == 300_000 and len(set(text)) == 34  # 26 letters, 6 marks, space, newline
    speeds = bench_data.encoding_speeds(corpus, 0.3)["mb_per_s"]
    assert set(speeds) == {"tokenizers batch encoding", "code-point lookup table"}
    assert all(speed > 0 for speed in speeds.values())


@pytest.mark.slow
def test_bench_data_measures_a_cold_and_a_cached_run(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_data.py"), "--sizes_mb", "0.5",
                             "--commands", "train-accelerate", "--work_dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)["sizes"]["0.5 MB"]["train-accelerate"]
    assert figures["cold"]["exit_code"] == figures["warm"]["exit_code"] == 0
    assert 0 < figures["warm"]["first_step_seconds"] <= figures["warm"]["seconds"]
    assert 0.1 < figures["cold"]["peak_rss_gb"] < 3


@pytest.mark.slow
def test_bench_explain_measures_the_page_against_plain_text():
    result = run_script("bench_explain.py", "--characters", "3000", "--hidden_size", "16", "--runs", "1")
    assert result["characters"] == 3000 and result["page_mb"] > 0
    if "browser" in result:  # no Chromium here: said, not measured
        assert result["browser"].startswith("skipped: no Chromium")
        pytest.skip("no Chromium here (make browser installs it): the page's load and switch times were not measured")
    assert result["load_ratio_to_plain_text"] == pytest.approx(
        result["page_load_s"] / result["plain_text_load_s"], rel=0.02, abs=0.01)
    assert result["switch_unit_s"] > 0 and result["switch_layer_s"] > 0


def test_prompt_lookup_drafts_what_transformers_candidate_generator_drafts():
    """bench_assisted_decoding's drafts against transformers' own PromptLookupCandidateGenerator, on random token
    sequences from a small alphabet (many repeated n-grams)."""
    from transformers.generation.candidate_generator import PromptLookupCandidateGenerator

    bench = load_script("bench_assisted_decoding")
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        tokens = torch.randint(0, 4, (1, int(torch.randint(2, 30, (1,), generator=generator))), generator=generator)
        candidates = PromptLookupCandidateGenerator(num_output_tokens=5, max_matching_ngram_size=2, max_length=1000)
        drafted, _ = candidates.get_candidates(tokens)
        assert bench.find_drafts(tokens[0].tolist(), ngram=2, count=5) == drafted[0, tokens.shape[1]:].tolist()


def test_prompt_lookup_with_rewinds_decodes_exactly_what_greedy_generate_does():
    bench = load_script("bench_assisted_decoding")
    torch.manual_seed(0)
    model = CharRNNForCausalLM(CharRNNConfig(vocab_size=6, hidden_size=16, embedding_dim=4, num_layers=2,
                                             pad_token_id=None, eos_token_id=None, bos_token_id=None,
                                             unk_token_id=None)).eval()
    prompt = torch.tensor([[0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 4, 0, 1]])
    rounds, rewinds = [], []
    expected = bench.with_generate(model, prompt, 40)
    assert bench.with_prompt_lookup(model, prompt, 40, ngram=2, draft_tokens=4, rounds=rounds,
                                    rewinds=rewinds) == expected
    assert bench.with_plain_loop(model, prompt, 40) == expected
    assert rounds and len(rewinds) == sum(accepted < drafted for drafted, accepted in rounds)


@pytest.mark.parametrize("length", [2, 40, 65, 66, 97, 130])
def test_the_reference_transformer_scores_each_character_once_from_its_window(length):
    """bench_small_corpus's windowed scoring against scoring each character alone from the context the module
    docstring states: everything before it in the first window, then 32 to 63 characters."""
    load_script("bench_budget")  # bench_small_corpus imports it as a sibling module
    bench = load_script("bench_small_corpus")
    torch.manual_seed(0)
    model = bench.reference_model(vocab_size=7).eval()
    ids = torch.randint(0, 7, (length,))
    expected = []
    with torch.no_grad():
        for target in range(1, length):
            context_start = 0 if target <= 64 else ((target - 65) // 32 + 1) * 32
            logits = model(ids[None, context_start:target]).logits[0, -1]
            expected.append(F.cross_entropy(logits[None], ids[target : target + 1]).item())
    assert bench.windowed_bpc(model, ids, window=64, stride=32) == pytest.approx(
        statistics.mean(expected) / math.log(2), rel=1e-5)
