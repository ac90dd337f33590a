"""Sized defaults for a time budget (hf_charrnn.sizing): the rule's two tests, and explicit options always winning."""

from __future__ import annotations

import pytest
from datasets import Dataset

from hf_charrnn import CharRNNConfig, CharRNNForCausalLM, sizing
from hf_charrnn.bptt_args import BPTTArguments
from hf_charrnn.bptt_budget import size_bptt_run
from hf_charrnn.sizing import (
    CANDIDATES,
    MANY_PASSES,
    PARAMETERS_PER_CHARACTER,
    SHORT_BUDGET_MINUTES,
    SIZED_WEIGHT_DECAY,
    TOKENS_PER_PARAMETER,
    TOKENS_PER_PARAMETER_OVER_MANY_PASSES,
    batch_recipe,
    characters_per_parameter_needed,
    choose_model_size,
    dropout_for_passes,
    size_for_budget,
    weight_decay_for_passes,
)
from hf_charrnn.time_budget import TimeBudget
from hf_charrnn.trainer_budget import size_trainer_run
from hf_charrnn.training_args import CharRNNTrainingArguments, DataArguments, ModelArguments


def parameters(shape, vocab_size=60) -> int:
    layers, hidden, embedding = shape
    model = CharRNNForCausalLM(CharRNNConfig(vocab_size=vocab_size, hidden_size=hidden, num_layers=layers,
                                             embedding_dim=embedding))
    return sum(p.numel() for p in model.parameters())


def test_short_budgets_take_small_fast_batches():
    assert batch_recipe(10) == {"batch_size": 16, "learning_rate": 8e-3}
    assert batch_recipe(SHORT_BUDGET_MINUTES + 1) == {"batch_size": 64, "learning_rate": 2e-3}


def test_rows_that_carry_their_state_take_the_same_tokens_as_more_shorter_rows():
    """The stateful-BPTT path's short-budget batch: 2,048 tokens a step like the Trainer path's 16 x 128, as 64 rows
    of 32; over an hour, the command's defaults (64 rows of 128)."""
    short, trainer = batch_recipe(10, carried_state=True), batch_recipe(10)
    assert short == {"batch_size": 64, "block_size": 32, "learning_rate": 8e-3}
    assert short["batch_size"] * short["block_size"] == trainer["batch_size"] * 128
    assert batch_recipe(SHORT_BUDGET_MINUTES + 1, carried_state=True) == {
        "batch_size": 64, "block_size": 128, "learning_rate": 2e-3}


def test_a_tiny_budget_takes_the_smallest_model():
    shape, reason, _ = choose_model_size(60, 10**9, step_seconds_available=0.01, batch_size=4, block_size=8)
    assert shape == CANDIDATES[0] and "smallest" in reason


def test_the_corpus_size_caps_the_model():
    """With all the time in the world, the largest model with no more than PARAMETERS_PER_CHARACTER parameters per
    character of the corpus; the passes it plans are the characters it sees over the corpus's."""
    characters = parameters(CANDIDATES[3]) // PARAMETERS_PER_CHARACTER + 1
    shape, reason, passes = choose_model_size(60, characters, step_seconds_available=1e9, batch_size=2, block_size=4)
    assert shape == CANDIDATES[3], reason
    assert parameters(CANDIDATES[4]) > PARAMETERS_PER_CHARACTER * characters
    assert f"the corpus has {characters / 1e6:.1f} M" in reason and passes > 1e4


def test_the_characters_seen_cap_the_model(monkeypatch):
    """The largest candidate that sees TOKENS_PER_PARAMETER characters per parameter is taken; just short of that,
    the one before it (steps timed by a model whose time grows with the parameters, so the figures are known)."""
    monkeypatch.setattr(sizing, "training_step_seconds",
                        lambda model, *args, **kwargs: 1e-8 * sizing._parameters(model))
    second = parameters(CANDIDATES[2])
    enough = TOKENS_PER_PARAMETER * second * 1e-8 * second / (8 * 32)  # CANDIDATES[2] sees exactly 8 per parameter
    shape, reason, _ = choose_model_size(60, 10**9, enough * 1.01, batch_size=8, block_size=32)
    assert shape == CANDIDATES[2], reason  # (CANDIDATES[3], with about twice the parameters, would see about 2)
    shape, reason, _ = choose_model_size(60, 10**9, enough * 0.99, batch_size=8, block_size=32)
    assert shape == CANDIDATES[1], reason


