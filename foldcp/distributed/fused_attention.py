"""Attention over one key block with a fused GPU kernel, returning the log-sum-exp so key
blocks that live on other ranks can be merged exactly.

    out_b, lse_b = block_attention(q, k, v, bias)
    q: [G, H, L, d], k, v: [G, H, K, d], bias: [G, H, L, K] (additive, already scaled q)
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

ALIGN = 16  # the kernel wants the bias's key stride aligned: keys padded to a multiple


def fused_available(q: torch.Tensor) -> bool:
    return (q.is_cuda and q.dtype in (torch.float32, torch.bfloat16, torch.float16)
            and hasattr(torch.ops.aten, "_scaled_dot_product_efficient_attention"))


def efficient_attention_kernel(q, k, v, bias) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch's memory-efficient attention (CUDA): (out, lse [G, H, ≥L] float32)."""
    out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
        q, k, v, bias, True, 0.0, False, scale=1.0)[:2]
    return out, lse


KERNEL = efficient_attention_kernel  # tests swap in a plain-PyTorch equivalent on CPU


def block_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(output, log-sum-exp) of softmax(q·kᵀ + bias)·v for one key block (shapes above)."""
    keys = k.shape[-2]
    padded = -(-keys // ALIGN) * ALIGN
    if padded != keys:  # extra keys that no query can attend to: -inf, below Boltz's finite
        # "-inf" masks (a row whose real keys are all masked must not see them either)
        extra = padded - keys
        k = torch.nn.functional.pad(k, (0, 0, 0, extra))
        v = torch.nn.functional.pad(v, (0, 0, 0, extra))
        bias = torch.nn.functional.pad(bias, (0, extra), value=float("-inf"))
    out, lse = KERNEL(q.contiguous(), k.contiguous(), v.contiguous(), bias.to(q.dtype).contiguous())
    return out, lse[..., : q.shape[-2]].to(_accumulator(q.dtype))


def _accumulator(dtype: torch.dtype) -> torch.dtype:
    """At least float32 for sums carried across blocks (float64 stays float64)."""
    return torch.promote_types(dtype, torch.float32)


class LseMerge:
    """Running exact softmax over key blocks: fold (out_b, lse_b) pairs, then `result()`."""

    def __init__(self) -> None:
        self.out: torch.Tensor | None = None
        self.lse: torch.Tensor | None = None

    def add(self, out_b: torch.Tensor, lse_b: torch.Tensor) -> None:
        out_b = out_b.to(_accumulator(out_b.dtype))
        if self.out is None:
            self.out, self.lse = out_b, lse_b
            return
        lse = torch.logaddexp(self.lse, lse_b)
        self.out = (self.out * torch.exp(self.lse - lse).unsqueeze(-1)
                    + out_b * torch.exp(lse_b - lse).unsqueeze(-1))
        self.lse = lse

    def result(self) -> torch.Tensor:
        return self.out
