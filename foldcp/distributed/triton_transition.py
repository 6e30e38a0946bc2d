"""The pair transition as one Triton kernel, residual add included.

    add_transition_(x, transition, dtype)    x += transition(x), in place
    x: [B, I, J, C] a pair block or a row chunk of one (any strides, channels contiguous),
       float32 in folds (the pair track); C a power of two (128 in Boltz-2)
    transition: Boltz's Transition — norm (LayerNorm) → silu(fc1(·)) · fc2(·) → fc3, no biases
    dtype: the compute dtype the linear layers run in (bf16 under autocast, else x's dtype)

Why: the unfused transition writes and reads back each stage — the normed rows (C wide), the
gated hidden layer (4·C wide), fc3's output — and then the residual add reads z again:
~4.6 KB of memory traffic per position in bf16 against ~1 KB for reading and writing z once.
At 2,512 tokens on an H200 it took 13.3 ms of a 175-ms Pairformer layer with fc1/fc2 already
one gated kernel (triton_gated_projection), plus ~3 ms of the layer's mixed-dtype residual
adds (bench/RESULTS.md, eleventh and fourteenth sessions). Here a program takes BLOCK_P
positions, normalises them in registers, and for each BLOCK_H slice of the hidden layer
multiplies by fc1's and fc2's slices, gates, and accumulates that slice's fc3 product — the
hidden layer never reaches memory — then adds the sum to its own positions of x.

Arithmetic: statistics and the gate in float32; the normed rows and the gated hidden layer
rounded to `dtype` before their matrix products (as the unfused path stores them, and as
autocast rounds a Linear's input); products accumulate in float32; the update is added in
float32 without first rounding it to `dtype` (the unfused path rounds fc3's output to bf16:
the two agree within that rounding). float32 inputs multiply in full float32 ("ieee"), so the
distributed tests' tolerances hold under the CPU interpreter.

On by default where Triton runs (GPUs; the CPU interpreter); FOLDCP_FUSED_TRANSITION=0 turns
it off. A GPU that cannot build it falls back to the unfused path once, with a warning.
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

# positions per program, hidden units per slice; bench/transition_kernel.py sweeps these
CONFIG = {"BLOCK_P": 64, "BLOCK_H": 64, "num_warps": 4, "num_stages": 2}

SWITCH = triton_attention.KernelSwitch("FOLDCP_FUSED_TRANSITION", "transition",
                                       "unfused transition")


def applies(transition: nn.Module, x: torch.Tensor) -> bool:
    """The kernel is to be tried: not turned off, Triton able to run on x, not failed to build
    here before, Boltz's bias-free Transition with a LayerNorm, channels a power of two."""
    if not SWITCH.enabled():
        return False
    if not triton_attention.available(x) or x.dtype != torch.float32 or x.stride(-1) != 1:
        return False
    norm = getattr(transition, "norm", None)
    linears = [getattr(transition, name, None) for name in ("fc1", "fc2", "fc3")]
    if not isinstance(norm, nn.LayerNorm) or norm.weight is None or norm.bias is None:
        return False
    if any(not isinstance(m, nn.Linear) or m.bias is not None for m in linears):
        return False
    channels = x.shape[-1]
    depth = triton_attention.min_dot_depth()
    return (x.dim() == 4 and channels == norm.weight.shape[0] and channels & (channels - 1) == 0
            and channels >= depth and transition.fc1.out_features >= depth)


def add_transition_or_none(x: torch.Tensor, transition: nn.Module, dtype: torch.dtype):
    """add_transition_(...) where it applies, else None: the caller then runs it unfused (so
    too where it cannot be built here: reported once, not tried again)."""
    if not applies(transition, x):
        return None
    return SWITCH.run(add_transition_, x, transition, dtype)


