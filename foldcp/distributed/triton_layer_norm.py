"""LayerNorm over the channels of a pair block, many positions per program, in Triton.

    y = layer_norm(norm, x, out_dtype)     # norm: the Boltz nn.LayerNorm whose parameters apply
    x: [B, R, C] with any strides — channel-last blocks, or a channel-first block seen through
       .movedim(1, -1) (the triangle multiplication's product)
    y: [B, R, C] contiguous, in out_dtype (the compute dtype the next linear layer reads)

Why: PyTorch's LayerNorm kernel gives each position (a row of only C = 128 channels) its own
thread block; over the N² positions of a pair block it ran at a fraction of the memory
bandwidth — 12.5 of a Pairformer layer's 54 ms at 1,024 tokens on an H100 (bench/RESULTS.md,
profile). Here a program normalises BLOCK_R positions at once, reads the input in whatever
layout it has (no copy for channel-first input) and writes the compute dtype directly (no
float32 result to cast afterwards). Statistics in float32 (two-pass mean and variance, as
PyTorch's result within float32 rounding).

Runs on CUDA, and on CPU under Triton's interpreter (TRITON_INTERPRET=1) for the tests;
`available` says whether it applies, else callers use the PyTorch module.
"""

import torch
from torch import nn

from foldcp.distributed import triton_attention

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None

BLOCK_R = 64  # positions per program


def available(norm: nn.Module, x: torch.Tensor) -> bool:
    """For torch's nn.LayerNorm and Boltz's triangle-attention LayerNorm (same parameters; it
    computes in bfloat16 for bfloat16 input, which this kernel does not imitate)."""
    weight, bias = getattr(norm, "weight", None), getattr(norm, "bias", None)
    if weight is None or bias is None or weight.dim() != 1 or not hasattr(norm, "eps"):
        return False
    if not isinstance(norm, nn.LayerNorm) and x.dtype == torch.bfloat16:
        return False
    return x.dim() == 3 and x.shape[-1] == weight.shape[0] and triton_attention.available(x)


def layer_norm(norm: nn.Module, x: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    batch, rows, channels = x.shape
    assert channels == norm.weight.shape[0]
    y = torch.empty((batch, rows, channels), dtype=out_dtype, device=x.device)
    if y.numel() == 0:
        return y
    _kernel()[(triton.cdiv(rows, BLOCK_R), batch)](
        x, norm.weight, norm.bias, y, rows, *x.stride(), *y.stride(), norm.eps,
        CHANNELS=channels, BLOCK_C=triton.next_power_of_2(channels), BLOCK_R=BLOCK_R,
        num_warps=4)
    return y


_kernel = triton_attention.lazy_kernel(lambda: _layer_norm_kernel)  # jitted on first use


if triton is not None:  # the kernel body; jitted by _kernel() on first use

    def _layer_norm_kernel(X, W, Bias, Y, rows, sx_b, sx_r, sx_c, sy_b, sy_r, sy_c, eps,
                           CHANNELS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_R: tl.constexpr):
        # 64-bit offsets: a block's positions × channels passes 2^31 from ~4,100 tokens on
        # one GPU — in the row offsets of a channel-last block and in the channel offsets
        # (channel × positions stride) of a channel-first one, so both are int64
        block = tl.program_id(0).to(tl.int64)
        batch = tl.program_id(1).to(tl.int64)
        offs_r = block * BLOCK_R + tl.arange(0, BLOCK_R)
        offs_c = tl.arange(0, BLOCK_C).to(tl.int64)
        in_c = offs_c < CHANNELS
        inside = (offs_r < rows)[:, None] & in_c[None, :]
        x = tl.load(X + batch * sx_b + offs_r[:, None] * sx_r + offs_c[None, :] * sx_c,
                    mask=inside, other=0.0).to(tl.float32)
        mean = tl.sum(x, axis=1) / CHANNELS
        centred = tl.where(inside, x - mean[:, None], 0.0)
        variance = tl.sum(centred * centred, axis=1) / CHANNELS
        scale = 1.0 / tl.sqrt(variance + eps)
        w = tl.load(W + offs_c, mask=in_c, other=0.0).to(tl.float32)
        b = tl.load(Bias + offs_c, mask=in_c, other=0.0).to(tl.float32)
        y = centred * scale[:, None] * w[None, :] + b[None, :]
        tl.store(Y + batch * sy_b + offs_r[:, None] * sy_r + offs_c[None, :] * sy_c,
                 y.to(Y.dtype.element_ty), mask=inside)
