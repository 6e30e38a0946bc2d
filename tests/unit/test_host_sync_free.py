"""host_sync_free.py: Boltz's sampling loop with its schedule on the host and the rigid
alignment's 3 × 3 work on the host gives Boltz's own results (exactly, on the CPU)."""

import pytest
import torch
from boltz.model.loss.diffusionv2 import weighted_rigid_align as boltz_align
from boltz.model.modules import diffusionv2

from foldcp.distributed.host_sync_free import host_sync_free_sampling, weighted_rigid_align


@pytest.mark.parametrize("batch, atoms", [(1, 40), (3, 17)])
def test_rigid_align_equals_boltz(batch, atoms):
    generator = torch.Generator().manual_seed(batch * 100 + atoms)
    true = torch.randn(batch, atoms, 3, generator=generator) * 10
    rotation = torch.linalg.qr(torch.randn(batch, 3, 3, generator=generator)).Q
    pred = torch.einsum("bni,bji->bnj", true, rotation) + torch.randn(batch, atoms, 3, generator=generator)
    mask = (torch.rand(batch, atoms, generator=generator) > 0.2).float()
    want = boltz_align(true, pred, mask, mask)
    got = weighted_rigid_align(true, pred, mask, mask)
    assert torch.equal(got, want)
    # it moves true onto pred: the aligned copy is closer than the input
    assert (got - pred).square().sum() < 0.5 * (true - pred).square().sum()


def test_reflection_is_fixed_as_boltz_fixes_it():
    """A mirrored point cloud: the best orthogonal map is a reflection; both return the same
    proper rotation (det +1)."""
    generator = torch.Generator().manual_seed(5)
    true = torch.randn(2, 30, 3, generator=generator)
    pred = true * torch.tensor([1.0, 1.0, -1.0])
    mask = torch.ones(2, 30)
    want, got = boltz_align(true, pred, mask, mask), weighted_rigid_align(true, pred, mask, mask)
    assert torch.equal(got, want)


def test_sampling_loop_equals_boltz(monkeypatch):
    """AtomDiffusion.sample (Boltz's loop, a stand-in network) with and without the swaps, same
    seed: equal coordinates, the swapped alignment called once per step, Boltz's restored."""
    from foldcp.distributed import host_sync_free
    module = diffusionv2.AtomDiffusion.__new__(diffusionv2.AtomDiffusion)
    torch.nn.Module.__init__(module)
    for name, value in dict(sigma_min=0.0004, sigma_max=160.0, sigma_data=16.0, rho=7,
                            P_mean=-1.2, P_std=1.5, gamma_0=0.8, gamma_min=1.0,
                            noise_scale=1.003, step_scale=1.5, step_scale_random=None,
                            num_sampling_steps=8, alignment_reverse_diff=True,
                            coordinate_augmentation=True, synchronize_sigmas=False).items():
        setattr(module, name, value)
    module.register_buffer("zero", torch.zeros(1))
    weight = torch.randn(3, 3, generator=torch.Generator().manual_seed(3)) * 0.1
    aligned = []

    def counted_align(*args):
        aligned.append(1)
        return weighted_rigid_align(*args)

    monkeypatch.setattr(host_sync_free, "weighted_rigid_align", counted_align)

    def network(noised_atom_coords, sigma, network_condition_kwargs):
        return torch.tanh(noised_atom_coords @ weight) * sigma / (1 + sigma)

    monkeypatch.setattr(module, "preconditioned_network_forward", network, raising=False)
    monkeypatch.setattr(type(module), "device", property(lambda self: self.zero.device), raising=False)
    atom_mask = torch.ones(1, 24)
    atom_mask[0, -3:] = 0
    steering = {"fk_steering": False, "physical_guidance_update": False,
                "contact_guidance_update": False}
    runs = []
    for swaps in (False, True):
        torch.manual_seed(11)
        if swaps:
            with host_sync_free_sampling(module):
                out = module.sample(atom_mask, num_sampling_steps=8, multiplicity=2,
                                    steering_args=steering)
        else:
            out = module.sample(atom_mask, num_sampling_steps=8, multiplicity=2, steering_args=steering)
        runs.append(out["sample_atom_coords"])
    assert torch.equal(runs[0], runs[1])
    assert runs[0].abs().mean() > 0.1  # a real trajectory, not zeros
    assert len(aligned) == 8
    assert diffusionv2.weighted_rigid_align is boltz_align  # restored after the block
