"""Planning: memory model, grid choice and batching (a Snakemake checkpoint writes the plan)."""

from foldcp.plan.batching import pack_batches
from foldcp.plan.memory import GPU_KINDS, GridChoice, MemoryModel, choose_grid, gpu_memory_gib, memory_budget_gib
from foldcp.plan.plan import build_plan, plan_screen

__all__ = ["GPU_KINDS", "GridChoice", "MemoryModel", "build_plan", "choose_grid", "gpu_memory_gib",
           "memory_budget_gib", "pack_batches", "plan_screen"]
