"""Gated input projections as one Triton kernel: the triangle multiplication's
and the pair transition's.

    out = gated_projection(x, w_p, w_g, keep=None, gate="sigmoid", channel_last=False)
    x: [B, P, C] positions × channels (a normed pair block; last dimension contiguous)
    w_p, w_g: [D, C] weights; keep: [B, P] (the pair mask) or None
    gate "sigmoid": (x·w_pᵀ) · sigmoid(x·w_gᵀ) · keep   — Boltz's triangle multiplication's
                    p_in(x) · sigmoid(g_in(x)), masked
    gate "silu":    silu(x·w_pᵀ) · (x·w_gᵀ) · keep      — Boltz's Transition's
                    silu(fc1(x)) · fc2(x)
    out: [B, D, P] channel-first (channel_last=False: the triangle product's operand layout)
         or [B, P, D] (channel_last=True: what fc3 reads), in x's dtype

Why: each use makes two GEMM outputs and then gates them element-wise, reading them back:
at 2,512 tokens on an H200 the triangle multiplications' projections took 17.5 and the pair
transition 17.5 of a 191.5-ms Pairformer layer (bench/RESULTS.md, tenth session), where
reading x once and writing the gated product once is a fraction of that memory traffic.
Here a program multiplies a block of positions by both weight blocks and writes only the
gated product; the two GEMM outputs never reach memory.

The weights are cast to x's dtype, as autocast casts them for a GEMM; products accumulate in
float32 and the gate is formed in float32 and rounded once (the unfused path rounds both GEMM
outputs to the compute dtype first: the two agree within that rounding). float32 inputs
multiply in full float32 ("ieee"), so the distributed tests' tolerances hold.

On by default where Triton runs (GPUs; the CPU interpreter): one Pairformer layer at 2,500
tokens on an H200 took 0.1900 s without it and 0.1786 s with it, peak 10.99 → 10.24 GiB
(bench/RESULTS.md, eleventh session); equal at 1,000 tokens. FOLDCP_GATED_KERNEL=0 turns it
off. A GPU that cannot build it (Triton's OutOfResources / CompilationError) falls back to
the GEMMs + fused gates once, with a warning. tests/distributed/triton_interpreted.py checks
it against float64 and inside the layers.
"""

import torch

from foldcp.distributed import triton_attention

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None

CONFIG = {"BLOCK_P": 128, "BLOCK_D": 64, "BLOCK_K": 64, "num_warps": 8, "num_stages": 2}
GATES = {"sigmoid": 0, "silu": 1}


SWITCH = triton_attention.KernelSwitch("FOLDCP_GATED_KERNEL", "gated-projection",
                                       "GEMMs instead")


def wanted(x: torch.Tensor) -> bool:
    """Not turned off (FOLDCP_GATED_KERNEL=0), able to run on tensors like x, and not failed
    to build on this GPU before."""
    return SWITCH.enabled() and triton_attention.available(x)


def gated_projection_or_none(x: torch.Tensor, w_p: torch.Tensor, w_g: torch.Tensor,
                             keep: torch.Tensor | None = None, gate: str = "sigmoid",
                             channel_last: bool = False) -> torch.Tensor | None:
    """gated_projection(...) where wanted(x), else None: the caller then forms it unfused.
    A kernel that cannot be built here is reported once and not tried again."""
    if not wanted(x):
        return None
    return SWITCH.run(gated_projection, x, w_p, w_g, keep, gate, channel_last)


