"""The training stream's per-epoch layout (`hf_charrnn.bptt_stream.StreamRows`), checked against the stream itself."""

import pytest
import torch

from hf_charrnn.bptt_stream import StreamRows
from hf_charrnn.data import stream_blocks

STREAM = torch.arange(5_000) % 251  # every window of 251 tokens is distinct: a token's position is its value mod 251
POSITIONS = torch.arange(5_000)


def epoch_blocks(rows: StreamRows, epoch: int, rows_slice=slice(None)):
    return [rows.block(epoch, block, rows_slice) for block in range(rows.blocks_per_epoch)]


def test_fixed_layout_is_char_rnns():
    rows = StreamRows(STREAM.to(torch.uint8), batch_size=4, block_size=16, chunk_blocks=0, seed=0)
    expected = list(stream_blocks(STREAM, 4, 16, drop_last=True))
    got = epoch_blocks(rows, 0)
    assert len(got) == len(expected) == rows.blocks_per_epoch
    for (inputs, targets), (want_inputs, want_targets) in zip(got, expected):
        assert inputs.dtype == torch.long and torch.equal(inputs, want_inputs) and torch.equal(targets, want_targets)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(got, epoch_blocks(rows, 5)))  # the same every epoch


def test_shuffled_chunks_read_the_text_in_order_within_a_chunk():
    rows = StreamRows(POSITIONS, batch_size=4, block_size=8, chunk_blocks=5, seed=3)
    size = rows.chunk_blocks
    assert size == 4  # rows of 156 blocks: 39 chunks of 4 rather than 31 of 5 and one left over
    chunk_tokens = size * 8
    assert rows.num_chunks == (5_000 - 1) // chunk_tokens and rows.chunks_per_row == rows.num_chunks // 4
    assert rows.blocks_per_epoch == rows.chunks_per_row * size
    blocks = epoch_blocks(rows, 0)
    for index, (inputs, targets) in enumerate(blocks):
        assert inputs.shape == targets.shape == (4, 8)
        assert torch.equal(targets, inputs + 1)  # every target is the token after its input in the text
        assert bool((inputs[:, 0] % chunk_tokens == (index % size) * 8).all())  # blocks sit on the chunk grid
        if index % size:  # within a chunk, each row goes on where it left off
            assert torch.equal(inputs[:, 0], blocks[index - 1][0][:, -1] + 1)
    read = torch.cat([inputs.flatten() for inputs, _ in blocks])
    assert read.unique().numel() == read.numel() == rows.blocks_per_epoch * 4 * 8  # no token read twice in an epoch


def test_each_epoch_has_its_own_order_and_a_resume_reads_the_same_one():
    rows = StreamRows(POSITIONS, batch_size=4, block_size=8, chunk_blocks=5, seed=3)
    first, second = epoch_blocks(rows, 0), epoch_blocks(rows, 1)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, second))
    fresh = StreamRows(POSITIONS, batch_size=4, block_size=8, chunk_blocks=5, seed=3)  # as after a resume
    assert all(torch.equal(a[0], b[0]) for a, b in zip(epoch_blocks(fresh, 1), second))
    other_seed = StreamRows(POSITIONS, batch_size=4, block_size=8, chunk_blocks=5, seed=4)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(epoch_blocks(other_seed, 1), second))


def test_processes_read_disjoint_rows_of_the_same_batch():
    rows = StreamRows(POSITIONS, batch_size=4, block_size=8, chunk_blocks=5, seed=3)
    for block in (0, 7, rows.blocks_per_epoch - 1):
        whole = rows.block(2, block, slice(0, 4))[0]
        halves = [rows.block(2, block, slice(rank * 2, rank * 2 + 2))[0] for rank in (0, 1)]
        assert torch.equal(torch.cat(halves), whole)


@pytest.mark.parametrize("tokens", [20_000, 100_000, 130_000, 1_000_000])
def test_an_epoch_reads_about_as_much_of_the_stream_as_the_fixed_layout(tokens):
    """Chunks evened out to the rows: an epoch leaves out at most about 1/chunk_blocks more than the fixed layout
    (chunks of exactly 32 blocks left out half of a 130 k-token stream in rows of 64 x 32)."""
    stream = torch.zeros(tokens, dtype=torch.uint8)
    fixed = StreamRows(stream, 64, 32, chunk_blocks=0, seed=0).blocks_per_epoch
    chunked = StreamRows(stream, 64, 32, chunk_blocks=32, seed=0)
    assert 1 <= chunked.chunk_blocks <= 32
    assert fixed * (1 - 1 / 32) - 1 <= chunked.blocks_per_epoch <= fixed


def test_a_small_stream_takes_chunks_as_long_as_the_rows():
    rows = StreamRows(POSITIONS[:400], batch_size=4, block_size=8, chunk_blocks=32, seed=0)
    assert rows.chunk_blocks == (400 // 4 - 1) // 8 and rows.chunks_per_row >= 1
    assert all(torch.equal(targets, inputs + 1) for inputs, targets in epoch_blocks(rows, 0))
