"""Distributed per-channel matrix product over k on any r × c grid (SUMMA).

out[d, i, j] = Σ_k left[d, i, k] · right[d, k, j]

Blocks are channel-first, [B, D, rows, cols], so every channel's product is one matrix
multiplication over contiguous memory (a batched GEMM, no layout copies; channel-last
operands would be permuted into this layout by the library on every call).
Rank (p, q) holds left[R_p, C_q] and right[R_p, C_q] (natural layout). Grid row p therefore
holds left[R_p, :] with k split by column blocks, grid column q holds right[:, C_q] with k
split by row blocks. Walking the k-segments that have one owner in each (at most r + c - 1),
the owner in the row broadcasts its left piece, the owner in the column its right piece,
and every rank accumulates their product (van de Geijn & Watts, 1997). The next segment's
broadcasts are posted before the current product is computed, so transfers overlap compute.
Per-rank traffic ≈ N²C (1/r + 1/c); compute N³C/P.
"""

from __future__ import annotations

import torch

from foldcp.distributed.comm import GroupBroadcast
from foldcp.distributed.layout import Layout


def summa(left: torch.Tensor, right: torch.Tensor, layout: Layout) -> torch.Tensor:
    """left, right: [B, D, |R_p|, |C_q|] (views with the two pair dimensions swapped are fine on
    a grid of one) → out [B, D, |R_p|, |C_q|] in their dtype."""
    grid, n = layout.grid, layout.n_padded
    if grid.size == 1:
        return torch.matmul(left, right)
    row_bcast = GroupBroadcast(grid.row_group, grid.row_ranks, grid.rank)
    col_bcast = GroupBroadcast(grid.col_group, grid.col_ranks, grid.rank)
    batch, channels, rows, cols = left.shape
    segments = grid.segments(n)

    def post(segment):
        start, end, row_owner, col_owner = segment
        width = end - start
        c0 = grid.col_range(n, col_owner)[0]
        r0 = grid.row_range(n, row_owner)[0]
        mine_left = left[..., start - c0 : end - c0] if col_owner == grid.q else None
        mine_right = right[..., start - r0 : end - r0, :] if row_owner == grid.p else None
        return (
            row_bcast.post(mine_left, (batch, channels, rows, width), left.dtype, left.device, col_owner),
            col_bcast.post(mine_right, (batch, channels, width, cols), right.dtype, right.device, row_owner),
        )

    out = None
    pending = post(segments[0])
    for index in range(len(segments)):
        current = pending
        if index + 1 < len(segments):
            pending = post(segments[index + 1])
        a, b = current[0].wait(), current[1].wait()
        if out is None:
            out = torch.matmul(a, b)
        else:  # accumulate in place: out += a @ b, no product-sized temporary
            out.view(-1, rows, cols).baddbmm_(a.reshape(-1, rows, a.shape[-1]),
                                              b.reshape(-1, b.shape[-2], cols))
    return out
