# Config validation (errors name the key) and helper functions shared by the stages.
import hashlib
import os
from pathlib import Path

import pandas as pd

from foldcp.config import validate_config
from foldcp.inputs import check_candidates, read_fasta


validate_config(config)
OUT = config["output_dir"]
RESOLVED_CONFIG = f"{OUT}/config.yaml"
ENV = "../envs/foldcp.yaml"
CANDIDATE_FILES = {
    "pairs": ["pairs"],
    "all_vs_all": ["ids"],
    "bait_vs_library": ["baits", "library"],
}[config["candidates"]["mode"]]

_CANDIDATE_PROTEINS = []
if workflow.is_main_process:
    # Bad input stops the workflow before any job runs, with the file, line and problem.
    _CANDIDATE_PROTEINS = check_candidates(config["candidates"], read_fasta(config["proteins"]), Path.cwd())


def candidate_inputs():
    """The candidate files the chosen mode reads (so edits to them re-plan)."""
    return [config["candidates"][k] for k in CANDIDATE_FILES if config["candidates"].get(k)]


def optional_input(path):
    return [path] if path else []


_PLAN_INDEX = {}


def plan_index():
    """The plan's complex IDs by batch, read once per version of the plan file. Input
    functions and params run for every job, and a proteome screen has thousands of batches
    over a plan of 10^5 rows: reading the plan each time would take minutes."""
    plan_file = checkpoints.plan.get().output.plan
    stat = os.stat(plan_file)
    key = (plan_file, stat.st_mtime_ns, stat.st_size)
    if _PLAN_INDEX.get("key") != key:
        plan = pd.read_parquet(plan_file, columns=["complex_id", "batch_id"])
        members = {}
        for complex_id, batch in zip(plan["complex_id"], plan["batch_id"]):
            members.setdefault(batch, []).append(complex_id)
        _PLAN_INDEX.clear()
        _PLAN_INDEX.update(key=key, batches={batch: sorted(ids) for batch, ids in members.items()})
    return _PLAN_INDEX["batches"]


def all_batches():
    return sorted(plan_index())


def candidate_msas(wildcards):
    """The MSA file of every protein the candidates use (inputs of the MSA index). Known from
    the inputs, not the plan: the MSAs need not wait for the plan checkpoint."""
    proteins = _CANDIDATE_PROTEINS or check_candidates(
        config["candidates"], read_fasta(config["proteins"]), Path.cwd())
    return [f"{OUT}/msa/{protein}.a3m" for protein in proteins]


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


def batch_grid(wildcards):
    """GPUs (ranks) of a batch: batch IDs are g{grid}-{index}."""
    return int(wildcards.batch.split("-")[0][1:])


def export_targets():
    """The export's index when export.enabled (rule all asks for it), else nothing."""
    return [f"{OUT}/export/index.parquet"] if config["export"]["enabled"] else []
