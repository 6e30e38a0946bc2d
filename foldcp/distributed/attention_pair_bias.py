"""Attention with pair bias on the single track, with the pair bias tiled.

s (tokens × C_s) is small and replicated on every rank. Rank (p, q) attends from queries
s[R_p] to keys s[C_q] with the bias projected from its own pair block z[R_p, C_q]; the grid row
combines the partial softmaxes exactly (all-reduce of the max, then of the rescaled sums and
outputs), and the grid column all-gathers the updated rows so s is whole again everywhere.
Built from Boltz's AttentionPairBias (v2) and sharing its parameters.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.distributed as dist

from foldcp.distributed.comm import all_gather_cat, all_reduce
from foldcp.distributed.layout import Layout, assemble_rows, layer_norm_to, strip_rows


class DistAttentionPairBias(nn.Module):
    def __init__(self, serial: nn.Module) -> None:
        super().__init__()
        self.serial = serial

    def forward(self, s: torch.Tensor, z: torch.Tensor, mask: torch.Tensor, k_in: torch.Tensor,
                layout: Layout, multiplicity: int = 1) -> torch.Tensor:
        """s, k_in: [B·M, N', C_s] (whole), z: [B, |R_p|, |C_q|, C_z] block (or, for the
        diffusion transformer whose proj_z only rearranges, the block's per-head bias),
        mask: [B·M, N'] tokens; M = multiplicity (diffusion samples sharing one bias)."""
        m = self.serial
        grid = layout.grid
        rows, cols = layout.rows, layout.cols
        batch = s.shape[0]
        heads, width = m.num_heads, m.head_dim
        q = m.proj_q(s[:, rows]).view(batch, -1, heads, width)
        k = m.proj_k(k_in[:, cols]).view(batch, -1, heads, width)
        v = m.proj_v(k_in[:, cols]).view(batch, -1, heads, width)
        bias = pair_bias(m.proj_z, z)  # [B, H, |R_p|, |C_q|]: shared by a batch entry's M samples
        gate = m.proj_g(s[:, rows]).sigmoid()
        with torch.autocast("cuda", enabled=False):  # as Boltz: attention core in float32
            attn = torch.einsum("bihd,bjhd->bhij", q.float(), k.float())  # [B·M, H, I, J]
            # Boltz's operations in its order, in place, and with the bias broadcast over the
            # samples where Boltz repeats it M times (and adds it after a float32 copy): the
            # same float32 values without those [B·M, H, I, J] copies (an add promotes a bf16
            # bias exactly as .float() does)
            attn.div_(width**0.5)
            attn.view(-1, multiplicity, *attn.shape[1:]).add_(bias.unsqueeze(1))
            attn.add_((1 - mask[:, None, None, cols].float()) * -m.inf)
            attn.add_(layout.padding_bias(cols, s.device, attn.dtype, m.inf))
            row_max = all_reduce(attn.amax(dim=-1), grid.row_group, dist.ReduceOp.MAX)
            weights = attn.sub_(row_max.unsqueeze(-1)).exp_()
            total = all_reduce(weights.sum(dim=-1), grid.row_group)  # [B, H, I]
            out = all_reduce(torch.einsum("bhij,bjhd->bihd", weights, v.float()), grid.row_group)
            out = (out / total.permute(0, 2, 1).unsqueeze(-1)).to(v.dtype)
        out = m.proj_o(gate * out.reshape(batch, -1, m.c_s))  # rows R_p
        return all_gather_cat(out, grid.col_group, dim=1)  # [B, N', C_s]


def pair_bias(proj_z: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Boltz's proj_z(z) → [B, H, |R_p|, |C_q|]. The Pairformer's proj_z is LayerNorm → Linear
    (C_z → H) → heads first: done strip by strip of rows with the norm in z's dtype
    (layer_norm_to: one pass on GPUs), so no normed copy of the whole block exists (float32
    here, as Boltz computes it: 2 GiB per layer at 2,048 tokens on one GPU, made by a PyTorch
    kernel that took 6 of a layer's 149 ms on an H200). The diffusion transformer's proj_z only
    moves the heads (it is handed the bias itself)."""
    if not isinstance(proj_z, nn.Sequential):
        return proj_z(z)
    norm, linear, heads_first = proj_z
    rows = z.shape[1]
    per_head = assemble_rows(lambda r0, r1: linear(layer_norm_to(norm, z[:, r0:r1], z.dtype)),
                             rows, strip_rows(rows))
    return heads_first(per_head)
