# Config validation (errors name the key) and helper functions shared by the stages.
import hashlib
import os
from pathlib import Path

import pandas as pd

from foldcp.config import validate_config
from foldcp.inputs import check_candidates, read_fasta
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

_CANDIDATE_PROTEINS = []
if workflow.is_main_process:
    # Bad input stops the workflow before any job runs, with the file, line and problem.
    _CANDIDATE_PROTEINS = check_candidates(config["candidates"], read_fasta(config["proteins"]), Path.cwd())
    if config["msa"]["mode"] == "precomputed":
        check_folder(config["msa"], _CANDIDATE_PROTEINS)
    if config["msa"]["mode"] == "mmseqs":
        check_database(config["msa"]["mmseqs"]["database"])


def candidate_inputs():
    """The candidate files the chosen mode reads (so edits to them re-plan)."""
    return [config["candidates"][k] for k in CANDIDATE_FILES if config["candidates"].get(k)]


def optional_input(path):
    return [path] if path else []


PLAN_FILE = f"{OUT}/plan/plan.parquet"
_PLAN_INDEX = {}


def _plan_index(plan_file):
    """Complex IDs and tokens of the plan's batches, read once per version of the plan file."""
    stat = os.stat(plan_file)
    key = (str(plan_file), stat.st_mtime_ns, stat.st_size)
    if _PLAN_INDEX.get("key") != key:
        plan = pd.read_parquet(plan_file, columns=["complex_id", "batch_id", "tokens"])
        members, tokens = {}, {}
        for complex_id, batch, n in zip(plan["complex_id"], plan["batch_id"], plan["tokens"]):
            members.setdefault(batch, []).append(complex_id)
            tokens.setdefault(batch, []).append(int(n))
        _PLAN_INDEX.clear()
        _PLAN_INDEX.update(key=key, batches={batch: sorted(ids) for batch, ids in members.items()},
                           tokens=tokens)
    return _PLAN_INDEX


def plan_index():
    """The plan's complex IDs by batch, read once per version of the plan file. Input
    functions and params run for every job, and a proteome screen has thousands of batches
    over a plan of 10^5 rows: reading the plan each time would take minutes."""
    return _plan_index(checkpoints.plan.get().output.plan)["batches"]


def all_batches():
    return sorted(plan_index())


def candidate_msas(wildcards):
    """The MSA and its record of every protein the candidates use (inputs of the MSA index).
    Known from the inputs, not the plan: the MSAs need not wait for the plan checkpoint."""
    return [f"{OUT}/msa/{protein}.{ext}" for protein in candidate_proteins()
            for ext in ("a3m", "json")]


def candidate_proteins():
    return _CANDIDATE_PROTEINS or check_candidates(
        config["candidates"], read_fasta(config["proteins"]), Path.cwd())


def batch_members(wildcards):
    """A digest of the batch's complex IDs. As a param of `predict` it re-runs a batch whose
    members changed, while a re-plan that leaves a batch as it was (the plan file is
    `ancient` there) does not re-run it."""
    members = "\n".join(plan_index()[wildcards.batch])
    return hashlib.sha1(members.encode()).hexdigest()[:16]


_SEQUENCES = {}


def protein_digest(wildcards):
    """A digest of one protein's sequence: an `msa` job re-runs when its protein changes, not
    whenever the FASTA file does (adding proteins to a screen would redo every MSA)."""
    stat = os.stat(config["proteins"])
    key = (stat.st_mtime_ns, stat.st_size)
    if _SEQUENCES.get("key") != key:
        _SEQUENCES.clear()
        _SEQUENCES.update(key=key, proteins=read_fasta(config["proteins"]))
    sequence = _SEQUENCES["proteins"][wildcards.protein].sequence
    return hashlib.sha1(sequence.encode()).hexdigest()[:16]


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
    """Tokens of a batch's complexes, from the plan index (read once per version of the plan
    file). The plan file is named directly: checkpoints.plan.get() is not available where
    Slurm jobs evaluate their resources."""
    return _plan_index(PLAN_FILE)["tokens"].get(wildcards.batch, [])


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
