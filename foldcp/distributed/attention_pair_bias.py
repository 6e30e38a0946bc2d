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

For the diffusion token transformer (its 24 layers launched most of a denoising step's ~1,636
kernels at 1,000 tokens on an H200, 13.5 ms, its GEMMs small at ~128 TFLOP/s; not yet
measured with what follows): `fuse_projections` forms q, k, v and the gate from one GEMM
where queries and keys are the same rows, and `key_bias` (the mask's and padding's per-key
bias) can be made once per call for all its layers. The Pairformer passes neither and keeps
its four projections. proj_o's weight is taken in the GEMM's dtype once (weight_in), not
cast by autocast at each call: the same values.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from foldcp.distributed import fused_attention, triton_attention
from foldcp.distributed.comm import all_gather_cat, all_reduce
from foldcp.distributed.derived_weights import derived
from foldcp.distributed.layer_conditioning import weight_in
from foldcp.distributed.layout import (Layout, assemble_rows_heads_first, compute_dtype,
                                       layer_norm_to, strip_rows)


class DistAttentionPairBias(nn.Module):
    def __init__(self, serial: nn.Module) -> None:
        super().__init__()
        self.serial = serial

    def forward(self, s: torch.Tensor, z: torch.Tensor, mask: torch.Tensor, k_in: torch.Tensor,
                layout: Layout, multiplicity: int = 1, key_bias: torch.Tensor | None = None,
                fuse_projections: bool = False) -> torch.Tensor:
        """s, k_in: [B·M, N', C_s] (whole), z: [B, |R_p|, |C_q|, C_z] block (or, for the
        diffusion transformer whose proj_z only rearranges, the block's per-head bias),
        mask: [B·M, N'] tokens; M = multiplicity (diffusion samples sharing one bias).
        key_bias: attention_key_bias(mask, layout, inf), where the caller makes it once for
        several calls (the fused core's; made here otherwise). fuse_projections: q, k, v and
        the gate from one GEMM where that computes the same (`_projections`)."""
        m = self.serial
        grid = layout.grid
        batch = s.shape[0]
        q, k, v, gate = self._projections(s, k_in, layout, fuse_projections)
        bias = pair_bias(m.proj_z, z)  # [B, H, |R_p|, |C_q|]: shared by a batch entry's M samples
        with torch.autocast("cuda", enabled=False):  # as Boltz: attention core in float32
            dtype = v.dtype  # Boltz returns the core's output in v's dtype
            q, k, v = q.float(), k.float(), v.float()
            out = None
            if fused_attention.fused_available(q) and triton_attention.usable(q):
                try:
                    out = _fused_core(q, k, v, bias, mask, layout, m.inf, multiplicity, key_bias)
                except triton_attention.LAUNCH_ERRORS as error:  # fails on every rank alike
                    triton_attention.failed(error)
            if out is None:
                out = _plain_core(q, k, v, bias, mask, layout, m.inf, multiplicity)
            out = out.to(dtype)
        out = gate * out.reshape(batch, -1, m.c_s)  # rows R_p
        out = F.linear(out, *weight_in(m.proj_o, compute_dtype(out)))
        return all_gather_cat(out, grid.col_group, dim=1)  # [B, N', C_s]

    def _projections(self, s, k_in, layout: Layout, fuse: bool):
        """(q [B·M, |R_p|, H, d], k, v [B·M, |C_q|, H, d], sigmoid(gate) [B·M, |R_p|, C_s]).

        Fused: where keys come from the query input (k_in is s) and a grid of one row makes
        R_p every token, so C_q ⊆ R_p — [q | k | v | g] is one GEMM over s's rows
        (C_s → 4·C_s; proj_q's bias, zeros for the others) and k, v its C_q rows. On a 1×C grid
        that projects k and v for all N' rows instead of N'/C: a third more FLOPs, one GEMM
        instead of four. Otherwise Boltz's four projections of s[R_p] and k_in[C_q]."""
        m = self.serial
        rows, cols = layout.rows, layout.cols
        batch = s.shape[0]
        heads, width = m.num_heads, m.head_dim
        if fuse and k_in is s and layout.grid.rows == 1:
            dtype = compute_dtype(s)
            linears = (m.proj_q, m.proj_k, m.proj_v, m.proj_g)
            weight, bias = derived(m, ("foldcp.qkvg", dtype), lambda: _stacked(linears, dtype),
                                   *(p for linear in linears for p in linear.parameters()))
            q, k, v, g = F.linear(s, weight, bias).chunk(4, dim=-1)  # strided views
            q, g, k, v = q[:, rows], g[:, rows], k[:, cols], v[:, cols]
            gate = g.sigmoid_() if not torch.is_grad_enabled() else g.sigmoid()
        else:
            q, k, v = m.proj_q(s[:, rows]), m.proj_k(k_in[:, cols]), m.proj_v(k_in[:, cols])
            gate = m.proj_g(s[:, rows]).sigmoid()
        return (q.view(batch, -1, heads, width), k.view(batch, -1, heads, width),
                v.view(batch, -1, heads, width), gate)


def _stacked(linears, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The linears' weights one above the other and their biases (zeros where none), in dtype."""
    weight = torch.cat([linear.weight for linear in linears])
    bias = torch.cat([linear.bias if linear.bias is not None
                      else linear.weight.new_zeros(linear.out_features) for linear in linears])
    return weight.to(dtype).contiguous(), bias.to(dtype)


def attention_key_bias(mask: torch.Tensor, layout: Layout, inf: float) -> torch.Tensor:
    """[B·M, |C_q|] float32: Boltz's token mask (−inf where masked) and the grid padding
    (layout.padding_bias) as the fused core adds them per key. The same for every layer of one
    call of the diffusion token transformer (one mask, one inf), which makes it once."""
    cols = layout.cols
    return ((1 - mask[:, cols].float()) * -inf
            + layout.padding_bias(cols, mask.device, torch.float32, inf)).contiguous()


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


def _fused_core(q, k, v, bias, mask, layout: Layout, inf: float, multiplicity: int,
                key_bias: torch.Tensor | None = None) -> torch.Tensor:
    """_plain_core's result with one flash-attention kernel per batch entry (its M samples
    share the bias: triton_attention's shared-bias shape) — no [B·M, H, I, J] scores, which
    at 2,500 tokens were more than half of a denoising step (ten float32 passes over them
    per layer; the step went from 89 to 41 ms on an H200 without them).
    The token mask and grid padding enter as a per-key bias with Boltz's values; the grid row
    merges the blocks' softmaxes through their log-sum-exps (exact)."""
    grid, cols = layout.grid, layout.cols
    width = q.shape[-1]
    if key_bias is None:
        key_bias = attention_key_bias(mask, layout, inf)  # [B·M, J]
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
