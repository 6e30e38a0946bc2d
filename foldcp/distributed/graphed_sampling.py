"""Boltz-2's diffusion sampling loop with each denoising step replayed as ONE CUDA graph.

Why: with only the score network replayed as a graph (graphed.py), the loop around it still
launches ~200 small kernels per step eagerly and stops the host several times a step
(host_sync_free.py); the GPU idled 21 % of a step at 2,500 tokens and 30 % at 1,000 on an
H200 (bench/cp_model.py --profile-sampling; bench/RESULTS.md, eleventh session).

The loop is Boltz's AtomDiffusion.sample (diffusionv2) for inference without steering (no
FK steering, physical or contact guidance; Boltz-2's default contact guidance counts as off
for inputs without contact constraints or forced templates, steering.py), with its
operations in the same order, so it makes the same random draws; steering (and a model
without Boltz's reverse-diffusion alignment) runs Boltz's own loop. Step k:

    augment   coords ← (coords − mean) · R + tr               R, tr random
    noise     noisy ← coords + √var_k · ε                       ε random
    predict   denoised ← network(noisy, t̂_k)                   (per chunk of samples)
    align     noisy ← noisy rigidly moved onto denoised         (3 × 3 SVD)
    update    coords ← noisy + c_k · (noisy − denoised) / t̂_k

The alignment's SVD runs on the host (host_sync_free.host_rotation: Boltz's math, LAPACK;
cuSOLVER checks its result on the host, which a graph cannot hold). So one graph holds
[the end of step k − 1: rotate, update] + [step k up to the alignment's covariance matrices,
copied into pinned host memory]; the host waits for it, forms the rotations into pinned
memory and replays it for the next step. The per-step numbers (t̂, √var, c) enter through a
pinned host buffer the graph copies at its start. Step 0 runs eagerly (it warms up cuBLAS,
Triton and the allocator), the graph is recorded once, and the end of the last step runs
eagerly.

Replayed kernels draw the same random numbers as eager ones (a graph's generator offsets are
the eager offsets); scalars that Boltz passes as Python floats become float32 device values,
and division by t̂ a multiplication by its float32 reciprocal — as CUDA's kernels treat a
Python-scalar divisor. Off CUDA, on grids of several GPUs (NCCL collectives are not
recorded) or where recording fails (then without graphed.py's per-network graphs: slower
than the default path), the same step functions run eagerly with Python floats:
on the CPU the result equals Boltz's loop exactly (tests/unit/test_sampling_loop.py).

On by default for one-GPU folds with CUDA graphs (the only place its graphs run): on an H200
at 1,000 tokens the 200 steps took 2.69 s against 2.86 s for Boltz's loop around the graphed
network (same machine, back to back), 6.18 against 6.23–6.37 s at 2,500, with all steps after
the first replayed; its coordinates agree with serial Boltz as the eager loop's do (float32
RMSD 0.0072 Å at 1,000 tokens; bench/RESULTS.md, twelfth session).
FOLDCP_GRAPHED_SAMPLING=0 turns it off; =1 uses it everywhere (its eager form off one GPU:
the tests compare that with serial Boltz on CPU grids). Steered sampling keeps the default
path (Boltz's loop around the graphed network; `applies`). If recording fails (a warning is
logged) the steps run eagerly, without the network's own graph: slower than that path.
"""

from __future__ import annotations

import logging
import os
from math import sqrt

import torch
from boltz.model.modules.utils import compute_random_augmentation

from foldcp.distributed.graphed import on_side_stream
from foldcp.distributed.host_sync_free import centered_covariance, host_rotation, rotated
from foldcp.errors import summary

log = logging.getLogger(__name__)

# How the last sample() ran its steps: {"replayed": steps replayed from the graph, "eager":
# steps run eagerly} (benchmarks record it: a failed recording only logs a warning)
last_run: dict[str, int] = {}


def wanted(one_gpu: bool) -> bool:
    """The caller samples through sample() below: by default where its graphs run (one_gpu:
    one CUDA GPU, CUDA graphs on); FOLDCP_GRAPHED_SAMPLING=1 everywhere, =0 nowhere."""
    setting = os.environ.get("FOLDCP_GRAPHED_SAMPLING", "")
    return setting == "1" if setting in ("0", "1") else one_gpu


def applies(diffusion, steering_args: dict | None) -> bool:
    """This loop reproduces Boltz's for this sampler: inference, no steering, Boltz's
    reverse-diffusion alignment (anything else runs Boltz's own loop)."""
    return (not steering_active(steering_args) and not diffusion.training
            and bool(diffusion.alignment_reverse_diff))


def steering_active(steering_args: dict | None) -> bool:
    """Boltz's loop would steer (callers pass steering.effective_steering's arguments, so
    contact guidance with nothing to guide is already off)."""
    return bool(steering_args) and any(
        steering_args.get(key) for key in ("fk_steering", "physical_guidance_update",
                                           "contact_guidance_update"))


