"""Per-GPU memory model used to choose a complex's GPU grid.

    GiB per GPU = fixed_gib + replicated_gib_per_ktoken2 · (N/1000)²
                            + pair_gib_per_ktoken2 · (N/1000)² / P

N = tokens, P = GPUs in the grid. The last term is the pair representation and its
transients, which context parallelism splits P ways; the middle one what every GPU holds for
the whole complex (the token × atom map atom_to_token, float32, ~8 atoms per token: 32 bytes
per token pair = 0.03 GiB per (1000 tokens)², and more: the fit below gives 0.07).

It is the memory a complex NEEDS. foldcp takes more where the GPU has it free — the diffusion
token transformer's per-layer pair biases are kept (24 layers × 16 heads × 2 bytes per pair,
0.72 GiB per (1000 tokens)² / P) only while they take under half the free memory; the
trunk's z_init, the MSA module's input and the trunk's z during confidence stay on the GPU
only while it has room — so peaks measured far below capacity sit above this model by up to
those caches, and peaks measured at capacity sit just under it. The score network's stacked
weights (~0.84 GiB in float32, layer_conditioning.py) exist only while a fold samples and are
released after it (derived_weights.release), so the trunk and confidence, where the largest
folds peak, never carry them.

Defaults are calibrated from foldcp's capacity probes of the current code (bench/RESULTS.md,
ninth, thirteenth and fourteenth sessions; `tests/unit/test_memory_calibration.py` checks them
against the recorded rows; every stage at full size: the probes run 2 of the 64 Pairformer
blocks, each of which has the same peak): capped at an H100 80GB's 79.18 GiB, 6,000 tokens on
one GPU peaked at 55.45 GiB and 8,605 tokens on 1×2 at 59.46 GiB per GPU; uncapped on an H200,
8,605 tokens on one GPU at 112.66 GiB. With fixed_gib 2.0 (the weights, 1.9 GiB), the first two
— 36 M pair positions per GPU on one GPU, 37 M on two, while the whole-complex term grows
2.06× — fit replicated 0.067 and pair 1.418 GiB per (1000 tokens)²; the third needs the sum at
1.495, so replicated 0.07 and pair 1.425 (each probe within 0.7 % under the model; the
replicated term computed for the token × atom map alone is 0.03; the sixth session's code
needed pair 1.95: 72-75 GiB at 36 M pairs per GPU). Planned capacities: about 7,070 tokens on
one 80 GB GPU, 9,780 on two, 13,250 on four; 9,430 on one 141 GB GPU — beyond the probes the
model extrapolates (12,000 on 2×2 is not yet measured with this code), and a complex that still
runs out of memory is retried on the next grid (`plan.retry_out_of_memory`).

The model is per token count, so it holds on any card; only the usable memory differs
(`GPU_KINDS`). `boltz_pair_gib_per_ktoken2` is stock Boltz-2 on one GPU
(../shared/notes/anchors.md: 10.1 GiB at 1,000 tokens, 34.5 at 2,000, 52.8 at 2,500 fit
1.97 + 8.13·(N/1000)²; at 3,000 it ran out of memory with 70.8 GiB allocated asking for 8.6
more, so 8.6 — an upper bound through 3,000 tokens), used when the runner decides whether
Boltz's own forward fits (runner/predict.py `single_gpu_engine`).
"""

from __future__ import annotations

from dataclasses import dataclass


# Usable memory of one GPU as CUDA reports it (torch.cuda.get_device_properties().total_memory),
# GiB. H100 80GB HBM3: 79.18 measured (bench/results); H200 141GB: the device tool's figure
# (foldcp allocated 112.66 GiB on one at 8,605 tokens).
GPU_KINDS = {"h100-80gb": 79.18, "h200-141gb": 139.0}


def gpu_memory_gib(plan_config: dict) -> float:
    """`plan.gpu_memory_gib` where set, else the usable memory of `plan.gpu_kind`."""
    if plan_config.get("gpu_memory_gib") is not None:
        return float(plan_config["gpu_memory_gib"])
    kind = plan_config.get("gpu_kind", "h100-80gb")
    if kind not in GPU_KINDS:
        raise ValueError(f"plan.gpu_kind {kind!r}: known kinds are {', '.join(GPU_KINDS)}; "
                         "or set plan.gpu_memory_gib")
    return GPU_KINDS[kind]


def memory_budget_gib(plan_config: dict) -> float:
    """GiB per GPU the model may plan for: the usable memory less the safety margin (which
    covers what PyTorch does not allocate: CUDA context, NCCL and cuBLAS buffers, 0.7 GiB on
    one GPU and 2.2 GiB per GPU on a 2×2 grid measured)."""
    return gpu_memory_gib(plan_config) * (1.0 - plan_config["safety_margin"])


@dataclass(frozen=True)
class MemoryModel:
    fixed_gib: float = 2.0
    replicated_gib_per_ktoken2: float = 0.07
    pair_gib_per_ktoken2: float = 1.425
    boltz_pair_gib_per_ktoken2: float = 8.6

    def gib_per_gpu(self, tokens: int, gpus: int) -> float:
        """foldcp's context-parallel model on `gpus` GPUs (a 1×1 grid for one)."""
        ktokens2 = (tokens / 1000.0) ** 2
        return (self.fixed_gib + self.replicated_gib_per_ktoken2 * ktokens2
                + self.pair_gib_per_ktoken2 * ktokens2 / gpus)

    def boltz_gib(self, tokens: int) -> float:
        """Stock Boltz2.forward on one GPU."""
        return self.fixed_gib + self.boltz_pair_gib_per_ktoken2 * (tokens / 1000.0) ** 2


@dataclass(frozen=True)
class GridChoice:
    gpus: int | None  # None: no allowed grid fits
    gib_per_gpu: float  # modelled GiB per GPU at the chosen (or the largest) grid
    reason: str = ""


def choose_grid(
    tokens: int, grids: list[int], model: MemoryModel, gpu_memory_gib: float, safety_margin: float
) -> GridChoice:
    """The smallest allowed GPU count whose modelled per-GPU memory fits the budget."""
    budget = gpu_memory_gib * (1.0 - safety_margin)
    for gpus in sorted(grids):
        need = model.gib_per_gpu(tokens, gpus)
        if need <= budget:
            return GridChoice(gpus, need)
    largest = max(grids)
    need = model.gib_per_gpu(tokens, largest)
    return GridChoice(
        None, need,
        f"{tokens} tokens need an estimated {need:.1f} GiB per GPU even on {largest} GPUs; "
        f"budget {budget:.1f} GiB ({gpu_memory_gib} GiB x (1 - {safety_margin}))",
    )
