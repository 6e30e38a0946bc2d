"""Attention over one key block with a fused GPU kernel, returning the log-sum-exp so key
blocks that live on other ranks can be merged exactly.

    k, v, bias = align_keys(k, v, bias)           # once per key block
    out_b, lse_b = block_attention(q, k, v, bias)
    q: [G, H, L, d], k, v: [G, H, K, d], bias: [G, H, L, K] (additive, already scaled q; may
    be a stride-0 expansion of one [1, H, L, K] bias over G — the kernel reads it in place)
    out_b: [G, H, L, d] = softmax(q·kᵀ + bias) v over this block; lse_b: [G, H, L] float32

Merging blocks a and b: lse = logaddexp(lse_a, lse_b),
out = exp(lse_a − lse)·out_a + exp(lse_b − lse)·out_b — the same exact softmax as over the
union of the keys.

Why: the streaming softmax written with PyTorch element-wise ops passes over the
[rows, heads, queries, keys] scores about ten times in float32; on an H100 that was ~93 % of
a Pairformer layer's time at 2,048 tokens (bench/RESULTS.md, profile). PyTorch's
memory-efficient attention kernel (the one `scaled_dot_product_attention` uses with an
additive mask) does it in one pass and can return the log-sum-exp. Used on CUDA for
float32/bfloat16/float16; elsewhere (CPU tests, float64) the caller keeps its plain path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ALIGN = 16  # the kernel wants the bias's key stride aligned: keys padded to a multiple


def fused_available(x: torch.Tensor) -> bool:
    return (x.is_cuda and x.dtype in (torch.float32, torch.bfloat16, torch.float16)
            and hasattr(torch.ops.aten, "_scaled_dot_product_efficient_attention"))


def efficient_attention_kernel(q, k, v, bias) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch's memory-efficient attention (CUDA): (out, lse [G, H, ≥L] float32)."""
    out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
        q, k, v, bias, True, 0.0, False, scale=1.0)[:2]
    return out, lse


KERNEL = efficient_attention_kernel  # tests swap in a plain-PyTorch equivalent on CPU


def align_keys(k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor):
    """Pad the key dimension (k, v: dim -2; bias: dim -1) to a multiple of ALIGN.

    The extra keys get -inf, below Boltz's finite "-inf" masks: a row whose real keys are all
    masked must not see them either. Call before expanding a shared bias over rows."""
    extra = -k.shape[-2] % ALIGN
    if extra:
        k = F.pad(k, (0, 0, 0, extra))
        v = F.pad(v, (0, 0, 0, extra))
        bias = F.pad(bias, (0, extra), value=float("-inf"))
    return k, v, bias


def block_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(output, log-sum-exp) of softmax(q·kᵀ + bias)·v for one aligned key block."""
    assert k.shape[-2] % ALIGN == 0 and bias.stride(-1) == 1, "align_keys first"
    out, lse = KERNEL(q.contiguous(), k.contiguous(), v.contiguous(), bias.to(q.dtype))
    return out, lse[..., : q.shape[-2]].to(_accumulator(q.dtype))


def _accumulator(dtype: torch.dtype) -> torch.dtype:
    """At least float32 for sums carried across blocks (float64 stays float64)."""
    return torch.promote_types(dtype, torch.float32)


class LseMerge:
    """Running exact softmax over key blocks: fold (out_b, lse_b) pairs, then `result()`.
    One block is returned as the kernel gave it; merged blocks are carried in float32."""

    def __init__(self) -> None:
        self.out: torch.Tensor | None = None
        self.lse: torch.Tensor | None = None

    def add(self, out_b: torch.Tensor, lse_b: torch.Tensor) -> None:
        if self.out is None:
            self.out, self.lse = out_b, lse_b
            return
        acc = _accumulator(out_b.dtype)
        lse = torch.logaddexp(self.lse, lse_b)
        self.out = (self.out.to(acc) * torch.exp(self.lse - lse).unsqueeze(-1)
                    + out_b.to(acc) * torch.exp(lse_b - lse).unsqueeze(-1))
        self.lse = lse

    def result(self) -> torch.Tensor:
        return self.out
