"""Every diffusion-transformer layer's s-only terms at once, from a few large GEMMs.

Why: a denoising step on an H200 at 1,000 tokens (the whole step replayed as one CUDA graph)
launched ~1,636 kernels in 13.5 ms, ~375 of them small TF32 GEMMs running at only ~128
TFLOP/s; the token transformer (24 layers, dim 768, 16 heads) is most of it. Six of each
layer's fourteen GEMMs, and their sigmoids, depend on the single conditioning s alone. Here
they are taken out of the layer loop and done for all layers together. Nothing in this
module has been measured on a GPU yet.

The terms. A Boltz-2 DiffusionTransformerLayer (boltz/model/modules/transformersv2.py), with
s: [B, N, Ds] (any leading dimensions: the atom transformer passes [B, K, W, Ds]) and
D the layer's width, uses per layer, each [B, N, D]:

    attention AdaLN     attn_scale  = sigmoid(adaln.s_scale(adaln.s_norm(s)))
                        attn_bias   = adaln.s_bias(adaln.s_norm(s))
    transition AdaLN    trans_scale, trans_bias   the same with transition.adaln
    output gates        attn_gate   = sigmoid(output_projection_linear(s))
                        trans_gate  = sigmoid(transition.output_projection[0](s))

s_norm is a LayerNorm with a weight w (Boltz: no bias): with n(s) the normalisation without
the affine part, s_scale(s_norm(s)) = n(s) @ (W·diag(w))ᵀ + b (+ W β where the norm has a
bias β). So for a group of layers l0..l1 whose s_norms share one eps (groups end where the
eps changes; a layer whose own two s_norms differ runs unfused, with its modules):

    T = n(s) @ W_nᵀ + b_n   [B, N, (l1-l0)·4D]  per layer [attn_scale | trans_scale |
                                                                attn_bias | trans_bias]
    G = s    @ W_sᵀ + b_s   [B, N, (l1-l0)·2D]  per layer [attn_gate | trans_gate]

then sigmoid in place over each layer's scale columns of T and over all of G. Per call: one
LayerNorm, and per group two GEMMs and two sigmoids — against twelve kernels (six GEMMs) per
layer unfused, 288 per call of the 24-layer token transformer. W_n and W_s stack all layers
(so any range of layers is a contiguous slice of rows: one stacked copy whatever the groups)
and are made once per parameter version (derived_weights.py; at Boltz-2's sizes 24·6·768²
floats = 340 MB, kept beside the parameters; in the bf16 mode a bf16 copy instead, half that).

Arithmetic: the terms come out as the unfused layer makes them — in the dtype of s with
autocast off (float32 sampling, TF32 matmuls), under autocast (the bf16 sampling mode,
sampling_precision.active_arithmetic) the GEMMs in the autocast dtype with the sigmoids on
their bf16 results, as Boltz's Linear → sigmoid does there. Folding w into W moves one
rounding (n·w then ·W against n·(W·w)): equal within floating-point rounding, not bit for bit.

The a-side helpers below use the terms: `adaln` (a_norm then one addcmul), `transition`
(swish_gate[0] and a_to_b as one GEMM, the SwiGLU product in place, b_to_a) and `add_gated`
(a + gate·update as one addcmul, in place where safe).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function

from foldcp.distributed.derived_weights import derived
from foldcp.distributed.layout import compute_dtype

# One group's T and G together at most this many bytes. All layers at once would be
# [B, N, 6·D·layers]: 2.2 GB for the token transformer at 1,000 tokens × 5 samples, and it
# grows with N — memory the sampler's memory plan does not hold. 256 MiB still gives GEMMs of
# several layers' columns there (2 of the 24 token layers: [5,000 × 768] @ [768 × 6,144] and
# [768 × 3,072]). The callers drop a layer's terms before asking for the next layer's, so the
# next group is made after the last one's memory went: one group alive at a time.
GROUP_BYTES = 256 * 2**20

TERMS = 6  # per layer: 4 from n(s) (T), 2 from s (G)


@dataclass
class LayerTerms:
    """One layer's s-only terms, each [..., D]: views into its group's T and G."""

    attn_scale: torch.Tensor
    attn_bias: torch.Tensor
    trans_scale: torch.Tensor
    trans_bias: torch.Tensor
    attn_gate: torch.Tensor
    trans_gate: torch.Tensor


def layer_terms(layers: Sequence[nn.Module], s: torch.Tensor,
                budget: int = GROUP_BYTES) -> Iterator[LayerTerms]:
    """Yield each layer's LayerTerms in order. layers: Boltz DiffusionTransformerLayers of one
    width D and conditioning width Ds; s: [..., Ds]. Layers are computed in groups (see
    `groups`), a group when its first layer is asked for."""
    dtype = compute_dtype(s)
    width = layers[0].output_projection_linear.out_features
    w_n, b_n, w_s, b_s = _stacked(layers, dtype)
    normed: dict = {}  # n(s) per s_norm eps and shape: one LayerNorm per call in Boltz-2
    for l0, l1 in groups(layers, s, budget, dtype):
        key = _norm_key(layers[l0])
        if key is None:  # the layer's two AdaLN norms differ: its own modules, unfused
            yield _unfused(layers[l0], s)
            continue
        with record_function("foldcp.layer_conditioning"):
            if key not in normed:
                normed[key] = F.layer_norm(s, key[1], None, None, key[0])
            rows_n, rows_s = slice(l0 * 4 * width, l1 * 4 * width), slice(l0 * 2 * width, l1 * 2 * width)
            t = F.linear(normed[key], w_n[rows_n], b_n[rows_n])
            t = t.view(*t.shape[:-1], l1 - l0, 4, width)
            t[..., :2, :].sigmoid_()  # the scales: one kernel over a strided view
            g = F.linear(s, w_s[rows_s], b_s[rows_s]).sigmoid_()
            g = g.view(*g.shape[:-1], l1 - l0, 2, width)
        for i in range(l1 - l0):
            yield LayerTerms(attn_scale=t[..., i, 0, :], trans_scale=t[..., i, 1, :],
                             attn_bias=t[..., i, 2, :], trans_bias=t[..., i, 3, :],
                             attn_gate=g[..., i, 0, :], trans_gate=g[..., i, 1, :])
        del t, g  # this group's memory goes once the caller lets go of its last views


def groups(layers: Sequence[nn.Module], s: torch.Tensor, budget: int = GROUP_BYTES,
           dtype: torch.dtype | None = None) -> list[tuple[int, int]]:
    """[(l0, l1), ...]: consecutive ranges of layers, each of at most `budget` bytes of terms
    (at least one layer) and with one s_norm eps and shape over its whole range (n(s) is
    shared inside a range). A layer whose own two s_norms differ is a range of its own,
    computed unfused."""
    dtype = dtype or compute_dtype(s)
    width = layers[0].output_projection_linear.out_features
    per_layer = s[..., 0].numel() * TERMS * width * dtype.itemsize
    most = max(1, budget // max(1, per_layer))
    result: list[tuple[int, int]] = []
    start = 0
    for index in range(1, len(layers) + 1):
        if (index == len(layers) or index - start == most or _norm_key(layers[start]) is None
                or _norm_key(layers[index]) != _norm_key(layers[start])):
            result.append((start, index))
            start = index
    return result


def _norm_key(layer: nn.Module):
    """(eps, shape) of the n(s) both AdaLNs of the layer fold onto; None where they differ."""
    first, second = layer.adaln.s_norm, layer.transition.adaln.s_norm
    key = (first.eps, tuple(first.normalized_shape))
    return key if key == (second.eps, tuple(second.normalized_shape)) else None


def _unfused(layer: nn.Module, s: torch.Tensor) -> LayerTerms:
    """The six terms with the layer's own modules (what the layer itself computes)."""
    terms = {}
    for name, module in (("attn", layer.adaln), ("trans", layer.transition.adaln)):
        normed = module.s_norm(s)
        terms[f"{name}_scale"] = torch.sigmoid(module.s_scale(normed))
        terms[f"{name}_bias"] = module.s_bias(normed)
    return LayerTerms(**terms, attn_gate=layer.output_projection(s),
                      trans_gate=layer.transition.output_projection(s))


