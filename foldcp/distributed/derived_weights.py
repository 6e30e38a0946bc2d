"""Weights derived from a module's parameters (stacked, scaled, cast), made once per change.

    weight = derived(module, key, make, *sources)

Inference never changes the parameters, yet the distributed layers form the same derived
weights at every call: triangle attention's one [q/√d | k | v | g] matrix, the triangle
multiplication's stacked a/b projection rows, bf16 copies of float32 weights for the Triton
kernels (autocast would cast a non-leaf weight again at every GEMM). At 1,000 tokens that is
about 60 of a Pairformer layer's ~450 kernel launches, where the layer's host side outlasts its
GPU time (bench/RESULTS.md, twelfth session). The value is kept on the module and made again
when any source parameter is a different tensor or was changed in place (its version counter:
loading or randomising weights bumps it). With grad mode on it is made at every call, as
before (training must see each update), and so it is for parameters made under
torch.inference_mode (they keep no version counter; foldcp loads models outside it). Same
values as forming them per call.

    release(root)           drops every derived weight kept on root's modules

The sampler's (layer_conditioning.py: ~0.9 GB in float32 at Boltz-2's sizes) are made per
fold and released after its sampling (diffusion.sample_structure), so the next fold's trunk
and confidence — where the largest folds peak — do not carry them: the planner's memory model
(foldcp/plan/memory.py) was calibrated on capacity probes made before they existed.
"""

from __future__ import annotations

from typing import Callable, Hashable, TypeVar

import torch
from torch import nn

T = TypeVar("T")

_CACHE = "_foldcp_derived_weights"


def derived(owner: nn.Module, key: Hashable, make: Callable[[], T], *sources: torch.Tensor) -> T:
    """make() once per state of `sources` (parameters of owner), kept on owner under key."""
    if torch.is_grad_enabled() or any(t.is_inference() for t in sources):
        return make()  # (inference tensors have no version counter to notice a change by)
    state = tuple((id(t), t.data_ptr(), t._version, t.dtype, t.device) for t in sources)
    cache = owner.__dict__.setdefault(_CACHE, {})  # not a buffer: never in a state dict
    hit = cache.get(key)
    if hit is not None and hit[0] == state:
        return hit[1]
    value = make()
    cache[key] = (state, value)
    return value


def release(root: nn.Module) -> None:
    """Forget the derived weights kept on root and its submodules (made again on next use)."""
    for module in root.modules():
        module.__dict__.pop(_CACHE, None)
