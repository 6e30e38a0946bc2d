"""Attention over one key block with a fused GPU kernel, returning the log-sum-exp so key
blocks that live on other ranks can be merged exactly.

    out_b, lse_b = block_attention(q, k, v, bias)
    q: [G, H, L, d], k, v: [G, H, K, d] (last dimension contiguous; head-split views are fine),
    bias: [H, L, K] shared by all G rows (additive, already in q's scale)
    out_b: [G, H, L, d] = softmax(q·kᵀ + bias) v over this block; lse_b: [G, H, L] float32

Merging blocks a and b: lse = logaddexp(lse_a, lse_b),
out = exp(lse_a − lse)·out_a + exp(lse_b − lse)·out_b — the same exact softmax as over the
union of the keys.

Why: the streaming softmax written with PyTorch element-wise ops passes over the
[rows, heads, queries, keys] scores about ten times in float32; on an H100 that was ~93 % of
a Pairformer layer's time at 2,048 tokens (bench/RESULTS.md, profile). Kernels, in order of
preference (bench/attention_kernels.py measures them):
- triton_attention.shared_bias_attention: flash attention that reads the shared bias once
  per tile (Triton ships with CUDA builds of PyTorch);
- PyTorch's memory-efficient attention (what `scaled_dot_product_attention` uses with an
  additive mask), handed the bias expanded over rows with stride 0 and keys padded to its
  alignment; it also returns the log-sum-exp.
Used on CUDA for float32/bfloat16/float16; elsewhere (CPU tests, float64) the caller keeps
its plain path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from foldcp.distributed import triton_attention

ALIGN = 16  # the memory-efficient kernel wants the bias's key stride aligned: keys padded


def fused_available(x: torch.Tensor) -> bool:
    return (x.is_cuda and x.dtype in (torch.float32, torch.bfloat16, torch.float16)
            and hasattr(torch.ops.aten, "_scaled_dot_product_efficient_attention"))


def efficient_attention_kernel(q, k, v, bias) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch's memory-efficient attention (CUDA) → (out, lse [G, H, L] float32)."""
    rows, queries = q.shape[0], q.shape[-2]
    k, v, bias = _align_keys(k, v, bias.to(q.dtype))
    out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
        q.contiguous(), k.contiguous(), v.contiguous(),
        bias.unsqueeze(0).expand(rows, -1, -1, -1), True, 0.0, False, scale=1.0)[:2]
    return out, lse[..., :queries]


def auto_kernel(q, k, v, bias) -> tuple[torch.Tensor, torch.Tensor]:
    """The Triton kernel where it runs (CUDA with Triton, and it builds on this GPU), else
    PyTorch's memory-efficient one."""
    if triton_attention.usable(q):
        try:
            return triton_attention.shared_bias_attention(q, k, v, bias.to(q.dtype))
        except triton_attention.LAUNCH_ERRORS as error:
            triton_attention.failed(error)
    return efficient_attention_kernel(q, k, v, bias)


KERNEL = auto_kernel  # tests swap in a plain-PyTorch equivalent on CPU; the bench picks one


def _align_keys(k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor):
    """Pad the key dimension (k, v: dim -2; bias: dim -1) to a multiple of ALIGN.

    The extra keys get -inf, below Boltz's finite "-inf" masks: a row whose real keys are all
    masked must not see them either."""
    extra = -k.shape[-2] % ALIGN
    if extra:
        k = F.pad(k, (0, 0, 0, extra))
        v = F.pad(v, (0, 0, 0, extra))
        bias = F.pad(bias, (0, extra), value=float("-inf"))
    return k, v, bias.contiguous()


def block_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(output, log-sum-exp) of softmax(q·kᵀ + bias)·v for one key block, bias shared by rows."""
    out, lse = KERNEL(q, k, v, bias)
    return out, lse.to(_accumulator(q.dtype))


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
