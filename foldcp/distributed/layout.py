"""Where a tiled tensor lives: the grid, the padded token count, and which tokens are real."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from foldcp.distributed import (
    triton_attention,
    triton_gated_projection,
    triton_layer_norm,
    triton_transition,
)
from foldcp.distributed.derived_weights import derived
from foldcp.distributed.grid import Grid, pad_tokens, pair_block
from foldcp.distributed.pointwise import add_, silu_gate_


# Tokens are padded to a multiple of this on GPUs (grid padding, exact: padded tokens get
# zero weight everywhere): a pair dimension like 2,500 leaves bf16 rows at 5,000-byte strides,
# off the 16-byte alignment that cuBLAS's tensor-core kernels and Triton's vector loads want.
GPU_TOKEN_MULTIPLE = 16


def token_multiple(device: torch.device) -> int:
    """The token padding multiple for folds on `device` (1 off GPUs: no padding needed)."""
    return GPU_TOKEN_MULTIPLE if device.type == "cuda" else 1


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


SMALL_CHUNK_MIB = 1024  # a chunk's transients may take this many MiB (chunk_rows)


def _expansion_chunk(rows: int, expansion: int) -> int:
    return max(1, rows // max(1, expansion))


def chunk_rows(rows: int, chunk: int, bytes_per_row: int) -> int:
    """Rows per chunk for a Pairformer sub-layer done chunk by chunk of its block: `chunk`, the
    sub-layer's own fraction of the block that bounds its transients, or more rows (up to all)
    while a chunk's transients, about bytes_per_row each (the caller's estimate of its main
    tensors, a soft budget), stay under SMALL_CHUNK_MIB (FOLDCP_SMALL_CHUNK_MIB=M sets M, 0
    turns it off). Small blocks then run as fewer, larger launches: at 1,000 tokens a layer's
    kernels fell 382 → 177 and its host time 12.8 → 6.4 ms, for 0.7 GiB more at the fold's
    peak (bench/RESULTS.md, thirteenth session). Large blocks keep `chunk`, so capacity is
    unchanged. Chunking is exact either way: only the number of launches changes."""
    chunk = max(1, chunk)
    setting = os.environ.get("FOLDCP_SMALL_CHUNK_MIB")
    budget_mib = SMALL_CHUNK_MIB if setting in (None, "") else float(setting)
    if budget_mib > 0 and bytes_per_row > 0:
        chunk = max(chunk, min(rows, int(budget_mib * 2**20) // bytes_per_row))
    return chunk


def row_chunks(rows: int, chunk: int):
    """(start, end) of consecutive row chunks of at most `chunk` rows."""
    return [(r, min(rows, r + chunk)) for r in range(0, rows, max(1, chunk))]


def strip_rows(rows: int) -> int:
    """Rows per strip for per-pair work done strip by strip of a block: an 8th of it, so a
    strip's transients stay an 8th of what the whole block's would be."""
    return max(1, -(-rows // 8))


def assemble_rows(fn, rows: int, chunk: int, dtype: torch.dtype | None = None,
                  transposed: bool = False, into: torch.Tensor | None = None) -> torch.Tensor:
    """fn(r0, r1) → the [B, r1 - r0, ...] rows of a result, computed chunk by chunk and written
    into one tensor (dtype: the first chunk's unless given); one chunk is returned as is.
    transposed: return the result with dimensions 1 and 2 swapped, contiguous — the chunks are
    written through a transposed view of it (no copy of the whole result).
    into: add the chunks into this tensor in place (through its transposed view if
    transposed) and return it — the result never exists as a whole block."""
    chunks = row_chunks(rows, chunk)
    if into is not None:
        target = into.transpose(1, 2) if transposed else into
        for r0, r1 in chunks:
            add_(target[:, r0:r1], fn(r0, r1))  # one fused pass on large blocks (pointwise.py)
        return into
    if len(chunks) == 1 and dtype is None and not transposed:
        return fn(0, rows)
    stored = out = None
    for r0, r1 in chunks:
        part = fn(r0, r1)
        if out is None:
            shape = (part.shape[0], rows, *part.shape[2:])
            if transposed:
                stored = part.new_empty((shape[0], shape[2], shape[1], *shape[3:]), dtype=dtype or part.dtype)
                out = stored.transpose(1, 2)
            else:
                stored = out = part.new_empty(shape, dtype=dtype or part.dtype)
        out[:, r0:r1] = part
    return stored


def assemble_rows_heads_first(fn, rows: int, chunk: int) -> torch.Tensor:
    """fn(r0, r1) → the [B, r1 - r0, J, H] rows of a per-head pair bias; returns the whole
    bias heads first, [B, H, rows, J] contiguous, each chunk written through a permuted view
    (as attention kernels read a bias: keys contiguous; no [B, rows, J, H] copy is made)."""
    out = None
    for r0, r1 in row_chunks(rows, chunk):
        part = fn(r0, r1)
        if out is None:
            out = part.new_empty((part.shape[0], part.shape[3], rows, part.shape[2]))
        out.permute(0, 2, 3, 1)[:, r0:r1] = part
    return out


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the next linear layer computes in: the autocast dtype where autocast is on
    for x's device (its inputs are cast to it anyway), else x's own."""
    kind = x.device.type
    if torch.is_autocast_enabled(kind) and x.is_floating_point():
        return torch.get_autocast_dtype(kind)
    return x.dtype


def layer_norm_to(norm, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """norm(x) over the last dimension, returned in `dtype`. x: [B, ..., C] (any strides).

    Under autocast a LayerNorm returns float32 that the following linear layers cast to the
    autocast dtype anyway, so storing the result in that dtype changes no value they see. On
    GPUs foldcp's Triton kernel does it in one pass over x, in x's own layout
    (triton_layer_norm.py); elsewhere the PyTorch module, then a cast."""
    flat = x.flatten(1, -2) if x.dim() > 3 else x
    if triton_layer_norm.available(norm, flat):
        try:
            return triton_layer_norm.layer_norm(norm, flat, dtype).view(*x.shape[:-1], x.shape[-1])
        except triton_attention.KernelDeferred:  # this call only (triton_precompile)
            pass
    return norm(x).to(dtype)


def normed_rows(norm, x: torch.Tensor, dtype: torch.dtype, parts: int = 4) -> torch.Tensor:
    """norm(x) stored in `dtype` (see layer_norm_to); where the PyTorch module does it, in row
    chunks, so its float32 result is never more than 1/parts of the block."""
    flat = x.flatten(1, -2)
    if triton_layer_norm.available(norm, flat):
        return layer_norm_to(norm, x, dtype)
    return assemble_rows(lambda r0, r1: norm(x[:, r0:r1]), x.shape[1],
                         -(-x.shape[1] // parts), dtype)


def add_transition(transition, x: torch.Tensor, expansion: int = 4) -> torch.Tensor:
    """x += transition(x) in place, for Boltz's Transition (norm → silu(fc1) · fc2 → fc3), in
    row chunks sized as in `rowwise` (each chunk's update is computed before it is added, so
    each chunk sees its own input); the norm through layer_norm_to, silu and the product one
    fused in-place pass on fc1's contiguous output (pointwise.py; fc1 and fc2 as one GEMM with
    strided halves was slower: 12.2 → 19.3 ms at 2,048 tokens on an H200)."""
    dtype = compute_dtype(x)
    # on GPUs the whole transition and the add one kernel, no transients (triton_transition)
    if triton_transition.add_transition_or_none(x, transition, dtype) is not None:
        return x
    # a chunk's transients: the normed rows and the gated hidden layer (expansion × wider)
    width = x.shape[2] * x.shape[3] * (1 + expansion) * torch.finfo(dtype).bits // 8
    rows = x.shape[1]
    # fc1's and fc2's weights in the compute dtype for the kernel, cast once (derived_weights.py)
    fc1, fc2 = derived(transition, ("fc1_fc2", dtype), lambda: (
        transition.fc1.weight.to(dtype), transition.fc2.weight.to(dtype)),
        transition.fc1.weight, transition.fc2.weight)
    for r0, r1 in row_chunks(rows, chunk_rows(rows, _expansion_chunk(rows, expansion), width)):
        hidden = layer_norm_to(transition.norm, x[:, r0:r1], dtype)
        # on GPUs the gate fused into the GEMMs (triton_gated_projection)
        gated = triton_gated_projection.gated_projection_or_none(
            hidden.view(hidden.shape[0], -1, hidden.shape[-1]), fc1, fc2, gate="silu",
            channel_last=True)
        if gated is not None:
            gated = gated.view(*hidden.shape[:-1], -1)
        else:
            gated = silu_gate_(transition.fc1(hidden), transition.fc2(hidden))
        add_(x[:, r0:r1], transition.fc3(gated))  # one fused pass on large blocks (pointwise.py)
    return x
