"""The pieces that keep a training run's folder safe, and data files readable, against hand-made cases."""

import json
import os
import socket
import subprocess
import sys

import pytest

from hf_charrnn.model_loading import looks_local
from hf_charrnn.reporting import whole_run_train_loss
from hf_charrnn.run_folder import (
    LOCK_FILE,
    RUN_FILE,
    RunAlreadyComplete,
    RunFolderError,
    atomic_write_json,
    check_output_dir,
    differences,
    mark_run_complete,
    run_lock,
    write_run_record,
)
from hf_charrnn.text_files import DataFileError, builder_for, inspect_file

IDENTITY = {"data": {"train_file": [{"path": "/d/a.txt", "sha256": "aa"}]}, "training": {"learning_rate": 0.002}}


def test_differences_name_each_changed_setting():
    changed = dict(IDENTITY, training={"learning_rate": 0.001})
    assert differences(IDENTITY, IDENTITY) == []
    assert differences(IDENTITY, changed) == ["training.learning_rate: 0.002 -> 0.001"]
    assert differences(IDENTITY, {**IDENTITY, "model": {"hidden_size": 64}}) == [
        "model.hidden_size: '(not set)' -> 64"]


def test_a_folder_is_free_resumable_complete_or_another_runs(tmp_path):
    folder = tmp_path / "out"
    assert check_output_dir(folder, IDENTITY, overwrite=False) is None  # does not exist
    folder.mkdir()
    (folder / "checkpoint-10").mkdir()
    with pytest.raises(RunFolderError, match="recorded no settings"):
        check_output_dir(folder, IDENTITY, overwrite=False)
    write_run_record(folder, IDENTITY, resumed_from=None)
    assert check_output_dir(folder, IDENTITY, overwrite=False)["status"] == "running"
    longer = {**IDENTITY, "training": {"learning_rate": 0.002, "max_steps": 500}}
    with pytest.raises(RunFolderError, match=r"(?s)training.max_steps.*--overwrite_output_dir.*out-2"):
        check_output_dir(folder, longer, overwrite=False)
    assert check_output_dir(folder, longer, overwrite=False, extend=True)["status"] == "running"
    mark_run_complete(folder, steps=40, validation_bpc=2.5)
    with pytest.raises(RunAlreadyComplete, match="already complete .40 steps, validation 2.5000"):
        check_output_dir(folder, IDENTITY, overwrite=False)
    assert check_output_dir(folder, IDENTITY, overwrite=True) is None


def test_a_damaged_record_is_named_and_the_folder_not_trusted(tmp_path, caplog):
    (tmp_path / "model.safetensors").write_bytes(b"x")
    (tmp_path / RUN_FILE).write_text('{"identity": {"data"', encoding="utf-8")
    with pytest.raises(RunFolderError, match="missing or damaged"):
        check_output_dir(tmp_path, IDENTITY, overwrite=False)
    assert RUN_FILE in caplog.text


def test_atomic_writes_leave_no_temporary_files(tmp_path):
    atomic_write_json(tmp_path / "state.json", {"step": 3})
    atomic_write_json(tmp_path / "state.json", {"step": 4})
    assert json.loads((tmp_path / "state.json").read_text()) == {"step": 4}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_the_lock_refuses_a_live_holder_and_is_taken_over_from_a_dead_one(tmp_path, caplog):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname()}))
        with pytest.raises(RunFolderError, match=f"Another run .pid {sleeper.pid}"):
            with run_lock(tmp_path):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    with run_lock(tmp_path):  # the holder died: taken over
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert "no longer running" in caplog.text
    assert not (tmp_path / LOCK_FILE).exists()  # given back


def test_text_files_are_checked_for_utf8_with_the_byte_offset(tmp_path):
    latin1 = tmp_path / "notes.txt"
    latin1.write_bytes("première ligne\n".encode("latin-1"))
    with pytest.raises(DataFileError, match=r"byte 5 \(0xe8.*iconv -f latin1 -t utf-8"):
        inspect_file(latin1, "train")
    binary = tmp_path / "image.txt"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(DataFileError, match="binary file"):
        inspect_file(binary, "train")
    cut = tmp_path / "cut.txt"
    cut.write_bytes("né".encode()[:-1])
    with pytest.raises(DataFileError, match="middle of a character"):
        inspect_file(cut, "train")
    good = tmp_path / "good.txt"
    good.write_text("naïve café ☃\n", encoding="utf-8")
    fingerprint = inspect_file(good, "train")
    assert fingerprint["bytes"] == len("naïve café ☃\n".encode()) and len(fingerprint["sha256"]) == 64


def test_structured_files_go_to_their_datasets_builder():
    assert [builder_for(name) for name in ("a.txt", "b.jsonl", "c.JSON", "d.csv", "e.tsv", "f.parquet", "g")] == [
        "text", "json", "json", "csv", "csv", "parquet", "text"]


def test_the_train_loss_covers_the_whole_run_weighted_by_logged_spans():
    history = [{"step": 1, "loss": 4.0}, {"step": 5, "loss": 3.0}, {"step": 5, "eval_loss": 9.0},
               {"step": 10, "loss": 2.0}, {"step": 10, "train_loss": 7.0}]
    loss, covers = whole_run_train_loss(history)
    assert loss == pytest.approx((4.0 * 1 + 3.0 * 4 + 2.0 * 5) / 10)
    assert covers.startswith("steps 1-10")
    assert whole_run_train_loss([]) == (None, "no logged training loss")


def test_paths_that_look_local_are_not_hub_ids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    assert looks_local("./model") and looks_local("outputs/run") and looks_local(str(tmp_path / "x"))
    assert looks_local("a/b/c") and looks_local("~/models/x")
    assert not looks_local("user/model") and not looks_local("gpt2")


def test_a_setting_recorded_under_its_older_name_still_matches():
    recorded = {"training": {"per_device_train_batch_size": 16, "seed": 1}}  # a run.json from before the rename
    assert differences(recorded, {"training": {"train_batch_size": 16, "seed": 1}}) == []
    assert differences(recorded, {"training": {"train_batch_size": 32, "seed": 1}}) == [
        "training.train_batch_size: 16 -> 32"]
