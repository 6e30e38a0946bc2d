"""Per-GPU memory model used to choose a complex's GPU grid.

    GiB per GPU = fixed_gib + pair_gib_per_ktoken2 · (N / 1000)² / P · (cp_overhead if P > 1)

N = tokens, P = GPUs in the grid. The N² term is the pair representation and its transients,
which context parallelism splits P ways; `cp_overhead` covers communication buffers.

Defaults are calibrated on H100 80GB from foldcp's own full-inference peaks (bench/RESULTS.md,
third session; `tests/unit/test_memory_calibration.py` checks them against the recorded rows):
1,000 tokens on 1 GPU 5.96 GiB and on 1×2 3.97 GiB (before the diffusion bias cache, which
adds N²·384·2 bytes / P: ~0.72 GiB per (1000 tokens)²), 3,605 tokens × 5 samples on 2×2
17.58 GiB → ~1.9 + 4.8·(N/1000)²/P with no measurable CP overhead; rounded up to 2.0 + 4.9
and 1.05. The model is per token count, so the same coefficients hold on an H200 (141 GB): only
`gpu_memory_gib` changes.

`boltz_pair_gib_per_ktoken2` is stock Boltz-2 on one GPU (../shared/notes/anchors.md: 10.1 GiB
at 1,000 tokens, 34.5 at 2,000, 52.8 at 2,500 → 1.97 + 8.13·(N/1000)²), used when the runner
decides whether Boltz's own forward fits (runner/predict.py `single_gpu_engine`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MemoryModel:
    fixed_gib: float = 2.0
    pair_gib_per_ktoken2: float = 4.9
    cp_overhead: float = 1.05
    boltz_pair_gib_per_ktoken2: float = 8.13

    def gib_per_gpu(self, tokens: int, gpus: int) -> float:
        """foldcp's context-parallel model on `gpus` GPUs (a 1×1 grid for one)."""
        pair = self.pair_gib_per_ktoken2 * (tokens / 1000.0) ** 2 / gpus
        if gpus > 1:
            pair *= self.cp_overhead
        return self.fixed_gib + pair

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
