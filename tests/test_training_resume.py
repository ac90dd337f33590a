"""The Trainer path resumed: a run killed, interrupted or copied mid-way continues where it was, bit for bit where the
README says so; a checkpoint keeps its precision; two processes train the model one does.

The in-process tests resume a copy of a run's folder as it was mid-way (`copy_as_running`); the slow ones run
`scripts/train.py` in a process of its own and kill or interrupt it, then run the same command again.
"""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hf_charrnn.checkpoints import TRAINER_STATE_FILE, complete_checkpoints
from hf_charrnn.cli.train import main
from hf_charrnn.precision import bf16_kernels_work
from testing_utils import (
    REPO,
    assert_same_weights,
    copy_as_running,
    launch_two_processes,
    run,
    tiny_argv,
    wait_for,
)


def start_training(argv: list[str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "w")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "train.py"), *argv], stdout=log, stderr=subprocess.STDOUT, env=env
    )


STEPS = 80


def slow_argv(corpus, output_dir) -> list[str]:
    # Long enough that the run is still going when the test stops it after checkpoint 10 or 20; fp32, so that the
    # processes compared do not each measure their own precision.
    return tiny_argv(corpus, output_dir, "--max_steps", str(STEPS), "--save_steps", "10", "--eval_steps", str(STEPS),
                     "--save_total_limit", "50", "--learning_rate", "0.005", "--no_bf16")


def test_a_resumed_run_keeps_the_precision_its_checkpoint_was_trained_in(corpus, tmp_path, monkeypatch):
    """Left to choose, a resumed session takes the precision recorded in its checkpoint's trainer_state.json instead
    of measuring again (where bf16 and fp32 are close the measurement can go either way). Where this CPU has bf16
    kernels the record is flipped, so keeping it shows; on every CPU the resumed session must not measure."""
    bf16_here = bf16_kernels_work("cpu", "lstm")
    output_dir = tmp_path / "run"
    first = run(tiny_argv(corpus, output_dir, "--max_steps", "20"))
    state_file = output_dir / "checkpoint-20" / TRAINER_STATE_FILE
    state = json.loads(state_file.read_text())
    record = state["stateful_callbacks"]["PrecisionRecordCallback"]["args"]
    assert record["mixed_precision"] == first["precision"]["mixed_precision"]
    flipped = "no" if record["mixed_precision"] == "bf16" else "bf16"  # as if measured otherwise
    record["mixed_precision"] = flipped if bf16_here else "no"
    state_file.write_text(json.dumps(state))
    with monkeypatch.context() as patch:
        patch.setattr("hf_charrnn.trainer_budget.choose_precision",
                      lambda *args, **kwargs: pytest.fail("the resumed session measured its precision again"))
        resumed = run(tiny_argv(corpus, output_dir, "--max_steps", "30", "--resume_from_checkpoint", "latest"))
    assert resumed["precision"]["mixed_precision"] == record["mixed_precision"]
    assert "checkpoint-20 was trained in (a resumed run keeps it)" in resumed["precision"]["reason"]
    final_file = output_dir / "checkpoint-30" / TRAINER_STATE_FILE
    final = json.loads(final_file.read_text())
    assert final["stateful_callbacks"]["PrecisionRecordCallback"]["args"]["mixed_precision"] == record["mixed_precision"]

    del final["stateful_callbacks"]["PrecisionRecordCallback"]  # as an earlier version wrote it: choose afresh
    final_file.write_text(json.dumps(final))
    again = run(tiny_argv(corpus, output_dir, "--max_steps", "40", "--resume_from_checkpoint", "latest"))
    assert "was trained in" not in again["precision"]["reason"] and again["steps"] == 40
    last = json.loads((output_dir / "checkpoint-40" / TRAINER_STATE_FILE).read_text())
    assert last["stateful_callbacks"]["PrecisionRecordCallback"]["args"]["mixed_precision"] == \
        again["precision"]["mixed_precision"]


