# Config validation (errors name the key) and helper functions shared by the stages.
from pathlib import Path

import pandas as pd

from foldcp.config import validate_config
from foldcp.inputs import load_candidates, read_fasta


validate_config(config)
OUT = config["output_dir"]
RESOLVED_CONFIG = f"{OUT}/config.yaml"
ENV = "../envs/foldcp.yaml"
CANDIDATE_FILES = {
    "pairs": ["pairs"],
    "all_vs_all": ["ids"],
    "bait_vs_library": ["baits", "library"],
}[config["candidates"]["mode"]]

if workflow.is_main_process:
    # Bad input stops the workflow before any job runs, with the file, line and problem.
    load_candidates(config["candidates"], read_fasta(config["proteins"]), Path.cwd())


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


def batch_msas(wildcards):
    """MSA files of the proteins in one batch: a batch waits only for its own chains."""
    plan = planned()
    proteins = set()
    for members in plan.loc[plan["batch_id"] == wildcards.batch, "proteins"]:
        proteins.update(members)
    return [f"{OUT}/msa/{protein}.a3m" for protein in sorted(proteins)]


def batch_grid(wildcards):
    """GPUs (ranks) of a batch: batch IDs are g{grid}-{index}."""
    return int(wildcards.batch.split("-")[0][1:])


def export_targets():
    """The export's index when export.enabled (rule all asks for it), else nothing."""
    return [f"{OUT}/export/index.parquet"] if config["export"]["enabled"] else []
