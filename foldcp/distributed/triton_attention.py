"""Flash attention with one bias shared by every row — triangle attention's shape — in Triton.

    out, lse = shared_bias_attention(q, k, v, bias, key_bias=None, scale=1.0)
    q: [G, H, L, d], k, v: [G, H, K, d] (any strides with the last one 1, e.g. the projections'
    head-split views), bias: [H, L, K] shared by all G rows, key_bias: [G, K] per row (masks)
    out: [G, H, L, d] in q's dtype = softmax_k(scale·q·kᵀ + bias + key_bias) v (a view of
    [G, L, H, d] memory); lse: [G, H, L] float32

The same shape is the single track's attention with pair bias (AttentionPairBias): there G
are the samples of one complex that share its [H, N, N] bias (the diffusion transformer's
multiplicity), and key_bias carries the token mask.

Why a kernel of our own: in triangle attention every row i of the pair tensor attends over
its own keys with the SAME [H, J, K] bias. PyTorch's memory-efficient kernel reads a full
[G, H, L, K] bias (we hand it a stride-0 expansion) and runs at ~49 TFLOP/s on an H100 at
these shapes, cuEquivariance's kernel at ~69, while flash attention without a bias reaches
~245 (bench/attention_kernels.py, bench/RESULTS.md). Here each program owns one (row, head,
query block) and streams key blocks with an online softmax (Dao et al., FlashAttention);
programs are launched row-fastest, so the programs running together share the same bias
tile and read it from L2 rather than memory.

Exact softmax (float32 running max and sum); float32 inputs multiply in full float32
("ieee") unless float32 matmuls may use TF32 (torch.backends.cuda.matmul.allow_tf32, as the
`tf32` sampling mode sets), so the distributed tests' float32 tolerances hold. The log-sum-exp lets
key blocks held by other ranks be merged exactly (fused_attention.LseMerge). Runs on CUDA,
and on CPU under Triton's interpreter (TRITON_INTERPRET=1), which is how the tests check it.
"""

import logging

import torch

from foldcp.errors import summary

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs without Triton: callers fall back (available())
    triton = None


log = logging.getLogger(__name__)

# Tile sizes and launch shape (bench/attention_kernels.py --sweep compares alternatives).
# 128 × 32 on 4 warps: on an H200 (bf16, one call) 3.21 ms against 3.47 for 128 × 64 on 8
# warps at 1,008 tokens, equal at 2,512 (49.2 ms, 165 TFLOP/s); bench/RESULTS.md
CONFIG = {"BLOCK_M": 128, "BLOCK_N": 32, "num_warps": 4, "num_stages": 3}
# (Issuing each next key block's q·kᵀ before the current block's softmax, FlashAttention-3's
# intra-warpgroup overlap, was slower on an H200 in every config swept — 0.97–0.51× at 2,512
# tokens, bench/RESULTS.md — and was removed.)
# float32 tiles (the diffusion transformer's attention, d = 48 padded to 64) take twice the
# shared memory: 2 stages. On an H200 with TF32 at 2,512 tokens, 16 heads: 0.40 ms against
# 0.71 for 64 × 64 on 4 warps and 2.11 for Boltz's element-wise core (bench/RESULTS.md).
# Full float32 (no TF32: the default sampling mode) as three TF32 products ("tf32x3"):
# 0.70 ms against 2.48 for CUDA-core ("ieee") dots at 2,512 tokens, 0.11 against 0.38 at
# 1,008, and closer to float64 (max error 6.6e-7 against 1.8e-6; bench/RESULTS.md)
CONFIG_FLOAT32 = {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 2,
                  "FLOAT32_PRECISION": "tf32x3"}


def available(x: torch.Tensor) -> bool:
    """Triton kernels can run on tensors like x: Triton importable, a CUDA tensor (or the CPU
    interpreter). (triton_layer_norm asks this too.)"""
    if triton is None or x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return False
    return x.is_cuda or _interpreting()


def usable(x: torch.Tensor) -> bool:
    """The attention kernel is to be tried for x: available, and it has not failed to build on
    this GPU before (see LAUNCH_ERRORS)."""
    return not _failed and available(x)


def _launch_errors() -> tuple[type[BaseException], ...]:
    errors = []
    for module, name in (("triton.runtime.errors", "OutOfResources"),
                         ("triton.runtime.errors", "PTXASError"),
                         ("triton.compiler.errors", "CompilationError")):
        try:
            errors.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


class KernelDeferred(Exception):
    """A launch left to the caller's PyTorch path this once, not a failure: raised while
    triton_precompile records the kernels a throwaway fold would compile (they compile in
    worker processes meanwhile); the kernel is tried again at its next launch."""