def _folded(adaln: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(s_scale's weight·diag(w), its bias (+ W β), s_bias's weight·diag(w) (+ its W β as a
    bias)): the AdaLN's linear maps applied to n(s) instead of s_norm(s)."""
    norm = adaln.s_norm
    scale, shift = adaln.s_scale, adaln.s_bias
    w = norm.weight if norm.weight is not None else torch.ones(norm.normalized_shape,
                                                               dtype=scale.weight.dtype,
                                                               device=scale.weight.device)
    scale_bias = scale.bias if scale.bias is not None else scale.weight.new_zeros(scale.out_features)
    shift_bias = shift.bias if shift.bias is not None else shift.weight.new_zeros(shift.out_features)
    if getattr(norm, "bias", None) is not None:  # not in Boltz-2: its AdaLN norms have none
        scale_bias = scale_bias + scale.weight @ norm.bias
        shift_bias = shift_bias + shift.weight @ norm.bias
    return scale.weight * w, scale_bias, shift.weight * w, shift_bias


def _sources(layer: nn.Module) -> list[torch.Tensor]:
    modules = (layer.adaln.s_norm, layer.adaln.s_scale, layer.adaln.s_bias,
               layer.transition.adaln.s_norm, layer.transition.adaln.s_scale,
               layer.transition.adaln.s_bias, layer.output_projection_linear,
               layer.transition.output_projection[0])
    return [p for module in modules for p in module.parameters(recurse=False)]


def _stacked(layers: Sequence[nn.Module], dtype: torch.dtype):
    """(W_n [L·4D, Ds], b_n [L·4D], W_s [L·2D, Ds], b_s [L·2D]) in `dtype`, rows per layer in
    the order `layer_terms` reads them; made once per parameter version (kept on layers[0])."""

    def make():
        w_n, b_n, w_s, b_s = [], [], [], []
        for layer in layers:
            a_scale, a_scale_bias, a_shift, a_shift_bias = _folded(layer.adaln)
            t_scale, t_scale_bias, t_shift, t_shift_bias = _folded(layer.transition.adaln)
            w_n += [a_scale, t_scale, a_shift, t_shift]
            b_n += [a_scale_bias, t_scale_bias, a_shift_bias, t_shift_bias]
            for linear in (layer.output_projection_linear, layer.transition.output_projection[0]):
                w_s.append(linear.weight)
                b_s.append(linear.bias if linear.bias is not None
                           else linear.weight.new_zeros(linear.out_features))
        return tuple(torch.cat(parts).to(dtype).contiguous() for parts in (w_n, b_n, w_s, b_s))

    sources = [p for layer in layers for p in _sources(layer)]
    return derived(layers[0], ("foldcp.layer_conditioning", len(layers), dtype), make, *sources)


def weight_in(linear: nn.Linear, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """linear's (weight, bias) in `dtype`: the parameters themselves where they have it, else
    a cast copy made once (derived_weights.py) — under autocast with its cache off (the bf16
    sampling mode) the GEMM would cast them again at every call, one more kernel each."""
    if linear.weight.dtype == dtype:
        return linear.weight, linear.bias
    return derived(linear, ("foldcp.cast", dtype), lambda: (
        linear.weight.to(dtype), None if linear.bias is None else linear.bias.to(dtype)),
        *linear.parameters(recurse=False))


def adaln(module: nn.Module, a: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Boltz's AdaLN(a, s) = sigmoid(s_scale(s_norm(s))) · a_norm(a) + s_bias(s_norm(s)) from
    its precomputed scale and bias: a_norm, then one addcmul (three kernels → two). Under
    autocast a_norm gives float32 and the addcmul promotes the bf16 terms, as Boltz's
    product and sum do."""
    return torch.addcmul(bias, scale, module.a_norm(a))


def add_gated(a: torch.Tensor, gate: torch.Tensor, update: torch.Tensor, in_place: bool) -> torch.Tensor:
    """a + gate · update (Boltz: `a + output_projection(s) * b`) as one addcmul; into a itself
    where the caller owns a (in_place), no gradient is wanted (autograd would need the a
    that a_norm saw) and the sum keeps a's dtype. Under autocast Boltz rounds gate · update
    to bf16 before the float32 sum, the addcmul does not: equal within bf16 rounding."""
    if (in_place and not torch.is_grad_enabled()
            and torch.promote_types(a.dtype, torch.promote_types(gate.dtype, update.dtype)) == a.dtype):
        return a.addcmul_(gate, update)
    return torch.addcmul(a, gate, update)


def transition(module: nn.Module, a: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Boltz's ConditionedTransitionBlock(a, s) before its output gate:
    b_to_a(SwiGLU(swish_gate[0](a')) · a_to_b(a')) with a' = AdaLN(a, s) from its terms.
    swish_gate[0] (D → 2·inner: [x | gates]) and a_to_b (D → inner) run as one GEMM
    (D → 3·inner), then silu(gates) · x · a_to_b in place in the gates' columns (Boltz's
    products in its order), then b_to_a on that strided view: 4 GEMMs + 3 element-wise
    kernels → 2 GEMMs + 3 in-place passes. [..., D] → [..., D]."""
    normed = adaln(module.adaln, a, scale, bias)
    dtype = compute_dtype(normed)
    swish, a_to_b = module.swish_gate[0], module.a_to_b
    inner = a_to_b.out_features
    if swish.out_features != 2 * inner or swish.bias is not None or a_to_b.bias is not None:
        raise ValueError("transition: not Boltz's ConditionedTransitionBlock")
    weight = derived(module, ("foldcp.swish_a_to_b", dtype), lambda: torch.cat(
        [swish.weight, a_to_b.weight]).to(dtype).contiguous(), swish.weight, a_to_b.weight)
    hidden = F.linear(normed, weight)  # [..., 3·inner]: x | gates | a_to_b
    del normed
    x, gates, b = hidden.split(inner, dim=-1)
    if torch.is_grad_enabled():  # autograd needs silu's input: no in-place products
        product = F.silu(gates) * x * b
    else:
        product = F.silu(gates, inplace=True).mul_(x).mul_(b)
    return F.linear(product, *weight_in(module.b_to_a, compute_dtype(product)))
