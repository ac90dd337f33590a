"""The checkpoint rules both training paths share (hf_charrnn.checkpoints), against hand-made folders and
transformers' own `get_last_checkpoint`."""

import json

import pytest
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from hf_charrnn.checkpoints import (
    BPTT_STATE_FILE,
    CHECKPOINT_PREFIX,
    TRAINER_STATE_FILE,
    complete_checkpoints,
    resolve_checkpoint,
)


def make_checkpoint(root, step, state_file, content='{"global_step": 1}'):
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    if content is not None:
        (folder / state_file).write_text(content)
    return folder


@pytest.mark.parametrize("state_file", [TRAINER_STATE_FILE, BPTT_STATE_FILE])
def test_complete_checkpoints_in_step_order_skipping_cut_short_ones(tmp_path, state_file, caplog):
    for step in (9, 10, 100):
        make_checkpoint(tmp_path, step, state_file)
    make_checkpoint(tmp_path, 200, state_file, content=None)  # killed before its state file
    make_checkpoint(tmp_path, 300, state_file, content='{"global_st')  # killed while writing it
    (tmp_path / "checkpoint-x").mkdir()
    (tmp_path / "checkpoint-400").write_text("a file, not a folder")
    assert [path.name for path in complete_checkpoints(tmp_path, state_file)] == [
        "checkpoint-9", "checkpoint-10", "checkpoint-100"]  # numeric order, not string order
    assert "checkpoint-200" in caplog.text and "checkpoint-300" in caplog.text
    assert complete_checkpoints(tmp_path / "missing", state_file) == []


def test_prefix_and_newest_agree_with_transformers(tmp_path):
    assert CHECKPOINT_PREFIX == PREFIX_CHECKPOINT_DIR + "-"
    for step in (3, 12, 7):
        make_checkpoint(tmp_path, step, TRAINER_STATE_FILE)
    assert str(complete_checkpoints(tmp_path, TRAINER_STATE_FILE)[-1]) == get_last_checkpoint(str(tmp_path))


def test_each_path_sees_only_its_own_checkpoints(tmp_path):
    make_checkpoint(tmp_path, 5, TRAINER_STATE_FILE)
    assert complete_checkpoints(tmp_path, BPTT_STATE_FILE) == []
    with pytest.raises(ValueError, match=f"not a complete checkpoint of this training path.*no {BPTT_STATE_FILE}"):
        resolve_checkpoint(str(tmp_path / "checkpoint-5"), tmp_path, BPTT_STATE_FILE)


@pytest.mark.parametrize("word", ["latest", "last", "true", "auto", "LATEST"])
def test_resume_words_pick_the_newest_complete_checkpoint(tmp_path, word):
    make_checkpoint(tmp_path, 4, BPTT_STATE_FILE)
    make_checkpoint(tmp_path, 8, BPTT_STATE_FILE)
    make_checkpoint(tmp_path, 12, BPTT_STATE_FILE, content=None)
    assert resolve_checkpoint(word, tmp_path, BPTT_STATE_FILE).name == "checkpoint-8"


def test_resume_requests_that_cannot_be_met_say_why(tmp_path):
    with pytest.raises(ValueError, match="no complete checkpoint-STEP folder"):
        resolve_checkpoint("latest", tmp_path, TRAINER_STATE_FILE)
    with pytest.raises(ValueError, match="is not a checkpoint folder"):
        resolve_checkpoint(str(tmp_path / "nowhere"), tmp_path, TRAINER_STATE_FILE)
    cut_short = make_checkpoint(tmp_path, 3, TRAINER_STATE_FILE, content=None)
    with pytest.raises(ValueError, match="saving it was cut short"):
        resolve_checkpoint(str(cut_short), tmp_path, TRAINER_STATE_FILE)


def test_without_a_request_the_folder_decides(tmp_path):
    said = []
    assert resolve_checkpoint(None, tmp_path, TRAINER_STATE_FILE, announce=said.append) is None
    assert said == []  # an empty folder: a fresh start, nothing to say
    make_checkpoint(tmp_path, 2, TRAINER_STATE_FILE, content=None)
    assert resolve_checkpoint(None, tmp_path, TRAINER_STATE_FILE, announce=said.append) is None
    assert said[-1].startswith("No complete checkpoint")
    newest = make_checkpoint(tmp_path, 1, TRAINER_STATE_FILE, content=json.dumps({"global_step": 1}))
    assert resolve_checkpoint(None, tmp_path, TRAINER_STATE_FILE, announce=said.append) == newest
    assert said[-1].startswith(f"Resuming from {newest}")
    assert resolve_checkpoint(None, tmp_path, TRAINER_STATE_FILE, overwrite_output_dir=True) is None
