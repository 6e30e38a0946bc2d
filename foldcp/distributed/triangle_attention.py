"""Triangle attention (starting and ending node) on a tiled pair tensor.

Starting node, for each row i: o[i, j] = Σ_k softmax_k(q[i,j]·k[i,k]/√d + mask[i,k] + β[j,k]) v[i,k]
with β = per-head bias projected from the pair tensor. Rank (p, q) owns the queries
(i ∈ R_p, j ∈ C_q). Keys and values of its rows arrive block by block around the grid row
(ring shift, next block posted before the current one is used); the bias rows β[C_q, :] are
gathered once (a layout transpose + all-gather in the grid column: N'·N'·H/c values, H = 4
heads against the pair tensor's 128 channels). Softmax is exact and streaming: a running max,
sum and unnormalised output per (i, j, head), merged block by block, divided once at the end.
Query rows are processed in chunks so no rank materialises N·N·N scores. On CUDA each
(key block, row chunk) is one fused memory-efficient attention call that also returns the
log-sum-exp, and blocks merge through it (fused_attention.py); the element-wise streaming
softmax below is the reference path (CPU, float64).

Ending node = starting node on the transposed pair tensor (Boltz transposes, attends,
transposes back), with the ending module's own parameters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from foldcp.distributed.comm import RingShift, all_gather_cat, transpose_pair
from foldcp.distributed import fused_attention
from foldcp.distributed.fused_attention import LseMerge, block_attention
from foldcp.distributed.layout import Layout


class DistTriangleAttention(nn.Module):
    def __init__(self, serial: nn.Module, row_chunk: int | None = None, fused: bool = True) -> None:
        super().__init__()
        self.serial = serial  # Boltz TriangleAttention: its parameters are ours
        self.row_chunk = row_chunk
        self.fused = fused  # the fused CUDA kernel where available (see fused_attention.py)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, layout: Layout) -> torch.Tensor:
        """x: [B, |R_p|, |C_q|, C] block, mask: [B, |R_p|, |C_q|] pair-mask block."""
        grid, n = layout.grid, layout.n_padded
        if not self.serial.starting:
            x = transpose_pair(x, grid, n)
            mask = transpose_pair(mask, grid, n)
        out = self._starting(x, mask, layout)
        if not self.serial.starting:
            out = transpose_pair(out, grid, n)
        return out

    def _starting(self, x: torch.Tensor, mask: torch.Tensor, layout: Layout) -> torch.Tensor:
        m = self.serial
        mha = m.mha
        grid, n = layout.grid, layout.n_padded
        heads, width = mha.no_heads, mha.c_hidden
        batch, rows, cols, _ = x.shape

        x = m.layer_norm(x)
        # β[j, k] for my query columns j ∈ C_q and every key k: [B, H, |C_q|, N']
        bias_block = m.linear(x)  # β[R_p, C_q]
        bias_t = transpose_pair(bias_block, grid, n)  # βᵀ[R_p, C_q] = β[C_q, R_p]ᵀ
        bias_rows = all_gather_cat(bias_t, grid.col_group, dim=1)  # βᵀ[:, C_q]
        bias_rows = bias_rows.permute(0, 3, 2, 1)  # [B, H, j, k]

        def heads_view(t):  # [B, I, J, H·d] -> [B, I, H, J, d]
            return t.view(batch, rows, t.shape[2], heads, width).transpose(2, 3).contiguous()

        q = heads_view(mha.linear_q(x)) / math.sqrt(width)
        k = heads_view(mha.linear_k(x))
        v = heads_view(mha.linear_v(x))
        chunk = self.row_chunk or max(1, min(rows, rows * x.shape[-1] // max(1, heads * cols)))

        if self.fused and fused_attention.fused_available(q):
            out = self._fused_blocks(q, k, v, mask, bias_rows, layout, chunk)
        else:
            out = self._streamed_blocks(q, k, v, mask, bias_rows, layout, chunk)
        gate = mha.sigmoid(mha.linear_g(x)).view(batch, rows, cols, heads, width)
        out = (out * gate).reshape(batch, rows, cols, heads * width)
        return mha.linear_o(out)

    @staticmethod
    def _key_blocks(k, v, mask, layout: Layout):
        """(key slice, k, v, mask) of each key block of my rows, in ring order: the next
        block's transfer is posted before the caller computes on the current one, and
        waited for when the caller asks for the next."""
        grid, n = layout.grid, layout.n_padded
        ring = RingShift(grid.row_ranks, grid.rank)
        blocks = [k, v, mask]
        for step in range(grid.cols):
            pending = ring.post(blocks) if step + 1 < grid.cols else None
            yield (slice(*grid.col_range(n, (grid.q + step) % grid.cols)), *blocks)
            if pending is not None:
                blocks = pending.wait()

    def _fused_blocks(self, q, k, v, mask, bias_rows, layout: Layout, chunk: int) -> torch.Tensor:
        """Same result as _streamed_blocks, one fused kernel per (key block, row chunk)."""
        m = self.serial
        batch, rows, heads, cols, width = q.shape
        merges = [LseMerge() for _ in range(0, rows, chunk)]
        for key_slice, k_blk, v_blk, mask_blk in self._key_blocks(k, v, mask, layout):
            keys = k_blk.shape[-2]
            tri_pad = (bias_rows[:, None, :, :, key_slice]
                       + layout.padding_bias(key_slice, q.device, bias_rows.dtype, m.inf))
            for merge, r0 in zip(merges, range(0, rows, chunk)):
                r1 = min(rows, r0 + chunk)
                mask_bias = (m.inf * (mask_blk[:, r0:r1] - 1)).to(tri_pad.dtype)[:, :, None, None, :]
                bias = (tri_pad + mask_bias).reshape(-1, heads, cols, keys)  # [B·I, H, J, K]
                out, lse = block_attention(
                    q[:, r0:r1].reshape(-1, heads, cols, width),
                    k_blk[:, r0:r1].reshape(-1, heads, keys, width),
                    v_blk[:, r0:r1].reshape(-1, heads, keys, width), bias)
                merge.add(out, lse)
        out = torch.cat([merge.result().view(batch, -1, heads, cols, width) for merge in merges], dim=1)
        return out.transpose(2, 3).to(q.dtype)  # [B, I, J, H, d]

    def _streamed_blocks(self, q, k, v, mask, bias_rows, layout: Layout, chunk: int) -> torch.Tensor:
        """Exact streaming softmax with element-wise ops (the reference path)."""
        m = self.serial
        batch, rows, heads, cols, _ = q.shape
        # Running statistics in at least float32: under bf16 autocast the block products are
        # bf16, but sums carried across blocks must not be.
        acc = torch.promote_types(q.dtype, torch.float32)
        run_max = torch.full((batch, rows, heads, cols), float("-inf"), dtype=acc, device=q.device)
        run_sum = torch.zeros_like(run_max)
        run_out = torch.zeros(q.shape, dtype=acc, device=q.device)
        for key_slice, k_blk, v_blk, mask_blk in self._key_blocks(k, v, mask, layout):
            mask_bias = (m.inf * (mask_blk - 1))[:, :, None, None, :]  # [B, I, 1, 1, K]
            tri_bias = bias_rows[:, None, :, :, key_slice]  # [B, 1, H, J, K]
            pad_bias = layout.padding_bias(key_slice, q.device, q.dtype, m.inf)
            for r0 in range(0, rows, chunk):
                r1 = min(rows, r0 + chunk)
                scores = torch.matmul(q[:, r0:r1], k_blk[:, r0:r1].transpose(-1, -2)).to(acc)
                scores += mask_bias[:, r0:r1]
                scores += tri_bias
                scores += pad_bias
                self._merge(scores, v_blk[:, r0:r1], run_max[:, r0:r1], run_sum[:, r0:r1],
                            run_out[:, r0:r1])
        return (run_out / run_sum.unsqueeze(-1)).transpose(2, 3).to(q.dtype)  # [B, I, J, H, d]

    @staticmethod
    def _merge(scores, values, run_max, run_sum, run_out) -> None:
        """Fold one key block into the running (max, sum, output), in place."""
        block_max = scores.amax(dim=-1)
        new_max = torch.maximum(run_max, block_max)
        weights = torch.exp(scores - new_max.unsqueeze(-1))
        rescale = torch.exp(run_max - new_max)
        run_sum.mul_(rescale).add_(weights.sum(dim=-1))
        run_out.mul_(rescale.unsqueeze(-1)).add_(torch.matmul(weights, values))
        run_max.copy_(new_max)