def test_a_run_resumed_mid_epoch_continues_bit_for_bit_through_shifted_blocks(corpus, tmp_path):
    """The training blocks start at a fresh place each epoch (`shift_blocks`); a session resumed in the middle of
    the second epoch reads the blocks the whole run read there and after, so its weights are the same bit for bit."""
    common = ("--max_steps", "100", "--eval_steps", "50", "--save_steps", "50", "--no_bf16", "--dropout", "0.2",
              "--num_layers", "2")
    whole = run(tiny_argv(corpus, tmp_path / "whole", *common))
    assert whole["hyperparameters"]["block_offsets"] == "shifted each epoch"
    assert 1 < whole["epochs"] * 50 / 100 < 2 < whole["epochs"]  # checkpoint-50 lies in the second epoch
    resumed = tmp_path / "resumed"
    copy_as_running(tmp_path / "whole", "checkpoint-50", resumed)
    run(tiny_argv(corpus, resumed, *common, "--resume_from_checkpoint", str(resumed / "checkpoint-50")))
    assert_same_weights(tmp_path / "whole" / "checkpoint-100", resumed / "checkpoint-100")


def test_a_streamed_run_resumed_mid_way_continues_bit_for_bit(corpus, tmp_path):
    """--streaming (an IterableDataset): the resumed session skips the batches the first one read, so it ends with
    the weights of the whole run."""
    common = ("--streaming", "--max_steps", "12", "--eval_steps", "6", "--save_steps", "6", "--no_bf16")
    run(tiny_argv(corpus, tmp_path / "whole", *common))
    resumed = tmp_path / "resumed"
    copy_as_running(tmp_path / "whole", "checkpoint-6", resumed)
    summary = run(tiny_argv(corpus, resumed, *common, "--resume_from_checkpoint", "latest"))
    assert summary["steps"] == 12 and summary["hyperparameters"]["resumed_from"].endswith("checkpoint-6")
    assert_same_weights(tmp_path / "whole" / "checkpoint-12", resumed / "checkpoint-12")


def test_max_train_samples_keeps_that_many_shifted_blocks(corpus, tmp_path):
    summary = run(tiny_argv(corpus, tmp_path / "few", "--max_train_samples", "10", "--max_steps", "3",
                            "--eval_steps", "3", "--save_steps", "3"))
    assert summary["train_tokens"] == 10 * 32 and summary["hyperparameters"]["block_offsets"] == "shifted each epoch"
    assert summary["epochs"] == pytest.approx(3)  # one batch (16 rows) holds all 10 blocks: one step an epoch


def test_a_run_recorded_before_blocks_shifted_resumes_with_shift_blocks_false(corpus, tmp_path, capsys):
    """A folder whose run.json predates `shift_blocks` (no such setting) is refused by default with the option that
    resumes it as it was cut, and that option resumes it."""
    output_dir = tmp_path / "old"
    argv = tiny_argv(corpus, output_dir, "--max_steps", "20", "--save_steps", "10", "--eval_steps", "10")
    run(argv)
    record = json.loads((output_dir / "run.json").read_text())
    del record["identity"]["shift_blocks"]
    record.update(status="running", finished=None, result=None)
    (output_dir / "run.json").write_text(json.dumps(record))
    shutil.rmtree(output_dir / "checkpoint-20")
    assert main(argv) == 2
    assert "add --shift_blocks false" in capsys.readouterr().err
    assert main(argv + ["--shift_blocks", "false"]) == 0
    summary = json.loads((output_dir / "training_summary.json").read_text())
    assert summary["hyperparameters"]["block_offsets"] == "fixed" and summary["steps"] == 20
    assert summary["hyperparameters"]["resumed_from"].endswith("checkpoint-10")


@pytest.mark.slow
def test_killed_run_resumes_bit_for_bit(corpus, tmp_path, capsys):
    """README: "a run killed outright resumes from its last checkpoint, bit for bit, when the same command runs
    again": the resumed run's weights equal an uninterrupted run's (one thread in both processes, fp32)."""
    reference = run(slow_argv(corpus, tmp_path / "reference"))

    output_dir = tmp_path / "killed"
    argv = slow_argv(corpus, output_dir)
    process = start_training(argv, tmp_path / "killed.log")
    wait_for(output_dir / "checkpoint-20" / TRAINER_STATE_FILE, process, timeout=90)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not (output_dir / "training_summary.json").exists()
    checkpoints = complete_checkpoints(output_dir, TRAINER_STATE_FILE)
    assert checkpoints, "no complete checkpoint survived the kill"
    last = str(checkpoints[-1])
    killed_at = int(last.rsplit("-", 1)[1])
    assert 20 <= killed_at < STEPS
    # A checkpoint cut short by the kill (no trainer_state.json) must be skipped, not resumed from.
    partial = output_dir / f"checkpoint-{killed_at + 5}"
    partial.mkdir()
    (partial / "config.json").write_text("{}")

    assert main(argv) == 0  # the same command again: resumes from the last complete checkpoint
    assert "Resuming from" in capsys.readouterr().out
    resumed = json.loads((output_dir / "training_summary.json").read_text())
    assert resumed["hyperparameters"]["resumed_from"] == last
    assert resumed["steps"] == reference["steps"] == STEPS
    assert_same_weights(tmp_path / "reference", output_dir)
    assert resumed["validation"]["loss"] == reference["validation"]["loss"]


