"""Triangle multiplication (outgoing and incoming) on a tiled pair tensor.

Built from Boltz's TriangleMultiplicationOutgoing / Incoming and sharing their parameters:
everything but the product over k is per position and runs on the local block.

- outgoing: out[d, i, j] = Σ_k a[d, i, k] b[d, j, k] = SUMMA(a, bᵀ)
- incoming: out[d, i, j] = Σ_k a[d, k, i] b[d, k, j] = SUMMA(aᵀ, b)

a and b are projected straight into channel-first blocks [B, d, |R_p|, |C_q|] (one GEMM
W·xᵀ each), so the product over k is a batched matrix multiplication on contiguous memory
with no layout copies; on a grid of one the transposed operand is a free view, on a grid of
one row (1 × c) blocks shift around the row with no transposes (ring_product.py), on other
grids one layout transpose brings it into natural layout for SUMMA (summa.py). The product
goes back to channel-last once, row chunk by row chunk, for the output stage (where the
update is added into z, on GPUs one kernel per chunk: triton_product_output.py).

Channels d are independent in the product, so it runs over channel chunks: only a chunk of
a and b exists at a time, and the block's transients stay a fraction of the pair block's
size. The normalised input is kept in the compute dtype (what the projections see under
autocast).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.profiler import record_function

from foldcp.distributed import triton_gated_projection, triton_product_output
from foldcp.distributed.comm import transpose_pair
from foldcp.distributed.layout import (
    Layout,
    assemble_rows,
    chunk_rows,
    compute_dtype,
    layer_norm_to,
    normed_rows,
    row_chunks,
)
from foldcp.distributed.derived_weights import derived
from foldcp.distributed.pointwise import add_gated_, gate_
from foldcp.distributed.ring_product import ring_product
from foldcp.distributed.summa import summa


CHANNEL_MULTIPLE = 16


def channel_chunk(channels: int, chunk: int) -> int:
    """Channels per chunk of a and b: `chunk` (the memory budget's, layout.chunk_rows) rounded
    down to a multiple of CHANNEL_MULTIPLE, or all of them. Why: the gated-projection kernel's
    row count (2 × the chunk) is then a multiple of 16 at every size — one Triton
    specialisation, the one a batch compiles ahead (triton_precompile.py), where 69 channels
    at 1,392 tokens on one GPU had compiled another inside the first fold (~2.5 s) — and its
    64-row weight tiles are full (69 channels = 138 rows filled 3 tiles of 64 to 72%).
    Exact either way: channels are independent."""
    if chunk >= channels or chunk < CHANNEL_MULTIPLE:
        return min(chunk, channels)
    return chunk - chunk % CHANNEL_MULTIPLE


class DistTriangleMultiplication(nn.Module):
    def __init__(self, serial: nn.Module, outgoing: bool, channel_chunk: int | None = None) -> None:
        super().__init__()
        self.serial = serial  # the Boltz module: its parameters are ours
        self.outgoing = outgoing
        self.channel_chunk = channel_chunk

    def forward(self, x: torch.Tensor, mask: torch.Tensor, layout: Layout,
                into: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, |R_p|, |C_q|, D] block, mask: [B, |R_p|, |C_q|] pair-mask block.
        Returns the update [B, |R_p|, |C_q|, D] (compute dtype), or `into` + the update when
        `into` is given (added in place row chunk by row chunk; it may be x itself: x is
        read only through its normed copy)."""
        m = self.serial
        x = normed_rows(m.norm_in, x, compute_dtype(x))
        batch, rows, cols, channels = x.shape
        autocast = torch.is_autocast_enabled(x.device.type)
        positions = x.view(batch, rows * cols, channels).mT  # [B, D, I·J], a view
        keep = mask.reshape(batch, 1, rows * cols).to(x.dtype)
        if not triton_gated_projection.wanted(x):
            # multiplying by an all-ones mask changes nothing: skip the two passes over a and
            # b (one host sync; the usual case, with no padded tokens in the block). The
            # kernel masks in its epilogue for free, and no sync keeps a layer recordable as
            # a CUDA graph.
            keep = None if bool(keep.min() == 1) else keep

        def gated(c0: int, c1: int) -> tuple[torch.Tensor, torch.Tensor]:
            """Channels [c0, c1) of a and of b: Boltz's p_in(x) * sigmoid(g_in(x)), masked, as
            [B, d, I, J] each. Their four projections come from one GEMM (x read once per
            chunk, not four times: at d = 32 output rows the GEMM is bound by reading x), or,
            on GPUs, from one kernel that also gates them (triton_gated_projection).
            Boltz casts them to float32, which autocast casts back for the product."""
            d = c1 - c0
            p_rows, g_rows = derived(m, ("gated_rows", c0, c1, x.dtype), lambda: tuple(
                torch.cat([w[c0:c1], w[channels + c0:channels + c1]]).to(x.dtype)
                for w in (m.p_in.weight, m.g_in.weight)), m.p_in.weight, m.g_in.weight)
            a_and_b = triton_gated_projection.gated_projection_or_none(
                x.view(batch, rows * cols, channels), p_rows, g_rows, keep)  # [B, 2d, I·J]
            if a_and_b is None:
                projected = torch.matmul(torch.cat([p_rows, g_rows]), positions)  # [B, 4d, I·J]
                a_and_b = gate_(projected[:, :2 * d], projected[:, 2 * d:], keep)
            if not autocast:
                a_and_b = a_and_b.float()
            return (a_and_b[:, :d].view(batch, d, rows, cols),
                    a_and_b[:, d:].view(batch, d, rows, cols))

        product = None
        # a channel's transients: a and b (compute dtype, or float32) and its product part,
        # and on grids the blocks in transfer (current and next: about two of a and b)
        item = 4 if not autocast else x.element_size()
        per_position = 2 * item + 4 + (4 * item if layout.grid.size > 1 else 0)
        chunk = self.channel_chunk or channel_chunk(
            channels, chunk_rows(channels, -(-channels // 4), batch * rows * cols * per_position))
        for c0, c1 in row_chunks(channels, chunk):
            with record_function("foldcp.tri_mul.project"):
                a, b = gated(c0, c1)
            with record_function("foldcp.tri_mul.product"):
                part = _product(a, b, layout, self.outgoing)
            del a, b
            if product is None:
                product = part.new_empty((batch, channels, rows, cols))
            product[:, c0:c1] = part
            del part

        def output_rows(r0: int, r1: int) -> tuple[torch.Tensor, torch.Tensor]:
            """p_out(norm_out(product)) and g_out's logits for rows [r0, r1)."""
            rows_cf = product[:, :, r0:r1]  # [B, D, r, J] channel-first → normed channel-last
            normed = layer_norm_to(m.norm_out, rows_cf.flatten(2).movedim(1, -1), x.dtype)
            normed = normed.view(batch, r1 - r0, cols, channels)
            return m.p_out(normed), m.g_out(x[:, r0:r1])

        # a row's transients: normed rows, p_out and g_out's results
        chunk = chunk_rows(rows, -(-rows // 4), batch * cols * channels * 3 * x.element_size())
        with record_function("foldcp.tri_mul.output"):
            if into is None:
                return assemble_rows(lambda r0, r1: gate_(*output_rows(r0, r1), None), rows, chunk)
            fused = triton_product_output.applies(into, m)
            for r0, r1 in row_chunks(rows, chunk):  # into += p · sigmoid(g), one pass per chunk
                # on GPUs the whole stage one kernel per chunk (triton_product_output)
                if fused and triton_product_output.add_product_output_or_none(
                        into[:, r0:r1], product[:, :, r0:r1], x[:, r0:r1], m) is not None:
                    continue
                add_gated_(into[:, r0:r1], *output_rows(r0, r1))
            return into


def _product(a: torch.Tensor, b: torch.Tensor, layout: Layout, outgoing: bool) -> torch.Tensor:
    """The product over k of channel-first blocks [B, d, |R_p|, |C_q|]: a·bᵀ (outgoing) or
    aᵀ·b (incoming). On a grid of one the transposed operand is a view (the matrix
    multiplication reads it transposed); on a grid of one row, ring_product (no transposes);
    else SUMMA after a layout transpose of that operand."""
    grid = layout.grid
    if grid.size == 1:
        return torch.matmul(a, b.mT) if outgoing else torch.matmul(a.mT, b)
    if grid.rows == 1:
        return ring_product(a, b, layout, outgoing)
    if outgoing:
        return summa(a, transpose_pair(b, grid, layout.n_padded, pair_dims=(2, 3)), layout)
    return summa(transpose_pair(a, grid, layout.n_padded, pair_dims=(2, 3)), b, layout)
