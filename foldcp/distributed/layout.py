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
    rows = x.shape[1]
    chunk = max(1, rows // max(1, expansion))
    if chunk >= rows:
        return fn(x)
    return torch.cat([fn(x[:, r : r + chunk]) for r in range(0, rows, chunk)], dim=1)
