"""The r × c process grid and how N tokens are split over it.

P ranks form an r × c grid; rank = p·c + q sits at row p, column q. Pair tensors [B, N, N, C]
are tiled: rank (p, q) holds rows R_p and columns C_q. N is padded to N' = a multiple of
lcm(r, c) (times `multiple`), so the row blocks (size N'/r) and column blocks (size N'/c) are
both unions of equal "fine blocks" and every index range has one row owner and one column
owner — which is what makes r != c work. Padded tokens are masked everywhere.

Any world size works: 1×2, 2×1, 2×3, 3×3 … (`factor_grid` picks r = the largest divisor of P
not above √P).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


def factor_grid(world_size: int) -> tuple[int, int]:
    """(r, c) with r·c = P and r the largest divisor of P not above √P."""
    r = max(d for d in range(1, math.isqrt(world_size) + 1) if world_size % d == 0)
    return r, world_size // r


@dataclass
class Grid:
    """This rank's place in the grid, its process groups, and the token partition."""

    rows: int
    cols: int
    rank: int = 0
    row_group: object = None  # ranks (p, *) — same grid row
    col_group: object = None  # ranks (*, q) — same grid column
    row_ranks: list[int] = field(default_factory=list)
    col_ranks: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.rows * self.cols == 1 and not self.row_ranks:
            self.row_ranks, self.col_ranks = [self.rank], [self.rank]

    @property
    def size(self) -> int:
        return self.rows * self.cols

    @property
    def p(self) -> int:
        return self.rank // self.cols

    @property
    def q(self) -> int:
        return self.rank % self.cols

    def rank_of(self, p: int, q: int) -> int:
        return p * self.cols + q

    @property
    def fine(self) -> int:
        """Number of fine blocks: lcm(r, c)."""
        return self.rows * self.cols // math.gcd(self.rows, self.cols)

    def padded(self, n: int, multiple: int = 1) -> int:
        """Smallest N' >= n divisible by lcm(r, c) · multiple."""
        unit = self.fine * multiple
        return -(-n // unit) * unit

    def row_range(self, n_padded: int, p: int | None = None) -> tuple[int, int]:
        size = n_padded // self.rows
        p = self.p if p is None else p
        return p * size, (p + 1) * size

    def col_range(self, n_padded: int, q: int | None = None) -> tuple[int, int]:
        size = n_padded // self.cols
        q = self.q if q is None else q
        return q * size, (q + 1) * size

    def block_of(self, n_padded: int, rank: int) -> tuple[slice, slice]:
        """Rows and columns of rank's pair block in the whole [N', N'] tensor."""
        p, q = divmod(rank, self.cols)
        return slice(*self.row_range(n_padded, p)), slice(*self.col_range(n_padded, q))

    def segments(self, n_padded: int) -> list[tuple[int, int, int, int]]:
        """Index ranges of [0, N') with a single row owner and a single column owner.

        Returns (start, end, row_owner, col_owner): the boundaries are the union of the row-
        and column-block boundaries, so there are at most r + c - 1 segments.
        """
        nr, nc = n_padded // self.rows, n_padded // self.cols
        cuts = sorted({*range(0, n_padded + 1, nr), *range(0, n_padded + 1, nc)})
        return [(a, b, a // nr, a // nc) for a, b in zip(cuts, cuts[1:])]


def make_grid(rows: int | None = None, cols: int | None = None) -> Grid:
    """Build the grid of the initialised default process group (or 1×1 without one)."""
    if not dist.is_available() or not dist.is_initialized():
        return Grid(1, 1, 0)
    world, rank = dist.get_world_size(), dist.get_rank()
    if rows is None and cols is None:
        rows, cols = factor_grid(world)
    elif rows is None:
        rows = world // cols
    elif cols is None:
        cols = world // rows
    if rows * cols != world:
        raise ValueError(f"grid {rows}x{cols} does not match world size {world}")
    grid = Grid(rows, cols, rank)
    # new_group must be called by every rank for every group, in the same order.
    for p in range(rows):
        ranks = [grid.rank_of(p, q) for q in range(cols)]
        group = dist.new_group(ranks)
        if p == grid.p:
            grid.row_group, grid.row_ranks = group, ranks
    for q in range(cols):
        ranks = [grid.rank_of(p, q) for p in range(rows)]
        group = dist.new_group(ranks)
        if q == grid.q:
            grid.col_group, grid.col_ranks = group, ranks
    return grid


def pad_tokens(x: torch.Tensor, n_padded: int, dims: tuple[int, ...]) -> torch.Tensor:
    """Zero-pad the token dimensions `dims` of x to length n_padded."""
    for dim in dims:
        extra = n_padded - x.shape[dim]
        if extra:
            shape = list(x.shape)
            shape[dim] = extra
            x = torch.cat([x, x.new_zeros(shape)], dim=dim)
    return x


def pair_block(x: torch.Tensor, grid: Grid, n_padded: int) -> torch.Tensor:
    """This rank's block [B, R_p, C_q, ...] of a whole (unpadded or padded) pair tensor."""
    x = pad_tokens(x, n_padded, (1, 2))
    r0, r1 = grid.row_range(n_padded)
    c0, c1 = grid.col_range(n_padded)
    return x[:, r0:r1, c0:c1].contiguous()
