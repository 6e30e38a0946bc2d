"""The launcher environment: two real processes started the way srun starts them (only
SLURM_* variables, no RANK/WORLD_SIZE/MASTER_ADDR) form a 1×2 grid and reduce over gloo."""

import os
import subprocess
import sys
import textwrap

from foldcp.distributed import launch

CHILD = textwrap.dedent("""
    import torch, torch.distributed as dist
    from foldcp.distributed.launch import init_from_env
    grid, device = init_from_env(timeout_s=60)
    value = torch.tensor([float(grid.rank + 1)])
    dist.all_reduce(value)
    print(grid.rows, grid.cols, grid.rank, int(value.item()), flush=True)
    dist.destroy_process_group()
""")


def slurm_env(procid: int, ntasks: int, job_id: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(SLURM_PROCID=str(procid), SLURM_NTASKS=str(ntasks), SLURM_LOCALID=str(procid),
               SLURM_JOB_ID=str(job_id), SLURM_STEP_ID="0", SLURM_LAUNCH_NODE_IPADDR="127.0.0.1",
               CUDA_VISIBLE_DEVICES="", PATH="/usr/bin:/bin")  # no scontrol: the fallback address
    env.pop("SLURM_STEP_NODELIST", None)
    env.pop("SLURM_JOB_NODELIST", None)
    return env


def test_srun_style_environment_forms_a_grid():
    job_id = 4000 + os.getpid() % 2000
    procs = [subprocess.Popen([sys.executable, "-c", CHILD], env=slurm_env(rank, 2, job_id),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0, err[-2000:]
    lines = sorted(out.split() for out, _ in outs)
    assert lines == [["1", "2", "0", "3"], ["1", "2", "1", "3"]]


def test_slurm_rendezvous_only_under_srun(monkeypatch):
    for name in ("SLURM_PROCID", "MASTER_ADDR", "MASTER_PORT", "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST"):
        monkeypatch.delenv(name, raising=False)
    assert launch.slurm_rendezvous() is None
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    monkeypatch.setenv("SLURM_STEP_ID", "2")
    monkeypatch.setenv("SLURM_LAUNCH_NODE_IPADDR", "10.0.0.5")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert launch.slurm_rendezvous() == ("10.0.0.5", str(20000 + (123 * 7 + 2) % 20000))
    monkeypatch.setenv("MASTER_ADDR", "node7")
    assert launch.slurm_rendezvous() is None
