"""Planning: memory model, grid choice and batching (a Snakemake checkpoint writes the plan)."""

from foldcp.plan.batching import pack_batches
from foldcp.plan.memory import GridChoice, MemoryModel, choose_grid
from foldcp.plan.plan import build_plan, plan_screen

__all__ = ["GridChoice", "MemoryModel", "build_plan", "choose_grid", "pack_batches", "plan_screen"]
