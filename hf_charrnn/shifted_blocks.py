"""The Trainer path's training blocks, cut at a fresh place every epoch.

`hf-charrnn train` cuts the text into blocks of `block_size` tokens, each read from a zero state. Cut once, every
epoch feeds the same blocks: the character at a block's start is always predicted with no context and the one at its
end always with `block_size - 1` characters of it, and on a small file that a run goes over ten times the model sees
the same few thousand blocks ten times over. AWD-LSTM varies its truncation length for the same reason (Merity et al.
2017, "variable length backpropagation sequences": otherwise the same tokens always fall at the same place in a
block).

`ShiftedBlocks` keeps the blocks' number and length and moves where they start: in epoch `e` block `i` is the tokens
from `offset(e) + i * block_size`, the offset drawn from the seed and the epoch (none in the first epoch), so a
resumed run reads exactly the same blocks. `ShiftBlocksCallback` tells the data set the epoch as `Trainer` begins
it, before the epoch's batches are drawn: accelerate's `DataLoaderShard.set_epoch` reaches a data set's `set_epoch`
in a plain epoch but not in a resumed one, whose batch sampler skips the batches already trained.
"""

from __future__ import annotations

import math

import torch
from transformers import TrainerCallback


class ShiftedBlocks(torch.utils.data.Dataset):
    """Blocks of `block_size` tokens of the 1-D `token_ids`, starting `epoch_offset(epoch)` tokens in: rows of
    `input_ids` and `labels` (the same tokens: the model shifts them), as the grouped data set gives them."""

    def __init__(self, token_ids: torch.Tensor, block_size: int, seed: int):
        self.ids, self.block_size, self.seed = token_ids.flatten(), block_size, seed
        if self.ids.numel() < block_size:
            raise ValueError(f"The training text yields no block of {block_size} tokens: it has {self.ids.numel()}. "
                             "Use a smaller block_size or give it more text.")
        # one block fewer than a fixed cut leaves room to start anywhere in the first block; a text of one block
        # keeps its block and what room it has
        self.num_blocks = max(1, (self.ids.numel() - block_size + 1) // block_size)
        self.room = min(block_size, self.ids.numel() - self.num_blocks * block_size + 1)
        self.offset = 0

    def epoch_offset(self, epoch: int) -> int:
        """Where the blocks start in `epoch`: 0 in the first, then a draw in [0, room) seeded by the seed and the
        epoch (`room` is `block_size` but for a text too short to hold a block more)."""
        if epoch == 0:
            return 0
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return int(torch.randint(self.room, (1,), generator=generator))

    def first(self, count: int) -> ShiftedBlocks:
        """The blocks of the first `count` blocks' worth of text (`--max_train_samples`), still shifting."""
        if count >= self.num_blocks:
            return self
        return ShiftedBlocks(self.ids[:(count + 1) * self.block_size - 1], self.block_size, self.seed)

    def set_epoch(self, epoch: int) -> None:
        self.offset = self.epoch_offset(epoch)

    def __len__(self) -> int:
        return self.num_blocks

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.num_blocks:
            raise IndexError(f"block {index} of {self.num_blocks}")
        start = self.offset + index * self.block_size
        block = self.ids[start:start + self.block_size].long()
        return {"input_ids": block, "labels": block}


class ShiftBlocksCallback(TrainerCallback):
    """Sets the epoch of a `ShiftedBlocks` training set as each epoch begins, the one a resumed run goes on with too
    (its `state.epoch` is then the checkpoint's, part way into it)."""

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        dataset = getattr(train_dataloader, "dataset", None)
        if isinstance(dataset, ShiftedBlocks):
            dataset.set_epoch(math.floor(state.epoch or 0))
