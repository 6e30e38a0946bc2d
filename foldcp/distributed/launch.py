"""Start this process's part of a CP grid from the launcher's environment.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT; under srun the SLURM_PROCID,
SLURM_NTASKS and SLURM_LOCALID variables are used when those are absent, and the rendezvous
(MASTER_ADDR/MASTER_PORT) defaults to the step's first node and a port derived from the job
id, so `srun foldcp predict …` needs no wrapper. NCCL on GPUs, gloo on CPU; collectives time
out instead of hanging.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess

import torch
import torch.distributed as dist

from foldcp.distributed.grid import Grid, make_grid


def _env(*names: str, default: str | None = None) -> str | None:
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    return default


def world_size_from_env() -> int:
    """Processes the launcher started (1 outside torchrun/srun)."""
    return int(_env("WORLD_SIZE", "SLURM_NTASKS", default="1"))


def rank_from_env() -> int:
    return int(_env("RANK", "SLURM_PROCID", default="0"))


def slurm_rendezvous() -> tuple[str, str] | None:
    """(address, port) for a process started by srun without MASTER_ADDR/PORT, else None.

    Task 0 runs on the first node of the step, so that node hosts the rendezvous store; the
    port is spread by job and step id so two steps sharing a node do not collide.
    """
    if "SLURM_PROCID" not in os.environ or os.environ.get("MASTER_ADDR"):
        return None
    nodelist = _env("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST")
    address = None
    if nodelist and shutil.which("scontrol"):
        names = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                               text=True, check=False).stdout.split()
        address = names[0] if names else None
    address = address or _env("SLURM_LAUNCH_NODE_IPADDR", default="127.0.0.1")
    job = int(_env("SLURM_JOB_ID", default="0")) * 7 + int(_env("SLURM_STEP_ID", default="0"))
    port = os.environ.get("MASTER_PORT") or str(20000 + job % 20000)
    return address, port


def init_from_env(rows: int | None = None, cols: int | None = None, backend: str | None = None,
                  timeout_s: float | None = None) -> tuple[Grid, torch.device]:
    """Initialise the process group and the grid; a collective that waits longer than
    `timeout_s` (default $FOLDCP_COLLECTIVE_TIMEOUT_S or 600 s) fails instead of hanging."""
    if timeout_s is None:
        timeout_s = float(os.environ.get("FOLDCP_COLLECTIVE_TIMEOUT_S", "600"))
    world, rank = world_size_from_env(), rank_from_env()
    local_rank = int(_env("LOCAL_RANK", "SLURM_LOCALID", default="0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world == 1 and not dist.is_initialized():
        return Grid(1, 1, 0), device
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    rendezvous = slurm_rendezvous()
    if rendezvous:
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = rendezvous
    if not dist.is_initialized():
        dist.init_process_group(
            backend, rank=rank, world_size=world,
            timeout=datetime.timedelta(seconds=timeout_s),
            device_id=device if backend == "nccl" else None,
        )
    return make_grid(rows, cols), device