def test_over_many_passes_fewer_characters_per_parameter_will_do(monkeypatch):
    """A model that would go over a small text MANY_PASSES times or more needs only
    TOKENS_PER_PARAMETER_OVER_MANY_PASSES characters per parameter: with steps whose time grows with the parameters
    (a timing model, so that the candidates' figures are known), the candidate that sees 5 per parameter is taken
    over a 1 M-character text (about 10 passes), not over a large one (a fraction of a pass)."""
    assert characters_per_parameter_needed(MANY_PASSES) == TOKENS_PER_PARAMETER_OVER_MANY_PASSES
    assert characters_per_parameter_needed(MANY_PASSES - 0.01) == TOKENS_PER_PARAMETER
    assert TOKENS_PER_PARAMETER_OVER_MANY_PASSES < 5 < TOKENS_PER_PARAMETER
    monkeypatch.setattr(sizing, "training_step_seconds",
                        lambda model, *args, **kwargs: 1e-8 * sizing._parameters(model))
    third = parameters(CANDIDATES[3])
    seconds = 5 * third * 1e-8 * third / (8 * 32)  # the third candidate sees 5 characters per parameter
    small, reason, passes = choose_model_size(60, 10**6, seconds, batch_size=8, block_size=32)
    assert small == CANDIDATES[3] and MANY_PASSES <= passes, reason
    large, reason, _ = choose_model_size(60, 10**9, seconds, batch_size=8, block_size=32)
    assert large == CANDIDATES[2], reason


def test_a_model_seeing_its_text_7_times_at_3_5_characters_per_parameter_is_taken(monkeypatch):
    """The thresholds' margin (6 passes, 3 per parameter): a 1 MB file's 2x384 sat at 9.4-9.8 passes and 4.0-4.3
    characters per parameter on a 2-core AMD EPYC, so a step timed a little slower dropped it under the first
    thresholds (8 passes, 4) to a 2x256; a candidate at about 7 passes and 3.5 per parameter is still taken."""
    monkeypatch.setattr(sizing, "training_step_seconds",
                        lambda model, *args, **kwargs: 1e-8 * sizing._parameters(model))
    third = parameters(CANDIDATES[3])
    seconds = 3.5 * third * 1e-8 * third / (8 * 32)  # the third candidate sees 3.5 characters per parameter
    shape, reason, passes = choose_model_size(60, 10**6, seconds, batch_size=8, block_size=32)
    assert shape == CANDIDATES[3] and 6 < passes < 8, reason


def test_given_options_win():
    sized = size_for_budget(10, 600, ModelArguments(hidden_size=64), 32, 1e-3, 60, 10**6, 64)
    assert (sized.hidden_size, sized.batch_size, sized.learning_rate) == (None, None, None)
    assert sized.reason == "the model size was given"
    sized = size_for_budget(10, 600, ModelArguments(model_name_or_path="some/model"), None, None, 60, 10**6, 64)
    assert sized.hidden_size is None and sized.reason == "fine-tuning keeps the model's shape"
    assert (sized.batch_size, sized.learning_rate, sized.block_size) == (16, 8e-3, None)
    stream = size_for_budget(10, 600, ModelArguments(hidden_size=64), None, None, 60, 10**6, None, carried_state=True)
    assert (stream.batch_size, stream.block_size, stream.learning_rate) == (64, 32, 8e-3)
    given = size_for_budget(10, 600, ModelArguments(hidden_size=64), None, None, 60, 10**6, 100, carried_state=True)
    assert (given.batch_size, given.block_size) == (64, None)  # a given truncation length is kept


def test_a_sized_stream_model_is_timed_on_the_stream_batch(monkeypatch):
    """The model size is chosen from steps timed on the batch the run will train on: 64 rows of 32 on the stream."""
    timed, timing = [], sizing.training_step_seconds
    monkeypatch.setattr(sizing, "training_step_seconds",  # the real timing, watched
                        lambda model, rows, length, **kwargs: timed.append((rows, length)) or timing(model, rows,
                                                                                                  length, **kwargs))
    sized = size_for_budget(10, 600, ModelArguments(), None, None, 60, 10**6, None, carried_state=True)
    assert set(timed) == {(64, 32)} and sized.hidden_size is not None


@pytest.mark.parametrize("arguments, batch_name", [(CharRNNTrainingArguments, "per_device_train_batch_size"),
                                                   (BPTTArguments, "batch_size")])
def test_unset_batch_learning_rate_and_weight_decay_are_known_and_take_the_defaults(tmp_path, arguments, batch_name):
    unset = arguments(output_dir=str(tmp_path))
    assert unset.unset_options - {"block_size"} == {batch_name, "learning_rate", "weight_decay"}
    assert (getattr(unset, batch_name), unset.learning_rate, unset.weight_decay) == (64, 2e-3, 0.0)
    given = arguments(output_dir=str(tmp_path), **{batch_name: 64, "weight_decay": 0.0})
    assert given.unset_options - {"block_size"} == {"learning_rate"}


