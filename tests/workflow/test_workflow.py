"""The Snakemake workflow end to end on the demo proteins (demo model, tiny settings)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]

PAIRS = """chains
P69905;P68871
P00441:2
P11540;P62805
P00441:4
"""


def make_workspace(root: Path, **overrides) -> Path:
    """A user's working folder: config/config.yaml pointing at the demo proteins."""
    (root / "config").mkdir(parents=True)
    (root / "pairs.tsv").write_text(PAIRS)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["proteins"] = str(REPO / "config" / "example" / "proteins.fasta")
    config["known_interactions"] = str(REPO / "config" / "example" / "known_interactions.tsv")
    config["candidates"]["pairs"] = "pairs.tsv"
    # one GPU of 5 GiB: the 616-token SOD1 tetramer does not fit -> skipped table
    config["plan"].update(grids=[1], gpu_memory_gib=5, safety_margin=0.0,
                          memory_model=dict(fixed_gib=2.0, pair_gib_per_ktoken2=8.13))
    config["plan"]["batch"] = {"max_complexes": 2, "max_tokens": 20000}
    config["model"].update(recycling_steps=0, sampling_steps=2, diffusion_samples=2, device="cpu")
    config.update(overrides)
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return root


def snakemake(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, "--cores", "2", *args], cwd=root, capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory, foldcp_cache):
    root = make_workspace(tmp_path_factory.mktemp("screen"))
    result = snakemake(root)
    assert result.returncode == 0, result.stderr[-4000:]
    return root


def test_screen_tables(finished):
    results = finished / "results"
    plan = pd.read_parquet(results / "plan" / "plan.parquet")
    assert sorted(plan["complex_id"]) == ["P00441x2", "P11540__P62805", "P68871__P69905"]
    assert plan["batch_id"].nunique() == 2  # batches of at most 2 complexes

    complexes = pd.read_parquet(results / "complexes.parquet")
    assert len(complexes) == 3 * 2  # complexes x samples
    assert complexes.groupby("complex_id")["best_sample"].sum().eq(1).all()
    assert complexes["untrained"].all()
    assert complexes[["iptm", "ptm", "complex_plddt"]].apply(lambda c: c.between(0, 1).all()).all()
    known = complexes.drop_duplicates("complex_id").set_index("complex_id")["known"]
    assert known.to_dict() == {"P00441x2": True, "P11540__P62805": False, "P68871__P69905": True}
    for path in complexes["model_path"]:
        assert (finished / path).is_file()

    pairs = pd.read_parquet(results / "chain_pairs.parquet")
    assert len(pairs) == 3 * 2
    hb = pairs[pairs["complex_id"] == "P68871__P69905"]
    assert set(hb["protein_a"]) | set(hb["protein_b"]) == {"P68871", "P69905"}
    assert pairs[["ipsae", "pdockq", "pdockq2", "lis"]].notna().all().all()
    best_pair = pairs.groupby(["complex_id", "sample"])["ipsae"].max()
    assert best_pair.to_dict() == pytest.approx(complexes.set_index(["complex_id", "sample"])["ipsae"].to_dict())
    residues = pd.read_parquet(results / "interface_residues.parquet")
    assert len(residues) == (pairs["interface_residues_a"] + pairs["interface_residues_b"]).sum()
    report = (results / "report.html").read_text()
    assert "UNTRAINED" in report and report.count('class="plot hit"') == 3

    skipped = pd.read_parquet(results / "skipped.parquet")
    assert list(skipped["complex_id"]) == ["P00441x4"]
    assert "616 tokens" in skipped["reason"].iloc[0]
    assert pd.read_parquet(results / "failures.parquet").empty

    ranked = pd.read_csv(results / "ranked.tsv", sep="\t")
    assert list(ranked["rank"]) == [1, 2, 3]
    # the results check ran last: 4 candidates, each in exactly one table
    check = yaml.safe_load((results / "check.json").read_text())
    assert check["ok"] and (check["candidates"], check["with_results"], check["skipped"]) == (4, 3, 1)
    assert ranked["ranking_score"].is_monotonic_decreasing
    best = complexes[complexes["best_sample"]].set_index("complex_id")["ranking_score"]
    assert ranked.set_index("complex_id")["ranking_score"].to_dict() == pytest.approx(best.to_dict())


