"""Where a tiled tensor lives: the grid, the padded token count, and which tokens are real."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from foldcp.distributed.grid import Grid, pad_tokens, pair_block


@dataclass(frozen=True)
class Layout:
    grid: Grid
    n_real: int  # tokens of the complex
    n_padded: int  # N' = tokens after padding to the grid

    @classmethod
    def for_tokens(cls, grid: Grid, n_real: int, multiple: int = 1) -> "Layout":
        return cls(grid, n_real, grid.padded(n_real, multiple))

    @property
    def rows(self) -> slice:
        return slice(*self.grid.row_range(self.n_padded))

    @property
    def cols(self) -> slice:
        return slice(*self.grid.col_range(self.n_padded))

    def padding_bias(self, index: slice, device, dtype, inf: float) -> torch.Tensor:
        """0 for real tokens, -2·inf for grid padding.

        Boltz masks keys with -inf (a finite 1e9 or 1e6): a row whose keys are all masked still
        gets a (meaningless) softmax over them. Grid padding gets twice that, so it has exactly
        zero weight even in such rows and the result equals the unpadded serial one.
        """
        tokens = torch.arange(self.n_padded, device=device)[index]
        return torch.where(tokens < self.n_real, 0.0, -2.0 * inf).to(dtype)

    def shard_pair(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's block of a whole [B, N, N, ...] tensor."""
        return pair_block(x, self.grid, self.n_padded)

    def pad_single(self, x: torch.Tensor) -> torch.Tensor:
        """A whole [B, N, ...] single-track tensor padded to N' (replicated on every rank)."""
        return pad_tokens(x, self.n_padded, (1,))


def rowwise(fn, x: torch.Tensor, expansion: int) -> torch.Tensor:
    """Apply a per-position function to a pair block in row chunks.

    `expansion` is the function's widest hidden layer in units of x's channels (4 for Boltz's
    Transition): chunks are sized so that hidden layer never exceeds x's own size.
    """
    return assemble_rows(lambda r0, r1: fn(x[:, r0:r1]), x.shape[1],
                         _expansion_chunk(x.shape[1], expansion))


def _expansion_chunk(rows: int, expansion: int) -> int:
    return max(1, rows // max(1, expansion))


def row_chunks(rows: int, chunk: int):
    """(start, end) of consecutive row chunks of at most `chunk` rows."""
    return [(r, min(rows, r + chunk)) for r in range(0, rows, max(1, chunk))]


def assemble_rows(fn, rows: int, chunk: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """fn(r0, r1) → the [B, r1 - r0, ...] rows of a result, computed chunk by chunk and written
    into one tensor (dtype: the first chunk's unless given); one chunk is returned as is."""
    chunks = row_chunks(rows, chunk)
    if len(chunks) == 1 and dtype is None:
        return fn(0, rows)
    out = None
    for r0, r1 in chunks:
        part = fn(r0, r1)
        if out is None:
            out = part.new_empty((part.shape[0], rows, *part.shape[2:]), dtype=dtype or part.dtype)
        out[:, r0:r1] = part
    return out


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the next linear layer computes in: the autocast dtype where autocast is on
    for x's device (its inputs are cast to it anyway), else x's own."""
    kind = x.device.type
    if torch.is_autocast_enabled(kind) and x.is_floating_point():
        return torch.get_autocast_dtype(kind)
    return x.dtype


def normed_rows(norm, x: torch.Tensor, dtype: torch.dtype, parts: int = 4) -> torch.Tensor:
    """norm(x) stored in `dtype`, computed in row chunks.

    Under autocast a LayerNorm returns float32 that the following linear layers cast to the
    autocast dtype anyway; storing it there directly keeps the float32 transient to 1/parts
    of the block (the values the linear layers see are the same).
    """
    return assemble_rows(lambda r0, r1: norm(x[:, r0:r1]), x.shape[1],
                         -(-x.shape[1] // parts), dtype)


def add_rowwise(fn, x: torch.Tensor, expansion: int) -> torch.Tensor:
    """x += fn(x), in place, in row chunks sized as in `rowwise` (a chunk's update is
    computed before it is added, so each chunk sees its own input)."""
    for r0, r1 in row_chunks(x.shape[1], _expansion_chunk(x.shape[1], expansion)):
        x[:, r0:r1] += fn(x[:, r0:r1])
    return x
