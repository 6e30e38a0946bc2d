"""Triangle attention (starting and ending node) on a tiled pair tensor.

Starting node, for each row i: o[i, j] = Σ_k softmax_k(q[i,j]·k[i,k]/√d + mask[i,k] + β[j,k]) v[i,k]
with β = per-head bias projected from the pair tensor. Rank (p, q) owns the queries
(i ∈ R_p, j ∈ C_q). The bias rows β[C_q, :] are gathered once (a layout transpose +
all-gather in the grid column: N'·N'·H/c values, H = 4 heads against the pair tensor's 128
channels). Then the rows are processed in chunks, end to end — layer norm, projections,
attention, gate, output projection — so no full-block transient beyond the result exists:
for each chunk the keys and values of its rows arrive block by block around the grid row
(ring shift, next block posted before the current one is used) and the softmax over key
blocks is exact.

On CUDA each (row chunk, key block) is one fused attention call that also returns the
log-sum-exp, and blocks merge through it (fused_attention.py). Where the update is added into
z (every layer), each chunk's gate, output projection and add are one more kernel
(triton_gated_output.py). The kernel takes one bias
[H, J, K] shared by every row i (never copied per row or per chunk): β with the pair mask
added as a per-key bias once per call, in the copy that lays β out with keys contiguous.
That is exact because Boltz's pair mask is the outer product of the token mask (checked on
the device without a sync) — rows of masked tokens then differ from serial Boltz, and never
reach real tokens. (A per-row key mask inside the kernel would cost one more operation per
score: 13 % of the kernel's time on an H200, bench/RESULTS.md.) The element-wise streaming
softmax below is the reference path (CPU, float64), exact for any pair mask.

Ending node = starting node on the transposed pair tensor (Boltz transposes, attends,
transposes back), with the ending module's own parameters. Layer norm commutes with the
transpose, so the normalised (compute-dtype) tensor is what crosses the grid. On grids of
one row (1×1, 1×c — what 2 GPUs get) no pair block crosses it: each rank holds whole
columns, so the ending node's keys are all local; it runs on transposed views and writes
through a transposed view of its output, and only β (H channels) is all-gathered.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.profiler import record_function

from foldcp.distributed import fused_attention, triton_gated_output
from foldcp.distributed.comm import RingShift, all_gather_cat, transpose_pair
from foldcp.distributed.derived_weights import derived
from foldcp.distributed.fused_attention import LseMerge, block_attention
from foldcp.distributed.grid import Grid
from foldcp.distributed.layout import (
    Layout,
    assemble_rows,
    chunk_rows,
    compute_dtype,
    normed_rows,
    row_chunks,
)
from foldcp.distributed.pointwise import add_, gate_


class DistTriangleAttention(nn.Module):
    def __init__(self, serial: nn.Module, row_chunk: int | None = None, fused: bool = True) -> None:
        super().__init__()
        self.serial = serial  # Boltz TriangleAttention: its parameters are ours
        self.row_chunk = row_chunk
        self.fused = fused  # the fused CUDA kernel where available (see fused_attention.py)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, layout: Layout,
                into: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, |R_p|, |C_q|, C] block, mask: [B, |R_p|, |C_q|] pair-mask block.
        Returns the update [B, |R_p|, |C_q|, C] in the compute dtype, or `into` + the update
        when `into` is given (added in place chunk by chunk where the output is made in
        chunks; it may be x itself: x is read only through its normed copy)."""
        grid, n = layout.grid, layout.n_padded
        x = normed_rows(self.serial.layer_norm, x, compute_dtype(x))
        if self.serial.starting:
            return self._starting(x, mask, layout, into=into)
        if grid.rows == 1:
            # One grid row (1×1, 1×c): this rank holds whole columns, and the ending node
            # attends along columns, so every key is local. Run the starting node on the
            # transposed VIEWS with all keys local (the projections copy one row chunk at a
            # time) and write through a transposed view of a natural-layout output: no
            # transposes or key exchanges of pair blocks, only β's H channels gathered.
            beta = all_gather_cat(self.serial.linear(x), grid.row_group, dim=2)  # β: [B, N', N', H]
            local = Layout(Grid(1, 1, grid.rank), layout.n_real, n)
            return self._starting(x.transpose(1, 2), mask.transpose(1, 2), local,
                                  bias_rows=beta.permute(0, 3, 2, 1),
                                  transposed_out=True, into=into)
        out = self._starting(transpose_pair(x, grid, n), transpose_pair(mask, grid, n), layout)
        out = transpose_pair(out, grid, n)
        return out if into is None else add_(into, out)

    def _starting(self, x: torch.Tensor, mask: torch.Tensor, layout: Layout,
                  bias_rows: torch.Tensor | None = None, transposed_out: bool = False,
                  into: torch.Tensor | None = None) -> torch.Tensor:
        """x: the layer-normed block (compute dtype); bias_rows: the [B, H, j, k] bias (any
        strides) if the caller has it; transposed_out: return the result's transpose (see forward); into:
        add the result into it (see forward)."""
        m = self.serial
        mha = m.mha
        grid, n = layout.grid, layout.n_padded
        heads, width = mha.no_heads, mha.c_hidden
        batch, rows, cols, _ = x.shape

        # β[j, k] for my query columns j ∈ C_q and every key k: [B, H, |C_q|, N']
        if bias_rows is None:
            bias_block = m.linear(x)  # β[R_p, C_q]: H channels
            bias_t = transpose_pair(bias_block, grid, n)  # βᵀ[R_p, C_q] = β[C_q, R_p]ᵀ
            bias_rows = all_gather_cat(bias_t, grid.col_group, dim=1)  # βᵀ[:, C_q]
            bias_rows = bias_rows.permute(0, 3, 2, 1)  # [B, H, j, k] view

        def heads_view(t):  # [B, I, J, H·d] -> [B, I, H, J, d], a view (kernels read strides)
            return t.view(batch, t.shape[1], t.shape[2], heads, width).transpose(2, 3)

        fused = self.fused and fused_attention.fused_available(x)
        if fused:
            # the kernel's one bias per key block: β + the key mask, made once for all chunks
            bias_rows = self._masked_bias(bias_rows, _key_mask(mask), layout, x.dtype)
        else:
            bias_rows = bias_rows.contiguous()  # keys contiguous
        weight, bias = derived(
            mha, ("qkvg", x.dtype), lambda: qkvg_projection(mha, x.dtype),
            *(p for layer in (mha.linear_q, mha.linear_k, mha.linear_v, mha.linear_g)
              for p in layer.parameters()))

        def attended(r0: int, r1: int) -> tuple[torch.Tensor, torch.Tensor]:
            """The attention's output o [B, r, J, H, d] and the gate's logits [B, r, J, H·d]."""
            # (record_function labels: bench profiles split the sub-layer's time)
            with record_function("foldcp.tri_att.qkvg"):
                # q, k, v and the gate's logits from one GEMM: each chunk of x read once
                q, k, v, g = torch.nn.functional.linear(x[:, r0:r1], weight, bias).chunk(4, dim=-1)
            q, k, v = heads_view(q), heads_view(k), heads_view(v)
            blocks = self._key_blocks(k, v, mask[:, r0:r1], layout)
            with record_function("foldcp.tri_att.attention"):
                if fused:
                    return self._fused_blocks(q, blocks, bias_rows), g
                return self._streamed_blocks(q, blocks, bias_rows, layout), g

        def output(o: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
            """linear_o(o · sigmoid(g)): the rows' update, unfused."""
            with record_function("foldcp.tri_att.gate_out"):
                gated = gate_(o, g.view(o.shape), None)
                return mha.linear_o(gated.reshape(*o.shape[:3], heads * width))

        def rows_of_output(r0: int, r1: int) -> torch.Tensor:
            return output(*attended(r0, r1))

        chunk = self._chunk(rows, cols, n, heads, fused, x.element_size())
        if into is not None and triton_gated_output.applies(into, mha.linear_o):
            # gate, output projection and the add into z one kernel per chunk (no update made)
            target = into.transpose(1, 2) if transposed_out else into
            for r0, r1 in row_chunks(rows, chunk):
                o, g = attended(r0, r1)
                with record_function("foldcp.tri_att.gate_out"):
                    fused_out = triton_gated_output.add_gated_output_or_none(
                        target[:, r0:r1], o, g, mha.linear_o)
                if fused_out is None:  # cannot be built here
                    add_(target[:, r0:r1], output(o, g))
            return into
        return assemble_rows(rows_of_output, rows, chunk, transposed=transposed_out, into=into)

    def _chunk(self, rows: int, cols: int, n: int, heads: int, fused: bool, itemsize: int) -> int:
        """Rows per chunk: the fused kernel holds no scores, so ~1/8 of the block (more for
        small blocks, within the small-chunk budget: layout.chunk_rows); the streamed
        path holds [chunk, H, |C_q|, |key block|] scores, kept within x's own size."""
        if self.row_chunk:
            return self.row_chunk
        channels = self.serial.mha.c_hidden * heads
        # a row's transients on the fused path: q, k, v, g and the attention's output
        chunk = chunk_rows(rows, -(-rows // 8), cols * 5 * channels * itemsize)
        if not fused:
            chunk = min(chunk, rows * channels // max(1, heads * n))
        return max(1, chunk)

    def _masked_bias(self, bias_rows: torch.Tensor, key_mask: torch.Tensor, layout: Layout,
                     dtype: torch.dtype) -> torch.Tensor:
        """[B, H, j, k] view of β → β + inf·(mask_k − 1) + grid padding's bias, keys
        contiguous, in dtype: one pass, where the layout copy of β was anyway. key_mask:
        [B, |C_q|] my columns' (_key_mask), gathered along the grid row (keys are the columns
        of the whole grid row)."""
        m = self.serial
        key_mask = all_gather_cat(key_mask, layout.grid.row_group, dim=1)  # [B, N']
        key_bias = m.inf * (key_mask - 1) + layout.padding_bias(
            slice(None), key_mask.device, key_mask.dtype, m.inf)
        out = torch.empty(bias_rows.shape, dtype=dtype, device=bias_rows.device)
        return torch.add(bias_rows, key_bias[:, None, None, :], out=out)

    @staticmethod
    def _key_blocks(k, v, mask, layout: Layout):
        """(key slice, k, v, mask) of each key block of these rows, in ring order: the next
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

    @staticmethod
    def _fused_blocks(q, blocks, bias_rows) -> torch.Tensor:
        """Same result as _streamed_blocks on real rows, one fused kernel per key block;
        bias_rows with the keys' mask in it (_masked_bias). q: [B, I, H, J, d] → [B, I, J, H, d]."""
        merges = [LseMerge() for _ in range(q.shape[0])]
        for key_slice, k_blk, v_blk, _ in blocks:
            for b, merge in enumerate(merges):
                # bias_rows carries the keys' mask (_masked_bias): [H, J, K], a view
                merge.add(*block_attention(q[b], k_blk[b], v_blk[b], bias_rows[b, :, :, key_slice]))
        results = [merge.result().to(q.dtype) for merge in merges]
        # one batch entry (every fold): a view, not a stacked copy of the chunk's output
        out = results[0].unsqueeze(0) if len(results) == 1 else torch.stack(results)
        return out.transpose(2, 3)

    def _streamed_blocks(self, q, blocks, bias_rows, layout: Layout) -> torch.Tensor:
        """Exact streaming softmax with element-wise ops (the reference path).
        q: [B, I, H, J, d] → [B, I, J, H, d]."""
        m = self.serial
        # Running statistics in at least float32: under bf16 autocast the block products are
        # bf16, but sums carried across blocks must not be.
        acc = torch.promote_types(q.dtype, torch.float32)
        run_max = torch.full(q.shape[:-1], float("-inf"), dtype=acc, device=q.device)
        run_sum = torch.zeros_like(run_max)
        run_out = torch.zeros(q.shape, dtype=acc, device=q.device)
        for key_slice, k_blk, v_blk, mask_blk in blocks:
            scores = torch.matmul(q, k_blk.transpose(-1, -2)).to(acc)
            scores += (m.inf * (mask_blk - 1))[:, :, None, None, :]  # [B, I, 1, 1, K]
            scores += bias_rows[:, None, :, :, key_slice]  # [B, 1, H, J, K]
            scores += layout.padding_bias(key_slice, q.device, acc, m.inf)
            self._merge(scores, v_blk, run_max, run_sum, run_out)
        return (run_out / run_sum.unsqueeze(-1)).transpose(2, 3).to(q.dtype)

    @staticmethod
    def _merge(scores, values, run_max, run_sum, run_out) -> None:
        """Fold one key block into the running (max, sum, output), in place."""
        block_max = scores.amax(dim=-1)
        new_max = torch.maximum(run_max, block_max)
        weights = torch.exp(scores - new_max.unsqueeze(-1))
        rescale = torch.exp(run_max - new_max)
        run_sum.mul_(rescale).add_(weights.sum(dim=-1))
        run_out.mul_(rescale.unsqueeze(-1)).add_(torch.matmul(weights.to(values.dtype), values)
                                                 .to(run_out.dtype))
        run_max.copy_(new_max)


def qkvg_projection(mha: nn.Module, dtype: torch.dtype | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight and bias of one linear layer giving [q/√d | k | v | g logits] of Boltz's
    triangle-attention Attention: the 1/√d of the scores folded into q's weight (Boltz
    divides q after its projection) and the four projections of a chunk made by one GEMM that
    reads it once. Bias None where none of the four has one (Boltz 2.2.1's). dtype: cast to
    it (the inputs' — under autocast the compute dtype, which autocast would cast to)."""
    scale = 1.0 / math.sqrt(mha.c_hidden)
    parts = ((mha.linear_q, scale), (mha.linear_k, 1.0), (mha.linear_v, 1.0), (mha.linear_g, 1.0))
    dtype = dtype or mha.linear_q.weight.dtype
    weight = torch.cat([layer.weight * factor for layer, factor in parts]).to(dtype)
    if all(layer.bias is None for layer, _ in parts):
        return weight, None
    return weight, torch.cat([weight.new_zeros(layer.out_features) if layer.bias is None
                              else layer.bias * factor for layer, factor in parts]).to(dtype)


def _key_mask(mask: torch.Tensor) -> torch.Tensor:
    """The pair-mask block [B, I, J] as a per-key mask [B, J] (the max over its rows), for the
    fused path's one bias shared by all rows. Exact iff the block is the outer product of a
    row and a column token mask (Boltz's pair mask is), asserted on the device without a host
    sync: every row with a real token then has this key mask; rows with none get it too, and
    differ from serial Boltz, but never reach real tokens."""
    rows_real = mask.amax(dim=2, keepdim=True)  # [B, I, 1]
    cols_real = mask.amax(dim=1, keepdim=True)  # [B, 1, J]
    torch._assert_async(torch.all(mask == rows_real * cols_real),
                        "triangle attention's fused path needs an outer-product pair mask")
    return cols_real.squeeze(1)
