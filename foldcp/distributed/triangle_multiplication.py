"""Triangle multiplication (outgoing and incoming) on a tiled pair tensor.

Built from Boltz's TriangleMultiplicationOutgoing / Incoming and sharing their parameters:
everything but the product over k is per position and runs on the local block.

- outgoing: out[i, j] = Σ_k a[i, k] b[j, k] = SUMMA(a, bᵀ)
- incoming: out[i, j] = Σ_k a[k, i] b[k, j] = SUMMA(aᵀ, b)

where the transposed operand is brought into natural layout by one layout transpose.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from foldcp.distributed.comm import transpose_pair
from foldcp.distributed.layout import Layout
from foldcp.distributed.summa import summa


class DistTriangleMultiplication(nn.Module):
    def __init__(self, serial: nn.Module, outgoing: bool) -> None:
        super().__init__()
        self.serial = serial  # the Boltz module: its parameters are ours
        self.outgoing = outgoing

    def forward(self, x: torch.Tensor, mask: torch.Tensor, layout: Layout) -> torch.Tensor:
        """x: [B, |R_p|, |C_q|, D] block, mask: [B, |R_p|, |C_q|] pair-mask block."""
        m = self.serial
        x = m.norm_in(x)
        channels = x.shape[-1]

        def gated_half(half: int) -> torch.Tensor:
            # Boltz computes p_in(x) * sigmoid(g_in(x)) for 2C channels at once and splits it;
            # one half at a time keeps the transient at C channels (same values).
            rows = slice(half * channels, (half + 1) * channels)
            projected = F.linear(x, m.p_in.weight[rows]) * F.linear(x, m.g_in.weight[rows]).sigmoid()
            return (projected * mask.unsqueeze(-1)).float()

        a, b = gated_half(0), gated_half(1)
        if self.outgoing:
            product = summa(a.contiguous(), transpose_pair(b, layout.grid, layout.n_padded), layout)
        else:
            product = summa(transpose_pair(a, layout.grid, layout.n_padded), b.contiguous(), layout)
        return m.p_out(m.norm_out(product)) * m.g_out(x).sigmoid()