def test_export_of_the_screen(finished):
    """rule all runs the export: the best sample of each ranked complex as ModelCIF."""
    export = finished / "results" / "export"
    index = pd.read_parquet(export / "index.parquet")
    ranked = pd.read_parquet(finished / "results" / "ranked.parquet")
    assert list(index["complex_id"]) == list(ranked["complex_id"])
    assert index["untrained"].all() and index["best_sample"].all()
    for row in index.itertuples():
        text = (export / row.model_path).read_text()
        assert "UNTRAINED DEMO MODEL" in text and row.entry_id in text
        assert (export / row.pae_path).is_file()
    log = (finished / "results" / "logs" / "export.log").read_text()
    assert f"exported {len(index)} models" in log
    assert "Foldseek database" in log  # built, or skipped with a message


def test_rerun_has_nothing_to_do(finished):
    result = snakemake(finished, "-n")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_bad_input_stops_before_any_job(tmp_path):
    root = make_workspace(tmp_path)
    (root / "pairs.tsv").write_text("chains\nP69905;P68871\nP69905;Q99999\n")
    result = snakemake(root)
    assert result.returncode != 0
    assert "pairs.tsv:3: unknown protein ID 'Q99999'" in result.stdout + result.stderr
    assert not (root / "results").exists()


def test_bad_config_names_the_key(tmp_path):
    root = make_workspace(tmp_path, plan={"grids": [1, 0]})
    result = snakemake(root, "-n")
    assert result.returncode != 0
    assert "config key plan.grids[1]" in result.stdout + result.stderr


