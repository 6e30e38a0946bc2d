"""The triangle multiplication's output stage and residual add as one Triton kernel.

    add_product_output_(z, product, x, tri_mul)
        z += p_out(norm_out(product)) · sigmoid(g_out(x)), in place
    z: [B, R, J, C] rows of the float32 pair block (any strides, channels contiguous)
    product: [B, C, R, J] the same rows of the triangle product, channel-first (any strides)
    x: [B, R, J, C] the same rows of the normed input (compute dtype; channels contiguous)
    tri_mul: Boltz's TriangleMultiplication (norm_out a LayerNorm; p_out, g_out Linear C → C,
             no biases in Boltz-2; biases are added where they exist)

Why: unfused, each row chunk makes the normed product (a LayerNorm kernel), two GEMM outputs
in bf16, and then the gated add into the float32 pair track — eagerly below 2,048 tokens, as
three PyTorch kernels, the add in its non-vectorised mixed-dtype kernel. At 1,008 tokens on an
H200 the two triangle multiplications' output stages took 1.97 ms of a 16.7-ms Pairformer
layer, and 10.1 of 164 ms at 2,512 (bench/RESULTS.md, fifteenth session). Here a program takes
BLOCK_P positions: reads their product channel-first, normalises in registers, multiplies by
p_out, multiplies x by g_out, gates, and adds to z — the normed product and both projections
never reach memory.

Arithmetic: statistics and the gate in float32, the normed product rounded to x's dtype before
its product (as layer_norm_to stores it), products accumulated in float32, the gated update
added to z in float32 without first rounding it to bf16 (the unfused path does: the two agree
within that rounding). float32 inputs multiply in full float32 ("ieee") for the CPU tests.

On by default where Triton runs (GPUs; the CPU interpreter); FOLDCP_PRODUCT_OUTPUT_KERNEL=0
turns it off; a GPU that cannot build it falls back to the unfused path once, with a warning.
On an H200 its output stage took 1.97 → 1.55 ms of a layer at 1,008 tokens and was unchanged
at 2,512 (10.1 ms; bench/RESULTS.md, sixteenth session).
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

SWITCH = triton_attention.KernelSwitch("FOLDCP_PRODUCT_OUTPUT_KERNEL", "product-output",
                                       "unfused output")


def applies(z: torch.Tensor, tri_mul: nn.Module) -> bool:
    """The kernel is to be tried for adding into z: not turned off, Triton able to run on z,
    not failed to build here before, a float32 z, Boltz's modules with a power-of-two width."""
    if not SWITCH.enabled():
        return False
    norm = getattr(tri_mul, "norm_out", None)
    linears = [getattr(tri_mul, name, None) for name in ("p_out", "g_out")]
    if not isinstance(norm, nn.LayerNorm) or norm.weight is None or norm.bias is None:
        return False
    if not all(isinstance(m, nn.Linear) for m in linears):
        return False
    channels = z.shape[-1]
    return (z.dtype == torch.float32 and channels & (channels - 1) == 0
            and channels >= triton_attention.min_dot_depth()
            and all(m.weight.shape == (channels, channels) for m in linears)
            and triton_attention.available(z))


def add_product_output_or_none(z, product, x, tri_mul) -> torch.Tensor | None:
    """add_product_output_(...), or None where it cannot be built here (reported once, not
    tried again): the caller then runs the unfused path. Call only where `applies`."""
    return SWITCH.run(add_product_output_, z, product, x, tri_mul)


