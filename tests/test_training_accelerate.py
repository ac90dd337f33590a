"""Tests for the stateful truncated-BPTT training loop (hf_charrnn.training_accelerate)."""

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict
from safetensors.torch import load_file
from torch.nn import functional as F
from transformers import TrainerCallback

from hf_charrnn import CharRNNCache, CharRNNConfig, CharRNNForCausalLM
from hf_charrnn.cli.train_accelerate import main
from hf_charrnn.bptt_stream import StreamRows
from hf_charrnn.data import batchify, tokenize_stream
from hf_charrnn.tokenization_charrnn import build_char_tokenizer
from hf_charrnn.trainer_utils import (
    TrainingDivergedError,
    TrainingInterrupted,
    TrainingSetupError,
    validation_note,
)
from hf_charrnn.checkpoints import BPTT_STATE_FILE, complete_checkpoints, resolve_checkpoint
from hf_charrnn.bptt_args import BPTTArguments
from hf_charrnn.precision import bf16_kernels_work
from hf_charrnn.training_accelerate import train_bptt
from hf_charrnn.training_args import CorpusArguments, ModelArguments

REPO = Path(__file__).resolve().parents[1]

TEXT = (
    "FIRST CITIZEN:\nBefore we proceed any further, hear me speak.\n\n"
    "ALL:\nSpeak, speak.\n\n"
    "FIRST CITIZEN:\nYou are all resolved rather to die than to famish?\n\n"
    "ALL:\nResolved. resolved.\n\n"
)


def corpus() -> DatasetDict:
    """A small in-memory corpus: several documents, so the stream has <eos> separators."""
    train = [TEXT * 3, TEXT.upper() * 2, TEXT[::-1] * 2]
    return DatasetDict(
        {
            "train": Dataset.from_dict({"text": train}),
            "validation": Dataset.from_dict({"text": [TEXT[40:400], TEXT[:200]]}),
            "test": Dataset.from_dict({"text": [TEXT[100:300]]}),
        }
    )


TOKENIZER = build_char_tokenizer([TEXT, TEXT.upper(), TEXT[::-1]])


def tiny_model(seed: int = 0, **overrides) -> CharRNNForCausalLM:
    torch.manual_seed(seed)
    options = dict(vocab_size=len(TOKENIZER), hidden_size=16, embedding_dim=8, num_layers=2, dropout=0.1)
    options.update(overrides)
    return CharRNNForCausalLM(CharRNNConfig(**options))


def quiet(**overrides) -> dict:
    """Fast, quiet options for tests: no TensorBoard, no progress bar, no samples during training; fp32 decided, not
    measured (on a CPU with bf16 instructions the measurement can go either way for a tiny model, and runs compared
    with each other or with an fp32 loop must not differ in precision)."""
    options = dict(
        batch_size=4, block_size=16, report_to="none", disable_tqdm=True, sample_every_steps=0, eval_steps=0,
        logging_steps=1, sample_length=10, eval_batch_size=2, mixed_precision="no",
    )
    options.update(overrides)
    return options


def run(output_dir, seed=0, model=None, **overrides):
    return train_bptt(
        model=model if model is not None else tiny_model(seed),
        tokenizer=TOKENIZER,
        dataset=corpus(),
        dataset_name="test corpus",
        **quiet(output_dir=str(output_dir), **overrides),
    )


def weights(folder) -> dict:
    return load_file(str(Path(folder) / "model.safetensors"))


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


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
    run(tmp_path / "run", model=tiny_model(dropout=0.0), max_steps=steps, lr_scheduler_type="constant",
        max_grad_norm=1.0, save_steps=0, stream_chunk_blocks=chunk_blocks,
        callback=lambda info: recorded.append(info["loss"]))

    def manual(carry: bool) -> list[float]:
        model = tiny_model(dropout=0.0).train()
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


