# Config validation (errors name the key) and helper functions shared by the stages.
from pathlib import Path

import pandas as pd

from foldcp.config import validate_config
from foldcp.inputs import load_candidates, read_fasta
from foldcp.msa.mmseqs import check_database, is_fasta, target_database
from foldcp.msa.precomputed import check_folder, find_msa_file
from foldcp.plan import resources as plan_resources


validate_config(config)
OUT = config["output_dir"]
RESOLVED_CONFIG = f"{OUT}/config.yaml"
ENV = "../envs/foldcp.yaml"
CANDIDATE_FILES = {
    "pairs": ["pairs"],
    "all_vs_all": ["ids"],
    "bait_vs_library": ["baits", "library"],
}[config["candidates"]["mode"]]

# msa.mode mmseqs: the database searched (built from a FASTA database by rule msa_db)
MMSEQS_BUILDS_DB = config["msa"]["mode"] == "mmseqs" and is_fasta(config["msa"]["mmseqs"]["database"])
MMSEQS_DB = str(target_database(config)) if config["msa"]["mode"] == "mmseqs" else ""

if workflow.is_main_process:
    # Bad input stops the workflow before any job runs, with the file, line and problem.
    complexes = load_candidates(config["candidates"], read_fasta(config["proteins"]), Path.cwd())
    if config["msa"]["mode"] == "precomputed":
        check_folder(config["msa"], (c.protein_id for cx in complexes for c in cx.chains))
    if config["msa"]["mode"] == "mmseqs":
        check_database(config["msa"]["mmseqs"]["database"])


def candidate_inputs():
    """The candidate files the chosen mode reads (so edits to them re-plan)."""
    return [config["candidates"][k] for k in CANDIDATE_FILES if config["candidates"].get(k)]


def optional_input(path):
    return [path] if path else []


def planned():
    """The plan table, available once the plan checkpoint has run."""
    plan_file = checkpoints.plan.get().output.plan
    return pd.read_parquet(plan_file)


def all_batches():
    return sorted(planned()["batch_id"].unique())


def precomputed_msa_files(protein):
    """msa.mode precomputed: the protein's MSA file, if the folder has one."""
    found = find_msa_file(config["msa"]["precomputed"]["dir"], protein)
    return [str(found)] if found else []


def msa_inputs(wildcards):
    """What one protein's MSA job reads besides the config and FASTA."""
    if config["msa"]["mode"] == "precomputed":
        # the protein's file, when there is one (absence is handled by msa.missing)
        return precomputed_msa_files(wildcards.protein)
    if config["msa"]["mode"] == "mmseqs":
        return [f"{MMSEQS_DB}.dbtype"]
    return []


def batch_msas(wildcards):
    """MSAs (and records) of the proteins in one batch: a batch waits only for its own
    chains' MSAs."""
    plan = planned()
    proteins = set()
    for members in plan.loc[plan["batch_id"] == wildcards.batch, "proteins"]:
        proteins.update(members)
    return [f"{OUT}/msa/{protein}.{ext}" for protein in sorted(proteins) for ext in ("a3m", "json")]


def batch_grid(wildcards):
    """GPUs (ranks) the plan gave a batch: batch IDs are g{grid}-{index}."""
    return int(wildcards.batch.split("-")[0][1:])


GRIDS = config["plan"]["grids"]
RETRY_OOM = config["plan"]["retry_out_of_memory"]
PREDICT_RETRIES = plan_resources.retries(GRIDS, RETRY_OOM)


def attempt_grid(wildcards, attempt):
    """GPUs of this attempt: the plan's grid, then the next allowed ones after running out
    of memory (foldcp/plan/resources.py)."""
    return plan_resources.attempt_grid(batch_grid(wildcards), GRIDS, attempt, RETRY_OOM)


def launcher():
    """torchrun or srun for grid runs: config `launcher`, or with `auto` srun under the
    Slurm executor (and inside its jobs), torchrun otherwise."""
    if config["launcher"] != "auto":
        return config["launcher"]
    plugin = workflow.executor_plugin
    return "srun" if plugin is not None and plugin.name.startswith("slurm") else "torchrun"


def batch_tokens(wildcards):
    """Tokens of a batch's complexes, read from the plan file itself: checkpoints.plan.get()
    is not available where Slurm jobs evaluate their resources."""
    plan = pd.read_parquet(f"{OUT}/plan/plan.parquet", columns=["batch_id", "tokens"])
    return [int(n) for n in plan.loc[plan["batch_id"] == wildcards.batch, "tokens"]]


def predict_resource(key):
    """One Slurm resource of a predict job, for the grid of its attempt."""

    def value(wildcards, attempt):
        grid = attempt_grid(wildcards, attempt)
        return plan_resources.slurm_resources(
            grid, batch_tokens(wildcards), config["slurm"], batch_grid(wildcards))[key]

    return value


def predict_mpi(wildcards, attempt):
    """`mpi` marks a job whose shell command starts its ranks itself (srun): the Slurm plugin
    then runs the command in the job's batch step instead of under `srun -n1`."""
    return "srun" if launcher() == "srun" and attempt_grid(wildcards, attempt) > 1 else None


def grid_launch(wildcards):
    """The command that starts `foldcp` as $grid ranks (a shell variable of the rule)."""
    if launcher() == "srun":
        cpus = config["slurm"]["cpus_per_gpu"]
        return (f"env OMP_NUM_THREADS={cpus} srun --ntasks $grid --cpus-per-task {cpus} "
                "--kill-on-bad-exit=1 foldcp")
    return "python -m torch.distributed.run --standalone --nproc-per-node $grid -m foldcp.cli"


def single_launch(wildcards, threads):
    """The command that starts `foldcp` as one process (grid 1)."""
    return f"env OMP_NUM_THREADS={config['slurm']['cpus_per_gpu'] if launcher() == 'srun' else threads} foldcp"


def last_grid(wildcards):
    """An out-of-memory complex on a grid below this one asks for a retry on the next grid."""
    return max(GRIDS) if RETRY_OOM else 0


def export_targets():
    """The export's index when export.enabled (rule all asks for it), else nothing."""
    return [f"{OUT}/export/index.parquet"] if config["export"]["enabled"] else []
