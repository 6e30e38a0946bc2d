"""Boltz-2's sampling loop with fewer of its per-step host synchronisations.

Each of the 200 denoising steps of Boltz's AtomDiffusion.sample (diffusionv2) stops the host
until the GPU has caught up about seven times: three `.item()` on the noise schedule, and in
weighted_rigid_align two `any()` checks for its warnings, the SVD's error check and the
determinant. After each stop the GPU idles while the host launches the next of the ~200
eager kernels around the graphed score network. That idle time was 7.2 ms of a 33-ms step
at 2,500 tokens and 4.5 of 14.5 ms at 1,000 on an H200 (bench/cp_model.py
--profile-sampling; bench/RESULTS.md, eleventh session).

Boltz's loop is kept as it is (same operations, same random draws, in the same order); two of
the things it calls are swapped while it runs:

- the noise schedule is copied to the host once, so the loop's `.item()` calls read host
  memory (the same float32 values);
- weighted_rigid_align forms the weighted covariance matrices on the device as Boltz does and
  copies them, with the per-sample atom counts its warning checks, to the host in ONE
  transfer; there the 3 × 3 SVD, determinant and rotation are computed as Boltz computes them
  on the CPU, and the rotations go back to rotate the coordinates on the device. On CUDA this
  is LAPACK's SVD instead of cuSOLVER's gesvd for the 3 × 3 matrices (rounding-level
  differences in the rotation: float32 RMSD to serial Boltz after 200 steps at 1,000 tokens
  0.0075 Å, as before); on the CPU the result equals Boltz's exactly.

Measured: the host stops went from 7.2 to 5.7 per step (the rotations' upload from pageable
memory and Boltz's own `torch.arange(...).to(device)` still block) and the GPU's idle time
by 4–7 %: about 2 % of the sampling time (bench/RESULTS.md). On one GPU each whole step is
now one CUDA graph instead (graphed_sampling.py, which shares this alignment's halves);
Boltz's loop with these swaps still samples on grids of several GPUs, steered folds, and
folds with FOLDCP_GRAPHED_SAMPLING=0.

    with host_sync_free_sampling(structure_module):
        structure_module.sample(...)
"""

from __future__ import annotations

import contextlib

import torch
from boltz.model.modules import diffusionv2

from foldcp.distributed.swap import swapped


@contextlib.contextmanager
def host_sync_free_sampling(structure_module):
    """For the with-block: structure_module.sample runs with its noise schedule on the host and
    with weighted_rigid_align below (see the module docstring)."""
    boltz_schedule = structure_module.sample_schedule

    def schedule_on_host(num_sampling_steps=None):
        return boltz_schedule(num_sampling_steps).cpu()

    with swapped((structure_module, "sample_schedule", schedule_on_host),
                 (diffusionv2, "weighted_rigid_align", weighted_rigid_align)):
        yield


def weighted_rigid_align(true_coords: torch.Tensor, pred_coords: torch.Tensor,
                         weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Boltz's weighted_rigid_align (AF3 algorithm 28): true_coords [B, N, 3] rigidly moved
    onto pred_coords [B, N, 3], weights and mask [B, N]. The 3 × 3 work on the host."""
    true_centered, pred_centroid, for_host = centered_covariance(true_coords, pred_coords,
                                                                 weights, mask)
    rotation = host_rotation(for_host.cpu(), true_centered.shape[-2])  # one transfer
    rotation = rotation.to(for_host.device, non_blocking=True)
    return rotated(true_centered, rotation, pred_centroid).detach_()


def rotated(true_centered, rotation, pred_centroid):
    """Boltz's weighted_rigid_align after its SVD: centred coordinates [..., N, 3] rotated by
    rotation [..., 3, 3] and moved onto the predicted centroid [..., 1, 3]."""
    return torch.einsum("...ni,...ji->...nj", true_centered, rotation) + pred_centroid


def centered_covariance(true_coords, pred_coords, weights, mask):
    """Boltz's weighted_rigid_align up to its SVD, on the device: (true_coords centred,
    pred_coords' weighted centroid [..., 1, 3], what the host needs [..., 10]: the weighted
    covariance matrix flattened and the atom count its first warning checks)."""
    weights = (mask * weights).unsqueeze(-1)
    true_centroid = (true_coords * weights).sum(dim=-2, keepdim=True) / weights.sum(dim=-2, keepdim=True)
    pred_centroid = (pred_coords * weights).sum(dim=-2, keepdim=True) / weights.sum(dim=-2, keepdim=True)
    true_centered = true_coords - true_centroid
    pred_centered = pred_coords - pred_centroid
    cov = torch.einsum("...ni,...nj->...ij", weights * pred_centered, true_centered)
    counts = mask.sum(dim=-1).to(cov.dtype).unsqueeze(-1)
    return true_centered, pred_centroid, torch.cat([cov.flatten(-2), counts], dim=-1)


def host_rotation(for_host: torch.Tensor, points: int) -> torch.Tensor:
    """Boltz's proper rotations [..., 3, 3], on the host, from centered_covariance's [..., 10]
    (copied over): its warnings, its float32 SVD, the reflection fixed by the determinant."""
    dim = 3
    if torch.any(for_host[..., -1] < dim + 1):
        print("Warning: The size of one of the point clouds is <= dim+1. "
              "`WeightedRigidAlign` cannot return a unique rotation.")
    cov = for_host[..., :dim * dim].unflatten(-1, (dim, dim))
    original_dtype = cov.dtype
    cov_32 = cov.to(torch.float32)
    u, s, v = torch.linalg.svd(cov_32)
    v = v.mH
    if (s.abs() <= 1e-15).any() and not (points < (dim + 1)):
        print("Warning: Excessively low rank of cross-correlation between aligned point "
              "clouds. `WeightedRigidAlign` cannot return a unique rotation.")
    rotation = torch.einsum("...ij,...kj->...ik", u, v).to(torch.float32)
    flip = torch.eye(dim, dtype=cov_32.dtype)[None].repeat(*cov.shape[:-2], 1, 1)
    flip[..., -1, -1] = torch.det(rotation)
    rotation = torch.einsum("...ij,...jk,...lk->...il", u, flip, v)
    return rotation.to(original_dtype)