def test_a_resumed_run_keeps_the_precision_its_checkpoint_was_trained_in(tmp_path):
    """Left to choose (--mixed_precision auto), a resumed session takes the checkpoint's precision instead of measuring
    again: on a machine where bf16 and fp32 are close the measurement can go either way, and the run would not
    continue exactly."""
    first = run(tmp_path / "run", max_steps=2, save_steps=2, mixed_precision="auto")
    saved = json.loads((Path(first["checkpoint"]) / BPTT_STATE_FILE).read_text())
    assert saved["mixed_precision"] == first["precision"]["mixed_precision"]
    saved["mixed_precision"] = "no" if saved["mixed_precision"] == "bf16" else "bf16"  # as if measured otherwise
    (Path(first["checkpoint"]) / BPTT_STATE_FILE).write_text(json.dumps(saved))
    if saved["mixed_precision"] == "bf16" and not bf16_kernels_work("cpu", tiny_model().config.cell_type):
        pytest.skip("no bf16 kernels here for the model's cell to resume into")
    resumed = run(tmp_path / "run", max_steps=4, save_steps=2, resume_from_checkpoint="latest", mixed_precision="auto")
    assert resumed["precision"]["mixed_precision"] == saved["mixed_precision"]
    assert "checkpoint-2 was trained in (a resumed run keeps it)" in resumed["precision"]["reason"]


@pytest.mark.parametrize("regularizers", [{}, dict(embedding_dropout=0.1, weight_dropout=0.3, variational_dropout=True)],
                         ids=["dropout", "awd"])
def test_ctrl_c_saves_a_checkpoint_and_resume_is_exact(tmp_path, regularizers):
    """SIGINT mid-epoch (cosine schedule, dropout (and AWD-LSTM's regularizers), accumulation, several epochs): a
    checkpoint is saved, the run raises TrainingInterrupted, and resuming ends bitwise equal to an uninterrupted run."""
    options = dict(max_steps=40, gradient_accumulation_steps=2, save_steps=100, eval_steps=10, sample_every_steps=15)
    full = run(tmp_path / "full", model=tiny_model(**regularizers), **options)
    assert full["epochs"] > 2  # the resume crosses epoch boundaries (state reset at each epoch start)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    def interrupt(info):
        if info["step"] == 7:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match="step 7") as stopped:
        run(tmp_path / "parts", model=tiny_model(**regularizers), callback=interrupt, **options)
    assert stopped.value.exit_code == 130
    assert Path(stopped.value.checkpoint).name == "checkpoint-7"
    assert not (tmp_path / "parts" / "model.safetensors").exists()
    state = json.loads((tmp_path / "parts" / "checkpoint-7" / "bptt_state.json").read_text())
    assert state["state"]["step"] == 7 and state["state"]["block"] > 0
    assert (tmp_path / "parts" / "checkpoint-7" / "rnn_state.pt").is_file()
    # The handlers from before the run are back after it.
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers

    resumed = run(tmp_path / "parts", model=tiny_model(**regularizers), **options)  # finds checkpoint-7 by itself
    assert_same_weights(tmp_path / "full", tmp_path / "parts")
    assert resumed["validation"] == full["validation"]
    history = json.loads((tmp_path / "parts" / "log_history.json").read_text())
    assert history == json.loads((tmp_path / "full" / "log_history.json").read_text())


def test_the_best_evaluation_s_weights_are_kept_and_the_summary_names_its_step(tmp_path):
    """Weights spoiled after the step-4 evaluation: the run ends with step 4's weights (saved, and scored again in
    the summary exactly as the evaluation at step 4 scored them), names that step and gives the last step's figures;
    the folder that held them while the run went on is gone."""
    model = tiny_model(dropout=0.0)

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
    saved = weights(tmp_path / "run")
    assert all(torch.equal(saved[name], value) for name, value in model.state_dict().items() if name in saved)
    assert not (tmp_path / "run" / "best-model").exists()


def test_a_run_whose_last_step_is_best_keeps_it(tmp_path):
    summary = run(tmp_path / "run", max_steps=6, eval_steps=2, save_steps=2, learning_rate=1e-3)
    assert summary["kept_step"] == 6 and "last_step_validation" not in summary


