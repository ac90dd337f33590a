"""The training stream of `hf-charrnn train-accelerate`, laid out afresh every epoch.

Stateful truncated BPTT reads the stream as `batch_size` parallel rows, `block_size` tokens of every row per batch,
carrying each row's recurrent state to its next block (`data.batchify`, char-rnn's layout). With one fixed layout,
every epoch feeds the same batches in the same order, and each batch holds the same `batch_size` places of the text:
on a small corpus that a run goes over many times, the model then learns the sequence of batches as well as the text
(measured on the embedded corpus: 14 passes in ten minutes).

`StreamRows` keeps the rows but changes what they hold each epoch, the way a shuffling DataLoader does for independent
blocks: the stream is cut into chunks of `chunk_blocks` blocks, the chunks are put in a random order seeded by the
seed and the epoch (so a resumed run reads exactly the same batches), and each row reads its share of chunks one after
the other. Within a chunk the state is carried over consecutive text, as before; at a chunk boundary it goes on into
another part of the text, as it does at a document boundary. The target of a chunk's last token is still the token
that follows it in the text. Chunks are at most `chunk_blocks` blocks long, evened out so that each row holds whole
chunks (`even_chunk_blocks`); each epoch leaves out the chunks that do not make a whole batch (fewer than
`batch_size`), different ones each time, about as much text as the fixed layout leaves out. `chunk_blocks=0` keeps
the fixed layout.
"""

from __future__ import annotations

import torch

from .data import batchify, num_stream_blocks


def even_chunk_blocks(chunk_blocks: int, row_blocks: int) -> int:
    """At most `chunk_blocks` blocks a chunk, evened out so that a row of `row_blocks` blocks holds whole chunks: a
    short row (a small corpus) would otherwise leave out up to half the stream every epoch."""
    if chunk_blocks < 1 or row_blocks < 1:
        return 0
    chunks_per_row = -(-row_blocks // chunk_blocks)
    return row_blocks // chunks_per_row


class StreamRows:
    """`batch_size` rows of `block_size`-token blocks over `token_ids`, in a fresh chunk order each epoch."""

    def __init__(self, token_ids: torch.Tensor, batch_size: int, block_size: int, chunk_blocks: int, seed: int):
        self.ids, self.batch_size, self.block_size, self.seed = token_ids.flatten(), batch_size, block_size, seed
        row_blocks = num_stream_blocks(self.ids.numel(), batch_size, block_size, drop_last=True)
        self.chunk_blocks = even_chunk_blocks(chunk_blocks, row_blocks)
        if self.chunk_blocks > 0:
            chunk_tokens = self.chunk_blocks * block_size
            self.num_chunks = (self.ids.numel() - 1) // chunk_tokens  # each chunk's last target exists
            self.chunks_per_row = self.num_chunks // batch_size
            self.blocks_per_epoch = self.chunks_per_row * self.chunk_blocks
        else:
            self.fixed_rows = batchify(self.ids, batch_size)
            self.blocks_per_epoch = row_blocks
        self._order_epoch, self._order = None, None

    def chunk_order(self, epoch: int) -> torch.Tensor:
        """The chunks in the order the rows read them in `epoch`: row `r` reads `order[r * chunks_per_row:]`."""
        if self._order_epoch != epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order, self._order_epoch = torch.randperm(self.num_chunks, generator=generator), epoch
        return self._order

    def block(self, epoch: int, block: int, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """`(input_ids, targets)` of block `block` of `epoch` for the rows `rows`, as int64 on the host."""
        size = self.block_size
        if self.chunk_blocks == 0:
            start = block * size
            tokens = self.fixed_rows[rows, start : start + size + 1]
        else:
            chunk, within = divmod(block, self.chunk_blocks)
            row_ids = torch.arange(self.batch_size)[rows]
            chunks = self.chunk_order(epoch)[row_ids * self.chunks_per_row + chunk]
            starts = chunks * (self.chunk_blocks * size) + within * size
            tokens = self.ids[starts[:, None] + torch.arange(size + 1)]
        tokens = tokens.long()
        return tokens[:, :-1], tokens[:, 1:]