def test_the_stream_truncation_length_is_known_when_unset(tmp_path):
    """train-accelerate's --block_size: 128 when unset (sized by a budget); given, or through its old name, kept."""
    unset = BPTTArguments(output_dir=str(tmp_path))
    assert "block_size" in unset.unset_options and unset.block_size == 128
    given = BPTTArguments(output_dir=str(tmp_path), block_size=128)
    assert "block_size" not in given.unset_options and given.block_size == 128
    with pytest.warns(FutureWarning, match="--bptt_length is now --block_size"):
        old_name = BPTTArguments(output_dir=str(tmp_path), bptt_length=50)
    assert "block_size" not in old_name.unset_options and old_name.block_size == 50


@pytest.mark.parametrize("given, carried_state, expected", [
    ({}, True, (64, 32, 8e-3)),  # the stream's rows and truncation length
    ({"block_size": 100}, True, (64, 100, 8e-3)),  # a given length is kept
    ({"batch_size": 16}, True, (16, 128, 8e-3)),  # given rows keep the default length: the two are one recipe
    ({}, False, (16, 128, 8e-3)),  # records: no state carried, the Trainer path's batch, their own length
])
def test_a_budgeted_bptt_run_sizes_its_rows_and_their_length_together(tmp_path, given, carried_state, expected):
    args = BPTTArguments(output_dir=str(tmp_path), **given)
    model_args = ModelArguments(hidden_size=64)  # the shape given: no model timed
    sized_args, _, sized = size_bptt_run(TimeBudget(10), args, model_args, None, range(60),
                                         Dataset.from_dict({"text": ["To be, or not to be"] * 10}), None,
                                         carried_state=carried_state)
    assert (sized_args.batch_size, sized_args.block_size, sized_args.learning_rate) == expected
    assert sized.reason == "the model size was given"


@pytest.mark.parametrize("passes, dropout", [(1, 0.0), (5, 0.0), (10, 0.15), (20, 0.3), (40, 0.45), (15, 0.24),
                                             (54, 0.5), (10**4, 0.5)])
def test_dropout_grows_by_015_per_doubling_of_the_passes_beyond_five(passes, dropout):
    assert dropout_for_passes(passes) == dropout


def test_a_sized_model_gets_the_dropout_of_its_passes_and_a_given_dropout_stays():
    sized = size_for_budget(10, 600, ModelArguments(), None, None, 60, 10**4, 64)
    assert sized.dropout == dropout_for_passes(sized.passes) and sized.passes > 2
    assert sized.model_arguments(ModelArguments()).dropout == sized.dropout
    assert f"dropout {sized.dropout:g} for {sized.passes:.0f} passes" in sized.reason
    given = size_for_budget(10, 600, ModelArguments(dropout=0.05), None, None, 60, 10**4, 64)
    assert given.dropout is None and given.model_arguments(ModelArguments(dropout=0.05)).dropout == 0.05


@pytest.mark.parametrize("passes, weight_decay", [(1, 0.0), (MANY_PASSES - 0.01, 0.0), (MANY_PASSES, SIZED_WEIGHT_DECAY),
                                                  (40, 0.05)])
def test_weight_decay_comes_over_many_passes(passes, weight_decay):
    assert weight_decay_for_passes(passes) == weight_decay


@pytest.mark.parametrize("given, expected", [({}, SIZED_WEIGHT_DECAY), ({"weight_decay": 0.01}, 0.01),
                                             ({"weight_decay": 0.0}, 0.0)])
def test_both_paths_train_with_the_sized_weight_decay_unless_one_is_given(tmp_path, given, expected):
    """A small text (many passes): the sized weight decay reaches the arguments each path builds its optimizer from
    (TrainingArguments for the Trainer, BPTTArguments for train_bptt); a given one, zero included, is kept."""
    texts = Dataset.from_dict({"text": ["To be, or not to be, that is the question."] * 40})
    args, _, sized = size_bptt_run(TimeBudget(10), BPTTArguments(output_dir=str(tmp_path), **given), ModelArguments(),
                                   None, range(60), texts, None)
    assert sized.passes >= MANY_PASSES and args.weight_decay == expected
    assert sized.weight_decay == (None if given else SIZED_WEIGHT_DECAY)
    training_args = CharRNNTrainingArguments(output_dir=str(tmp_path), **given)
    size_trainer_run(TimeBudget(10), ModelArguments(), training_args, range(60), [0] * 30,
                     DataArguments(block_size=64), None)
    assert training_args.weight_decay == expected
