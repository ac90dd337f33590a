"""The stateful truncated-BPTT training loop (hf_charrnn.training_accelerate): the state carried, exact resume,
failures. The command, text files and two processes are in test_training_accelerate_cli.py."""

import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch
from datasets import DatasetDict
from torch.nn import functional as F

from hf_charrnn import CharRNNCache, CharRNNForCausalLM
from hf_charrnn.bptt_stream import StreamRows
from hf_charrnn.data import batchify, tokenize_stream
from hf_charrnn.trainer_utils import (
    TrainingDivergedError,
    TrainingInterrupted,
    TrainingSetupError,
)
from hf_charrnn.checkpoints import BPTT_STATE_FILE, complete_checkpoints, resolve_checkpoint
from hf_charrnn.bptt_args import BPTTArguments
from hf_charrnn.precision import bf16_kernels_work
from hf_charrnn.training_accelerate import train_bptt
from hf_charrnn.training_args import CorpusArguments, ModelArguments
from testing_utils import (
    BPTT_TOKENIZER as TOKENIZER,
    assert_same_weights,
    bptt_corpus as corpus,
    bptt_model,
    bptt_options as quiet,
    run_bptt as run,
    weights_of,
)



# ----------------------------------------------------------------------------------------------------------------------
# The loop itself
# ----------------------------------------------------------------------------------------------------------------------


