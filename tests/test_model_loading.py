"""The model-folder check every command shares (generate, evaluate, push), on a sharded checkpoint."""

import pytest
import torch

from testing_utils import make_output_dir
from hf_charrnn.hub import PushToHubError, collect_upload
from hf_charrnn.model_loading import (
    WEIGHTS_FILE,
    WEIGHTS_INDEX,
    ModelNotFoundError,
    check_model_folder,
    index_shards,
    load_model_and_tokenizer,
)


@pytest.fixture
def sharded_folder(tmp_path):
    """A trained folder re-saved by save_pretrained in shards (what a large model, or max_shard_size, gives)."""
    folder = make_output_dir(tmp_path / "whole", summary=False, loss_curve=False)
    model, tokenizer = load_model_and_tokenizer(str(folder), device="cpu")
    sharded = tmp_path / "sharded"
    model.save_pretrained(sharded, max_shard_size="2KB")
    tokenizer.save_pretrained(sharded)
    return folder, sharded


def test_a_sharded_folder_is_a_model_folder_and_loads_the_same(sharded_folder):
    whole, sharded = sharded_folder
    assert not (sharded / WEIGHTS_FILE).exists() and len(index_shards(sharded)) > 1
    check_model_folder(sharded)
    ids = torch.tensor([[3, 4, 5, 6]])
    original, _ = load_model_and_tokenizer(str(whole), device="cpu")
    reloaded, _ = load_model_and_tokenizer(str(sharded), device="cpu")
    torch.testing.assert_close(reloaded(ids).logits, original(ids).logits, rtol=0, atol=0)
    upload = collect_upload(sharded, "someone/sharded")
    assert WEIGHTS_INDEX in upload and set(index_shards(sharded)) <= set(upload)


def test_a_missing_shard_or_a_damaged_index_is_named(sharded_folder):
    _, sharded = sharded_folder
    shard = index_shards(sharded)[-1]
    (sharded / shard).unlink()
    with pytest.raises(ModelNotFoundError, match=f"only part of its weights: {shard}"):
        check_model_folder(sharded)
    with pytest.raises(PushToHubError, match=f"{shard}.*Push the output folder"):
        collect_upload(sharded, "someone/sharded")
    (sharded / WEIGHTS_INDEX).write_text("{")
    with pytest.raises(ValueError, match="not a valid weights index"):
        check_model_folder(sharded)