def test_overwrite_output_dir_starts_over(tmp_path):
    run(tmp_path / "run", max_steps=4, save_steps=2)
    summary = train_bptt(
        None, None, CorpusArguments(overwrite_output_dir=True), model=tiny_model(), tokenizer=TOKENIZER,
        dataset=corpus(), **quiet(output_dir=str(tmp_path / "run"), max_steps=2, save_steps=2),
    )
    assert summary["steps"] == 2
    assert [p.name for p in complete_checkpoints(tmp_path / "run", BPTT_STATE_FILE)] == ["checkpoint-2"]


# ----------------------------------------------------------------------------------------------------------------------
# Failures
# ----------------------------------------------------------------------------------------------------------------------


def test_nan_loss_stops_naming_the_step_without_saving_after_it(tmp_path):
    model = tiny_model()
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
        model = tiny_model(cell_type=cell_type)
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
        run(tmp_path / "e", model=tiny_model(vocab_size=5), max_steps=1)
    with pytest.raises(TrainingSetupError, match="lr_scheduler_type"):
        run(tmp_path / "f", max_steps=1, lr_scheduler_type="zigzag")
    no_validation = DatasetDict({"train": corpus()["train"]})
    with pytest.raises(TrainingSetupError, match="validation"):
        train_bptt(model=tiny_model(), tokenizer=TOKENIZER, dataset=no_validation, **quiet(output_dir=str(tmp_path)))


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
        train_bptt(model=tiny_model(), tokenizer=TOKENIZER, dataset=corpus(),
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


# ----------------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------------


def write_corpus_files(folder: Path) -> tuple[Path, Path]:
    train, validation = folder / "train.txt", folder / "valid.txt"
    train.write_text(TEXT * 6, encoding="utf-8")
    validation.write_text(TEXT[:300], encoding="utf-8")
    return train, validation


def cli_arguments(train, validation, output_dir) -> list[str]:
    return [
        "--train_file", str(train), "--validation_file", str(validation), "--output_dir", str(output_dir),
        "--hidden_size", "16", "--embedding_dim", "8", "--max_steps", "4", "--batch_size", "4",
        "--block_size", "16", "--eval_steps", "2", "--save_steps", "2", "--sample_every_steps", "0",
        "--report_to", "none", "--disable_tqdm", "--logging_steps", "1", "--sample_length", "10",
    ]


def test_main_trains_from_text_files(tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    train, validation = write_corpus_files(tmp_path)
    assert main(cli_arguments(train, validation, tmp_path / "out")) == 0
    printed = capsys.readouterr().out
    assert "bits/character" in printed
    summary = json.loads((tmp_path / "out" / "training_summary.json").read_text())
    assert summary["dataset"] == str(train)
    assert summary["validation_note"] is None and "Note:" not in printed  # its own validation file
    assert summary["memorisation"]["samples"] == 4 and "Memorisation: Of " in printed
    AutoModelForCausalLM.from_pretrained(tmp_path / "out")


def test_a_validation_cut_from_the_training_file_is_said_to_continue_it(tmp_path, capsys):
    """One --train_file and no --validation_file: validation is the file's last 5 %, which continues the text the
    model trained on; the summary and the printed result say so (a --validation_file run says nothing: above)."""
    train, _ = write_corpus_files(tmp_path)
    arguments = cli_arguments(train, None, tmp_path / "out")
    del arguments[2:4]  # --validation_file VALID
    assert main(arguments) == 0
    note = json.loads((tmp_path / "out" / "training_summary.json").read_text())["validation_note"]
    assert note.startswith("validation is the last 5% of the training text, which continues what the model ")
    assert f"Note: {note}." in capsys.readouterr().out


def test_the_note_is_only_for_validation_cut_from_a_few_training_files(tmp_path):
    """Twenty files or more give whole files to validation (text_pieces.holds_out_tails): no note then; nor with
    a --validation_file."""
    files = []
    for index in range(20):
        files.append(tmp_path / f"part{index}.txt")
        files[-1].write_text(TEXT, encoding="utf-8")
    assert validation_note(CorpusArguments(train_file=[str(f) for f in files[:19]])) is not None
    assert validation_note(CorpusArguments(train_file=[str(f) for f in files])) is None
    assert validation_note(CorpusArguments(train_file=[str(files[0])], validation_file=str(files[1]))) is None
    assert "last 10% of" in validation_note(CorpusArguments(train_file=[str(files[0])],
                                                            validation_split_fraction=0.1))


def test_main_reports_usage_errors(tmp_path, capsys):
    assert main(["--train_file", str(tmp_path / "missing.txt"), "--output_dir", str(tmp_path / "o")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["--batch_size", "0"]) == 2


@pytest.mark.slow
def test_two_processes_match_one_process_and_resume_each_other(tmp_path):
    """`accelerate launch` with 2 CPU processes (gloo): each process carries the state of its own rows, gradients are
    averaged, and the run equals a 1-process run up to float summation order; the saved model loads; a checkpoint
    made by either resumes on the other and finishes the same run (and the processes exit: `BPTTLoop.end_processes`)."""
    from transformers import AutoModelForCausalLM

    train, validation = write_corpus_files(tmp_path)
    two = launch_two_processes(cli_arguments(train, validation, tmp_path / "two") + ["--cpu"])
    assert two.returncode == 0, two.stderr[-3000:]
    assert (tmp_path / "two" / "checkpoint-4" / "random_states_1.pkl").is_file()  # really two processes
    assert main(cli_arguments(train, validation, tmp_path / "one")) == 0

    AutoModelForCausalLM.from_pretrained(tmp_path / "two")
    assert_same_run(tmp_path / "one", tmp_path / "two")

    # A checkpoint of either resumes on the other: the carried state is gathered whole and shared out by rank.
    for made_by, resumed_by in (("two", "one"), ("one", "two")):
        folder = tmp_path / f"{made_by}-resumed-by-{resumed_by}"
        copy_interrupted_run(tmp_path / made_by, folder, "checkpoint-2")
        argv = cli_arguments(train, validation, folder) + ["--resume_from_checkpoint", str(folder / "checkpoint-2")]
        if resumed_by == "one":
            assert main(argv) == 0
        else:
            resumed = launch_two_processes(argv + ["--cpu"])
            assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert_same_run(tmp_path / made_by, folder, steps_from=3)


def copy_interrupted_run(finished: Path, folder: Path, checkpoint: str) -> None:
    """`folder` as `finished` was while it ran: its run record (not marked complete) and one checkpoint."""
    shutil.copytree(finished / checkpoint, folder / checkpoint)
    record = json.loads((finished / "run.json").read_text())
    record.update(status="running", finished=None, result=None)
    (folder / "run.json").write_text(json.dumps(record))


def launch_two_processes(arguments: list[str]) -> subprocess.CompletedProcess:
    """`accelerate launch` of scripts/train_accelerate.py on 2 CPU processes (gloo)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    with socket.socket() as probe:  # a free port: accelerate's default 29500 may be held by another run
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launch = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
        str(REPO / "scripts" / "train_accelerate.py"),
    ]
    return subprocess.run(launch + arguments, env=env, capture_output=True, text=True, timeout=300)


def assert_same_run(expected: Path, actual: Path, steps_from: int = 0) -> None:
    """The losses logged from step `steps_from` on, and the final weights, agree up to float summation order."""
    def history(folder: Path) -> list[dict]:
        entries = json.loads((folder / "log_history.json").read_text())
        return [entry for entry in entries if entry.get("step", 0) >= steps_from]

    ours, theirs = history(expected), history(actual)
    assert len(ours) == len(theirs) and ours
    for a, b in zip(ours, theirs):
        key = "loss" if "loss" in a else "eval_loss"
        assert b[key] == pytest.approx(a[key], abs=1e-5)
    wa, wb = weights(expected), weights(actual)
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], atol=1e-5, rtol=1e-4)


def test_the_old_option_names_still_work_for_a_release_and_name_the_new_ones(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        args = BPTTArguments(bptt_length=16, sample_steps=0, sample_prompts=["KING:", "QUEEN:"],
                             sample_max_new_tokens=5, do_test=False)
    messages = sorted(str(warning.message).split(" (")[0] for warning in caught)
    assert messages == ["--bptt_length is now --block_size", "--do_test is now --evaluate_test_split",
                        "--sample_max_new_tokens is now --sample_length", "--sample_prompts is now --sample_prompt",
                        "--sample_steps is now --sample_every_steps"]
    assert all(warning.category is FutureWarning for warning in caught)
    assert {warning.filename for warning in caught} == {__file__}  # points at the caller, not dataclass code
    assert (args.block_size, args.sample_every_steps, args.sample_prompt, args.sample_length,
            args.evaluate_test_split) == (16, 0, "KING:", 5, False)
    assert args.bptt_length is None and args.do_test is None  # recorded once, under the new names
    with pytest.warns(FutureWarning):  # the new name wins when both are given
        assert BPTTArguments(block_size=32, bptt_length=16).block_size == 32
    with pytest.warns(FutureWarning, match="--bptt_length is now --block_size"):  # also as train_bptt's override
        summary = run(tmp_path / "old-name", max_steps=1, bptt_length=8, block_size=None)
    assert summary["hyperparameters"]["block_size"] == 8
    command = subprocess.run(
        [sys.executable, "-m", "hf_charrnn.cli", "train-accelerate", "--bptt_length", "0"],
        capture_output=True, text=True, timeout=300,
    )
    assert command.returncode == 2 and "--bptt_length is now --block_size" in command.stderr
    assert "block_size must be a positive integer" in command.stderr


class EventLog(TrainerCallback):
    """Records the events the loop sends, as a user's TrainerCallback sees them; stops the run after `stop_at`."""

    def __init__(self, stop_at: int):
        self.events, self.stop_at = [], stop_at

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.events.append(("log", state.global_step, round(logs["loss"], 6)))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.events.append(("evaluate", state.global_step, sorted(metrics)))

    def on_save(self, args, state, control, **kwargs):
        self.events.append(("save", state.global_step))

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.stop_at:
            control.should_training_stop = True
        return control


def test_trainer_callbacks_drive_the_bptt_loop_as_they_drive_the_trainer(tmp_path):
    events = EventLog(stop_at=4)
    summary = train_bptt(model=tiny_model(), tokenizer=TOKENIZER, dataset=corpus(), dataset_name="test corpus",
                         callbacks=[events], **quiet(output_dir=str(tmp_path), max_steps=10, logging_steps=2,
                                                     eval_steps=2, save_steps=3))
    assert summary["steps"] == 4  # the callback's stop ends the run normally: evaluated, saved, summarized
    logged = [entry for entry in json.loads((tmp_path / "log_history.json").read_text()) if "loss" in entry]
    assert [event for event in events.events if event[0] == "log"] == [
        ("log", entry["step"], round(entry["loss"], 6)) for entry in logged]
    assert ("evaluate", 2, ["eval_bpc", "eval_loss", "eval_perplexity"]) in events.events
    assert ("save", 3) in events.events
    assert summary["validation"]["bpc"] > 0 and (tmp_path / "model.safetensors").is_file()


def test_the_bptt_path_loads_neither_trainer_nor_the_hub_code():
    code = ("import sys, hf_charrnn.cli.train_accelerate; "
            "print(sorted(m for m in ('transformers.trainer', 'hf_charrnn.hub', 'hf_charrnn.trainer') "
            "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


def test_a_stream_held_in_memory_is_refused_when_it_cannot_fit_and_a_file_backed_one_is_not(tmp_path, capsys,
                                                                                                monkeypatch):
    """An in-memory data set's stream would be built in memory: refused up front with what it needs. The same text
    from files becomes a memory-mapped stream: it trains with (almost) no memory to spare."""
    from collections import namedtuple

    import hf_charrnn.training_accelerate as module

    memory = namedtuple("memory", "available")
    monkeypatch.setattr(module.psutil, "virtual_memory", lambda: memory(available=100))
    with pytest.raises(TrainingSetupError, match="(?s)held in memory.*of memory as the BPTT path's token stream.*"
                                                 "--train_file"):
        run(tmp_path / "in-memory", max_steps=1)
    assert not (tmp_path / "in-memory" / "model.safetensors").exists()

    train, validation = write_corpus_files(tmp_path)
    assert main(cli_arguments(train, validation, tmp_path / "from-files")) == 0
    assert (tmp_path / "from-files" / "model.safetensors").is_file()
