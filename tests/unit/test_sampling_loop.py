"""Boltz's sampling loop run by foldcp: host_sync_free.py (its schedule and the rigid
alignment's 3 × 3 work on the host) and graphed_sampling.py (its steps as CUDA graphs; on the
CPU the same step functions run eagerly) give Boltz's own results — exactly, on the CPU."""

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


def stand_in_diffusion(monkeypatch):
    """Boltz-2's AtomDiffusion (its own sample loop, schedule and constants) with a small
    stand-in for the score network."""
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
    calls = []

    def network(noised_atom_coords, sigma, network_condition_kwargs):
        calls.append(network_condition_kwargs["multiplicity"])
        return torch.tanh(noised_atom_coords @ weight) * sigma / (1 + sigma)

    monkeypatch.setattr(module, "preconditioned_network_forward", network, raising=False)
    monkeypatch.setattr(type(module), "device", property(lambda self: self.zero.device), raising=False)
    return module, calls


STEERING_OFF = {"fk_steering": False, "physical_guidance_update": False,
                "contact_guidance_update": False}


def boltz_sample(module, atom_mask, **kwargs):
    torch.manual_seed(11)
    return module.sample(atom_mask, num_sampling_steps=8, steering_args=STEERING_OFF,
                         **kwargs)["sample_atom_coords"]


def test_sampling_loop_equals_boltz(monkeypatch):
    """AtomDiffusion.sample with and without host_sync_free's swaps, same seed: equal
    coordinates, the swapped alignment called once per step, Boltz's restored after."""
    from foldcp.distributed import host_sync_free

    module, _ = stand_in_diffusion(monkeypatch)
    aligned = []

    def counted_align(*args):
        aligned.append(1)
        return weighted_rigid_align(*args)

    monkeypatch.setattr(host_sync_free, "weighted_rigid_align", counted_align)
    atom_mask = torch.ones(1, 24)
    atom_mask[0, -3:] = 0
    want = boltz_sample(module, atom_mask, multiplicity=2)
    with host_sync_free_sampling(module):
        got = boltz_sample(module, atom_mask, multiplicity=2)
    assert torch.equal(got, want)
    assert want.abs().mean() > 0.1  # a real trajectory, not zeros
    assert len(aligned) == 8
    assert diffusionv2.weighted_rigid_align is boltz_align  # restored after the block


@pytest.mark.parametrize("multiplicity, max_parallel", [(1, None), (3, 2)])
def test_graphed_loop_run_eagerly_equals_boltz(monkeypatch, multiplicity, max_parallel):
    """graphed_sampling.sample's step functions (eager off CUDA) against Boltz's loop, same
    seed: equal coordinates, the same chunks of samples through the network."""
    from foldcp.distributed import graphed_sampling

    module, calls = stand_in_diffusion(monkeypatch)
    atom_mask = torch.ones(1, 24)
    atom_mask[0, -3:] = 0
    want = boltz_sample(module, atom_mask, multiplicity=multiplicity,
                        max_parallel_samples=max_parallel)
    boltz_calls = list(calls)
    calls.clear()
    torch.manual_seed(11)
    got = graphed_sampling.sample(module, atom_mask, num_sampling_steps=8,
                                  multiplicity=multiplicity, max_parallel_samples=max_parallel,
                                  steering_args=STEERING_OFF)["sample_atom_coords"]
    assert torch.equal(got, want)
    assert calls == boltz_calls and len(calls) == 8 * (2 if multiplicity == 3 else 1)


@pytest.mark.parametrize("case", ["steering", "no alignment"])
def test_graphed_loop_leaves_other_loops_to_boltz(monkeypatch, case):
    """With steering on, or a model without the reverse-diffusion alignment, graphed_sampling
    .sample hands the whole call to Boltz's loop."""
    from foldcp.distributed import graphed_sampling

    module, _ = stand_in_diffusion(monkeypatch)
    seen = []
    monkeypatch.setattr(module, "sample", lambda *args, **kwargs: seen.append(args) or {"x": 1})
    steering = dict(STEERING_OFF, fk_steering=True) if case == "steering" else STEERING_OFF
    if case == "no alignment":
        module.alignment_reverse_diff = False
    assert graphed_sampling.sample(module, torch.ones(1, 4), 8, 1, None, steering) == {"x": 1}
    assert len(seen) == 1


