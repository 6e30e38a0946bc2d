"""The screen under `snakemake --profile profiles/slurm` on a real single-node Slurm cluster.

The session fixture starts Debian's munge, slurmctld and slurmd (tests/workflow/slurm/up.sh:
state under a temp dir, 8 fake GPUs as gres, squeue for job states since there is no
slurmdbd) and stops them afterwards. The screen: hemoglobin planned on one GPU, where it runs
out of memory (test hook), so Snakemake submits a new 2-GPU job for it; and SOD1x2 planned
onto a 4-rank grid that `srun` starts inside its 4-GPU job (gloo on CPU).
"""

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from test_workflow import REPO, make_workspace

SCRIPTS = Path(__file__).resolve().parent / "slurm"
TOOLS = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "srun", "squeue", "scancel")
SNAKEMAKE_TIMEOUT_S = 480  # hard limit (SIGKILL): the screen takes about 4 minutes on 2 cores

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    if missing:
        pytest.skip(f"Slurm is not installed (missing {', '.join(missing)}); "
                    "`bash .ci/system-packages.sh` installs slurmctld, slurmd, slurm-client, munge")
    if os.geteuid() != 0:
        pytest.skip("the test Slurm cluster runs its daemons as root")
    # one test cluster at a time on this machine (the config lives at /etc/slurm)
    lock = open(Path(tempfile.gettempdir()) / "foldcp-slurm-test.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    root = tmp_path_factory.mktemp("slurm")
    # 8 fake GPUs: the 4-GPU job and the others run side by side
    up = subprocess.run(["timeout", "-s", "KILL", "120", "bash", SCRIPTS / "up.sh", root, "8", "16"],
                        capture_output=True, text=True)
    try:
        assert up.returncode == 0, up.stdout + up.stderr + logs(root)
        yield root
    finally:
        subprocess.run(["timeout", "-s", "KILL", "60", "bash", SCRIPTS / "down.sh", root],
                       capture_output=True, text=True)
        lock.close()


def logs(root: Path) -> str:
    return "".join(f"\n--- {p}\n{p.read_text()[-3000:]}" for p in sorted((root / "log").glob("*.log")))


def slurm_logs(workspace: Path) -> str:
    files = sorted((workspace / ".snakemake" / "slurm_logs").rglob("*.log"))
    return "".join(f"\n--- {p.name}\n{p.read_text()[-1500:]}" for p in files)


@pytest.fixture(scope="module")
def slurm_screen(slurm_cluster, tmp_path_factory, foldcp_cache):
    root = make_workspace(tmp_path_factory.mktemp("slurm-screen"))
    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    # 1-GiB "GPUs" with a large replicated term: hemoglobin (289 tokens, 0.97 GiB) fits one,
    # SOD1x2 (308 tokens: 1.10 GiB on one, 1.02 on two, 0.99 on four) needs 4
    config["plan"].update(grids=[1, 2, 4], gpu_memory_gib=1.0, safety_margin=0.0,
                          memory_model=dict(fixed_gib=0.0, replicated_gib_per_ktoken2=10.0,
                                            pair_gib_per_ktoken2=1.6))
    config["slurm"] = {"gpus_per_node": 4, "cpus_per_gpu": 1, "mem_mb_per_gpu": 1000,
                       "runtime_minutes": {"base": 10, "per_1000_tokens_squared": 10, "max": 60}}
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    (root / "pairs.tsv").write_text("chains\nP69905;P68871\nP00441:2\n")
    env = dict(os.environ, FOLDCP_TEST_FAKE_OOM="P68871__P69905:2",
               FOLDCP_COLLECTIVE_TIMEOUT_S="120")
    command = [
        "timeout", "-s", "KILL", str(SNAKEMAKE_TIMEOUT_S),
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--profile", str(REPO / "profiles" / "slurm"),
        # no slurmdbd here: job states from squeue (up.sh sets MinJobAge to 600 s)
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
    ]
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode == 0, (f"exit {result.returncode}\n" + result.stderr[-6000:]
                                    + slurm_logs(root) + logs(slurm_cluster))
    # what Slurm allocated to each predict job (finished jobs stay for MinJobAge)
    jobs = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True).stdout
    predict = {}
    for line in jobs.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get("Comment", "").startswith("rule_predict"):
            predict.setdefault(fields["Comment"].rsplit("_", 1)[-1], []).append(fields)
    return root, result, predict


def test_screen_runs_as_slurm_jobs(slurm_screen):
    root, result, predict = slurm_screen
    results = root / "results"
    plan = pd.read_parquet(results / "plan" / "plan.parquet")
    assert plan.set_index("complex_id")["grid"].to_dict() == {"P00441x2": 4, "P68871__P69905": 1}
    text = result.stdout + result.stderr
    assert text.count("has been submitted with SLURM jobid") >= 6  # msa, 3 predict, 2 analyze, export
    # the grid-4 batch: one job of 4 GPUs and 4 tasks, in which srun started the 4 ranks
    (job,) = predict["g4-00000"]
    assert job["JobState"] == "COMPLETED" and job["NumTasks"] == "4"
    assert job["TresPerJob"] == "gres:gpu:4" and job["NtasksPerTRES"] == "1"
    assert job["CpusPerTres"] == "gres:gpu:1" and job["NumNodes"] == "1"
    assert job["TimeLimit"] == "00:11:00"  # 10 + 10 x 0.308^2 / 4, rounded up
    log = (results / "logs" / "predict" / "g4-00000.log").read_text()
    assert "batch g4-00000: {'ok': 1}" in log
    done = (results / "predictions" / "P00441x2" / "done.json").read_text()
    assert '"grid": "2x2"' in done


def test_out_of_memory_is_retried_on_the_next_grid(slurm_screen):
    root, _, predict = slurm_screen
    results = root / "results"
    # attempt 1: a 1-GPU job that ran out of memory; attempt 2: a new 2-GPU job
    first, second = sorted(predict["g1-00000"], key=lambda job: int(job["JobId"]))
    assert first["JobState"] == "FAILED"
    assert first["TresPerJob"] == "gres:gpu:1" and first["NumTasks"] == "1"
    assert second["JobState"] == "COMPLETED" and second["NumTasks"] == "2"
    assert second["TresPerJob"] == "gres:gpu:2"
    logs = results / "logs" / "predict"
    assert "retry on the next grid (exit 75)" in (logs / "g1-00000.grid1.log").read_text()
    log = (logs / "g1-00000.log").read_text()
    assert "run on 2 GPU(s)" in log and "batch g1-00000: {'ok': 1}" in log
    done = (results / "predictions" / "P68871__P69905" / "done.json").read_text()
    assert '"grid": "1x2"' in done


def test_tables_are_complete(slurm_screen):
    root, _, _ = slurm_screen
    results = root / "results"
    assert pd.read_parquet(results / "failures.parquet").empty
    complexes = pd.read_parquet(results / "complexes.parquet")
    assert sorted(complexes["complex_id"].unique()) == ["P00441x2", "P68871__P69905"]
    assert len(complexes) == 2 * 2  # complexes x samples
    ranked = pd.read_parquet(results / "ranked.parquet")
    assert list(ranked["rank"]) == [1, 2]
    assert (results / "report.html").is_file()
    assert (results / "export" / "index.parquet").is_file()
