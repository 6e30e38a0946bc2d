"""Attention with pair bias on the single track, with the pair bias tiled.

s (tokens × C_s) is small and replicated on every rank. Rank (p, q) attends from queries
s[R_p] to keys s[C_q] with the bias projected from its own pair block z[R_p, C_q]; the grid row
combines the partial softmaxes exactly (all-reduce of the max, then of the rescaled sums and
outputs), and the grid column all-gathers the updated rows so s is whole again everywhere.
Built from Boltz's AttentionPairBias (v2) and sharing its parameters.

On GPUs the float32 core is one flash-attention kernel per batch entry
(triton_attention.shared_bias_attention: the bias shared by the entry's samples, the token
mask a per-key bias) and blocks merge by log-sum-exp; elsewhere it is Boltz's element-wise
softmax (_plain_core, the reference the tests compare both against).
"""

from __future__ import annotations

import torch
from torch import nn
import torch.distributed as dist

from foldcp.distributed import fused_attention, triton_attention
from foldcp.distributed.comm import all_gather_cat, all_reduce
from foldcp.distributed.layout import Layout, assemble_rows_heads_first, layer_norm_to, strip_rows


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
            dtype = v.dtype  # Boltz returns the core's output in v's dtype
            q, k, v = q.float(), k.float(), v.float()
            out = None
            if fused_attention.fused_available(q) and triton_attention.usable(q):
                try:
                    out = _fused_core(q, k, v, bias, mask, layout, m.inf, multiplicity)
                except triton_attention.LAUNCH_ERRORS as error:  # fails on every rank alike
                    triton_attention.failed(error)
            if out is None:
                out = _plain_core(q, k, v, bias, mask, layout, m.inf, multiplicity)
            out = out.to(dtype)
        out = m.proj_o(gate * out.reshape(batch, -1, m.c_s))  # rows R_p
        return all_gather_cat(out, grid.col_group, dim=1)  # [B, N', C_s]


def _plain_core(q, k, v, bias, mask, layout: Layout, inf: float, multiplicity: int) -> torch.Tensor:
    """Boltz's float32 attention core over my key block, the softmax combined over the grid
    row; the reference path (CPU, float64). q: [B·M, I, H, d], k, v: [B·M, J, H, d],
    bias: [B, H, I, J] → [B·M, I, H, d] float32."""
    grid, cols = layout.grid, layout.cols
    attn = torch.einsum("bihd,bjhd->bhij", q, k)  # [B·M, H, I, J]
    # Boltz's operations in its order, in place, and with the bias broadcast over the
    # samples where Boltz repeats it M times (and adds it after a float32 copy): the
    # same float32 values without those [B·M, H, I, J] copies (an add promotes a bf16
    # bias exactly as .float() does)
    attn.div_(q.shape[-1]**0.5)
    attn.view(-1, multiplicity, *attn.shape[1:]).add_(bias.unsqueeze(1))
    attn.add_((1 - mask[:, None, None, cols].float()) * -inf)
    attn.add_(layout.padding_bias(cols, q.device, attn.dtype, inf))
    row_max = all_reduce(attn.amax(dim=-1), grid.row_group, dist.ReduceOp.MAX)
    weights = attn.sub_(row_max.unsqueeze(-1)).exp_()
    total = all_reduce(weights.sum(dim=-1), grid.row_group)  # [B, H, I]
    out = all_reduce(torch.einsum("bhij,bjhd->bihd", weights, v), grid.row_group)
    return out / total.permute(0, 2, 1).unsqueeze(-1)


def _fused_core(q, k, v, bias, mask, layout: Layout, inf: float, multiplicity: int) -> torch.Tensor:
    """_plain_core's result with one flash-attention kernel per batch entry (its M samples
    share the bias: triton_attention's shared-bias shape) — no [B·M, H, I, J] scores, which
    at 2,500 tokens were more than half of a denoising step (ten float32 passes over them
    per layer; the step went from 89 to 41 ms on an H200 without them).
    The token mask and grid padding enter as a per-key bias with Boltz's values; the grid row
    merges the blocks' softmaxes through their log-sum-exps (exact)."""
    grid, cols = layout.grid, layout.cols
    width = q.shape[-1]
    key_bias = ((1 - mask[:, cols].float()) * -inf
                + layout.padding_bias(cols, q.device, torch.float32, inf)).contiguous()  # [B·M, J]
    outs, lses = [], []
    for b in range(bias.shape[0]):
        samples = slice(b * multiplicity, (b + 1) * multiplicity)
        out, lse = triton_attention.shared_bias_attention(
            q[samples].transpose(1, 2), k[samples].transpose(1, 2), v[samples].transpose(1, 2),
            bias[b], key_bias=key_bias[samples], scale=width**-0.5)
        outs.append(out)  # [M, H, I, d], a view of [M, I, H, d] memory
        lses.append(lse)  # [M, H, I]
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    if grid.cols > 1:  # softmax over the whole row: weigh each block by exp(lse - max lse)
        lse = lses[0] if len(lses) == 1 else torch.cat(lses)
        # (all_reduce reduces a contiguous tensor in place: lse and weight are read first)
        top = all_reduce(lse.clone(), grid.row_group, dist.ReduceOp.MAX)
        weight = torch.exp(lse - top)
        out = all_reduce(out * weight.unsqueeze(-1), grid.row_group)
        out = out / all_reduce(weight, grid.row_group).unsqueeze(-1)
    return out.transpose(1, 2)  # [B·M, I, H, d]


def pair_bias(proj_z: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Boltz's proj_z(z) → [B, H, |R_p|, |C_q|], contiguous (keys contiguous, as the fused
    kernel reads a bias). The Pairformer's proj_z is LayerNorm → Linear
    (C_z → H) → heads first: done strip by strip of rows with the norm in z's dtype
    (layer_norm_to: one pass on GPUs), so no normed copy of the whole block exists (float32
    here, as Boltz computes it: 2 GiB per layer at 2,048 tokens on one GPU, made by a PyTorch
    kernel that took 6 of a layer's 149 ms on an H200). The diffusion transformer's proj_z only
    moves the heads (it is handed the bias itself)."""
    if not isinstance(proj_z, nn.Sequential):
        return proj_z(z).contiguous()  # a no-op for ShardedPairBias's heads-first memory
    norm, linear, _ = proj_z  # the third only moves the heads first: done as it is stored
    rows = z.shape[1]
    return assemble_rows_heads_first(  # keys contiguous, as the fused kernel reads
        lambda r0, r1: linear(layer_norm_to(norm, z[:, r0:r1], z.dtype)), rows, strip_rows(rows))