def contact_features(pairs: int) -> dict:
    """Boltz-2's contact-constraint features (featurizerv2) for `pairs` atom pairs, batched."""
    return {"contact_pair_index": torch.zeros((1, 2, pairs), dtype=torch.long),
            "contact_union_index": torch.zeros((1, pairs), dtype=torch.long),
            "contact_negation_mask": torch.ones((1, pairs), dtype=torch.bool),
            "contact_thresholds": torch.full((1, pairs), 6.0)}


def test_contact_guidance_with_nothing_to_guide_is_left_out():
    from foldcp.distributed.steering import effective_steering

    default = {"fk_steering": False, "physical_guidance_update": False,
               "contact_guidance_update": True, "num_gd_steps": 20}  # boltz predict's
    assert effective_steering(default, contact_features(0))["contact_guidance_update"] is False
    assert effective_steering(default, contact_features(2)) == default  # constraints: kept
    with_fk = dict(default, fk_steering=True)
    assert effective_steering(with_fk, contact_features(0)) == with_fk
    assert effective_steering(None, contact_features(0)) is None


def test_leaving_it_out_changes_no_coordinate(monkeypatch):
    """Boltz's loop with its default contact guidance and no contact constraints or templates
    equals the loop without contact guidance, bit for bit."""
    from foldcp.distributed.steering import effective_steering

    module, _ = stand_in_diffusion(monkeypatch)
    atom_mask = torch.ones(1, 24)
    feats = contact_features(0)
    guided = dict(STEERING_OFF, contact_guidance_update=True, num_gd_steps=20)
    runs = []
    for steering in (guided, effective_steering(guided, feats)):
        torch.manual_seed(11)
        runs.append(module.sample(atom_mask, num_sampling_steps=8, multiplicity=2,
                                  steering_args=steering, feats=feats)["sample_atom_coords"])
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize("setting, one_gpu, expected", [
    (None, True, True), (None, False, False),  # default: where its graphs run
    ("0", True, False), ("1", False, True), ("", True, True)])
def test_graphed_loop_is_the_default_on_one_gpu(monkeypatch, setting, one_gpu, expected):
    """The graphed loop samples one-GPU folds unless FOLDCP_GRAPHED_SAMPLING=0; =1 takes it to
    grids and CPUs too (its eager form, as the tests compare it)."""
    from foldcp.distributed import graphed_sampling

    if setting is None:
        monkeypatch.delenv("FOLDCP_GRAPHED_SAMPLING", raising=False)
    else:
        monkeypatch.setenv("FOLDCP_GRAPHED_SAMPLING", setting)
    assert graphed_sampling.wanted(one_gpu) is expected


def test_graphed_loop_applies_only_where_it_reproduces_boltz():
    """Steered sampling, training and a sampler without the reverse-diffusion alignment go to
    Boltz's own loop — decided before the loop is chosen, so they keep the default path's
    graphed network; a sample() that hands over leaves no step counts behind."""
    from types import SimpleNamespace

    from foldcp.distributed import graphed_sampling

    plain = SimpleNamespace(training=False, alignment_reverse_diff=True)
    assert graphed_sampling.applies(plain, None)
    assert graphed_sampling.applies(plain, {"fk_steering": False, "contact_guidance_update": False})
    assert not graphed_sampling.applies(plain, {"fk_steering": True})
    assert not graphed_sampling.applies(plain, {"physical_guidance_update": True})
    assert not graphed_sampling.applies(SimpleNamespace(training=True, alignment_reverse_diff=True), None)
    assert not graphed_sampling.applies(SimpleNamespace(training=False, alignment_reverse_diff=False), None)

    handed_over = []
    steered = SimpleNamespace(training=False, alignment_reverse_diff=True,
                              sample=lambda *args, **kwargs: handed_over.append(args) or {})
    graphed_sampling.last_run.update(replayed=199, eager=1)  # an earlier fold's
    graphed_sampling.sample(steered, torch.ones(1, 4), steering_args={"fk_steering": True})
    assert handed_over and graphed_sampling.last_run == {}
