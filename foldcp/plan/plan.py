"""The screen plan: tokens, GPU grid and batch for every candidate complex.

Tables (Parquet):
- plan:    complex_id, chains, proteins, num_chains, tokens, grid, est_gib_per_gpu, batch_id, source
- skipped: complex_id, chains, tokens, reason

Batch IDs are ``g{grid}-{index:05d}``; grid-1 batches hold many complexes, larger grids one.

Batches are stable across re-plans of the same plan folder: ``assignments.parquet``
(complex_id, grid, batch_id; every assignment the folder has made) keeps a complex in its
batch as long as its grid is unchanged, and new complexes go into new batches numbered after
every index used before. Adding 1,000 complexes to a screen of 100,000 therefore adds new
batches and leaves the existing ones (and their predictions, status and metric tables)
untouched. Delete the plan folder to repack from scratch.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from foldcp.inputs import Complex, Protein, load_candidates, read_fasta
from foldcp.io import write_parquet
from foldcp.plan.batching import pack_batches
from foldcp.plan.memory import MemoryModel, choose_grid, gpu_memory_gib

PLAN_COLUMNS = [
    "complex_id", "chains", "proteins", "num_chains", "tokens", "grid", "est_gib_per_gpu",
    "batch_id", "source",
]
SKIPPED_COLUMNS = ["complex_id", "chains", "tokens", "reason"]
ASSIGNMENT_COLUMNS = ["complex_id", "grid", "batch_id"]
ASSIGNMENTS_NAME = "assignments.parquet"


def _batch_index(batch_id: str) -> int:
    return int(batch_id.rsplit("-", 1)[1])


def build_plan(
    complexes: list[Complex], proteins: dict[str, Protein], plan_config: dict,
    previous: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Assign grids and batches; return (plan, skipped) tables.

    `previous`: earlier assignments (complex_id, grid, batch_id). A complex planned on the same
    grid keeps its batch; the others are packed into new batches whose indices follow every
    index of that grid used before, so no batch ID is ever reused for other complexes.
    """
    model = MemoryModel(**plan_config["memory_model"])
    rows, skipped = [], []
    for complex_ in complexes:
        tokens = complex_.tokens(proteins)
        choice = choose_grid(
            tokens, plan_config["grids"], model, gpu_memory_gib(plan_config),
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
    previous = previous if previous is not None else pd.DataFrame(columns=ASSIGNMENT_COLUMNS)
    kept = {(cid, int(grid)): batch for cid, grid, batch in
            zip(previous["complex_id"], previous["grid"], previous["batch_id"])}
    batch_of: dict[str, str] = {}
    batch_cfg = plan_config["batch"]
    for grid in sorted(plan["grid"].unique()) if len(plan) else []:
        members = plan[plan["grid"] == grid]
        new = []
        for complex_id, tokens in zip(members["complex_id"], members["tokens"]):
            batch = kept.get((complex_id, int(grid)))
            if batch is None:
                new.append((complex_id, tokens))
            else:
                batch_of[complex_id] = batch
        if grid == 1:
            groups = pack_batches(new, batch_cfg["max_complexes"], batch_cfg["max_tokens"])
        else:
            groups = [[cid] for cid, _ in sorted(new, key=lambda item: (-item[1], item[0]))]
        used = [_batch_index(b) for b in previous["batch_id"] if b.startswith(f"g{grid}-")]
        start = max(used) + 1 if used else 0
        for index, group in enumerate(groups, start=start):
            for complex_id in group:
                batch_of[complex_id] = f"g{grid}-{index:05d}"
    plan["batch_id"] = plan["complex_id"].map(batch_of)
    plan = plan.sort_values(["batch_id", "tokens", "complex_id"], ascending=[True, False, True])
    plan["tokens"] = plan["tokens"].astype("int64")
    plan["grid"] = plan["grid"].astype("int64")
    plan["num_chains"] = plan["num_chains"].astype("int64")
    skipped_frame = pd.DataFrame(skipped, columns=SKIPPED_COLUMNS)
    skipped_frame["tokens"] = skipped_frame["tokens"].astype("int64")
    _check_partition(complexes, plan, skipped_frame)
    return plan.reset_index(drop=True), skipped_frame


def _check_partition(complexes: list[Complex], plan: pd.DataFrame, skipped: pd.DataFrame) -> None:
    """Every candidate is planned or skipped, exactly once (the results check builds on it)."""
    ids = pd.concat([plan["complex_id"], skipped["complex_id"]], ignore_index=True)
    if len(ids) != len(complexes) or ids.duplicated().any() or plan["batch_id"].isna().any():
        raise RuntimeError(  # a bug, not a user error
            f"plan does not partition the {len(complexes)} candidates: {len(plan)} planned, "
            f"{len(skipped)} skipped, {int(ids.duplicated().sum())} duplicated")


def update_assignments(previous: pd.DataFrame | None, plan: pd.DataFrame) -> pd.DataFrame:
    """Earlier assignments of complexes no longer planned, then the plan's own."""
    current = plan[ASSIGNMENT_COLUMNS]
    if previous is None or previous.empty:
        return current.reset_index(drop=True)
    gone = previous[~previous["complex_id"].isin(set(plan["complex_id"]))]
    merged = pd.concat([gone[ASSIGNMENT_COLUMNS], current], ignore_index=True)
    merged["grid"] = merged["grid"].astype("int64")
    return merged


def plan_screen(config: dict, out_dir: str | Path, base: Path | None = None) -> pd.DataFrame:
    """Read inputs per config, build the plan and write plan.parquet + skipped.parquet
    (keeping the batches of earlier plans in `out_dir`: see the module docstring)."""
    base = base or Path.cwd()
    proteins = read_fasta(base / config["proteins"])
    complexes = load_candidates(config["candidates"], proteins, base)
    out_dir = Path(out_dir)
    history = out_dir / ASSIGNMENTS_NAME
    previous = pd.read_parquet(history) if history.exists() else None
    plan, skipped = build_plan(complexes, proteins, config["plan"], previous)
    # assignments first: a plan that is written is always covered by them
    write_parquet(history, update_assignments(previous, plan))
    write_parquet(out_dir / "skipped.parquet", skipped)
    write_parquet(out_dir / "plan.parquet", plan)
    return plan
