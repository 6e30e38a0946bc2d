"""Grid partition and communication primitives on real process grids (gloo)."""

import pytest
import torch

from foldcp.distributed import comm
from foldcp.distributed.grid import Grid, factor_grid, pair_block
from tests.distributed.harness import run_on_grid

GRIDS = [(1, 1), (1, 2), (2, 1), (2, 2), (2, 3), (3, 3)]


def test_factor_grid():
    assert [factor_grid(p) for p in (1, 2, 3, 4, 6, 8, 9, 12, 16)] == [
        (1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (2, 4), (3, 3), (3, 4), (4, 4)]


def test_partition_segments_cover_everything():
    grid = Grid(2, 3)
    n = grid.padded(13)
    assert n == 18
    segments = grid.segments(n)
    assert segments[0][0] == 0 and segments[-1][1] == n
    for start, end, p, q in segments:
        assert grid.row_range(n, p)[0] <= start < end <= grid.row_range(n, p)[1]
        assert grid.col_range(n, q)[0] <= start < end <= grid.col_range(n, q)[1]


def _transpose_and_gather(grid, n):
    torch.manual_seed(0)
    full = torch.randn(1, n, n, 3, dtype=torch.float64)
    n_padded = grid.padded(n)
    block = pair_block(full, grid, n_padded)
    transposed = comm.transpose_pair(block, grid, n_padded)
    expected_t = pair_block(full.transpose(1, 2), grid, n_padded)
    assert torch.equal(transposed, expected_t)
    assert torch.equal(comm.transpose_pair(transposed, grid, n_padded), block)
    # channel-first blocks [B, C, rows, cols] (the triangle multiplication's layout)
    channel_first = comm.transpose_pair(block.movedim(-1, 1).contiguous(), grid, n_padded,
                                        pair_dims=(2, 3))
    assert channel_first.is_contiguous() and torch.equal(channel_first, expected_t.movedim(-1, 1))
    gathered = comm.gather_pair(block, grid, n_padded)
    if grid.rank == 0:
        assert torch.equal(gathered[:, :n, :n], full)
    everywhere = comm.all_gather_pair(block, grid, n_padded, channels_per_round=2)  # 2 rounds
    assert torch.equal(everywhere[:, :n, :n], full)
    assert torch.equal(pair_block(everywhere, grid, n_padded), block)
    scattered = comm.scatter_pair(
        torch.nn.functional.pad(full, (0, 0, 0, n_padded - n, 0, n_padded - n)) if grid.rank == 0 else None,
        grid, n_padded, like=block)
    assert torch.equal(scattered, block)
    # ring shift along the grid row: after one step I hold my successor's block
    ring = comm.RingShift(grid.row_ranks, grid.rank)
    got = ring.post([torch.full((2,), float(grid.rank))]).wait()[0]
    assert got[0].item() == grid.row_ranks[(grid.row_ranks.index(grid.rank) + 1) % grid.cols]
    # … or `distance` places along in one transfer, each owner sending per-distance tensors
    mine = torch.full((2,), float(grid.rank))
    assert ring.post([mine], distance=0).wait()[0] is mine
    for distance in range(1, grid.cols):
        to = grid.row_ranks[(grid.row_ranks.index(grid.rank) - distance) % grid.cols]
        got = ring.post([mine, torch.full((3,), 100.0 * to)], distance=distance).wait()
        owner = grid.row_ranks[(grid.row_ranks.index(grid.rank) + distance) % grid.cols]
        assert got[0][0].item() == owner and got[1][0].item() == 100.0 * grid.rank
    return grid.rank


@pytest.mark.parametrize("rows, cols", GRIDS)
def test_transpose_gather_scatter_ring(rows, cols):
    assert run_on_grid(rows, cols, _transpose_and_gather, 13) == list(range(rows * cols))


def _raise_on_rank_one(grid):
    if grid.rank == 1:
        raise RuntimeError("rank 1 breaks")
    comm.all_reduce(torch.ones(1), grid.row_group)  # the others wait for rank 1 in vain


def test_a_failing_rank_fails_fast():
    with pytest.raises(AssertionError, match="rank 1 breaks"):
        run_on_grid(1, 2, _raise_on_rank_one, timeout=60, collective_timeout=20)