# What a GPU that cannot run the kernel as configured raises (too little shared memory for the
# tiles — the float32 tiles take ~100 KB —, a compiler that rejects it): callers catch these,
# call failed(), and run their PyTorch path for the rest of the process. (KernelDeferred is
# caught with them, for that one call only.)
LAUNCH_ERRORS = (*_launch_errors(), KernelDeferred) if triton is not None else ()
_failed = False


def failed(error: BaseException) -> None:
    """Record that the kernel cannot run here (logged once); usable() is False after. A
    KernelDeferred launch is no failure: nothing is recorded."""
    global _failed
    if isinstance(error, KernelDeferred):
        return
    if not _failed:
        log.warning("Triton attention kernel unavailable on this GPU (%s): PyTorch attention "
                    "instead", summary(error))
    _failed = True


def min_dot_depth() -> int:
    """The least reduction depth (K) of a tl.dot that Triton builds for NVIDIA GPUs (16); the
    CPU interpreter takes any, and the tests run the layers at small widths through it."""
    return 1 if _interpreting() else 16


class KernelSwitch:
    """One of foldcp's optional Triton kernels: on unless its environment variable is "0",
    and off for the rest of the process once it failed to build on this GPU (LAUNCH_ERRORS;
    reported once), its callers then running their unfused path.

        SWITCH = KernelSwitch("FOLDCP_FUSED_TRANSITION", "transition", "the unfused transition")
        if SWITCH.enabled() and available(x):
            out = SWITCH.run(kernel_fn, *args)     # None: it cannot be built here
    """

    def __init__(self, variable: str, kernel: str, instead: str) -> None:
        self.variable, self.kernel, self.instead = variable, kernel, instead
        self.failed = False

    def enabled(self) -> bool:
        import os

        return os.environ.get(self.variable, "1") != "0" and not self.failed

    def run(self, fn, *args, **kwargs):
        """fn(*args, **kwargs), or None where the kernel cannot be built on this GPU — also,
        without trying, for every call after the first failure (a caller looping over chunks
        asks once and falls back chunk by chunk)."""
        if self.failed:
            return None
        try:
            return fn(*args, **kwargs)
        except KernelDeferred:  # this call only (triton_precompile)
            return None
        except LAUNCH_ERRORS as error:
            log.warning("Triton %s kernel unavailable on this GPU (%s): %s", self.kernel,
                        summary(error), self.instead)
            self.failed = True
            return None


def _interpreting() -> bool:
    import os

    return os.environ.get("TRITON_INTERPRET") == "1"


def shared_bias_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                          key_bias: torch.Tensor | None = None,
                          scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """See the module docstring."""
    rows, heads, queries, width = q.shape
    keys = k.shape[2]
    assert bias.shape == (heads, queries, keys), (bias.shape, q.shape, k.shape)
    for t in (q, k, v, bias):
        assert t.stride(-1) == 1, "last dimension must be contiguous"
    if key_bias is not None:
        assert key_bias.shape == (rows, keys) and key_bias.stride(-1) == 1, key_bias.shape
    # [G, H, L, d] view of [G, L, H, d] memory: the token-major layout the caller's gate and
    # output projection read, so no copy follows
    out = q.new_empty((rows, queries, heads, width)).transpose(1, 2)
    lse = torch.empty((rows, heads, queries), dtype=torch.float32, device=q.device)
    float32 = q.dtype == torch.float32
    config = dict(CONFIG_FLOAT32 if float32 else CONFIG)
    if _interpreting():
        config["BLOCK_M"] = 64
    # float32 without TF32: "ieee" (CUDA cores), or a config's "tf32x3" (three TF32 products
    # on tensor cores, about float32's accuracy; bench/attention_kernels.py --single-track
    # --float32 measures both)
    full_float32 = config.pop("FLOAT32_PRECISION", "ieee")
    precision = full_float32 if float32 and not torch.backends.cuda.matmul.allow_tf32 else "tf32"

    def grid(meta):  # rows fastest: programs launched together share (query block, head)
        return (rows, triton.cdiv(queries, meta["BLOCK_M"]), heads)

    has_key_bias = key_bias is not None
    _kernel()[grid](
        q, k, v, bias, key_bias if has_key_bias else lse, out, lse,
        *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *bias.stride()[:2],
        key_bias.stride(0) if has_key_bias else 0,
        *out.stride()[:3], *lse.stride(),
        queries, keys, float(scale),
        HEAD_DIM=width, BLOCK_D=max(16, triton.next_power_of_2(width)),
        PRECISION=precision, HAS_KEY_BIAS=has_key_bias, **config,
    )
    return out, lse