def classic_blocks(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Block k of char-rnn's fixed layout of the test corpus in 4 rows of 16 tokens, by hand."""
    rows = batchify(tokenize_stream(corpus()["train"], TOKENIZER), 4)
    return rows[:, k * 16 : (k + 1) * 16], rows[:, k * 16 + 1 : (k + 1) * 16 + 1]


def shuffled_blocks(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Block k of the first epoch in chunks of 2 blocks (the layout StreamRows' own tests check)."""
    rows = StreamRows(tokenize_stream(corpus()["train"], TOKENIZER), 4, 16, chunk_blocks=2, seed=42)
    return rows.block(0, k, slice(None))


@pytest.mark.parametrize("chunk_blocks, blocks", [(0, classic_blocks), (2, shuffled_blocks)])
def test_state_is_carried_and_detached_between_batches(tmp_path, chunk_blocks, blocks):
    """Each step's loss equals a hand-written stateful-BPTT loop (state carried, detached) over the stream's blocks,
    and differs from a loop that restarts every batch from zeros."""
    steps = 8
    recorded = []
    run(tmp_path / "run", model=bptt_model(dropout=0.0), max_steps=steps, lr_scheduler_type="constant",
        max_grad_norm=1.0, save_steps=0, stream_chunk_blocks=chunk_blocks,
        callback=lambda info: recorded.append(info["loss"]))

    def manual(carry: bool) -> list[float]:
        model = bptt_model(dropout=0.0).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
        cache, losses = CharRNNCache.zeros(model.config, 4), []
        for k in range(steps):
            x, y = blocks(k)
            if not carry:
                cache = CharRNNCache.zeros(model.config, 4)
            out = model(input_ids=x, cache=cache, use_cache=True)
            loss = F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]), y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            cache = out.cache.detach()
            losses.append(loss.item())
        return losses

    carried = manual(carry=True)
    assert recorded == pytest.approx(carried, abs=1e-6)
    reset = manual(carry=False)
    assert recorded[0] == pytest.approx(reset[0], abs=1e-6)  # the first batch starts from zeros either way
    assert max(abs(a - b) for a, b in zip(recorded[1:], reset[1:])) > 1e-4


def test_outputs_summary_and_loadable_model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "run"
    run(out, max_steps=6, eval_steps=3, save_steps=3, sample_every_steps=3, report_to="tensorboard")
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                 "training_summary.json", "loss_curve.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "training_summary.json").read_text())
    assert saved["training_path"] == "accelerate_bptt"
    assert saved["tokenizer"] == "char"
    assert saved["steps"] == 6
    assert set(saved["validation"]) == {"loss", "bpc", "perplexity"}
    assert "test" in saved
    assert saved["hyperparameters"]["block_size"] == 16
    assert saved["samples"] and saved["samples"][0]["text"]
    assert list(out.glob("runs/**/events.out.tfevents.*"))
    assert [p.name for p in complete_checkpoints(out, BPTT_STATE_FILE)] == ["checkpoint-3", "checkpoint-6"]
    history = json.loads((out / "log_history.json").read_text())
    assert [e["step"] for e in history if "eval_loss" in e] == [3, 6]
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.vocab_size == len(tokenizer)
    # Char tokenizer: bpc = loss / ln 2 (every token, <eos> included, is one character).
    assert saved["validation"]["bpc"] == pytest.approx(saved["validation"]["loss"] / 0.6931471805599453, rel=1e-9)


def test_validation_numbers_equal_evaluate_dataset(tmp_path):
    """The loop's final validation score is hf_charrnn.evaluation's, on the saved model."""
    from hf_charrnn.evaluation import evaluate_dataset

    out = tmp_path / "run"
    summary = run(out, max_steps=3, save_steps=0, eval_batch_size=1)
    model = CharRNNForCausalLM.from_pretrained(out)
    expected = evaluate_dataset(model, TOKENIZER, corpus()["validation"], batch_size=1)
    assert summary["validation"]["loss"] == pytest.approx(expected["loss"], abs=1e-6)
    assert summary["validation"]["bpc"] == pytest.approx(expected["bpc"], abs=1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# Exact resume
# ----------------------------------------------------------------------------------------------------------------------


def test_resume_after_max_steps_is_exact(tmp_path):
    """N steps, then resume to 2N: the same weights and validation loss as 2N steps in one go (bitwise on CPU)."""
    options = dict(lr_scheduler_type="constant", gradient_accumulation_steps=2, save_steps=100)
    full = run(tmp_path / "full", max_steps=20, **options)
    first = run(tmp_path / "parts", max_steps=10, **options)
    assert first["checkpoint"].endswith("checkpoint-10")
    resumed = run(tmp_path / "parts", max_steps=20, resume_from_checkpoint="latest", **options)
    assert_same_weights(tmp_path / "full", tmp_path / "parts")
    assert resumed["validation"]["loss"] == full["validation"]["loss"]
    assert resumed["train_loss"] == full["train_loss"]


def test_a_resumed_run_keeps_the_precision_its_checkpoint_was_trained_in(tmp_path, monkeypatch):
    """Left to choose (--mixed_precision auto), a resumed session takes the checkpoint's precision instead of measuring
    again: on a machine where bf16 and fp32 are close the measurement can go either way, and the run would not
    continue exactly. Where this CPU has bf16 kernels the record is flipped, so keeping it shows; on every CPU the
    resumed session must not measure."""
    bf16_here = bf16_kernels_work("cpu", bptt_model().config.cell_type)
    first = run(tmp_path / "run", max_steps=2, save_steps=2, mixed_precision="auto")
    saved = json.loads((Path(first["checkpoint"]) / BPTT_STATE_FILE).read_text())
    assert saved["mixed_precision"] == first["precision"]["mixed_precision"]
    flipped = "no" if saved["mixed_precision"] == "bf16" else "bf16"  # as if measured otherwise
    saved["mixed_precision"] = flipped if bf16_here else "no"
    (Path(first["checkpoint"]) / BPTT_STATE_FILE).write_text(json.dumps(saved))
    monkeypatch.setattr("hf_charrnn.training_accelerate.resolve_mixed_precision",
                        lambda *args, **kwargs: pytest.fail("the resumed session measured its precision again"))
    resumed = run(tmp_path / "run", max_steps=4, save_steps=2, resume_from_checkpoint="latest", mixed_precision="auto")
    assert resumed["precision"]["mixed_precision"] == saved["mixed_precision"]
    assert "checkpoint-2 was trained in (a resumed run keeps it)" in resumed["precision"]["reason"]


@pytest.mark.parametrize("regularizers", [{}, dict(embedding_dropout=0.1, weight_dropout=0.3, variational_dropout=True)],
                         ids=["dropout", "awd"])
def test_ctrl_c_saves_a_checkpoint_and_resume_is_exact(tmp_path, regularizers):
    """SIGINT mid-epoch (cosine schedule, dropout (and AWD-LSTM's regularizers), accumulation, several epochs): a
    checkpoint is saved, the run raises TrainingInterrupted, and resuming ends bitwise equal to an uninterrupted run."""
    options = dict(max_steps=40, gradient_accumulation_steps=2, save_steps=100, eval_steps=10, sample_every_steps=15)
    full = run(tmp_path / "full", model=bptt_model(**regularizers), **options)
    assert full["epochs"] > 2  # the resume crosses epoch boundaries (state reset at each epoch start)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    def interrupt(info):
        if info["step"] == 7:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match="step 7") as stopped:
        run(tmp_path / "parts", model=bptt_model(**regularizers), callback=interrupt, **options)
    assert stopped.value.exit_code == 130
    assert Path(stopped.value.checkpoint).name == "checkpoint-7"
    assert not (tmp_path / "parts" / "model.safetensors").exists()
    state = json.loads((tmp_path / "parts" / "checkpoint-7" / "bptt_state.json").read_text())
    assert state["state"]["step"] == 7 and state["state"]["block"] > 0
    assert (tmp_path / "parts" / "checkpoint-7" / "rnn_state.pt").is_file()
    # The handlers from before the run are back after it.
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers

    resumed = run(tmp_path / "parts", model=bptt_model(**regularizers), **options)  # finds checkpoint-7 by itself
    assert_same_weights(tmp_path / "full", tmp_path / "parts")
    assert resumed["validation"] == full["validation"]
    history = json.loads((tmp_path / "parts" / "log_history.json").read_text())
    assert history == json.loads((tmp_path / "full" / "log_history.json").read_text())


def test_the_best_evaluation_s_weights_are_kept_and_the_summary_names_its_step(tmp_path):
    """Weights spoiled after the step-4 evaluation: the run ends with step 4's weights (saved, and scored again in
    the summary exactly as the evaluation at step 4 scored them), names that step and gives the last step's figures;
    the folder that held them while the run went on is gone."""
    model = bptt_model(dropout=0.0)

    def spoil(info):
        if info["step"] == 5:
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.add_(torch.randn_like(parameter) * 3)

    summary = run(tmp_path / "run", model=model, callback=spoil, max_steps=6, eval_steps=2, save_steps=2)
    history = {entry["step"]: entry for entry in json.loads((tmp_path / "run" / "log_history.json").read_text())
               if "eval_bpc" in entry}
    assert sorted(history) == [2, 4, 6] and history[4]["eval_bpc"] < min(history[2]["eval_bpc"], history[6]["eval_bpc"])
    assert summary["kept_step"] == 4
    assert summary["validation"]["bpc"] == history[4]["eval_bpc"]
    assert summary["last_step_validation"]["bpc"] == history[6]["eval_bpc"]
    saved = weights_of(tmp_path / "run")
    assert all(torch.equal(saved[name], value) for name, value in model.state_dict().items() if name in saved)
    assert not (tmp_path / "run" / "best-model").exists()


def test_a_run_whose_last_step_is_best_keeps_it(tmp_path):
    summary = run(tmp_path / "run", max_steps=6, eval_steps=2, save_steps=2, learning_rate=1e-3)
    assert summary["kept_step"] == 6 and "last_step_validation" not in summary


def test_overwrite_output_dir_starts_over(tmp_path):
    run(tmp_path / "run", max_steps=4, save_steps=2)
    summary = train_bptt(
        None, None, CorpusArguments(overwrite_output_dir=True), model=bptt_model(), tokenizer=TOKENIZER,
        dataset=corpus(), **quiet(output_dir=str(tmp_path / "run"), max_steps=2, save_steps=2),
    )
    assert summary["steps"] == 2
    assert [p.name for p in complete_checkpoints(tmp_path / "run", BPTT_STATE_FILE)] == ["checkpoint-2"]


# ----------------------------------------------------------------------------------------------------------------------
# Failures
# ----------------------------------------------------------------------------------------------------------------------


def test_nan_loss_stops_naming_the_step_without_saving_after_it(tmp_path):
    model = bptt_model()
    calls = {"n": 0}

    def poison(module, inputs, output):
        calls["n"] += 1
        return output * float("nan") if calls["n"] >= 4 else output

    model.lm_head.register_forward_hook(poison)
    # fp32 decided (quiet()): a measurement's forward passes (of a copy of the model, hook and counter included) would
    # be counted
    with pytest.raises(TrainingDivergedError, match="step 4") as error:
        run(tmp_path / "run", model=model, max_steps=10, save_steps=2)
    assert error.value.step == 4
    assert Path(error.value.last_checkpoint).name == "checkpoint-2"
    assert [p.name for p in complete_checkpoints(tmp_path / "run", BPTT_STATE_FILE)] == ["checkpoint-2"]
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert not (tmp_path / "run" / "training_summary.json").exists()


def test_mixed_precision_is_checked_on_this_hardware(tmp_path):
    """bf16 where the recurrent kernels have it (a GRU on most CPUs); a clear error where they do not."""
    from hf_charrnn.precision import bf16_kernels_work

    for cell_type in ("gru", "lstm"):
        model = bptt_model(cell_type=cell_type)
        if bf16_kernels_work("cpu", cell_type):
            summary = run(tmp_path / cell_type, model=model, max_steps=3, save_steps=0, mixed_precision="bf16")
            assert summary["hyperparameters"]["mixed_precision"] == "bf16"
            assert math.isfinite(summary["validation"]["loss"])
        else:
            with pytest.raises(TrainingSetupError, match="bf16 does not work for lstm layers"):
                run(tmp_path / cell_type, model=model, max_steps=3, mixed_precision="bf16")


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(block_size=-1), "block_size"),
        (dict(optimizer="sgd"), "optimizer"),
        (dict(mixed_precision="fp8"), "mixed_precision"),
        (dict(max_steps=-1, num_train_epochs=0), "num_train_epochs"),
        (dict(learning_rate=0.0), "learning_rate"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        BPTTArguments(**options)


def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(TypeError, match="Unknown training option"):
        run(tmp_path / "a", max_steps=1, per_device_train_batch_size=3)  # the Trainer path's; here: batch_size
    with pytest.raises(TypeError, match="BPTTArguments"):
        train_bptt(ModelArguments())
    with pytest.raises(TrainingSetupError, match="too few for batch_size"):
        run(tmp_path / "b", max_steps=1, batch_size=64, block_size=512)
    with pytest.raises(TrainingSetupError, match="no complete checkpoint"):
        run(tmp_path / "c", max_steps=1, resume_from_checkpoint="latest")
    with pytest.raises(TrainingSetupError, match="not a complete checkpoint"):
        run(tmp_path / "d", max_steps=1, resume_from_checkpoint=str(tmp_path))
    with pytest.raises(TrainingSetupError, match="vocab_size"):
        run(tmp_path / "e", model=bptt_model(vocab_size=5), max_steps=1)
    with pytest.raises(TrainingSetupError, match="lr_scheduler_type"):
        run(tmp_path / "f", max_steps=1, lr_scheduler_type="zigzag")
    no_validation = DatasetDict({"train": corpus()["train"]})
    with pytest.raises(TrainingSetupError, match="validation"):
        train_bptt(model=bptt_model(), tokenizer=TOKENIZER, dataset=no_validation, **quiet(output_dir=str(tmp_path)))


def test_resume_with_another_layout_is_refused(tmp_path):
    run(tmp_path / "run", max_steps=2, save_steps=2)
    with pytest.raises(TrainingSetupError, match="(?s)holds another run.*block_size: 16 -> 8.*--overwrite_output_dir"):
        run(tmp_path / "run", max_steps=2, block_size=8)
    with pytest.raises(TrainingSetupError, match="(?s)block_size: 16 -> 8"):  # an explicit resume may only lengthen
        run(tmp_path / "run", max_steps=4, block_size=8, resume_from_checkpoint="latest")
    with pytest.raises(TrainingSetupError, match="block_size=16 \\(now 8\\)"):  # another folder's checkpoint
        other_checkpoint = str(tmp_path / "run" / "checkpoint-2")
        run(tmp_path / "other", max_steps=4, block_size=8, resume_from_checkpoint=other_checkpoint)
    with pytest.raises(TrainingSetupError, match="stream_chunk_blocks=32 \\(now 0\\)"):  # the epochs' order differs
        run(tmp_path / "run", max_steps=4, stream_chunk_blocks=0, resume_from_checkpoint="latest")
    with pytest.raises(TrainingSetupError, match="seed=42 \\(now 7\\)"):  # so does the chunks' order
        train_bptt(model=bptt_model(), tokenizer=TOKENIZER, dataset=corpus(),
                   **quiet(output_dir=str(tmp_path / "other-seed"), max_steps=4, seed=7,
                           resume_from_checkpoint=other_checkpoint))
    assert resolve_checkpoint("latest", tmp_path / "run", BPTT_STATE_FILE).name == "checkpoint-2"


def test_a_run_from_before_the_chunked_layout_continues_with_its_own_options(tmp_path):
    """A run of an earlier version (one fixed layout, clipping at 5, no warm-up: no stream_chunk_blocks in its
    checkpoint) is not continued with today's defaults, and is with the options the README names."""
    earlier = dict(stream_chunk_blocks=0, warmup_ratio=0.0, max_grad_norm=5.0)
    first = run(tmp_path / "run", max_steps=2, save_steps=2, **earlier)
    state_file = Path(first["checkpoint"]) / BPTT_STATE_FILE
    saved = json.loads(state_file.read_text())
    del saved["layout"]["stream_chunk_blocks"]
    state_file.write_text(json.dumps(saved))
    with pytest.raises(TrainingSetupError, match="(?s)max_grad_norm: 5.0 -> 1.0.*warmup_ratio: 0.0 -> 0.02"):
        run(tmp_path / "run", max_steps=4, resume_from_checkpoint="latest")
    assert run(tmp_path / "run", max_steps=4, resume_from_checkpoint="latest", **earlier)["steps"] == 4
