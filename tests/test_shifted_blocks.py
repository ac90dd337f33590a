"""The Trainer path's training blocks, cut at a fresh place each epoch (hf_charrnn.shifted_blocks): properties of the
cut, and a real Trainer reading, epoch by epoch, the blocks the cut promises."""

import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, default_data_collator

import hf_charrnn  # noqa: F401  (registers the Auto classes)
from hf_charrnn.configuration_charrnn import CharRNNConfig
from hf_charrnn.modeling_charrnn import CharRNNForCausalLM
from hf_charrnn.shifted_blocks import ShiftBlocksCallback, ShiftedBlocks


def blocks_of(dataset: ShiftedBlocks, epoch: int) -> torch.Tensor:
    dataset.set_epoch(epoch)
    return torch.stack([dataset[i]["input_ids"] for i in range(len(dataset))])


@pytest.mark.parametrize("tokens, block_size", [(1000, 32), (1024, 32), (40, 32), (32, 32), (97, 8)])
def test_each_epoch_cuts_whole_blocks_of_the_stream_one_after_the_other(tokens, block_size):
    ids = torch.arange(tokens)
    dataset = ShiftedBlocks(ids, block_size, seed=3)
    for epoch in range(6):
        blocks = blocks_of(dataset, epoch)
        offset = int(blocks[0, 0])
        assert blocks.shape == (len(dataset), block_size)
        assert torch.equal(blocks.flatten(), ids[offset:offset + blocks.numel()])  # contiguous, in order
        assert 0 <= offset < block_size
        assert torch.equal(dataset[0]["labels"], dataset[0]["input_ids"])  # the model shifts the labels itself
    assert len(dataset) >= max(1, tokens // block_size - 1)  # at most one block fewer than a fixed cut


def test_the_first_epoch_is_the_fixed_cut_and_later_ones_move_reproducibly():
    ids = torch.arange(10_000)
    dataset, again = ShiftedBlocks(ids, 64, seed=7), ShiftedBlocks(ids, 64, seed=7)
    offsets = [dataset.epoch_offset(epoch) for epoch in range(20)]
    assert offsets[0] == 0
    assert len(set(offsets)) > 5  # they move
    assert offsets == [again.epoch_offset(epoch) for epoch in range(20)]  # a resumed run draws the same
    assert offsets != [ShiftedBlocks(ids, 64, seed=8).epoch_offset(epoch) for epoch in range(20)]


def test_first_keeps_that_many_blocks_and_still_shifts():
    dataset = ShiftedBlocks(torch.arange(1000), 16, seed=0).first(10)
    assert len(dataset) == 10
    for epoch in range(5):
        assert int(blocks_of(dataset, epoch).max()) < 11 * 16  # never reads past the first blocks' text


def test_a_text_shorter_than_one_block_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="smaller block_size or give it more text"):
        ShiftedBlocks(torch.arange(10), 16, seed=0)


class RecordStepEpochs(TrainerCallback):
    """The epoch of each step, to pair with the batches the collator saw."""

    def __init__(self):
        self.epochs = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.epochs.append(int(state.epoch or 0))


def test_trainer_reads_each_epoch_the_blocks_cut_for_it(tmp_path):
    """A real Trainer with `ShiftBlocksCallback` tells the data set each epoch: every row of a batch is a block of that
    epoch's cut, and over an epoch every block is read once."""
    ids = torch.randint(0, 20, (16 * 41,), generator=torch.Generator().manual_seed(0))
    dataset = ShiftedBlocks(ids, 16, seed=5)
    expected = {epoch: {tuple(row.tolist()) for row in blocks_of(ShiftedBlocks(ids, 16, seed=5), epoch)}
                for epoch in range(3)}
    seen = []

    def collate(features):
        seen.append([tuple(f["input_ids"].tolist()) for f in features])
        return default_data_collator(features)

    model = CharRNNForCausalLM(CharRNNConfig(vocab_size=20, hidden_size=8, embedding_dim=4, num_layers=1))
    steps = RecordStepEpochs()
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, num_train_epochs=3,
                             report_to="none", save_strategy="no", disable_tqdm=True, use_cpu=True, seed=5)
    Trainer(model=model, args=args, train_dataset=dataset, data_collator=collate,
            callbacks=[ShiftBlocksCallback(), steps]).train()
    assert len(dataset) == 40 and len(seen) == len(steps.epochs) == 3 * 40 // 8
    for epoch in range(3):
        rows = [row for batch, at in zip(seen, steps.epochs) if at == epoch for row in batch]
        assert sorted(rows) == sorted(expected[epoch])
    assert expected[1] != expected[0] or expected[2] != expected[0]
