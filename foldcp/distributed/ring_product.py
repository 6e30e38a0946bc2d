"""Per-channel matrix products over k on a grid of one row (1 × c), by shifting blocks.

    incoming: out[d, i, j] = Σ_k a[d, k, i] b[d, k, j]   (out = aᵀ·b, k over rows)
    outgoing: out[d, i, j] = Σ_k a[d, i, k] b[d, j, k]   (out = a·bᵀ, k over columns)

On a 1 × c grid rank q holds every row and the column block C_q of each operand, channel
first: X[:, :, :, C_q] as [B, D, N', |C_q|]; it returns out[:, :, :, C_q] in that layout.

- incoming: the rows k are all local, so out[C_t, C_q] = a[:, C_t]ᵀ · b[:, C_q] — rank t's
  whole block of a gives the output rows C_t, with nothing to accumulate.
- outgoing: out[:, C_q] = Σ_t a[:, C_t] · b[C_q, C_t]ᵀ — rank t sends its block of a and
  the rows C_q of its block of b.

At step s rank q receives from rank q + s what it needs of that rank (comm.RingShift with
distance s; step 0 is its own block), and posts step s + 1's transfer before it computes
on step s's, so transfers overlap the products. The transposed operands are views that the
matrix multiplication reads transposed: no layout transposes, and no copies but the rows of
b sent in the outgoing product (N'/c × N'/c per step). Per rank: traffic (c-1)/c·N'²D
(incoming) and (c-1)/c·N'²D·(1 + 1/c) (outgoing), compute N'³D/c.

summa.py, which serves any r × c grid, needs the transposed pair tensor (comm.transpose_pair)
for these products: on 1 × 2 at 2,500 tokens its strided copies took ~22 ms of a 144 ms
Pairformer layer on an H200 (bench/RESULTS.md), and this path has none of them.
"""

from __future__ import annotations

import torch

from foldcp.distributed.comm import RingShift
from foldcp.distributed.layout import Layout


def ring_product(a: torch.Tensor, b: torch.Tensor, layout: Layout, outgoing: bool) -> torch.Tensor:
    """a, b: [B, D, N', |C_q|] blocks of a 1 × c grid → out [B, D, N', |C_q|] (a's dtype)."""
    grid, n = layout.grid, layout.n_padded
    assert grid.rows == 1, "ring_product serves grids of one row"
    batch, channels, rows, cols = a.shape
    ring = RingShift(grid.row_ranks, grid.rank)

    def post(step: int):
        """What rank q + step has for me: its a, and for outgoing its b's rows C_q — so what
        I send is my b's rows of the rank `step` places before me."""
        if not outgoing:
            return ring.post([a], distance=step)
        r0, r1 = grid.col_range(n, (grid.q - step) % grid.cols)
        return ring.post([a, b[:, :, r0:r1]], distance=step)

    out = None
    pending = post(0)
    for step in range(grid.cols):
        current = pending.wait()
        if step + 1 < grid.cols:
            pending = post(step + 1)
        a_t = current[0]  # rank t's block of a: [B, D, N', |C_t|]
        if outgoing:
            b_rows = current[1]  # b[C_q, C_t]: [B, D, |C_q|, |C_t|]
            if out is None:
                out = torch.matmul(a_t, b_rows.mT)
            else:  # accumulate in place: out += a_t · b_rowsᵀ, no product-sized temporary
                out.view(-1, rows, cols).baddbmm_(a_t.reshape(-1, rows, a_t.shape[-1]),
                                                  b_rows.mT.reshape(-1, a_t.shape[-1], cols))
        else:
            if out is None:
                out = a.new_empty((batch, channels, rows, cols))
            t0, t1 = grid.col_range(n, (grid.q + step) % grid.cols)
            # out[C_t rows] = a_tᵀ · b, written in place (beta = 0: out's old values unread)
            out[:, :, t0:t1].view(-1, t1 - t0, cols).baddbmm_(
                a_t.mT.reshape(-1, t1 - t0, rows), b.reshape(-1, rows, cols), beta=0)
    return out
