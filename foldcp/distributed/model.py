"""Boltz-2 inference under context parallelism: trunk → structure sampling → confidence.

`DistBoltz2(model).predict(...)` is Boltz2.forward for inference (recycling, sampling steps,
diffusion samples, confidence run sample by sample) on an r × c grid. Coordinates and
per-token outputs come back whole on every rank; PAE / PDE come back as this rank's blocks
(`gather_pair` assembles them on rank 0 for writing). Same seed → same structure as the
serial model: the random draws of the diffusion loop happen identically on every rank.
"""

from __future__ import annotations

import torch

from foldcp.distributed import pointwise
from foldcp.distributed.confidence import DistConfidence
from foldcp.distributed.diffusion import sample_structure
from foldcp.distributed.layout import Layout
from foldcp.distributed.trunk import DistTrunk, short_of_memory


class DistBoltz2:
    def __init__(self, model: torch.nn.Module, cuda_graphs: bool = True) -> None:
        """cuda_graphs: replay the denoising steps as CUDA graphs on one GPU (graphed.py)."""
        self.model = model
        self.cuda_graphs = cuda_graphs
        self.trunk = DistTrunk(model)
        self.confidence = DistConfidence(model.confidence_module)
        self.force_confidence_z_to_host: bool | None = None  # None: decided by free memory

    def confidence_z_to_host(self, z: torch.Tensor) -> bool:
        if self.force_confidence_z_to_host is not None:
            return self.force_confidence_z_to_host
        return short_of_memory(z.numel() * z.element_size(), z.device)

    def predict(self, feats: dict, layout: Layout, recycling_steps: int, sampling_steps: int,
                diffusion_samples: int, max_parallel_samples: int | None = None) -> dict:
        # the pair stack's element-wise chains are compiled only for folds large enough to
        # repay it (pointwise.COMPILE_MIN_TOKENS)
        with pointwise.fold_of(layout.n_padded):
            return self._predict(feats, layout, recycling_steps, sampling_steps,
                                 diffusion_samples, max_parallel_samples)

    def _predict(self, feats: dict, layout: Layout, recycling_steps: int, sampling_steps: int,
                 diffusion_samples: int, max_parallel_samples: int | None) -> dict:
        n = feats["token_pad_mask"].shape[1]
        create_solver_handle(feats["token_pad_mask"].device)
        trunk = self.trunk(feats, layout, recycling_steps)
        s_inputs, s = trunk.s_inputs[:, :n], trunk.s[:, :n]
        structure = sample_structure(self.model, s, s_inputs, trunk.z, feats, layout,
                                     sampling_steps, diffusion_samples, max_parallel_samples,
                                     cuda_graphs=self.cuda_graphs)
        coords = structure["sample_atom_coords"]
        if layout.grid.size > 1:
            # Every rank computed the same coordinates; make them bitwise equal anyway, so a
            # non-deterministic kernel cannot leave the ranks' confidence blocks inconsistent.
            torch.distributed.broadcast(coords, layout.grid.rank_of(0, 0))
        z_trunk = trunk.z
        if self.confidence_z_to_host(z_trunk):
            # each sample's confidence makes its own z from the trunk's; where the GPU is short
            # the trunk's waits in host memory and comes back for each sample (same values)
            held, device = z_trunk.to("cpu", copy=True), z_trunk.device
            trunk.z = None
            z_trunk = lambda: held.to(device)  # noqa: E731  (the GPU block's last reference)
        per_sample = [
            self.confidence(s_inputs, s, z_trunk, coords[k : k + 1], feats,
                            trunk.pdistogram[:, :, :, 0], layout)
            for k in range(diffusion_samples)
        ]
        out = {"sample_atom_coords": coords}
        for key in per_sample[0]:
            if key == "pair_chains_iptm":
                out[key] = {
                    a: {b: torch.cat([p[key][a][b] for p in per_sample]) for b in row}
                    for a, row in per_sample[0][key].items()
                }
            else:
                out[key] = torch.cat([p[key] for p in per_sample], dim=0)
        return out


def create_solver_handle(device: torch.device) -> None:
    """Make this thread's cuSOLVER handle now, while the GPU has free memory.

    The diffusion's rigid alignment takes an SVD; cuSOLVER allocates its handle outside
    PyTorch's cache on the first one, and by then the cache can hold every free byte (8,500
    tokens on 1×2 failed there with CUSOLVER_STATUS_INTERNAL_ERROR after the trunk fit)."""
    if device.type == "cuda":
        torch.linalg.svd(torch.eye(3, device=device))
