"""What a predict job asks for: its grid on each attempt, and its Slurm resources.

A batch planned on grid G runs on G GPUs first. If a complex runs out of memory there, the
job asks for a retry and Snakemake starts the next attempt on the next allowed grid
(`plan.grids`), and so on up to the largest; the attempt on the largest grid (or any attempt
when `plan.retry_out_of_memory` is false) is *final*: it records what still runs out of
memory in the failures table instead of asking again.

Slurm resources for a grid of P GPUs (config `slurm`):
    gpu = P, tasks = P (one rank per GPU), nodes = ceil(P / gpus_per_node),
    cpus_per_gpu, mem_mb = mem_mb_per_gpu x GPUs on one node (Slurm's --mem is per node),
    runtime (minutes) = base + per_1000_tokens_squared x sum over the batch of (N/1000)^2 / G,
    rounded up and capped at max; G is the plan's grid, so a retry on more GPUs keeps the
    time limit (a job that hit it is retried the same way, with more GPUs).
"""

from __future__ import annotations

import math


def grid_steps(plan_grid: int, grids: list[int], retry_out_of_memory: bool = True) -> list[int]:
    """Grids the attempts of a batch planned on `plan_grid` use, in order."""
    if not retry_out_of_memory:
        return [plan_grid]
    return [plan_grid] + [g for g in sorted(grids) if g > plan_grid]


def attempt_grid(plan_grid: int, grids: list[int], attempt: int,
                 retry_out_of_memory: bool = True) -> int:
    """The grid of Snakemake attempt `attempt` (1, 2, …); the last step repeats."""
    steps = grid_steps(plan_grid, grids, retry_out_of_memory)
    return steps[min(max(attempt, 1) - 1, len(steps) - 1)]


def is_final(grid: int, grids: list[int], retry_out_of_memory: bool = True) -> bool:
    """Whether an out-of-memory complex at `grid` is recorded instead of retried."""
    return not retry_out_of_memory or grid >= max(grids)


def retries(grids: list[int], retry_out_of_memory: bool = True) -> int:
    """Snakemake retries of the predict rule: enough to climb from the smallest grid to the
    largest."""
    return len(grids) - 1 if retry_out_of_memory else 0


def runtime_minutes(tokens: list[int], grid: int, runtime: dict) -> int:
    work = sum((n / 1000.0) ** 2 for n in tokens) / grid
    minutes = math.ceil(runtime["base"] + runtime["per_1000_tokens_squared"] * work)
    return max(1, min(minutes, runtime["max"]))


def slurm_resources(grid: int, tokens: list[int], slurm: dict, plan_grid: int | None = None) -> dict:
    """Resources of a predict job on `grid` GPUs (names of snakemake-executor-plugin-slurm)
    for a batch planned on `plan_grid` (default: `grid`)."""
    per_node = slurm["gpus_per_node"]
    nodes = math.ceil(grid / per_node)
    return {
        "gpu": grid,
        "tasks": grid,
        "tasks_per_gpu": 1,  # else the plugin turns `tasks` into --ntasks-per-gpu
        "nodes": nodes,
        "cpus_per_gpu": slurm["cpus_per_gpu"],
        "mem_mb": slurm["mem_mb_per_gpu"] * min(grid, per_node),
        "runtime": runtime_minutes(tokens, plan_grid or grid, slurm["runtime_minutes"]),
    }