def sample(diffusion, atom_mask: torch.Tensor, num_sampling_steps: int | None = None,
           multiplicity: int = 1, max_parallel_samples: int | None = None,
           steering_args: dict | None = None, graphs: bool = True,
           samples_computed: tuple[int, int] | None = None, **network_condition_kwargs) -> dict:
    """diffusion.sample(...) (Boltz's AtomDiffusion) with its steps as CUDA graphs where
    `graphs` and possible (module docstring). Returns Boltz's dict.

    samples_computed: [first, last) — denoise only these samples (a rank's share,
    replicated_sampling.py); every sample's random draws are still made, so these follow
    their serial trajectories, and the other samples' coordinates are placeholders."""
    last_run.clear()
    if not applies(diffusion, steering_args):
        if samples_computed is not None:
            raise ValueError("a share of the samples needs foldcp's loop (no steering)")
        return diffusion.sample(atom_mask, num_sampling_steps, multiplicity, max_parallel_samples,
                                steering_args, **network_condition_kwargs)
    loop = _Loop(diffusion, atom_mask, num_sampling_steps, multiplicity, max_parallel_samples,
                 network_condition_kwargs, samples_computed)
    loop.run(graphs and atom_mask.is_cuda)
    return dict(sample_atom_coords=loop.coords, diff_token_repr=None)


