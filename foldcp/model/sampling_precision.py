"""Arithmetic of the diffusion sampling loop: Boltz's float32, or faster tensor-core modes.

Boltz-2 samples structures with autocast off (boltz2.py wraps `structure_module.sample`) and
`boltz predict` sets float32 matmuls to "highest": every GEMM of the 200 denoising steps runs
in full float32 on the GPU's SIMT units, not its tensor cores. The modes:

- ``float32``  Boltz's own arithmetic (default): results equal stock Boltz-2's.
- ``tf32``     float32 tensors, matmuls on tensor cores in TF32 (10-bit mantissa inputs,
               float32 accumulation). Only the sampling loop; the trunk and confidence are
               unchanged.
- ``bf16``     the score network's layers under bf16 autocast (as the trunk already runs),
               and TF32 for the parts Boltz keeps in float32 inside it (attention cores,
               rigid alignment). Coordinates are float32 tensors between steps, but the
               loop's random rotation (an einsum under the autocast) rounds them to bf16
               once a step — in Boltz's loop and foldcp's alike.

Neither fast mode changes what is computed, only the rounding of products; both give a
different (not a worse-tested) trajectory than float32 for the same seed: bench/RESULTS.md
quantifies the coordinate and confidence differences. CP and serial runs under the same mode
equal each other as they do in float32. On CPU `tf32` is float32 (no tensor cores) and
`bf16` uses CPU bf16 autocast (for tests).

    with sampling_precision(model.structure_module, "tf32"):
        out = model(feats, ...)            # Boltz2.forward or DistBoltz2.predict
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn

MODES = ("float32", "tf32", "bf16")


@contextlib.contextmanager
def sampling_precision(structure_module: nn.Module, mode: str):
    """Run `structure_module.sample` in `mode` for the duration of the with-block.

    The sample method is wrapped on the instance (and restored after, even on error), so the
    switch holds wherever the call comes from: Boltz2.forward, which turns autocast off right
    before it, or foldcp's distributed model."""
    if mode not in MODES:
        raise ValueError(f"sampling precision {mode!r}: expected one of {', '.join(MODES)}")
    if mode == "float32":
        yield
        return
    original = structure_module.sample

    @functools.wraps(original)
    def sample(*args, **kwargs):
        with _arithmetic(mode, kwargs.get("s_trunk", args[0] if args else None)):
            return original(*args, **kwargs)

    sample.sampling_mode = mode  # for callers that sample by other means (active_arithmetic)
    structure_module.sample = sample
    try:
        yield
    finally:
        del structure_module.sample  # the class's method again


def active_arithmetic(structure_module: nn.Module, example: torch.Tensor | None):
    """The arithmetic a sampling_precision block has set for structure_module.sample, as a
    context for code that runs the sampling loop without calling that method
    (foldcp/distributed/graphed_sampling.py); float32 (nothing) outside such a block."""
    mode = getattr(structure_module.sample, "sampling_mode", "float32")
    return contextlib.nullcontext() if mode == "float32" else _arithmetic(mode, example)


@contextlib.contextmanager
def _arithmetic(mode: str, example: torch.Tensor | None):
    device_type = example.device.type if example is not None else "cuda"
    tf32_before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True  # both fast modes; no effect off CUDA
    try:
        if mode == "bf16":
            # cache_enabled=False: cast weights are not kept across the loop's CUDA graph
            # recording, whose replays must not read a cache freed when autocast exits
            with torch.autocast(device_type, dtype=torch.bfloat16, cache_enabled=False):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32_before