@pytest.mark.slow
def test_sigint_saves_a_checkpoint_and_resumes(corpus, tmp_path, capsys):
    output_dir = tmp_path / "interrupted"
    argv = slow_argv(corpus, output_dir)
    process = start_training(argv, tmp_path / "interrupted.log")
    wait_for(output_dir / "checkpoint-10" / TRAINER_STATE_FILE, process, timeout=90)
    process.send_signal(signal.SIGINT)
    status = process.wait(timeout=60)
    log = (tmp_path / "interrupted.log").read_text()
    assert status == 130, log
    assert "Traceback" not in log
    assert "checkpoint saved to" in log
    last = str(complete_checkpoints(output_dir, TRAINER_STATE_FILE)[-1])
    step = int(last.rsplit("-", 1)[1])
    assert 10 <= step < STEPS
    state = json.loads((Path(last) / "trainer_state.json").read_text())
    assert state["global_step"] == step
    assert not (output_dir / "training_summary.json").exists()

    assert main(argv + ["--resume_from_checkpoint", last]) == 0
    summary = json.loads((output_dir / "training_summary.json").read_text())
    assert summary["steps"] == STEPS and summary["hyperparameters"]["resumed_from"] == last
    assert math.isfinite(summary["validation"]["loss"])


@pytest.mark.slow
def test_two_processes_train_the_same_model_as_one_and_resume_on_one(corpus, tmp_path):
    """The Trainer path under `accelerate launch` with 2 CPU processes (gloo), 8 rows each: the same global batches
    as one process with 16 rows (accelerate hands whole batches of one sampler out in turn), gradients averaged, so
    the same losses and weights up to float summation order; its checkpoint resumes on one process."""
    argv = tiny_argv(corpus, tmp_path / "two", "--max_steps", "6", "--eval_steps", "3", "--save_steps", "3",
                     "--logging_steps", "1", "--use_cpu", "true", "--dropout", "0")
    at = argv.index("--per_device_train_batch_size")
    argv[at + 1] = "8"
    two = launch_two_processes("train.py", argv)
    assert two.returncode == 0, two.stderr[-3000:]
    assert (tmp_path / "two" / "checkpoint-6" / "rng_state_1.pth").is_file()  # really two processes
    one = run(tiny_argv(corpus, tmp_path / "one", "--max_steps", "6", "--eval_steps", "3", "--save_steps", "3",
                        "--logging_steps", "1", "--dropout", "0", "--no_bf16"))  # fp32, as two processes decide
    assert one["steps"] == 6

    def losses(folder: Path) -> list[float]:
        history = json.loads((folder / "trainer_state.json").read_text())["log_history"]
        return [entry["loss"] for entry in history if "loss" in entry]

    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), abs=1e-4)
    assert_same_weights(tmp_path / "one", tmp_path / "two", atol=1e-4, rtol=1e-3)

    resumed = tmp_path / "resumed"  # the two-process run as it was at step 3, resumed on one process
    copy_as_running(tmp_path / "two", "checkpoint-3", resumed)
    summary = run(tiny_argv(corpus, resumed, "--max_steps", "6", "--eval_steps", "3", "--save_steps", "3",
                            "--logging_steps", "1", "--dropout", "0", "--resume_from_checkpoint",
                            str(resumed / "checkpoint-3")))
    assert summary["steps"] == 6
    assert "checkpoint-3 was trained in" in summary["precision"]["reason"]  # fp32 kept, not measured again
    assert losses(resumed)[-3:] == pytest.approx(losses(tmp_path / "two")[-3:], abs=1e-4)