def gated_projection(x: torch.Tensor, w_p: torch.Tensor, w_g: torch.Tensor,
                     keep: torch.Tensor | None = None, gate: str = "sigmoid",
                     channel_last: bool = False) -> torch.Tensor:
    """See the module docstring."""
    batch, positions, channels = x.shape
    rows = w_p.shape[0]
    assert w_p.shape == w_g.shape == (rows, channels) and x.stride(-1) == 1, (x.shape, w_p.shape)
    w_p, w_g = w_p.to(x.dtype).contiguous(), w_g.to(x.dtype).contiguous()
    if channel_last:
        out = torch.empty((batch, positions, rows), dtype=x.dtype, device=x.device)
        so_b, so_p, so_d = out.stride()
    else:
        out = torch.empty((batch, rows, positions), dtype=x.dtype, device=x.device)
        so_b, so_d, so_p = out.stride()
    if keep is not None:
        keep = keep.reshape(batch, positions).to(x.dtype).contiguous()
    config = dict(CONFIG)
    if triton_attention._interpreting():
        config.update(BLOCK_P=32, BLOCK_D=32)

    def grid(meta):  # one axis, weight blocks fastest (see the kernel); batch on the second
        return (triton.cdiv(positions, meta["BLOCK_P"]) * triton.cdiv(rows, meta["BLOCK_D"]), batch)

    _kernel()[grid](
        x, w_p, w_g, keep if keep is not None else out, out,
        positions, rows, *x.stride()[:2], keep.stride(0) if keep is not None else 0,
        so_b, so_p, so_d,
        CHANNELS=channels, GATE=GATES[gate], HAS_KEEP=keep is not None,
        PRECISION="ieee" if x.dtype == torch.float32 else "tf32", **config,
    )
    return out


_kernel = triton_attention.lazy_kernel(lambda: _gated_projection_kernel)  # jitted on first use


if triton is not None:  # the kernel body; jitted by _kernel() on first use

    def _gated_projection_kernel(X, Wp, Wg, Keep, Out, positions, rows, sx_b, sx_p, sk_b, so_b,
                                 so_p, so_d, CHANNELS: tl.constexpr, GATE: tl.constexpr,
                                 HAS_KEEP: tl.constexpr, PRECISION: tl.constexpr,
                                 BLOCK_P: tl.constexpr, BLOCK_D: tl.constexpr,
                                 BLOCK_K: tl.constexpr):
        # 64-bit offsets: positions × channels passes 2^31 from ~4,100 tokens on one GPU
        # the programs of one block of positions (one per weight block) run side by side, so
        # the x tile they share is read from memory once and from L2 after (the transition
        # has 512 / BLOCK_D weight blocks); one grid axis, as positions / BLOCK_P can pass the
        # 65,535 programs of the others
        blocks_d = tl.cdiv(rows, BLOCK_D)
        block_p = tl.program_id(0).to(tl.int64) // blocks_d
        block_d = tl.program_id(0).to(tl.int64) % blocks_d
        batch = tl.program_id(1).to(tl.int64)
        offs_p = block_p * BLOCK_P + tl.arange(0, BLOCK_P)
        offs_d = block_d * BLOCK_D + tl.arange(0, BLOCK_D)
        in_p = offs_p < positions
        in_d = offs_d < rows
        acc_p = tl.zeros((BLOCK_P, BLOCK_D), tl.float32)
        acc_g = tl.zeros((BLOCK_P, BLOCK_D), tl.float32)
        for start in range(0, CHANNELS, BLOCK_K):
            offs_k = start + tl.arange(0, BLOCK_K)
            in_k = offs_k < CHANNELS
            x = tl.load(X + batch * sx_b + offs_p[:, None] * sx_p + offs_k[None, :],
                        mask=in_p[:, None] & in_k[None, :], other=0.0)  # [BLOCK_P, BLOCK_K]
            w_offsets = offs_d[None, :] * CHANNELS + offs_k[:, None]  # wᵀ: [BLOCK_K, BLOCK_D]
            w_mask = in_k[:, None] & in_d[None, :]
            acc_p = tl.dot(x, tl.load(Wp + w_offsets, mask=w_mask, other=0.0), acc_p,
                           input_precision=PRECISION)
            acc_g = tl.dot(x, tl.load(Wg + w_offsets, mask=w_mask, other=0.0), acc_g,
                           input_precision=PRECISION)
        if GATE == 0:
            out = acc_p * tl.sigmoid(acc_g)
        else:
            out = acc_p * tl.sigmoid(acc_p) * acc_g
        if HAS_KEEP:
            keep = tl.load(Keep + batch * sk_b + offs_p, mask=in_p, other=0.0).to(tl.float32)
            out = out * keep[:, None]
        tl.store(Out + batch * so_b + offs_p[:, None] * so_p + offs_d[None, :] * so_d,
                 out.to(Out.dtype.element_ty), mask=in_p[:, None] & in_d[None, :])