def add_product_output_(z: torch.Tensor, product: torch.Tensor, x: torch.Tensor,
                        tri_mul: nn.Module) -> torch.Tensor:
    """See the module docstring. Returns z."""
    batch, rows, cols, channels = z.shape
    assert product.shape == (batch, channels, rows, cols) and x.shape == z.shape, \
        (z.shape, product.shape, x.shape)
    assert z.stride(3) == 1 and x.stride(3) == 1, (z.stride(), x.stride())
    if z.numel() == 0:
        return z
    dtype = x.dtype
    norm, p_out, g_out = tri_mul.norm_out, tri_mul.p_out, tri_mul.g_out
    w_p, w_g = derived(tri_mul, ("product_output", dtype), lambda: tuple(
        m.weight.detach().to(dtype).contiguous() for m in (p_out, g_out)),
        p_out.weight, g_out.weight)
    b_p = p_out.bias.detach().float() if p_out.bias is not None else None
    b_g = g_out.bias.detach().float() if g_out.bias is not None else None
    config = dict(CONFIG)
    if triton_attention._interpreting():
        config.update(BLOCK_P=16)
    positions = rows * cols
    _kernel()[(triton.cdiv(positions, config["BLOCK_P"]), batch)](
        z, product, x, norm.weight, norm.bias, w_p, w_g,
        b_p if b_p is not None else w_p, b_g if b_g is not None else w_g,  # (unread stand-ins)
        positions, cols, norm.eps, *z.stride()[:3], *product.stride(), *x.stride()[:3],
        CHANNELS=channels, HAS_P_BIAS=b_p is not None, HAS_G_BIAS=b_g is not None,
        PRECISION="ieee" if dtype == torch.float32 else "tf32", **config,
    )
    return z


_kernel = triton_attention.lazy_kernel(lambda: _product_output_kernel)  # jitted on first use


if triton is not None:  # the kernel body; jitted by _kernel() on first use

    def _product_output_kernel(Z, P, X, Wn, Bn, Wp, Wg, Bp, Bg, positions, cols, eps, sz_b, sz_r,
                               sz_j, sp_b, sp_c, sp_r, sp_j, sx_b, sx_r, sx_j,
                               CHANNELS: tl.constexpr, HAS_P_BIAS: tl.constexpr,
                               HAS_G_BIAS: tl.constexpr, PRECISION: tl.constexpr,
                               BLOCK_P: tl.constexpr):
        # 64-bit offsets: a block's positions × channels passes 2^31 from ~4,100 tokens
        block = tl.program_id(0).to(tl.int64)
        batch = tl.program_id(1).to(tl.int64)
        offs_p = block * BLOCK_P + tl.arange(0, BLOCK_P)
        in_p = offs_p < positions
        row, col = offs_p // cols, offs_p % cols  # position p of the (strided) row chunk
        offs_c = tl.arange(0, CHANNELS)
        # the product channel-first: consecutive positions of one channel are adjacent
        # the channel stride is the whole block's positions: channel offsets need 64 bits too
        # (127 · N² passes 2^31 from ~4,100 tokens on one GPU)
        p = tl.load(P + (batch * sp_b + row * sp_r + col * sp_j)[:, None]
                    + (offs_c.to(tl.int64) * sp_c)[None, :],
                    mask=in_p[:, None], other=0.0).to(tl.float32)  # [BLOCK_P, C]
        mean = tl.sum(p, axis=1) / CHANNELS
        centred = p - mean[:, None]
        variance = tl.sum(centred * centred, axis=1) / CHANNELS
        normed = centred * (1.0 / tl.sqrt(variance + eps))[:, None]
        normed = normed * tl.load(Wn + offs_c)[None, :] + tl.load(Bn + offs_c)[None, :]
        normed = normed.to(X.dtype.element_ty)
        w_offsets = offs_c[None, :] * CHANNELS + offs_c[:, None]  # Wᵀ: [C in, C out]
        update = tl.dot(normed, tl.load(Wp + w_offsets), input_precision=PRECISION)
        if HAS_P_BIAS:
            update += tl.load(Bp + offs_c)[None, :]
        x = tl.load(X + (batch * sx_b + row * sx_r + col * sx_j)[:, None] + offs_c[None, :],
                    mask=in_p[:, None], other=0.0)
        logits = tl.dot(x, tl.load(Wg + w_offsets), input_precision=PRECISION)
        if HAS_G_BIAS:
            logits += tl.load(Bg + offs_c)[None, :]
        update = update * tl.sigmoid(logits)
        z_pointers = Z + (batch * sz_b + row * sz_r + col * sz_j)[:, None] + offs_c[None, :]
        z = tl.load(z_pointers, mask=in_p[:, None], other=0.0)
        tl.store(z_pointers, z + update, mask=in_p[:, None])