def test_lint_is_clean():
    result = subprocess.run([*SNAKEMAKE, "--lint"], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_configfile_replaces_the_demo_config(tmp_path):
    root = make_workspace(tmp_path)
    (root / "my.yaml").write_text(
        f"proteins: {REPO / 'config' / 'example' / 'proteins.fasta'}\n"
        "candidates: {mode: all_vs_all}\noutput_dir: screen1\n"
    )
    result = snakemake(root, "screen1/config.yaml", "--configfile", "my.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    resolved = yaml.safe_load((root / "screen1" / "config.yaml").read_text())
    # nothing of the demo config leaks in: schema defaults fill what my.yaml leaves out
    assert resolved["known_interactions"] is None
    assert resolved["model"]["checkpoint"] == "auto"
    assert resolved["candidates"] == {"mode": "all_vs_all", "pairs": None, "ids": None,
                                      "baits": None, "library": None, "homodimers": False}


@pytest.fixture(scope="module")
def grid_screens(tmp_path_factory, foldcp_cache):
    """The same screen twice: all on one device, and with SOD1x2 forced onto a 4-rank grid."""
    roots = {}
    for name, plan in {
        "grid1": dict(grids=[1], gpu_memory_gib=1000, safety_margin=0.0),
        # 11 GiB per (1000 tokens)^2 on 1-GiB GPUs: 289 tokens fit one, SOD1x2 (308) needs 4
        "grid4": dict(grids=[1, 4], gpu_memory_gib=1.0, safety_margin=0.0,
                      memory_model=dict(fixed_gib=0.0, pair_gib_per_ktoken2=11.0)),
    }.items():
        root = make_workspace(tmp_path_factory.mktemp(name))
        config = yaml.safe_load((root / "config" / "config.yaml").read_text())
        config["plan"].update(plan)
        (root / "config" / "config.yaml").write_text(yaml.safe_dump(config))
        (root / "pairs.tsv").write_text("chains\nP69905;P68871\nP00441:2\n")
        result = snakemake(root)
        assert result.returncode == 0, result.stderr[-4000:]
        roots[name] = root
    return roots


def test_grid_four_run_equals_grid_one(grid_screens):
    plan = pd.read_parquet(grid_screens["grid4"] / "results" / "plan" / "plan.parquet")
    assert plan.set_index("complex_id")["grid"].to_dict() == {"P00441x2": 4, "P68871__P69905": 1}
    log = (grid_screens["grid4"] / "results" / "logs" / "predict" / "g4-00000.log").read_text()
    assert "batch g4-00000: {'ok': 1}" in log  # four gloo ranks folded it
    done = (grid_screens["grid4"] / "results" / "predictions" / "P00441x2" / "done.json").read_text()
    assert '"grid": "2x2"' in done
    tables = {name: pd.read_parquet(root / "results" / "complexes.parquet").set_index(["complex_id", "sample"])
              for name, root in grid_screens.items()}
    one, four = tables["grid1"], tables["grid4"]
    assert pd.read_parquet(grid_screens["grid4"] / "results" / "failures.parquet").empty
    assert sorted(one.index) == sorted(four.index)
    for column in ("iptm", "ptm", "complex_plddt", "mean_plddt", "ranking_score"):
        assert (one[column] - four.loc[one.index, column]).abs().max() < 1e-4, column
    contacts = (one["interchain_contacts"] - four.loc[one.index, "interchain_contacts"]).abs()
    assert contacts.max() <= 2  # coordinates agree to float rounding; a borderline pair may flip


def test_failed_grid_run_is_recorded_not_lost(tmp_path, foldcp_cache):
    """Every rank of a 4-rank run fails (no such checkpoint): the launcher ends, the complex
    is recorded as failed with the rank's error, and the screen still completes."""
    root = make_workspace(tmp_path, known_interactions=None)
    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    config["plan"].update(grids=[1, 4], gpu_memory_gib=1.0, safety_margin=0.0,
                          memory_model=dict(fixed_gib=0.0, pair_gib_per_ktoken2=11.0))
    config["model"]["checkpoint"] = str(tmp_path / "missing.ckpt")
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    (root / "pairs.tsv").write_text("chains\nP00441:2\n")
    result = snakemake(root)
    assert result.returncode == 0, result.stderr[-3000:]
    failures = pd.read_parquet(root / "results" / "failures.parquet")
    assert list(failures["complex_id"]) == ["P00441x2"]
    assert failures["status"].iloc[0] == "failed"
    assert "run on 4 GPU(s) failed" in failures["error"].iloc[0]
    assert "missing.ckpt" in failures["error"].iloc[0]
    assert pd.read_parquet(root / "results" / "complexes.parquet").empty


def test_mmseqs_msas_once_per_protein_and_paired(tmp_path, foldcp_cache):
    """msa.mode mmseqs on the example proteome plus decoys of known species: one MSA job per
    protein, a FASTA database built once, the heteromer folded with its paired MSA."""
    if shutil.which("mmseqs") is None:
        pytest.skip("the mmseqs binary (MMseqs2) is not installed: apt-get install mmseqs2")
    sys.path.insert(0, str(REPO / "tests" / "unit"))
    from msa_testdata import PROTEOME, decoy_sequences

    root = make_workspace(tmp_path, known_interactions=None)
    database = PROTEOME.read_text().rstrip("\n") + "\n"
    database += "".join(f">{h}\n{s}\n" for h, s in decoy_sequences().values())
    (root / "db.fasta").write_text(database)
    (root / "pairs.tsv").write_text("chains\nP68431;P62805\nP68431:2\n")
    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    config["msa"] = {"mode": "mmseqs", "cache_dir": str(tmp_path / "msa-cache"),
                     "mmseqs": {"database": "db.fasta", "sensitivity": 7.5, "num_iterations": 1,
                                "evalue": 1e-5}}
    config["model"]["diffusion_samples"] = 1
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(root)
    assert result.returncode == 0, result.stderr[-4000:]
    log = result.stdout + result.stderr
    assert log.count("rule msa:") == 2 and log.count("rule msa_db:") == 1
    msa = root / "results" / "msa"
    records = {p: json.loads((msa / f"{p}.json").read_text()) for p in ("P68431", "P62805")}
    assert all(r["mode"] == "mmseqs" and r["depth"] > 1 and not r["fallback"]
               for r in records.values())
    done = json.loads((root / "results" / "predictions" / "P62805__P68431" / "done.json").read_text())
    assert [c["paired_rows"] for c in done["msa"]["chains"]] == [2, 2]  # mouse and rat
    homodimer = json.loads((root / "results" / "predictions" / "P68431x2" / "done.json").read_text())
    assert [c["paired_rows"] for c in homodimer["msa"]["chains"]] == [0, 0]
    assert pd.read_parquet(root / "results" / "failures.parquet").empty
    complexes = pd.read_parquet(root / "results" / "complexes.parquet").set_index("complex_id")
    assert set(complexes["msa_mode"]) == {"mmseqs"} and not complexes["msa_fallback"].any()
    assert complexes.loc["P62805__P68431", "msa_depth"].min() == min(r["rows"] for r in records.values()) > 1
    again = snakemake(root, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_precomputed_msas_missing_stop_before_any_job(tmp_path):
    root = make_workspace(tmp_path)
    (root / "msas").mkdir()
    (root / "msas" / "P69905.a3m").write_text(">P69905\nMVLS\n")
    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    config["msa"] = {"mode": "precomputed", "precomputed": {"dir": "msas"}}
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(root, "-n")
    assert result.returncode != 0
    assert "has no MSA (ID.a3m, ID.a3m.gz or ID.csv) for 4 protein(s)" in result.stdout + result.stderr


def test_out_of_memory_is_retried_on_the_next_grid_then_recorded(tmp_path, foldcp_cache):
    """Through the local profile, with the test hook faking CUDA OOM: both complexes of a
    grid-1 batch run out of memory on 1 GPU, so the job asks for a retry and Snakemake runs
    the batch again as 2 torchrun ranks; SOD1x2 folds there, hemoglobin runs out of memory on
    the last grid too and is recorded as out_of_memory."""
    root = make_workspace(tmp_path)
    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    config["plan"].update(grids=[1, 2], gpu_memory_gib=1000)
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    (root / "pairs.tsv").write_text("chains\nP69905;P68871\nP00441:2\n")
    env = dict(os.environ, FOLDCP_TEST_FAKE_OOM="P00441x2:2,P68871__P69905:99")
    result = subprocess.run(
        [*SNAKEMAKE, "--profile", str(REPO / "profiles" / "local")], cwd=root, env=env,
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    results = root / "results"
    assert pd.read_parquet(results / "plan" / "plan.parquet")["batch_id"].unique().tolist() == ["g1-00000"]
    logs = results / "logs" / "predict"
    first = (logs / "g1-00000.grid1.log").read_text()  # each attempt keeps its log
    assert "run on 1 GPU(s)" in first and "retry on the next grid (exit 75)" in first
    log = (logs / "g1-00000.log").read_text()  # the rule's log: the last attempt
    assert log == (logs / "g1-00000.grid2.log").read_text()
    assert "batch g1-00000: {'already_done': 1, 'out_of_memory': 1}" in log
    assert '"grid": "1x2"' in (results / "predictions" / "P00441x2" / "done.json").read_text()
    failures = pd.read_parquet(results / "failures.parquet")
    assert failures.set_index("complex_id")["status"].to_dict() == {"P68871__P69905": "out_of_memory"}
    assert "OutOfMemoryError" in failures["error"].iloc[0]
    assert "run on 2 GPU(s) failed" in failures["error"].iloc[0]  # it ended the 2-rank run
    complexes = pd.read_parquet(results / "complexes.parquet")
    assert complexes["complex_id"].unique().tolist() == ["P00441x2"]
