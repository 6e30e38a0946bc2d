"""bench/throughput.py end to end on CPU: two tiny complexes folded by stock `boltz predict`
and by foldcp's plan + predict with the same small random-weight checkpoint (~1 minute)."""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
import time
from pathlib import Path

import gemmi
import pytest
import torch
import yaml

from foldcp.inputs import read_fasta, read_pairs
from foldcp.runner.outputs import is_done

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import throughput  # bench/throughput.py, importable once bench/ is on sys.path

COMPLEXES = 2
TINY = ["--steps", "2", "--recycling", "0"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> dict:
    """make → checkpoint (demo) + cache → stock → foldcp, as the device recipe runs them."""
    root = tmp_path_factory.mktemp("throughput")
    paths = {"root": root, "inputs": root / "in", "ckpt": root / "demo.ckpt",
             "cache": root / "cache", "out": root / "rows.jsonl",
             "stock": root / "stock", "foldcp": root / "foldcp"}
    throughput.main(["make", "--out", str(paths["inputs"]), "--count", str(COMPLEXES),
                     "--min-tokens", "20", "--max-tokens", "40", "--seed", "0"])
    throughput.main(["checkpoint", "--out", str(paths["ckpt"]), "--size", "demo",
                     "--cache", str(paths["cache"])])
    common = ["--inputs", str(paths["inputs"]), "--checkpoint", str(paths["ckpt"]),
              "--cache", str(paths["cache"]), "--out", str(paths["out"]), *TINY]
    throughput.main(["stock", *common, "--work", str(paths["stock"])])
    throughput.main(["foldcp", *common, "--work", str(paths["foldcp"])])
    paths["rows"] = {row["mode"]: row for row in throughput.read_rows(paths["out"])}
    paths["manifest"] = json.loads((paths["inputs"] / "complexes.json").read_text())
    return paths


def stock_predictions(bench) -> Path:
    return bench["stock"] / "boltz_results_boltz_yaml" / "predictions"


def yaml_sequences(path: Path) -> dict[str, str]:
    schema = yaml.safe_load(path.read_text())
    return {entity["protein"]["id"]: entity["protein"]["sequence"]
            for entity in schema["sequences"]}


def structure_sequences(path: Path) -> dict[str, str]:
    """Chain name -> one-letter sequence of a predicted mmCIF."""
    model = gemmi.read_structure(str(path))[0]
    return {chain.name: gemmi.one_letter_code([r.name for r in chain]) for chain in model}


def test_inputs_carry_the_same_sequences(bench):
    proteins = read_fasta(bench["inputs"] / "proteins.fasta")
    complexes = read_pairs(bench["inputs"] / "pairs.tsv", proteins)
    listed = bench["manifest"]["complexes"]
    assert [c.id for c in complexes] == [c["complex_id"] for c in listed]
    assert len(complexes) == COMPLEXES
    yamls = sorted((bench["inputs"] / "boltz_yaml").iterdir())
    assert [p.name for p in yamls] == sorted(f"{c.id}.yaml" for c in complexes)
    for complex_, entry in zip(complexes, listed):
        assert len(complex_.chains) == 2 and complex_.chains[0].protein_id != complex_.chains[1].protein_id
        assert 20 <= complex_.tokens(proteins) == entry["tokens"] <= 40
        expected = {name: chain.residues(proteins) for name, chain in complex_.chain_instances()}
        assert yaml_sequences(bench["inputs"] / "boltz_yaml" / f"{complex_.id}.yaml") == expected
        assert sorted(entry["chain_lengths"]) == sorted(len(s) for s in expected.values())


def test_make_is_deterministic_in_its_seed(bench, tmp_path):
    throughput.main(["make", "--out", str(tmp_path / "again"), "--count", str(COMPLEXES),
                     "--min-tokens", "20", "--max-tokens", "40", "--seed", "0"])
    throughput.main(["make", "--out", str(tmp_path / "other"), "--count", str(COMPLEXES),
                     "--min-tokens", "20", "--max-tokens", "40", "--seed", "1"])
    for name in ("proteins.fasta", "pairs.tsv", "complexes.json"):
        assert (tmp_path / "again" / name).read_bytes() == (bench["inputs"] / name).read_bytes()
    assert (tmp_path / "other" / "proteins.fasta").read_text() != \
        (bench["inputs"] / "proteins.fasta").read_text()
    with pytest.raises(SystemExit, match="not empty"):  # leftovers would join the benchmark
        throughput.main(["make", "--out", str(tmp_path / "again"), "--count", "1"])


def test_checkpoint_is_marked_untrained_and_the_cache_stops_downloads(bench):
    stored = torch.load(bench["ckpt"], map_location="cpu", weights_only=False)
    assert stored["foldcp"]["untrained"] is True
    # the block counts `boltz predict` imposes on any checkpoint it loads
    assert stored["hyper_parameters"]["pairformer_args"]["num_blocks"] == 64
    cache = bench["cache"]
    assert len(list((cache / "mols").glob("*.pkl"))) == 21
    with tarfile.open(cache / "mols.tar") as tar:
        assert len(tar.getnames()) == 21
    for name in throughput.PLACEHOLDERS:
        assert (cache / name).read_text().startswith("PLACEHOLDER")
    log = Path(bench["rows"]["stock"]["log"]).read_text()
    assert "Downloading" not in log and "Number of failed examples: 0" in log


def test_stock_row_counts_its_outputs(bench):
    row = bench["rows"]["stock"]
    assert (row["complexes_requested"], row["complexes_with_outputs"]) == (COMPLEXES, COMPLEXES)
    assert row["missing"] == [] and row["returncode"] == 0 and row["timed_out"] is False
    assert row["complexes_per_gpu_hour"] == pytest.approx(COMPLEXES * 3600 / row["wall_s"], rel=1e-3)
    assert row["card"] == throughput.card_name() and row["commit"] and row["untrained"] is True
    assert row["settings"]["sampling_steps"] == 2 and row["settings"]["recycling_steps"] == 0
    assert "--write_full_pae" in row["command"] and "--sampling_steps 2" in row["command"]
    for entry in bench["manifest"]["complexes"]:
        cid = entry["complex_id"]
        assert (stock_predictions(bench) / cid / f"pae_{cid}_model_0.npz").is_file()


def test_foldcp_row_counts_its_outputs(bench):
    row = bench["rows"]["foldcp"]
    assert (row["complexes_requested"], row["complexes_with_outputs"]) == (COMPLEXES, COMPLEXES)
    assert row["missing"] == [] and row["returncode"] == 0 and row["timed_out"] is False
    assert row["steps"][0]["step"] == "plan" and len(row["steps"]) >= 2
    assert row["inputs_sha256"] == bench["rows"]["stock"]["inputs_sha256"]
    config = yaml.safe_load((bench["foldcp"] / "config.yaml").read_text())
    assert config["msa"]["mode"] == "none"
    assert config["model"]["checkpoint"] == str(bench["ckpt"].resolve())
    for entry in bench["manifest"]["complexes"]:
        done = json.loads((bench["foldcp"] / "predictions" / entry["complex_id"] / "done.json").read_text())
        assert done["untrained"] is True and done["settings"]["sampling_steps"] == 2
        assert done["checkpoint"]["path"] == str(bench["ckpt"].resolve())
    # each complex's time, split into where it went (the first fold's start-up shows there)
    timed = {c["complex_id"]: c for c in row["per_complex"]}
    assert set(timed) == {entry["complex_id"] for entry in bench["manifest"]["complexes"]}
    for complex_ in timed.values():
        parts = complex_["timings_s"]
        assert set(parts) == {"featurize", "model", "write"} and min(parts.values()) >= 0
        assert parts["model"] > 0 and complex_["tokens"] > 0
        assert sum(parts.values()) == pytest.approx(complex_["runtime_s"], abs=0.01)


def test_both_sides_folded_the_same_sequences(bench):
    for entry in bench["manifest"]["complexes"]:
        cid = entry["complex_id"]
        wanted = yaml_sequences(bench["inputs"] / "boltz_yaml" / f"{cid}.yaml")
        stock = structure_sequences(stock_predictions(bench) / cid / f"{cid}_model_0.cif")
        ours = structure_sequences(bench["foldcp"] / "predictions" / cid / "model_0.cif")
        assert stock == ours == wanted


def test_counts_skip_missing_and_damaged_outputs(bench, tmp_path):
    first, second = (c["complex_id"] for c in bench["manifest"]["complexes"])
    stock = tmp_path / "stock"
    shutil.copytree(bench["stock"], stock)
    pae = stock_predictions({"stock": stock}) / first / f"pae_{first}_model_0.npz"
    pae.write_bytes(pae.read_bytes()[:100])  # a run stopped while writing it
    assert throughput.stock_done(stock, bench["manifest"], samples=1) == [second]
    (stock_predictions({"stock": stock}) / second / f"{second}_model_0.cif").unlink()
    assert throughput.stock_done(stock, bench["manifest"], samples=1) == []

    ours = tmp_path / "foldcp"
    shutil.copytree(bench["foldcp"], ours)
    assert throughput.foldcp_done(ours, bench["manifest"]) == [first, second]
    cif = ours / "predictions" / second / "model_0.cif"
    cif.write_text(cif.read_text().replace("ATOM", "HETATM", 1))  # altered after done.json
    assert not is_done(cif.parent)
    assert throughput.foldcp_done(ours, bench["manifest"]) == [first]


def test_table_puts_foldcp_beside_stock(bench, capsys):
    assert len(throughput.read_rows(bench["out"])) == 2
    throughput.main(["table", "--out", str(bench["out"])])
    lines = capsys.readouterr().out.splitlines()
    stock, foldcp = bench["rows"]["stock"], bench["rows"]["foldcp"]
    ratio = foldcp["complexes_per_gpu_hour"] / stock["complexes_per_gpu_hour"]
    assert lines[1].startswith("stock") and lines[2].startswith("foldcp")
    assert f"{ratio:.2f}x" in lines[2]


def test_time_limit_stops_the_whole_run(tmp_path):
    # a child that starts a grandchild, as boltz predict starts DataLoader workers
    script = ("import subprocess, sys, time; "
              "print(subprocess.Popen(['sleep', '60']).pid, flush=True); time.sleep(60)")
    log = tmp_path / "log"
    started = time.perf_counter()
    run = throughput.run_limited([sys.executable, "-c", script], log, {}, started + 2.0)
    assert run["timed_out"] is True and run["returncode"] != 0
    assert time.perf_counter() - started < 20
    grandchild = int(log.read_text().splitlines()[-1])
    for _ in range(50):  # gone, or a zombie waiting for init to reap it
        status = Path(f"/proc/{grandchild}/status")
        if not status.exists() or "State:\tZ" in status.read_text():
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the grandchild {grandchild} outlived the time limit")


def test_work_folder_must_be_empty(tmp_path):
    (tmp_path / "left.txt").write_text("from an earlier run")
    with pytest.raises(SystemExit, match="not empty"):
        throughput.fresh_work_dir(str(tmp_path), "stock")