def lazy_kernel(body):
    """body() → a kernel function; returns kernel() → it jitted, on first use (per mode).
    Whether Triton interprets a kernel (CPU) or compiles it (GPU) is decided when it is
    decorated, so a test can switch to the interpreter by setting TRITON_INTERPRET=1 before
    the first call. foldcp's Triton modules all make their kernels this way."""
    kernels: dict[bool, object] = {}

    def kernel():
        interpreting = _interpreting()
        if interpreting not in kernels:
            kernels[interpreting] = triton.jit(body())
        return kernels[interpreting]

    kernel.lazy_triton_kernel = True  # how triton_precompile's workers find a module's kernels
    return kernel


_kernel = lazy_kernel(lambda: _shared_bias_attention_kernel)


if triton is not None:  # the kernel body; jitted by _kernel() on first use

    def _shared_bias_attention_kernel(Q, K, V, Bias, KeyBias, Out, Lse, sq_g, sq_h, sq_l, sk_g,
                                      sk_h, sk_n, sv_g, sv_h, sv_n, sb_h, sb_l, skb_g, so_g, so_h,
                                      so_l, sl_g, sl_h, sl_l, queries, keys, scale,
                                      HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                                      PRECISION: tl.constexpr, HAS_KEY_BIAS: tl.constexpr,
                                      LOG2E: tl.constexpr = 1.4426950408889634):
        # 64-bit offsets: row × row stride and head × head stride can pass 2^31 at large N
        row = tl.program_id(0).to(tl.int64)
        block = tl.program_id(1).to(tl.int64)
        head = tl.program_id(2).to(tl.int64)
        offs_m = block * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)  # the head width padded for tl.dot (≥ 16, power of 2)
        in_d = offs_d < HEAD_DIM
        in_m = offs_m < queries
        q = tl.load(Q + row * sq_g + head * sq_h + offs_m[:, None] * sq_l + offs_d[None, :],
                    mask=in_m[:, None] & in_d[None, :], other=0.0)
        k_base = K + row * sk_g + head * sk_h
        v_base = V + row * sv_g + head * sv_h
        b_base = Bias + head * sb_h + offs_m[:, None] * sb_l
        running_max = tl.full((BLOCK_M,), float("-inf"), tl.float32)
        running_sum = tl.zeros((BLOCK_M,), tl.float32)
        acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
        for start in range(0, keys, BLOCK_N):
            offs_n = start + tl.arange(0, BLOCK_N)
            in_n = offs_n < keys
            k_t = tl.load(k_base + offs_n[None, :] * sk_n + offs_d[:, None],
                          mask=in_n[None, :] & in_d[:, None], other=0.0)
            qk = tl.dot(q, k_t, input_precision=PRECISION)
            # keys past the end get a -inf bias from the load itself (their k is 0), so no
            # select over the scores: per-score CUDA-core work is what bounds this kernel at
            # d = 32, not the tensor cores (one more add per score, the key bias below, costs
            # the triangle attention 13 % at 2,512 tokens on an H200; bench/RESULTS.md)
            bias = tl.load(b_base + offs_n[None, :], mask=in_m[:, None] & in_n[None, :],
                           other=float("-inf"))
            scores = qk * scale + bias.to(tl.float32)
            if HAS_KEY_BIAS:
                key_bias = tl.load(KeyBias + row * skb_g + offs_n, mask=in_n, other=float("-inf"))
                scores += key_bias.to(tl.float32)[None, :]
            new_max = tl.maximum(running_max, tl.max(scores, axis=1))
            # exp(x - m) as exp2(x·log2e - m·log2e): one fused multiply-add per score
            weights = tl.math.exp2(scores * LOG2E - (new_max * LOG2E)[:, None])
            rescale = tl.math.exp2((running_max - new_max) * LOG2E)
            running_sum = running_sum * rescale + tl.sum(weights, axis=1)
            v = tl.load(v_base + offs_n[:, None] * sv_n + offs_d[None, :],
                        mask=in_n[:, None] & in_d[None, :], other=0.0)
            acc = acc * rescale[:, None] + tl.dot(weights.to(v.dtype), v, input_precision=PRECISION)
            running_max = new_max
        acc = acc / running_sum[:, None]
        tl.store(Out + row * so_g + head * so_h + offs_m[:, None] * so_l + offs_d[None, :],
                 acc.to(Out.dtype.element_ty), mask=in_m[:, None] & in_d[None, :])
        tl.store(Lse + row * sl_g + head * sl_h + offs_m * sl_l,
                 running_max + tl.log(running_sum), mask=in_m)
