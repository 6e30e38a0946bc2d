"""Proteome-scale orchestration on a CPU machine (issue 10): what the workflow adds around the
GPU work at 10^5 complexes. Prints a table and writes JSON lines (bench/results/); never a test.

    nice python bench/scale.py                      # every stage, ~15-25 min on 2 cores
    nice python bench/scale.py --stages plan,dryrun --proteins 300

The orchestration is foldcp's and Snakemake's own code, run as the workflow runs it (each
measured step in a child process: wall seconds, and peak RSS of the process tree from
wait4). Only the GPU prediction is replaced, and only here: `synthetic_prediction` writes a
complex's files with foldcp's own writers (runner/outputs.py: mmCIF, confidence JSON, PAE
and pLDDT npz, done.json with sizes and SHA-256) from made-up coordinates and scores.

Stages:
  plan     a synthetic proteome FASTA (UniProt-style headers, lengths log-normal around 400
           residues, 50-3,000) → `foldcp plan`, all-vs-all with homodimers:
           n·(n-1)/2 + n complexes (101,475 for 450 proteins).
  dryrun   `snakemake -n` of the whole workflow over that plan, batched to about 2,000 batch
           jobs (plan.batch.max_complexes = --batch-complexes); the plan checkpoint is run
           first (its time is reported too), after the MSAs are written directly (msa.mode
           none: the query alone, as `foldcp msa` writes it) instead of by 450 jobs.
  analyze  the per-complex analysis (what the `analyze` rule does per complex: done.json
           checks with SHA-256, mmCIF parse, interface metrics) on synthetic 2-chain
           predictions of 500-1,000 residues, 1 sample; also the files' sizes.
  merge    per-batch metric tables for every planned complex, replicated from the analysed
           complexes (their rows, new IDs and jittered scores; ~0.5% failures), then:
           `foldcp merge` (full, builds the cache), `foldcp check-results`; 3 proteins more
           (+1,356 complexes) → `foldcp plan` again (batches stay), tables for the new batches
           only, the incremental `foldcp merge` and `check-results`; finally a full merge
           without cache, whose outputs must equal the incremental one's byte for byte.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from rows import commit  # noqa: E402  bench/rows.py

AMINO = np.array(list("ACDEFGHIKLMNPQRSTVWY"))


# ---------------------------------------------------------------------------------------------
# measuring


def child_env(work: Path) -> dict:
    """PATH with a `foldcp` that runs this checkout (what the workflow's rules call)."""
    bin_dir = work / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    wrapper = bin_dir / "foldcp"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m foldcp.cli "$@"\n')
    wrapper.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


# A small process forks and execs the command and reports its wait4 usage: the peak RSS of a
# child forked from this (large) process would start at this process's size.
_MEASURE = """
import json, os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({"wall_s": time.perf_counter() - start, "maxrss_kib": usage.ru_maxrss,
               "code": os.waitstatus_to_exitcode(status)}, out)
"""


def timed(cmd: list[str], cwd: Path, env: dict, log: Path) -> dict:
    """Run `cmd` as a child; wall seconds and peak RSS (MiB) of its process tree."""
    log.parent.mkdir(parents=True, exist_ok=True)
    report = log.with_suffix(".usage.json")
    with open(log, "w") as out:
        subprocess.run([sys.executable, "-c", _MEASURE, str(report), *cmd], cwd=cwd, env=env,
                       stdout=out, stderr=subprocess.STDOUT, check=False)
    usage = json.loads(report.read_text())
    if usage["code"] != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({usage['code']}); see {log}:\n"
                         + log.read_text()[-3000:])
    return {"wall_s": round(usage["wall_s"], 2), "peak_rss_mib": round(usage["maxrss_kib"] / 1024, 1)}


class Results:
    def __init__(self, out: Path | None, meta: dict) -> None:
        self.out, self.meta, self.rows = out, meta, []

    def add(self, stage: str, what: str, **values) -> None:
        values["load_1min"] = round(os.getloadavg()[0], 2)  # the machine is shared
        row = {"stage": stage, "what": what} | values
        self.rows.append(row)
        print(f"  {stage:8} {what:58} " + "  ".join(f"{k}={v}" for k, v in values.items()), flush=True)
        if self.out is not None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            with open(self.out, "a") as handle:
                handle.write(json.dumps(self.meta | row) + "\n")


