"""How much more GPU memory this process can allocate: what decides, at run time, whether a
pair-sized buffer is kept, recomputed or parked in host memory.

`torch.cuda.mem_get_info` alone answers for the device, not for this process: it does not
count blocks the caching allocator holds and would hand out again, and it ignores a cap set
with `torch.cuda.set_per_process_memory_fraction` (how bench/cp_model.py --gpu-memory-gib
runs an H100-sized fold on an H200, and how a user shares a GPU). With the cap ignored, the
eighth session's 8,605-token probe capped at 79.18 GiB decided from the H200's 141 GiB to keep
everything on the GPU and ran out of memory in the MSA module.
"""

from __future__ import annotations

import torch


def allocatable_bytes(device: torch.device) -> int:
    """Bytes this process can still allocate on `device`: the device's free memory plus the
    allocator's reusable cached blocks, and at most the per-process cap less what is
    allocated. Off GPUs: unbounded (a very large number)."""
    if device.type != "cuda":
        return 1 << 62
    free, total = torch.cuda.mem_get_info(device)
    allocated = torch.cuda.memory_allocated(device)
    reusable = torch.cuda.memory_reserved(device) - allocated
    fraction = _memory_fraction(device)
    capped = int(fraction * total) - allocated
    return max(0, min(free + reusable, capped))


def _memory_fraction(device: torch.device) -> float:
    """The cap of set_per_process_memory_fraction (1.0 when none is set or torch cannot say)."""
    getter = getattr(torch.cuda, "get_per_process_memory_fraction", None)
    if getter is None:
        return 1.0
    try:
        return float(getter(device))
    except (RuntimeError, TypeError):
        return 1.0
