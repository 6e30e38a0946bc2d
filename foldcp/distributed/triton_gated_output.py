"""The triangle attention's gate, output projection and residual add as one Triton kernel.

    add_gated_output_(z, o, g, linear_o)      z += linear_o(o · sigmoid(g)), in place
    z: [B, R, J, C] rows of the float32 pair block (any strides, channels contiguous: a row
       chunk, or a row chunk of its transposed view — the ending node writes through one)
    o: [B, R, J, H, D] the attention's output (any strides, D contiguous: a heads view)
    g: [B, R, J, H·D] the gate's logits (any strides, channels contiguous)
    linear_o: Boltz's output projection, Linear(H·D → C) (Boltz-2's has no bias; one is added
              where it has)

Why: unfused, the gate is one pass over o, the projection a GEMM that writes its output in
bf16, and the add into the float32 pair track a further pass in PyTorch's non-vectorised
mixed-dtype kernel (the chunks are too small for the compiled chains, pointwise.py). At 2,512
tokens on an H200 the two triangle attentions' gate and projection took 8.6 ms of a 171-ms
Pairformer layer and their adds ~4.7 ms; at 1,008 tokens 1.4 and ~1.2 of 17.5 ms
(bench/RESULTS.md, fifteenth session). Here a program takes BLOCK_P positions, gates them in
registers, multiplies by the projection and adds the result to z: o and g are read once, z
read and written once, and nothing else reaches memory.

Arithmetic: the gate in float32, the gated values rounded to o's dtype before the product (as
the unfused path stores them), products accumulated in float32, the bias and the update added
to z in float32 (the unfused path rounds the projection's output to bf16 first: the two agree
within that rounding). float32 inputs multiply in full float32 ("ieee"), as the distributed
tests need under the CPU interpreter.

On by default where Triton runs (GPUs; the CPU interpreter); FOLDCP_GATED_OUTPUT_KERNEL=0
turns it off. A GPU that cannot build it falls back to the unfused path once, with a warning.
tests/distributed/triton_interpreted.py checks it against float64 and inside the layers.
"""

from __future__ import annotations

import torch
from torch import nn

from foldcp.distributed import triton_attention
from foldcp.distributed.derived_weights import derived

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None

CONFIG = {"BLOCK_P": 64, "num_warps": 4, "num_stages": 2}

SWITCH = triton_attention.KernelSwitch("FOLDCP_GATED_OUTPUT_KERNEL", "gated-output",
                                       "unfused output")


def applies(z: torch.Tensor, linear_o: nn.Module) -> bool:
    """The kernel is to be tried for adding into z: not turned off, Triton able to run on z,
    not failed to build here before, a float32 z and a Linear."""
    if not SWITCH.enabled():
        return False
    return (isinstance(linear_o, nn.Linear) and z.dtype == torch.float32
            and triton_attention.available(z))


def add_gated_output_or_none(z: torch.Tensor, o: torch.Tensor, g: torch.Tensor,
                             linear_o: nn.Module) -> torch.Tensor | None:
    """add_gated_output_(...), or None where it cannot be built here (reported once, not
    tried again): the caller then runs the unfused path. Call only where `applies`."""
    return SWITCH.run(add_gated_output_, z, o, g, linear_o)


