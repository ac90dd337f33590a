"""`hf-charrnn train-accelerate` (hf_charrnn.cli.train_accelerate): text files, usage errors, two processes, the old
option names, the Trainer's callbacks driving the loop, and what the path imports."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from transformers import TrainerCallback

from hf_charrnn.cli.train_accelerate import main
from hf_charrnn.bptt_args import BPTTArguments
from hf_charrnn.trainer_utils import TrainingSetupError, validation_note
from hf_charrnn.training_accelerate import train_bptt
from hf_charrnn.training_args import CorpusArguments
from testing_utils import (
    BPTT_TEXT as TEXT,
    BPTT_TOKENIZER as TOKENIZER,
    assert_same_run,
    bptt_corpus as corpus,
    bptt_model,
    bptt_options as quiet,
    copy_as_running,
    hf_charrnn_in_process,
    launch_two_processes,
    run_bptt as run,
)


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
    two = launch_two_processes("train_accelerate.py", cli_arguments(train, validation, tmp_path / "two") + ["--cpu"])
    assert two.returncode == 0, two.stderr[-3000:]
    assert (tmp_path / "two" / "checkpoint-4" / "random_states_1.pkl").is_file()  # really two processes
    assert main(cli_arguments(train, validation, tmp_path / "one")) == 0

    AutoModelForCausalLM.from_pretrained(tmp_path / "two")
    assert_same_run(tmp_path / "one", tmp_path / "two")

    # A checkpoint of either resumes on the other: the carried state is gathered whole and shared out by rank.
    for made_by, resumed_by in (("two", "one"), ("one", "two")):
        folder = tmp_path / f"{made_by}-resumed-by-{resumed_by}"
        copy_as_running(tmp_path / made_by, "checkpoint-2", folder)
        argv = cli_arguments(train, validation, folder) + ["--resume_from_checkpoint", str(folder / "checkpoint-2")]
        if resumed_by == "one":
            assert main(argv) == 0
        else:
            resumed = launch_two_processes("train_accelerate.py", argv + ["--cpu"])
            assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert_same_run(tmp_path / made_by, folder, steps_from=3)


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
    with pytest.warns(FutureWarning, match="--bptt_length is now --block_size"):  # and through the command
        command = hf_charrnn_in_process("train-accelerate", "--bptt_length", "0")
    assert command.returncode == 2 and "block_size must be a positive integer" in command.stderr


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
    summary = train_bptt(model=bptt_model(), tokenizer=TOKENIZER, dataset=corpus(), dataset_name="test corpus",
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