def add_transition_(x: torch.Tensor, transition: nn.Module, dtype: torch.dtype) -> torch.Tensor:
    """See the module docstring. Returns x."""
    batch, rows, cols, channels = x.shape
    positions = rows * cols
    if x.numel() == 0:
        return x
    # fc1, fc2: [H, C]; fc3: [C, H] — in the compute dtype, cast once (derived_weights.py)
    w1, w2, w3 = derived(transition, ("fused_transition", dtype), lambda: tuple(
        m.weight.detach().to(dtype).contiguous() for m in (transition.fc1, transition.fc2, transition.fc3)),
        transition.fc1.weight, transition.fc2.weight, transition.fc3.weight)
    hidden = w1.shape[0]
    norm = transition.norm
    config = dict(CONFIG)
    if triton_attention._interpreting():
        config.update(BLOCK_P=16, BLOCK_H=min(32, config["BLOCK_H"]))
    config["BLOCK_H"] = min(config["BLOCK_H"], max(triton.next_power_of_2(hidden),
                                                   triton_attention.min_dot_depth()))

    def grid(meta):  # one axis (positions / BLOCK_P can pass the 65,535 programs of the others)
        return (triton.cdiv(positions, meta["BLOCK_P"]), batch)

    _kernel()[grid](
        x, norm.weight, norm.bias, w1, w2, w3, positions, cols, hidden, *x.stride()[:3], norm.eps,
        CHANNELS=channels, PRECISION="ieee" if dtype == torch.float32 else "tf32", **config,
    )
    return x


_kernel = triton_attention.lazy_kernel(lambda: _transition_kernel)  # jitted on first use


if triton is not None:  # the kernel body; jitted by _kernel() on first use

    def _transition_kernel(X, Wn, Bn, W1, W2, W3, positions, cols, hidden, sx_b, sx_i, sx_j, eps,
                           CHANNELS: tl.constexpr, PRECISION: tl.constexpr, BLOCK_P: tl.constexpr,
                           BLOCK_H: tl.constexpr):
        # 64-bit offsets: a block's positions × channels passes 2^31 from ~4,100 tokens
        block = tl.program_id(0).to(tl.int64)
        batch = tl.program_id(1).to(tl.int64)
        offs_p = block * BLOCK_P + tl.arange(0, BLOCK_P)
        in_p = offs_p < positions
        offs_c = tl.arange(0, CHANNELS)
        # position p is (row p // cols, column p % cols) of the (possibly strided) block
        row_offsets = batch * sx_b + (offs_p // cols) * sx_i + (offs_p % cols) * sx_j
        pointers = X + row_offsets[:, None] + offs_c[None, :]
        x = tl.load(pointers, mask=in_p[:, None], other=0.0)  # [BLOCK_P, C] float32
        mean = tl.sum(x, axis=1) / CHANNELS
        centred = x - mean[:, None]
        variance = tl.sum(centred * centred, axis=1) / CHANNELS
        normed = centred * (1.0 / tl.sqrt(variance + eps))[:, None]
        normed = normed * tl.load(Wn + offs_c)[None, :] + tl.load(Bn + offs_c)[None, :]
        normed = normed.to(W1.dtype.element_ty)
        update = tl.zeros((BLOCK_P, CHANNELS), tl.float32)
        for start in range(0, hidden, BLOCK_H):
            offs_h = start + tl.arange(0, BLOCK_H)
            in_h = offs_h < hidden
            # fc1ᵀ, fc2ᵀ slices: [C, BLOCK_H] of the [H, C] weights
            w_in = offs_h[None, :] * CHANNELS + offs_c[:, None]
            a = tl.dot(normed, tl.load(W1 + w_in, mask=in_h[None, :], other=0.0),
                       input_precision=PRECISION)
            b = tl.dot(normed, tl.load(W2 + w_in, mask=in_h[None, :], other=0.0),
                       input_precision=PRECISION)
            gated = (a * tl.sigmoid(a) * b).to(W3.dtype.element_ty)  # [BLOCK_P, BLOCK_H]
            # fc3ᵀ slice: [BLOCK_H, C] of the [C, H] weight
            w_out = offs_c[None, :] * hidden + offs_h[:, None]
            update = tl.dot(gated, tl.load(W3 + w_out, mask=in_h[:, None], other=0.0), update,
                            input_precision=PRECISION)
        # x read again (from L2) rather than held in registers through the loop
        x = tl.load(pointers, mask=in_p[:, None], other=0.0)
        tl.store(pointers, x + update, mask=in_p[:, None])
