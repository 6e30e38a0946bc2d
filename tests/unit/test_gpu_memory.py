"""allocatable_bytes / short_of_memory: the run-time memory decisions see a per-process cap and
the allocator's reusable blocks (CPU machine: torch.cuda's queries stand in for a GPU)."""

from __future__ import annotations

import pytest
import torch

from foldcp.distributed import memory
from foldcp.distributed.trunk import short_of_memory

GIB = 2**30
GPU = torch.device("cuda", 0)


@pytest.fixture
def gpu(monkeypatch):
    """A fake 141 GiB GPU: set .free, .allocated, .reserved, .fraction (GiB / share)."""
    state = type("State", (), {"free": 120.0, "allocated": 10.0, "reserved": 14.0, "fraction": 1.0})()
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (int(state.free * GIB), 141 * GIB))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: int(state.allocated * GIB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: int(state.reserved * GIB))
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda device: state.fraction,
                        raising=False)
    return state


def test_uncapped_counts_device_free_and_reusable_cache(gpu):
    assert memory.allocatable_bytes(GPU) == pytest.approx((120 + 4) * GIB, abs=1)


def test_per_process_cap_bounds_what_is_allocatable(gpu):
    gpu.fraction = 79.18 / 141  # an H100's memory on an H200 (cp_model.py --gpu-memory-gib)
    assert memory.allocatable_bytes(GPU) == pytest.approx((79.18 - 10) * GIB, rel=1e-6)
    gpu.allocated = 80.0  # past the cap (allocated before it was set): nothing, not negative
    assert memory.allocatable_bytes(GPU) == 0


def test_short_of_memory_decides_by_the_cap(gpu):
    z_bytes = 18 * GIB  # one float32 pair block of 8,605 tokens on 1×2
    gpu.allocated, gpu.reserved = 25.0, 29.0  # z, z_init's strip, weights
    assert not short_of_memory(z_bytes, GPU, blocks=3.5)  # 124 GiB on the card ≥ 63
    gpu.fraction = 79.18 / 141
    assert short_of_memory(z_bytes, GPU, blocks=3.5)  # 54 GiB under the cap < 63
    gpu.fraction = 1.0
    gpu.free = 40.0  # another process took the card: the device's free memory decides
    assert short_of_memory(z_bytes, GPU, blocks=3.5)


def test_without_the_fraction_query_the_device_decides(gpu, monkeypatch):
    monkeypatch.delattr(torch.cuda, "get_per_process_memory_fraction")
    assert memory.allocatable_bytes(GPU) == pytest.approx(124 * GIB, abs=1)


def test_off_gpu_nothing_is_short():
    assert not short_of_memory(10**15, torch.device("cpu"))
    assert memory.allocatable_bytes(torch.device("cpu")) > 10**15
