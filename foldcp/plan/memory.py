"""Per-GPU memory model used to choose a complex's GPU grid.

    GiB per GPU = fixed_gib + pair_gib_per_ktoken2 · (N / 1000)² / P · (cp_overhead if P > 1)

N = tokens, P = GPUs in the grid. The N² term is the pair representation and its transients,
which context parallelism splits P ways; `cp_overhead` covers communication buffers. Default
coefficients fit stock Boltz-2 on one H100 (../shared/notes/anchors.md: 10.1 GiB at 1,000
tokens, 34.5 at 2,000, 52.8 at 2,500 → 1.97 + 8.13·(N/1000)²); a later calibration replaces them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MemoryModel:
    fixed_gib: float = 2.0
    pair_gib_per_ktoken2: float = 8.13
    cp_overhead: float = 1.15

    def gib_per_gpu(self, tokens: int, gpus: int) -> float:
        pair = self.pair_gib_per_ktoken2 * (tokens / 1000.0) ** 2 / gpus
        if gpus > 1:
            pair *= self.cp_overhead
        return self.fixed_gib + pair


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