class _Loop:
    """The loop's state in fixed tensors (a recorded graph reads and writes these)."""

    def __init__(self, diffusion, atom_mask, num_sampling_steps, multiplicity,
                 max_parallel_samples, network_condition_kwargs, samples_computed=None):
        self.diffusion = diffusion
        self.kwargs = network_condition_kwargs
        self.multiplicity = multiplicity
        steps = num_sampling_steps or diffusion.num_sampling_steps
        self.atom_mask = atom_mask.repeat_interleave(multiplicity, 0)
        self.shape = (*self.atom_mask.shape, 3)
        device = self.atom_mask.device
        sigmas = diffusion.sample_schedule(steps)
        gammas = torch.where(sigmas > diffusion.gamma_min, diffusion.gamma_0, 0.0)
        # Boltz reads these with .item() each step: the same float32 values, read once
        self.schedule = list(zip(sigmas[:-1].tolist(), sigmas[1:].tolist(), gammas[1:].tolist()))
        # Boltz's contiguous sample chunks (torch.chunk of the sample indices)
        max_parallel_samples = max_parallel_samples or multiplicity
        self.chunks = [(int(c[0]), int(c[-1]) + 1) for c in
                       torch.arange(multiplicity).chunk(multiplicity % max_parallel_samples + 1)]
        # samples not denoised here (another rank's share): placeholders, "denoised" = noisy,
        # so their alignment is a well-posed identity rather than an SVD of zeros
        self.placeholders: list[tuple[int, int]] = []
        if samples_computed is not None:  # each chunk cut to the samples this loop denoises
            own_first, own_last = samples_computed
            self.chunks = [(max(first, own_first), min(last, own_last)) for first, last in self.chunks
                           if max(first, own_first) < min(last, own_last)]
            self.placeholders = [(first, last) for first, last in
                                 ((0, own_first), (own_last, multiplicity)) if first < last]
        self.coords = sigmas[0].to(device) * torch.randn(self.shape, device=device)
        self.noisy = torch.zeros_like(self.coords)
        self.denoised = torch.zeros_like(self.coords)
        self.true_centered = torch.zeros_like(self.coords)
        self.pred_centroid = torch.zeros((multiplicity, 1, 3), device=device)
        pinned = device.type == "cuda"
        # per step: t̂_k, √var_k (step k), 1/t̂ and c of the step being finished
        self.numbers_host = torch.zeros(4, pin_memory=pinned)
        self.numbers = torch.zeros(4, device=device)
        self.cov_host = torch.zeros((multiplicity, 10), pin_memory=pinned)
        self.rotation_host = torch.zeros((multiplicity, 3, 3), pin_memory=pinned)
        self.rotation = torch.zeros((multiplicity, 3, 3), device=device)

    # -- the step, in pieces ---------------------------------------------------------------

    def _t_hat(self, step: int) -> float:
        """Boltz's t̂ of a step: σ_{t−1} · (1 + γ), in Python."""
        sigma_tm, _, gamma = self.schedule[step]
        return sigma_tm * (1 + gamma)

    def _numbers(self, k: int) -> tuple[float, float, float, float]:
        """(t̂_k, √var_k, 1/t̂_{k−1} in float32, c_{k−1}) as Boltz computes them in Python."""
        diffusion = self.diffusion
        t, noise_std = 0.0, 0.0
        if k < len(self.schedule):
            sigma_tm = self.schedule[k][0]
            t = self._t_hat(k)
            noise_std = sqrt(diffusion.noise_scale**2 * (t**2 - sigma_tm**2))
        inverse, coefficient = 0.0, 0.0
        if k > 0:
            previous = self._t_hat(k - 1)
            inverse = float(torch.tensor(1.0) / torch.tensor(previous))  # float32, as CUDA's
            coefficient = diffusion.step_scale * (self.schedule[k - 1][1] - previous)
        return t, noise_std, inverse, coefficient

    def _finish(self, t_hat_previous, inverse, coefficient) -> None:
        """The end of the previous step: noisy rotated onto denoised, then Boltz's update."""
        with torch.autocast("cuda", enabled=False):  # Boltz aligns outside any autocast
            aligned = rotated(self.true_centered, self.rotation, self.pred_centroid)
        aligned = aligned.to(self.denoised)
        difference = aligned - self.denoised
        if isinstance(inverse, torch.Tensor):  # recorded: Boltz's `/ t̂` as CUDA runs it
            difference = difference * inverse
        else:
            difference = difference / t_hat_previous
        self.coords.copy_(aligned + coefficient * difference)

    def _predict(self, t_hat, noise_std) -> None:
        """Step k up to the alignment's covariance matrices (copied to cov_host)."""
        diffusion = self.diffusion
        rotation, translation = compute_random_augmentation(
            self.multiplicity, device=self.coords.device, dtype=self.coords.dtype)
        coords = self.coords - self.coords.mean(dim=-2, keepdims=True)
        coords = torch.einsum("bmd,bds->bms", coords, rotation) + translation
        self.noisy.copy_(coords + noise_std * torch.randn(self.shape, device=coords.device))
        with torch.no_grad():
            for first, last in self.chunks:
                if isinstance(t_hat, torch.Tensor):  # Boltz's torch.full of the float
                    sigma = t_hat.expand(last - first)
                else:
                    sigma = t_hat
                self.denoised[first:last] = diffusion.preconditioned_network_forward(
                    self.noisy[first:last], sigma, network_condition_kwargs=dict(
                        multiplicity=last - first, **self.kwargs))
            for first, last in self.placeholders:
                self.denoised[first:last] = self.noisy[first:last]
        # Boltz's weighted_rigid_align(noisy, denoised, mask, mask), up to its SVD, outside
        # any autocast as Boltz runs it (the bf16 sampling mode's autocast covers the loop)
        with torch.autocast("cuda", enabled=False):
            mask = self.atom_mask.float()
            true_centered, pred_centroid, for_host = centered_covariance(
                self.noisy.float(), self.denoised.float(), mask, mask)
            self.true_centered.copy_(true_centered)
            self.pred_centroid.copy_(pred_centroid)
            self.cov_host.copy_(for_host, non_blocking=True)

    def _rotate_on_host(self) -> None:
        """The rotations from cov_host (ready), into rotation_host."""
        self.rotation_host.copy_(host_rotation(self.cov_host, self.shape[1]))

    # -- running it ------------------------------------------------------------------------

    def run(self, graphs: bool) -> None:
        steps = len(self.schedule)
        graph = None
        last_run.update(replayed=0, eager=0)  # (sample() cleared it)
        for k in range(steps + 1):
            t_hat, noise_std, inverse, coefficient = self._numbers(k)
            if graphs and graph is None and 0 < k < steps:
                graph = self._record()
                graphs = graph is not None
            if graph is not None and k < steps:
                self.numbers_host.copy_(torch.tensor([t_hat, noise_std, inverse, coefficient]))
                graph.replay()  # reads numbers_host and rotation_host as it starts
                last_run["replayed"] += 1
            else:
                last_run["eager"] += k < steps
                self._eager_step(k, t_hat, noise_std, inverse, coefficient,
                                 side_stream=graphs and k == 0)
            if k < steps:
                if self.coords.is_cuda:
                    torch.cuda.current_stream().synchronize()  # cov_host is filled
                self._rotate_on_host()

    def _eager_step(self, k, t_hat, noise_std, inverse, coefficient, side_stream: bool) -> None:
        """Finish step k − 1 and predict step k with Python floats, as Boltz's loop does; on a
        side stream before recording (the warm-up CUDA graphs want, graphed.on_side_stream)."""
        def step():
            if k > 0:
                self.rotation.copy_(self.rotation_host, non_blocking=True)
                self._finish(self._t_hat(k - 1), inverse, coefficient)
            if k < len(self.schedule):
                self._predict(t_hat, noise_std)

        if side_stream:
            on_side_stream(step)
        else:
            step()

    def _record(self):
        """One graph of [finish the previous step, predict the next] with its numbers from the
        pinned buffers; None (and a warning) if the step cannot be recorded."""
        stream = torch.cuda.current_stream()
        torch.cuda.synchronize()
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.numbers.copy_(self.numbers_host, non_blocking=True)
                self.rotation.copy_(self.rotation_host, non_blocking=True)
                t_hat, noise_std, inverse, coefficient = self.numbers.unbind()
                self._finish(None, inverse, coefficient)
                self._predict(t_hat, noise_std)
        except Exception as error:  # noqa: BLE001 - a host sync inside, out of memory, a kernel …
            log.warning("denoising step not recordable as one CUDA graph, running eagerly: %s",
                        summary(error))
            torch.cuda.synchronize()
            return None
        stream.synchronize()
        return graph
