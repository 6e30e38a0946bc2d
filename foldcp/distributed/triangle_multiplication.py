"""Triangle multiplication (outgoing and incoming) on a tiled pair tensor.

Built from Boltz's TriangleMultiplicationOutgoing / Incoming and sharing their parameters:
everything but the product over k is per position and runs on the local block.

- outgoing: out[i, j, d] = Σ_k a[i, k, d] b[j, k, d] = SUMMA(a, bᵀ)
- incoming: out[i, j, d] = Σ_k a[k, i, d] b[k, j, d] = SUMMA(aᵀ, b)

where the transposed operand is brought into natural layout by one layout transpose.

Channels d are independent in the product, so it runs over channel chunks: only a chunk of
a and b (projected from the normalised input) exists at a time, and the block's transients
stay a fraction of the pair block's size. The normalised input is kept in the compute dtype
(what the projections see under autocast), the output stage runs in row chunks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from foldcp.distributed.comm import transpose_pair
from foldcp.distributed.layout import (
    Layout,
    assemble_rows,
    compute_dtype,
    normed_rows,
    row_chunks,
)
from foldcp.distributed.summa import summa


class DistTriangleMultiplication(nn.Module):
    def __init__(self, serial: nn.Module, outgoing: bool, channel_chunk: int | None = None) -> None:
        super().__init__()
        self.serial = serial  # the Boltz module: its parameters are ours
        self.outgoing = outgoing
        self.channel_chunk = channel_chunk

    def forward(self, x: torch.Tensor, mask: torch.Tensor, layout: Layout) -> torch.Tensor:
        """x: [B, |R_p|, |C_q|, D] block, mask: [B, |R_p|, |C_q|] pair-mask block.
        Returns the update [B, |R_p|, |C_q|, D] (compute dtype)."""
        m = self.serial
        grid, n = layout.grid, layout.n_padded
        x = normed_rows(m.norm_in, x, compute_dtype(x))
        channels = x.shape[-1]
        autocast = torch.is_autocast_enabled(x.device.type)
        mask = mask.unsqueeze(-1).to(x.dtype)

        def gated(start: int, end: int) -> torch.Tensor:
            # Boltz: p_in(x) * sigmoid(g_in(x)) for all 2D channels, masked, then split in
            # a and b and cast to float32 — which autocast casts back for the product.
            projected = F.linear(x, m.p_in.weight[start:end]) * F.linear(x, m.g_in.weight[start:end]).sigmoid()
            projected = projected * mask
            return projected if autocast else projected.float()

        product = None
        chunk = self.channel_chunk or -(-channels // 4)
        for c0, c1 in row_chunks(channels, chunk):
            a, b = gated(c0, c1), gated(channels + c0, channels + c1)
            if self.outgoing:
                part = summa(a, transpose_pair(b, grid, n), layout)
            else:
                part = summa(transpose_pair(a, grid, n), b, layout)
            del a, b
            if product is None:
                product = part.new_empty((*part.shape[:-1], channels))
            product[..., c0:c1] = part
        return assemble_rows(
            lambda r0, r1: m.p_out(m.norm_out(product[:, r0:r1])) * m.g_out(x[:, r0:r1]).sigmoid(),
            x.shape[1], -(-x.shape[1] // 4))