def add_gated_output_(z: torch.Tensor, o: torch.Tensor, g: torch.Tensor,
                      linear_o: nn.Module) -> torch.Tensor:
    """See the module docstring. Returns z."""
    batch, rows, cols, channels = z.shape
    heads, width = o.shape[3], o.shape[4]
    inner = heads * width
    assert o.shape[:3] == g.shape[:3] == z.shape[:3] and g.shape[3] == inner, (z.shape, o.shape, g.shape)
    assert z.stride(3) == 1 and o.stride(4) == 1 and g.stride(3) == 1, (z.stride(), o.stride(), g.stride())
    assert linear_o.weight.shape == (channels, inner)
    if z.numel() == 0:
        return z
    dtype = o.dtype
    has_bias = linear_o.bias is not None
    weight = derived(linear_o, ("gated_output", dtype),
                     lambda: linear_o.weight.detach().to(dtype).contiguous(), linear_o.weight)
    bias = linear_o.bias.detach().float() if has_bias else weight  # (weight: an unread stand-in)
    config = dict(CONFIG)
    if triton_attention._interpreting():
        config.update(BLOCK_P=16)
    positions = rows * cols
    _kernel()[(triton.cdiv(positions, config["BLOCK_P"]), batch)](
        z, o, g, weight, bias, positions, cols, channels,
        *z.stride()[:3], *o.stride()[:4], *g.stride()[:3],
        # (padded, masked, to the depth GPU dots need: Triton's are at least 16 deep)
        INNER=inner, WIDTH=width,
        BLOCK_I=max(triton.next_power_of_2(inner), triton_attention.min_dot_depth()),
        BLOCK_C=max(triton.next_power_of_2(channels), triton_attention.min_dot_depth()),
        HAS_BIAS=has_bias,
        PRECISION="ieee" if dtype == torch.float32 else "tf32", **config,
    )
    return z


_kernel = triton_attention.lazy_kernel(lambda: _gated_output_kernel)  # jitted on first use


if triton is not None:  # the kernel body; jitted by _kernel() on first use

    def _gated_output_kernel(Z, O, G, W, Bias, positions, cols, channels, sz_b, sz_r, sz_j, so_b,
                             so_r, so_j, so_h, sg_b, sg_r, sg_j, INNER: tl.constexpr,
                             WIDTH: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_C: tl.constexpr,
                             HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
                             BLOCK_P: tl.constexpr):
        # 64-bit offsets: a block's positions × channels passes 2^31 from ~4,100 tokens
        block = tl.program_id(0).to(tl.int64)
        batch = tl.program_id(1).to(tl.int64)
        offs_p = block * BLOCK_P + tl.arange(0, BLOCK_P)
        in_p = offs_p < positions
        row, col = offs_p // cols, offs_p % cols  # position p of the (strided) row chunk
        offs_i = tl.arange(0, BLOCK_I)
        in_i = offs_i < INNER
        inside_i = in_p[:, None] & in_i[None, :]
        # channel i of o is (head i // D, element i % D) of its heads view
        o_offsets = (batch * so_b + row * so_r + col * so_j)[:, None] \
            + ((offs_i // WIDTH) * so_h + offs_i % WIDTH)[None, :]
        g_offsets = (batch * sg_b + row * sg_r + col * sg_j)[:, None] + offs_i[None, :]
        o = tl.load(O + o_offsets, mask=inside_i, other=0.0).to(tl.float32)
        g = tl.load(G + g_offsets, mask=inside_i, other=0.0).to(tl.float32)
        gated = (o * tl.sigmoid(g)).to(O.dtype.element_ty)  # [BLOCK_P, BLOCK_I]
        offs_c = tl.arange(0, BLOCK_C)
        in_c = offs_c < channels
        # Wᵀ: [BLOCK_I, BLOCK_C] of the [C, H·D] weight
        w = tl.load(W + offs_c[None, :] * INNER + offs_i[:, None],
                    mask=in_i[:, None] & in_c[None, :], other=0.0)
        update = tl.dot(gated, w, input_precision=PRECISION)  # [BLOCK_P, BLOCK_C] float32
        if HAS_BIAS:
            update += tl.load(Bias + offs_c, mask=in_c, other=0.0)[None, :]
        z_pointers = Z + (batch * sz_b + row * sz_r + col * sz_j)[:, None] + offs_c[None, :]
        inside_c = in_p[:, None] & in_c[None, :]
        z = tl.load(z_pointers, mask=inside_c, other=0.0)
        tl.store(z_pointers, z + update, mask=inside_c)
