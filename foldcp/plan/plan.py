"""The screen plan: tokens, GPU grid and batch for every candidate complex.

Tables (Parquet):
- plan:    complex_id, chains, proteins, num_chains, tokens, grid, est_gib_per_gpu, batch_id, source
- skipped: complex_id, chains, tokens, reason

Batch IDs are ``g{grid}-{index:05d}``; grid-1 batches hold many complexes, larger grids one.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from foldcp.inputs import Complex, Protein, load_candidates, read_fasta
from foldcp.io import write_parquet
from foldcp.plan.batching import pack_batches
from foldcp.plan.memory import MemoryModel, choose_grid

PLAN_COLUMNS = [
    "complex_id", "chains", "proteins", "num_chains", "tokens", "grid", "est_gib_per_gpu",
    "batch_id", "source",
]
SKIPPED_COLUMNS = ["complex_id", "chains", "tokens", "reason"]


def build_plan(
    complexes: list[Complex], proteins: dict[str, Protein], plan_config: dict
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Assign grids and batches; return (plan, skipped) tables."""
    model = MemoryModel(**plan_config["memory_model"])
    rows, skipped = [], []
    for complex_ in complexes:
        tokens = complex_.tokens(proteins)
        choice = choose_grid(
            tokens, plan_config["grids"], model, plan_config["gpu_memory_gib"],
            plan_config["safety_margin"],
        )
        if choice.gpus is None:
            skipped.append(
                {"complex_id": complex_.id, "chains": complex_.spec, "tokens": tokens,
                 "reason": "too_large: " + choice.reason}
            )
            continue
        rows.append({
            "complex_id": complex_.id,
            "chains": complex_.spec,
            "proteins": sorted({c.protein_id for c in complex_.chains}),
            "num_chains": complex_.num_chains,
            "tokens": tokens,
            "grid": choice.gpus,
            "est_gib_per_gpu": round(choice.gib_per_gpu, 3),
            "batch_id": "",
            "source": complex_.source,
        })
    plan = pd.DataFrame(rows, columns=PLAN_COLUMNS)
    batch_of: dict[str, str] = {}
    batch_cfg = plan_config["batch"]
    for grid in sorted(plan["grid"].unique()) if len(plan) else []:
        members = plan[plan["grid"] == grid]
        if grid == 1:
            groups = pack_batches(
                list(zip(members["complex_id"], members["tokens"])),
                batch_cfg["max_complexes"], batch_cfg["max_tokens"],
            )
        else:
            groups = [[cid] for cid in members.sort_values("tokens", ascending=False)["complex_id"]]
        for index, group in enumerate(groups):
            for complex_id in group:
                batch_of[complex_id] = f"g{grid}-{index:05d}"
    plan["batch_id"] = plan["complex_id"].map(batch_of)
    plan = plan.sort_values(["batch_id", "tokens", "complex_id"], ascending=[True, False, True])
    plan["tokens"] = plan["tokens"].astype("int64")
    plan["grid"] = plan["grid"].astype("int64")
    plan["num_chains"] = plan["num_chains"].astype("int64")
    skipped_frame = pd.DataFrame(skipped, columns=SKIPPED_COLUMNS)
    skipped_frame["tokens"] = skipped_frame["tokens"].astype("int64")
    return plan.reset_index(drop=True), skipped_frame


def plan_screen(config: dict, out_dir: str | Path, base: Path | None = None) -> pd.DataFrame:
    """Read inputs per config, build the plan and write plan.parquet + skipped.parquet."""
    base = base or Path.cwd()
    proteins = read_fasta(base / config["proteins"])
    complexes = load_candidates(config["candidates"], proteins, base)
    plan, skipped = build_plan(complexes, proteins, config["plan"])
    out_dir = Path(out_dir)
    write_parquet(out_dir / "skipped.parquet", skipped)
    write_parquet(out_dir / "plan.parquet", plan)
    return plan