# ---------------------------------------------------------------------------------------------
# inputs


def write_proteome(path: Path, count: int, seed: int = 0, prefix: str = "Q") -> dict[str, int]:
    """UniProt-style FASTA of `count` random proteins; lengths log-normal (median ~400)."""
    rng = np.random.default_rng(seed)
    lengths = {}
    with open(path, "a") as handle:
        for index in range(count):
            length = int(np.clip(rng.lognormal(np.log(400), 0.6), 50, 3000))
            accession = f"{prefix}{index:05d}"
            sequence = "".join(rng.choice(AMINO, length))
            handle.write(f">sp|{accession}|SYN{index}_HUMAN Synthetic protein {index} OS=Homo "
                         f"sapiens OX=9606\n")
            handle.writelines(sequence[start:start + 60] + "\n" for start in range(0, length, 60))
            lengths[accession] = length
    return lengths


def write_config(work: Path, batch_complexes: int) -> Path:
    import yaml

    config = {
        "proteins": str(work / "proteome.fasta"),
        "candidates": {"mode": "all_vs_all", "homodimers": True},
        "output_dir": "results",
        "model": {"checkpoint": "demo"},
        "plan": {"batch": {"max_complexes": batch_complexes, "max_tokens": 10**7}},
        "export": {"enabled": True},
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# ---------------------------------------------------------------------------------------------
# synthetic predictions (the one thing not real: no model runs)


def _helix_bundle(length: int, origin: np.ndarray) -> np.ndarray:
    """Cα positions of `length` residues as a bundle of 18-residue α-helices on a 10 Å grid."""
    per, columns = 18, int(np.ceil(np.sqrt(np.ceil(length / 18))))
    positions = np.zeros((length, 3))
    for i in range(length):
        helix, step = divmod(i, per)
        angle = np.deg2rad(100.0 * step)
        z = 1.5 * (step if helix % 2 == 0 else per - 1 - step)
        positions[i] = origin + [10.0 * (helix % columns) + 2.3 * np.cos(angle),
                                 10.0 * (helix // columns) + 2.3 * np.sin(angle), z]
    return positions


def synthetic_prediction(directory: Path, complex_id: str, lengths: tuple[int, int], canonicals,
                         mol_dir, rng) -> None:
    """A 2-chain prediction's files as `foldcp predict` writes them, from made-up data:
    atoms at residue conformers placed on helix bundles (chains facing over a few helices),
    PAE low within chains and at the interface, pLDDT 0.4-0.95."""
    from boltz.data.parse.schema import parse_boltz_schema

    from foldcp.inputs import make_complex, parse_complex
    from foldcp.inputs.fasta import Protein
    from foldcp.runner.featurize import boltz_schema
    from foldcp.runner.outputs import write_done, write_sample

    proteins = {name: Protein(name, "".join(rng.choice(AMINO, n))) for name, n in zip("AB", lengths)}
    complex_ = make_complex(parse_complex("A;B"))
    schema, chain_map = boltz_schema(complex_, proteins)
    with contextlib.redirect_stdout(io.StringIO()):
        structure = parse_boltz_schema(complex_id, schema, canonicals, mol_dir, boltz_2=True).structure
    span_a = 10.0 * int(np.ceil(np.sqrt(np.ceil(lengths[0] / 18))))
    ca = np.concatenate([_helix_bundle(lengths[0], np.zeros(3)),
                         _helix_bundle(lengths[1], np.array([span_a - 2.0, 0.4 * span_a, 0.0]))])
    coords = np.zeros((len(structure.atoms), 3), dtype=np.float32)
    for index, residue in enumerate(structure.residues):
        mol = canonicals[str(residue["name"])]
        conformer = mol.GetConformer()
        local = {atom.GetProp("name"): np.array(conformer.GetAtomPosition(atom.GetIdx()))
                 for atom in mol.GetAtoms()}
        centre = local.get("CA", np.zeros(3))
        first = residue["atom_idx"]
        for k in range(residue["atom_num"]):
            name = str(structure.atoms[first + k]["name"])
            coords[first + k] = ca[index] + local.get(name, centre) - centre
    n, n_a = sum(lengths), lengths[0]
    chain = np.r_[np.zeros(n_a, int), np.ones(n - n_a, int)]
    pae = np.where(chain[:, None] == chain[None, :], rng.uniform(1.5, 8.0, (n, n)),
                   rng.uniform(12.0, 28.0, (n, n)))
    contact = np.linalg.norm(ca[:n_a, None] - ca[None, n_a:], axis=-1) < 12.0
    pae[:n_a, n_a:][contact] = rng.uniform(3.0, 9.0, contact.sum())
    pae[n_a:, :n_a][contact.T] = rng.uniform(3.0, 9.0, contact.sum())
    plddt = rng.uniform(0.4, 0.95, n)
    iptm, ptm = float(rng.uniform(0.2, 0.9)), float(rng.uniform(0.3, 0.9))
    confidence = {
        "confidence_score": 0.8 * float(plddt.mean()) + 0.2 * iptm, "ptm": ptm, "iptm": iptm,
        "ligand_iptm": 0.0, "protein_iptm": iptm, "complex_plddt": float(plddt.mean()),
        "complex_iplddt": float(plddt.mean()), "complex_pde": 1.0, "complex_ipde": 5.0,
        "chains_ptm": {"A": ptm, "B": ptm},
        "pair_chains_iptm": {"A": {"A": ptm, "B": iptm}, "B": {"A": iptm, "B": ptm}},
        "untrained": False,
    }
    files = write_sample(directory, 0, structure, coords, plddt, pae, confidence, False)
    write_done(directory, {
        "complex_id": complex_id, "spec": complex_.spec, "chains": chain_map, "tokens": n,
        "samples": 1, "untrained": False, "files": list(files), "file_checks": files,
        "note": "bench/scale.py synthetic prediction: no model ran",
    })


# ---------------------------------------------------------------------------------------------
# stages


def stage_plan(work: Path, env: dict, results: Results, proteins: int, batch_complexes: int) -> None:
    (work / "proteome.fasta").unlink(missing_ok=True)
    write_proteome(work / "proteome.fasta", proteins)
    config = write_config(work, batch_complexes)
    shutil.rmtree(work / "plan_only", ignore_errors=True)
    measured = timed([sys.executable, "-m", "foldcp.cli", "plan", "--config", str(config),
                      "--out", str(work / "plan_only")], work, env, work / "logs" / "plan.log")
    plan = pd.read_parquet(work / "plan_only" / "plan.parquet", columns=["batch_id", "grid"])
    skipped = len(pd.read_parquet(work / "plan_only" / "skipped.parquet"))
    results.add("plan", f"candidates -> plan, all-vs-all of {proteins} proteins (target < 30 s, < 4 GB)",
                complexes=len(plan) + skipped, planned=len(plan), skipped=skipped,
                batches=plan["batch_id"].nunique(), **measured)


def stage_dryrun(work: Path, env: dict, results: Results) -> None:
    snakemake = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                 "--configfile", str(work / "config.yaml"), "--cores", "1"]
    shutil.rmtree(work / "results", ignore_errors=True)
    shutil.rmtree(work / ".snakemake", ignore_errors=True)
    config = timed(snakemake + ["results/config.yaml"], work, env, work / "logs" / "sm_config.log")
    # the MSAs (msa.mode none: the query alone) and their records written here by the code
    # `foldcp msa` runs, and their index as the msa_index rule writes it, instead of 450
    # one-protein jobs before the plan
    import yaml

    from foldcp.config import validate_config
    from foldcp.inputs import read_fasta
    from foldcp.io import write_json
    from foldcp.msa import compute_msa

    resolved = validate_config(yaml.safe_load((work / "results" / "config.yaml").read_text()))
    resolved["proteins"] = str(work / resolved["proteins"])
    msa_dir = work / "results" / "msa"
    msa_dir.mkdir(parents=True, exist_ok=True)
    index = []
    for protein in read_fasta(work / "proteome.fasta").values():
        a3m, record = msa_dir / f"{protein.id}.a3m", msa_dir / f"{protein.id}.json"
        msa, fields = compute_msa(resolved, protein, a3m)
        a3m.write_text(msa.to_a3m())
        write_json(record, fields)
        index.append(f"{protein.id}\tresults/msa/{protein.id}.a3m\tresults/msa/{protein.id}.json\n")
    (msa_dir / "index.tsv").write_text("".join(index))
    measured = timed(snakemake + ["results/plan/plan.parquet"], work, env, work / "logs" / "sm_plan.log")
    plan = pd.read_parquet(work / "results" / "plan" / "plan.parquet", columns=["batch_id"])
    batches = plan["batch_id"].nunique()
    results.add("dryrun", "snakemake: resolved config (parse, validate inputs)", **config)
    results.add("dryrun", "snakemake: plan checkpoint (parse, validate, plan)",
                complexes=len(plan), batches=batches, **measured)
    log = work / "logs" / "sm_dryrun.log"
    measured = timed(snakemake + ["-n"], work, env, log)
    jobs = next((int(line.split()[-1]) for line in log.read_text().splitlines()
                 if line.startswith("total")), None)
    results.add("dryrun", f"snakemake -n over {batches} batches (target < 60 s)",
                batches=batches, jobs=jobs, **measured)


def analysed_templates(work: Path, results: Results, count: int = 6) -> list[dict]:
    """Synthetic predictions of 500-1,000 residues, analysed as the analyze rule does."""
    from boltz.data.mol import load_canonicals

    from foldcp.analyze.tables import complex_rows
    from foldcp.config import validate_config
    from foldcp.model.checkpoint import resolve_checkpoint
    from foldcp.runner.outputs import check_outputs

    analysis = validate_config({"proteins": "x", "candidates": {"mode": "all_vs_all"}})["analysis"]
    checkpoint = resolve_checkpoint("demo")
    canonicals = load_canonicals(checkpoint.mol_dir)
    rng = np.random.default_rng(1)
    root = work / "analyze" / "predictions"
    shutil.rmtree(root, ignore_errors=True)
    templates = []
    for index, total in enumerate(int(t) for t in np.linspace(500, 1000, count)):
        split = int(total * rng.uniform(0.3, 0.7))
        directory = root / f"T{index}"
        synthetic_prediction(directory, f"T{index}", (split, total - split), canonicals,
                             checkpoint.mol_dir, rng)
        start = time.perf_counter()
        assert check_outputs(directory) is None
        checked = time.perf_counter() - start
        rows, pairs, residues = complex_rows(directory, "g1-00000", analysis)
        scored = time.perf_counter() - start - checked
        sizes = {p.name: p.stat().st_size for p in directory.iterdir()}
        results.add("analyze", f"one complex, 2 chains {split}+{total - split} residues, 1 sample",
                    residues=int(total), check_s=round(checked, 3), analyze_s=round(checked + scored, 3),
                    cif_mb=round(sizes["model_0.cif"] / 1e6, 2), pae_mb=round(sizes["pae_model_0.npz"] / 1e6, 2),
                    interface_rows=len(residues), contacts=int(rows[0]["interchain_contacts"]))
        templates.append({"complex": rows[0], "pairs": pairs, "residues": pd.DataFrame(residues)})
    return templates


def write_metrics(plan: pd.DataFrame, lengths: dict[str, int], templates: list[dict],
                  metrics: Path, batches: list[str]) -> None:
    """Per-batch metric tables for the plan's complexes in `batches`, from the templates."""
    from foldcp.analyze.tables import (
        COMPLEX_COLUMNS,
        FAILURE_COLUMNS,
        INTERFACE_COLUMNS,
        PAIR_COLUMNS,
    )

    metrics.mkdir(parents=True, exist_ok=True)
    wanted = set(batches)
    jitter = ("iptm", "ptm", "complex_plddt", "complex_iplddt", "confidence_score", "mean_plddt",
              "ipsae", "ipsae_d0chn", "ipsae_d0dom", "pdockq", "pdockq2", "lis")
    for batch, members in plan[plan["batch_id"].isin(wanted)].groupby("batch_id"):
        rng = np.random.default_rng(int(hashlib.sha1(batch.encode()).hexdigest()[:8], 16))
        complexes, pairs, residues, failures = [], [], [], []
        for row in members.itertuples():
            if rng.random() < 0.005:
                failures.append({"complex_id": row.complex_id, "batch_id": batch,
                                 "status": "out_of_memory", "error": "OutOfMemoryError: synthetic"})
                continue
            template = templates[int(rng.integers(len(templates)))]
            chains = row.chains.split(";")
            ids = [c.split(":")[0] for c in chains]
            if len(ids) == 1:
                ids = ids * 2
            base = dict(template["complex"])
            scale = rng.uniform(0.7, 1.2, len(jitter))
            base.update({k: float(min(base[k] * s, 1.0)) for k, s in zip(jitter, scale)})
            base.update(complex_id=row.complex_id, chains=row.chains, batch_id=batch,
                        proteins=list(row.proteins), num_chains=row.num_chains,
                        chain_lengths=",".join(str(lengths[i]) for i in ids), tokens=row.tokens,
                        ranking_score=0.5 * base["ipsae"] + 0.5 * base["iptm"],
                        model_path=f"results/predictions/{row.complex_id}/model_0.cif",
                        pae_path=f"results/predictions/{row.complex_id}/pae_model_0.npz",
                        plddt_path=f"results/predictions/{row.complex_id}/plddt_model_0.npz")
            complexes.append(base)
            for pair in template["pairs"]:
                pairs.append(dict(pair) | {"complex_id": row.complex_id, "protein_a": ids[0],
                                           "protein_b": ids[1]})
            frame = template["residues"]
            residues.append(frame.assign(complex_id=row.complex_id,
                                         protein=np.where(frame["chain"] == "A", ids[0], ids[1])))
        tables = {
            "complexes": pd.DataFrame(complexes, columns=COMPLEX_COLUMNS),
            "chain_pairs": pd.DataFrame(pairs, columns=PAIR_COLUMNS),
            "interface_residues": (pd.concat(residues, ignore_index=True)[INTERFACE_COLUMNS] if residues
                                   else pd.DataFrame(columns=INTERFACE_COLUMNS)),
            "failures": pd.DataFrame(failures, columns=FAILURE_COLUMNS),
        }
        for name, frame in tables.items():  # what write_batch_tables writes, minus fsync
            frame.to_parquet(metrics / f"{batch}.{name}.parquet", index=False)


def _merge_log(log: Path) -> str:
    return next((line for line in log.read_text().splitlines() if line.startswith("batch tables")), "")


def stage_merge(work: Path, env: dict, results: Results, templates: list[dict], proteins: int) -> None:
    from foldcp.inputs import read_fasta

    out = work / "results"
    (work / "proteome.fasta").unlink()
    write_proteome(work / "proteome.fasta", proteins)  # the same proteome as stage_plan's
    shutil.rmtree(out / "plan", ignore_errors=True)
    timed([sys.executable, "-m", "foldcp.cli", "plan", "--config", str(work / "config.yaml"),
           "--out", str(out / "plan")], work, env, work / "logs" / "plan2.log")
    lengths = {k: len(v) for k, v in read_fasta(work / "proteome.fasta").items()}
    plan = pd.read_parquet(out / "plan" / "plan.parquet")
    metrics = out / "metrics"
    shutil.rmtree(metrics, ignore_errors=True)
    start = time.perf_counter()
    write_metrics(plan, lengths, templates, metrics, sorted(plan["batch_id"].unique()))
    files = sum(f.stat().st_size for f in metrics.iterdir())
    results.add("merge", "(setup) per-batch metric tables written, not timed",
                complexes=len(plan), batches=plan["batch_id"].nunique(), files_mb=round(files / 1e6, 1),
                seconds=round(time.perf_counter() - start, 1))
    foldcp = [sys.executable, "-m", "foldcp.cli"]
    config = ["--config", str(work / "config.yaml")]
    merge = foldcp + ["merge"] + config + ["--plan-dir", str(out / "plan"), "--metrics", str(metrics)]
    check = foldcp + ["check-results"] + config + ["--plan-dir", str(out / "plan")]
    measured = timed(merge + ["--out", str(out)], work, env, work / "logs" / "merge_full.log")
    rows = {f"{name}_rows": len(pd.read_parquet(out / f"{name}.parquet", columns=["complex_id"]))
            for name in ("complexes", "chain_pairs", "interface_residues", "failures")}
    results.add("merge", f"foldcp merge + rank, {len(plan)} complexes, first run (target < 2 min, < 4 GB)",
                complexes=len(plan), **rows, read=_merge_log(work / "logs" / "merge_full.log"), **measured)
    measured = timed(check + ["--results", str(out)], work, env, work / "logs" / "check_full.log")
    results.add("merge", "foldcp check-results (every complex in exactly one table)", **measured)

    # the screen grows: proteins added to the FASTA, the plan keeps its batches
    new = write_proteome(work / "proteome.fasta", 3, seed=7, prefix="R")
    lengths |= new
    measured = timed(foldcp + ["plan"] + config + ["--out", str(out / "plan")], work, env,
                     work / "logs" / "replan.log")
    replanned = pd.read_parquet(out / "plan" / "plan.parquet")
    before = plan.set_index("complex_id")["batch_id"]
    after = replanned.set_index("complex_id")["batch_id"]
    kept = int((after.loc[before.index] == before).sum())
    new_batches = sorted(set(after) - set(before))
    results.add("merge", "foldcp plan again with 3 more proteins (stable batches)",
                complexes=len(replanned), added=len(replanned) - len(plan), kept_batch=kept,
                new_batches=len(new_batches), **measured)
    write_metrics(replanned, lengths, templates, metrics, new_batches)
    measured = timed(merge + ["--out", str(out)], work, env, work / "logs" / "merge_incremental.log")
    results.add("merge", f"foldcp merge + rank, incremental (+{len(replanned) - len(plan)} complexes)",
                complexes=len(replanned), read=_merge_log(work / "logs" / "merge_incremental.log"),
                **measured)
    measured = timed(check + ["--results", str(out)], work, env, work / "logs" / "check_incremental.log")
    results.add("merge", "foldcp check-results after the incremental merge", **measured)
    full = work / "results_full"
    shutil.rmtree(full, ignore_errors=True)
    measured = timed(merge + ["--out", str(full), "--no-cache"], work, env, work / "logs" / "merge_nocache.log")
    same = all(
        hashlib.sha256((out / name).read_bytes()).digest() == hashlib.sha256((full / name).read_bytes()).digest()
        for name in ("complexes.parquet", "chain_pairs.parquet", "interface_residues.parquet",
                     "failures.parquet", "skipped.parquet", "ranked.parquet", "ranked.tsv"))
    results.add("merge", "foldcp merge --no-cache over the grown screen (full, for comparison)",
                complexes=len(replanned), identical_to_incremental=same, **measured)
    if not same:
        raise SystemExit("the incremental merge's outputs differ from the full merge's")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proteins", type=int, default=450)
    parser.add_argument("--batch-complexes", type=int, default=51,
                        help="plan.batch.max_complexes (51: ~2,000 batches for 450 proteins)")
    parser.add_argument("--stages", default="plan,dryrun,analyze,merge")
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one, removed)")
    parser.add_argument("--out", type=Path, help="JSON lines (default: bench/results/DATE_cpu_COMMIT_scale.jsonl)")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    stages = args.stages.split(",")
    work = args.work or Path(tempfile.mkdtemp(prefix="foldcp-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    env = child_env(work)
    sha = commit()
    out = None if args.no_record else (args.out or REPO / "bench" / "results" /
                                       f"{date.today().isoformat()}_cpu_{sha}_scale.jsonl")
    meta = {"date": date.today().isoformat(), "commit": sha, "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(), "proteins": args.proteins}
    results = Results(out, meta)
    print(f"work folder {work}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    try:
        if "plan" in stages or not (work / "proteome.fasta").exists():
            stage_plan(work, env, results, args.proteins, args.batch_complexes)
        if "dryrun" in stages:
            stage_dryrun(work, env, results)
        templates = analysed_templates(work, results) if {"analyze", "merge"} & set(stages) else []
        if "merge" in stages:
            stage_merge(work, env, results, templates, args.proteins)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if out is not None:
        print(f"-> {out}")


if __name__ == "__main__":
    main()
