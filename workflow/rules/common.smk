# Config validation (errors name the key) and helper functions shared by the stages.
from pathlib import Path

import pandas as pd

from foldcp.config import validate_config
from foldcp.inputs import load_candidates, read_fasta
from foldcp.msa.mmseqs import check_database, is_fasta, target_database
from foldcp.msa.precomputed import check_folder, find_msa_file


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
    """GPUs (ranks) of a batch: batch IDs are g{grid}-{index}."""
    return int(wildcards.batch.split("-")[0][1:])


def export_targets():
    """The export's index when export.enabled (rule all asks for it), else nothing."""
    return [f"{OUT}/export/index.parquet"] if config["export"]["enabled"] else []
