"""Sampling on a grid with the pair representation replicated and the samples shared out.

Why: under CP the token transformer's pair bias stays tiled, and each of its 24 layers
combines partial softmaxes over the grid at each of the 200 steps — latency-bound collectives
on work that is small next to the trunk's. On two H200s at 2,500 tokens the 200 steps took
11.5 s against 6.0 s on one GPU (bench/RESULTS.md, thirteenth session).

What: where the whole padded pair tensor fits on each GPU (`fits`), every rank gathers the
trunk's z once (comm.all_gather_pair) and samples as a grid of one — the one-GPU path, each
whole denoising step a CUDA graph (graphed_sampling.py) — but the network runs only for this
rank's contiguous share of the samples (`shares`). Every rank still makes every sample's
random draws (augmentation, noise), so each sample follows the serial trajectory; the other
samples' rows carry placeholders (their "denoised" coordinates are the noisy ones) and are
discarded. At the end each share's coordinates are broadcast from the rank that made them, so
every rank returns all samples, as the tiled sampler does.

Placement: z_block [B, |R_p|, |C_q|, C] in; z [B, N', N', C] on every rank while sampling
(plus its conditioned copy and the per-layer biases, N'²·(8·C + 2·heads) bytes in a bf16 fold:
`fits` asks for them in half of what the GPU can still allocate); coordinates [samples, atoms, 3]
replicated out. Larger complexes (8,605 tokens on 80 GB cards) keep the tiled sampler.

Measured (two H200s, 2,500 tokens, 1×2, fourteenth session, bench/RESULTS.md): the 200 steps
in 6.17 s against 11.48 s tiled (one GPU: 6.00 s), the fold in 47.31 against 52.50 s; the
peak per GPU rises 9.69 → 14.66 GiB, memory the fold had free. So it is the default for GPU
folds (where it fits: a complex that needs the grid for its memory keeps the tiled sampler).
FOLDCP_REPLICATED_SAMPLING=0 turns it off, =1 turns it on off GPUs too (CPU grids, where the
ranks share one host's memory, keep the tiled sampler by default), =force replicates whether
or not it fits (tests). Recording the step graph beside live NCCL communicators worked on
PyTorch 2.11 (199 of 200 steps replayed); where recording fails graphed_sampling falls back
to eager steps. Steered sampling (FK steering resamples across samples; guidance) keeps the
tiled sampler, as does FOLDCP_GRAPHED_SAMPLING=0 (Boltz's own loop).
"""

from __future__ import annotations

import os
from typing import Callable

import torch
import torch.distributed as dist

from foldcp.distributed import graphed_sampling
from foldcp.distributed.comm import all_gather_pair, all_reduce, grid_group
from foldcp.distributed.grid import Grid
from foldcp.distributed.layout import Layout
from foldcp.distributed.memory import allocatable_bytes

MEMORY_SHARE = 0.5  # the replicated pair tensors may take at most this share of free memory


def wanted(model, z_block: torch.Tensor, layout: Layout, steering_args: dict | None) -> bool:
    """Sample this grid's fold replicated (module docstring)."""
    setting = os.environ.get("FOLDCP_REPLICATED_SAMPLING", "")
    if layout.grid.size == 1 or setting not in ("", "1", "force"):
        return False
    if setting == "" and not on_gpu(z_block):
        return False
    if os.environ.get("FOLDCP_GRAPHED_SAMPLING", "") == "0":
        return False  # Boltz's own loop asked for: it cannot share samples out
    if not graphed_sampling.applies(model.structure_module, steering_args):
        return False
    if setting == "force":
        return True
    # every rank must take the same path (the two samplers' collectives differ), and free
    # memory differs between GPUs: replicate only if it fits on all of them
    fits_here = torch.tensor([int(fits(model, z_block, layout))], device=z_block.device)
    return bool(all_reduce(fits_here, grid_group(layout.grid), op=dist.ReduceOp.MIN).item())


def on_gpu(z_block: torch.Tensor) -> bool:
    """Where replicated sampling is on by default: GPU folds."""
    return z_block.is_cuda


def fits(model, z_block: torch.Tensor, layout: Layout) -> bool:
    """replicated_bytes fit in MEMORY_SHARE of what this GPU can still allocate (off GPUs:
    always). The biases take the dtype they are projected in (ShardedPairBias): the
    caller's autocast dtype (bf16 in folds), else z's."""
    if not z_block.is_cuda:
        return True
    bias_dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else z_block.dtype
    needed = replicated_bytes(model, z_block, layout, bias_dtype.itemsize)
    return needed <= MEMORY_SHARE * allocatable_bytes(z_block.device)


def replicated_bytes(model, z_block: torch.Tensor, layout: Layout, bias_itemsize: int) -> int:
    """What replicated sampling adds on each GPU: the whole z, its conditioned copy (float32)
    and the token transformer's per-layer biases, over N'² pairs."""
    heads = sum(_out_features(p) for p in model.diffusion_conditioning.token_trans_proj_z)
    per_pair = z_block.shape[-1] * (z_block.element_size() + 4) + heads * bias_itemsize
    return layout.n_padded**2 * per_pair


def _out_features(projection) -> int:
    last = projection[-1] if isinstance(projection, torch.nn.Sequential) else projection
    return last.out_features


def shares(samples: int, ranks: int) -> list[tuple[int, int]]:
    """Each rank's contiguous [first, last) of the samples, in rank order (sizes differ by at
    most one; a rank may get none)."""
    return [(rank * samples // ranks, (rank + 1) * samples // ranks) for rank in range(ranks)]


def sample(one_gpu_sampler: Callable[..., dict], z_block: torch.Tensor, layout: Layout,
           diffusion_samples: int) -> dict:
    """one_gpu_sampler(z, layout, samples_computed) on the whole z as a grid of one — this
    rank's share of the samples — then every share broadcast from its rank. Returns Boltz's
    dict with all samples' coordinates on every rank."""
    grid = layout.grid
    z = all_gather_pair(z_block, grid, layout.n_padded)
    alone = Layout(Grid(1, 1), layout.n_real, layout.n_padded)
    owned = shares(diffusion_samples, grid.size)
    out = one_gpu_sampler(z, alone, owned[grid.rank])
    del z
    coords = out["sample_atom_coords"]
    for rank, (first, last) in enumerate(owned):
        if first < last:  # rows [first, last) of a contiguous tensor: a contiguous view
            dist.broadcast(coords[first:last], src=rank)
    return out
