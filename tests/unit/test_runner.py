"""foldcp predict on the demo model: outputs, reruns, failures, determinism, result tables."""

import json
import logging
import shutil

import gemmi
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from foldcp.analyze.tables import batch_tables, ranked_table
from foldcp.config import validate_config
from foldcp.model.checkpoint import sha256_of
from foldcp.plan import plan_screen
from foldcp.errors import OutputError
from foldcp.runner import predict, write_behind
from foldcp.runner.outputs import is_done

FASTA = """>sp|P11540|BARS_BACAM Barstar
MKKAVINGEQIRSISDLHQTLKKELALPEYYGENLDALWDCLTGWVEYPLVLEWRQFEQSKQLTENGAESVLQVFREAKAEGCDITIILS
>pepA
MKVLAGWDE
>pepB
GSHMQRTY
"""


@pytest.fixture
def screen(tmp_path, foldcp_cache, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.fasta").write_text(FASTA)
    (tmp_path / "pairs.tsv").write_text("chains\nP11540;pepA\npepA:2\npepB;pepA\n")
    config = validate_config({
        "proteins": "p.fasta",
        "candidates": {"mode": "pairs", "pairs": "pairs.tsv"},
        "model": {"checkpoint": "demo", "device": "cpu", "recycling_steps": 0,
                  "sampling_steps": 2, "diffusion_samples": 2, "max_parallel_samples": 2},
        "plan": {"batch": {"max_complexes": 8}},
    })
    plan = plan_screen(config, tmp_path / "plan")
    assert plan["batch_id"].nunique() == 1
    return config, tmp_path, plan["batch_id"].iloc[0]


def run(screen):
    config, root, batch = screen
    return predict.run_batch(config, root / "plan" / "plan.parquet", batch, root / "pred")


def run_with(screen, key: str, value):
    """The screen's batch folded with model.`key` = `value`, into its own folder (returned)."""
    config, root, batch = screen
    config["model"][key] = value
    out = root / f"pred_{key}_{value}"
    table = predict.run_batch(config, root / "plan" / "plan.parquet", batch, out)
    assert list(table["status"]) == ["ok"] * 3
    return out


def cif_coords(path) -> np.ndarray:
    return np.array([a.pos.tolist() for r in gemmi.read_structure(str(path))[0][0] for a in r])


def test_batch_writes_complete_outputs_and_resumes(screen):
    config, root, batch = screen
    table = run(screen)
    assert list(table["status"]) == ["ok", "ok", "ok"]
    assert table["untrained"].all()
    directory = root / "pred" / "P11540__pepA"
    manifest = json.loads((directory / "done.json").read_text())
    assert manifest["untrained"] is True and manifest["tokens"] == 90 + 9
    assert manifest["boltz_version"] == "2.2.1"
    # the digest made beside the model load is the checkpoint file's
    assert manifest["checkpoint"]["sha256"] == sha256_of(manifest["checkpoint"]["path"])
    assert [c["protein_id"] for c in manifest["chains"]] == ["P11540", "pepA"]
    for sample in (0, 1):
        confidence = json.loads((directory / f"confidence_model_{sample}.json").read_text())
        assert confidence["untrained"] is True
        assert 0.0 <= confidence["iptm"] <= 1.0 and 0.0 <= confidence["ptm"] <= 1.0
        assert set(confidence["pair_chains_iptm"]) == {"A", "B"}
        pae = np.load(directory / f"pae_model_{sample}.npz")["pae"]
        plddt = np.load(directory / f"plddt_model_{sample}.npz")["plddt"]
        assert pae.shape == (99, 99) and plddt.shape == (99,)
        assert np.isfinite(pae).all() and (pae >= 0).all()
        text = (directory / f"model_{sample}.cif").read_text()
        assert text.startswith("# foldcp: UNTRAINED")
        structure = gemmi.read_structure(str(directory / f"model_{sample}.cif"))
        assert [len(ch) for ch in structure[0]] == [90, 9]
        assert np.isfinite([a.pos.x for r in structure[0]["A"] for a in r]).all()
    # the status table is the batch's durable record
    assert pd.read_parquet(root / "pred" / "batches" / f"{batch}.parquet").equals(table)
    # a rerun skips finished complexes and leaves their files alone
    before = (directory / "model_0.cif").stat().st_mtime_ns
    again = run(screen)
    assert list(again["status"]) == ["already_done"] * 3
    assert (directory / "model_0.cif").stat().st_mtime_ns == before


def test_same_seed_same_structure_whatever_ran_before(screen):
    config, root, batch = screen
    run(screen)
    first = np.load(root / "pred" / "pepA__pepB" / "pae_model_0.npz")["pae"]
    cif = (root / "pred" / "pepA__pepB" / "model_1.cif").read_text()
    # redo only this complex: now it runs first in the batch instead of last
    shutil.rmtree(root / "pred" / "pepA__pepB")
    table = run(screen)
    assert table.set_index("complex_id").loc["pepA__pepB", "status"] == "ok"
    assert np.array_equal(np.load(root / "pred" / "pepA__pepB" / "pae_model_0.npz")["pae"], first)
    assert (root / "pred" / "pepA__pepB" / "model_1.cif").read_text() == cif


def test_a_failing_complex_is_recorded_and_the_batch_goes_on(screen, monkeypatch):
    real_fold = predict.BatchPredictor.fold

    def flaky(self, complex_, proteins, directory):
        if complex_.id == "pepAx2":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.6 GiB")
        if complex_.id == "pepA__pepB":
            raise ValueError("featurizer exploded")
        return real_fold(self, complex_, proteins, directory)

    monkeypatch.setattr(predict.BatchPredictor, "fold", flaky)
    table = run(screen).set_index("complex_id")
    assert table.loc["P11540__pepA", "status"] == "ok"
    assert table.loc["pepAx2", "status"] == "out_of_memory"
    assert table.loc["pepA__pepB", "status"] == "failed"
    assert "featurizer exploded" in table.loc["pepA__pepB", "error"]
    config, root, batch = screen
    assert not (root / "pred" / "pepAx2" / "done.json").exists()
    assert "OutOfMemoryError" in (root / "pred" / "pepAx2" / "error.log").read_text()
    # failures reach the failures table; successes the result tables
    tables = batch_tables(root / "pred" / "batches" / f"{batch}.parquet", root / "pred",
                          config["analysis"])
    assert set(tables["failures"]["complex_id"]) == {"pepAx2", "pepA__pepB"}
    assert set(tables["complexes"]["complex_id"]) == {"P11540__pepA"}
    # the rerun (without the fault) folds only what failed
    monkeypatch.setattr(predict.BatchPredictor, "fold", real_fold)
    again = run(screen).set_index("complex_id")["status"].to_dict()
    assert again == {"P11540__pepA": "already_done", "pepAx2": "ok", "pepA__pepB": "ok"}


def test_result_tables_from_predictions(screen):
    config, root, batch = screen
    run(screen)
    tables = batch_tables(root / "pred" / "batches" / f"{batch}.parquet", root / "pred",
                          config["analysis"])
    complexes, pairs = tables["complexes"], tables["chain_pairs"]
    assert len(complexes) == 3 * 2 and tables["failures"].empty
    assert complexes.groupby("complex_id")["best_sample"].sum().eq(1).all()
    for row in complexes.itertuples():
        confidence = json.loads((root / "pred" / row.complex_id / f"confidence_model_{row.sample}.json").read_text())
        assert row.iptm == confidence["iptm"]
        assert row.ranking_score == pytest.approx(0.5 * confidence["iptm"] + 0.5 * row.ipsae)
        assert 0.0 <= row.ipsae <= 1.0 and 0.0 <= row.pdockq2 <= 1.32
    best = complexes[complexes["best_sample"]]
    for row in best.itertuples():
        same = complexes[complexes["complex_id"] == row.complex_id]
        assert row.ranking_score == same["ranking_score"].max()
    # one chain pair per two-chain complex and sample; contacts are consistent
    assert len(pairs) == 3 * 2
    homodimer = pairs[pairs["complex_id"] == "pepAx2"]
    assert set(homodimer["protein_a"]) == {"pepA"} == set(homodimer["protein_b"])
    total = pairs.groupby(["complex_id", "sample"])["contacts"].sum()
    merged = complexes.set_index(["complex_id", "sample"])["interchain_contacts"]
    assert (total.sort_index() == merged.sort_index()).all()
    complexes = complexes.assign(known=False, novel=True)
    residues = tables["interface_residues"]
    per_pair = residues.groupby(["complex_id", "sample", "chain"]).size()
    for row in pairs.itertuples():
        assert per_pair.get((row.complex_id, row.sample, row.chain_a), 0) == row.interface_residues_a
    assert per_pair.sum() == (pairs["interface_residues_a"] + pairs["interface_residues_b"]).sum()
    best_of = complexes.set_index(["complex_id", "sample"])["best_sample"]
    for row in residues.itertuples():
        assert row.best_sample == best_of[(row.complex_id, row.sample)]
    ranked = ranked_table(complexes, {"iptm": 0.6})
    assert list(ranked["rank"]) == [1, 2, 3]
    assert ranked["ranking_score"].is_monotonic_decreasing


def test_record_failure_keeps_finished_and_reports_rank_errors(screen):
    config, root, batch = screen
    run(screen)
    shutil.rmtree(root / "pred" / "pepAx2")
    (root / "pred" / "pepAx2").mkdir()
    (root / "pred" / "pepAx2" / "error.rank2.log").write_text("Traceback...\nRuntimeError: rank 2 broke\n")
    table = predict.record_failure(root / "plan" / "plan.parquet", batch, root / "pred",
                                   "grid run of 4 ranks failed").set_index("complex_id")
    assert table.loc["pepAx2", "status"] == "failed"
    assert "grid run of 4 ranks failed: RuntimeError: rank 2 broke" in table.loc["pepAx2", "error"]
    assert table.loc["P11540__pepA", "status"] == "already_done"
    tables = batch_tables(root / "pred" / "batches" / f"{batch}.parquet", root / "pred",
                          config["analysis"])
    assert list(tables["failures"]["complex_id"]) == ["pepAx2"]


def test_merge_when_every_complex_failed(screen, monkeypatch, tmp_path):
    from foldcp.analyze.merge import merge_tables, write_batch_tables

    config, root, batch = screen

    def broken(self, complex_, proteins, directory):
        raise RuntimeError("no luck")

    monkeypatch.setattr(predict.BatchPredictor, "fold", broken)
    run(screen)
    tables = batch_tables(root / "pred" / "batches" / f"{batch}.parquet", root / "pred",
                          config["analysis"])
    write_batch_tables(tables, tmp_path / "metrics", batch)
    merged = merge_tables(tmp_path / "metrics", [batch], root / "plan", tmp_path / "results",
                          config["analysis"], None)
    assert merged["ranked"].empty and len(merged["failures"]) == 3
    assert (tmp_path / "results" / "ranked.tsv").read_text().startswith("rank\tcomplex_id")


def test_out_of_memory_below_the_last_grid_asks_for_a_retry(screen, monkeypatch):
    """The test hook fakes CUDA OOM for pepAx2 below 2 GPUs: a run that may retry writes no
    status table and exits 75; a final run records out_of_memory."""
    from foldcp.cli import main

    config, root, batch = screen
    monkeypatch.setenv(predict.FAKE_OOM_ENV, "pepAx2:2")
    table = predict.run_batch(config, root / "plan" / "plan.parquet", batch, root / "pred",
                              final=False).set_index("complex_id")
    assert table.loc["pepAx2", "status"] == "out_of_memory"
    assert "on 1 GPU(s): OutOfMemoryError" in table.loc["pepAx2", "error"]
    assert predict.wants_retry(table, final=False)
    assert not (root / "pred" / "batches" / f"{batch}.parquet").exists()
    assert predict.read_failure(root / "pred" / "pepAx2")["status"] == "out_of_memory"
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    args = ["predict", "--config", str(root / "config.yaml"), "--plan",
            str(root / "plan" / "plan.parquet"), "--batch", batch, "--out", str(root / "pred")]
    assert main([*args, "--retry-on-oom"]) == predict.RETRY_EXIT_CODE
    assert main(args) == 0  # final: recorded
    final = pd.read_parquet(root / "pred" / "batches" / f"{batch}.parquet").set_index("complex_id")
    assert final["status"].to_dict() == {"P11540__pepA": "already_done", "pepAx2": "out_of_memory",
                                         "pepA__pepB": "already_done"}


def test_record_failure_reads_what_this_attempt_left(screen, monkeypatch):
    """A grid run died: rank logs newer than --since say why; a complex that failed for
    another reason on a smaller grid keeps that failure; one the run never reached is retried
    on the next grid, or recorded as failed on the last."""
    import os
    import time

    config, root, batch = screen
    plan, pred = root / "plan" / "plan.parquet", root / "pred"
    real_fold = predict.BatchPredictor.fold

    def flaky(self, complex_, proteins, directory):
        if complex_.id == "pepA__pepB":
            raise ValueError("featurizer exploded")
        return real_fold(self, complex_, proteins, directory)

    monkeypatch.setattr(predict.BatchPredictor, "fold", flaky)
    monkeypatch.setenv(predict.FAKE_OOM_ENV, "pepAx2:4,P11540__pepA:4")
    predict.run_batch(config, plan, batch, pred, final=False)  # attempt 1, one GPU
    assert {d.name: predict.read_failure(d)["status"] for d in pred.iterdir() if d.name != "batches"} \
        == {"P11540__pepA": "out_of_memory", "pepAx2": "out_of_memory", "pepA__pepB": "failed"}
    past = time.time() - 100
    for path in pred.rglob("*.json"):
        os.utime(path, (past, past))
    stale = pred / "P11540__pepA" / "error.rank0.log"  # left by an older run
    stale.write_text("Traceback\nRuntimeError: something old\n")
    os.utime(stale, (past, past))
    # attempt 2 on 2 GPUs: rank 1 ran out of memory on pepAx2, P11540__pepA was not reached
    since = time.time() - 1
    (pred / "pepAx2" / "error.rank1.log").write_text(
        "Traceback\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB\n")
    (pred / "pepAx2" / "error.rank0.log").write_text("Traceback\nRuntimeError: Connection closed by peer\n")
    table = predict.record_failure(plan, batch, pred, "run on 2 GPU(s) failed", since=since,
                                   grid=2, final=False).set_index("complex_id")
    assert table["status"].to_dict() == {"P11540__pepA": "out_of_memory", "pepAx2": "out_of_memory",
                                         "pepA__pepB": "failed"}
    assert "Connection closed by peer" in table.loc["pepAx2", "error"]
    assert "Tried to allocate 2 GiB" in table.loc["pepAx2", "error"]
    assert "not run on 2 GPU(s)" in table.loc["P11540__pepA", "error"]
    assert "featurizer exploded" in table.loc["pepA__pepB", "error"]
    assert not (pred / "batches" / f"{batch}.parquet").exists()  # a retry follows
    # the same on the last grid: recorded, and the unreached complex failed
    table = predict.record_failure(plan, batch, pred, "run on 2 GPU(s) failed", since=since,
                                   grid=2, final=True).set_index("complex_id")
    assert table["status"].to_dict() == {"P11540__pepA": "failed", "pepAx2": "out_of_memory",
                                         "pepA__pepB": "failed"}
    assert "not run (the run stopped before this complex)" in table.loc["P11540__pepA", "error"]
    assert "something old" not in table.loc["P11540__pepA", "error"]
    written = pd.read_parquet(pred / "batches" / f"{batch}.parquet").set_index("complex_id")
    assert written["status"].to_dict() == table["status"].to_dict()


def test_one_gpu_engines_fold_the_same_structures(screen):
    """`model.single_gpu`: Boltz's own forward and foldcp's model on a 1x1 grid give the same
    structures and PAE for the same seed (the engine is recorded in done.json)."""
    results = {engine: run_with(screen, "single_gpu", engine) for engine in ("boltz", "foldcp")}
    for complex_id in ("P11540__pepA", "pepA__pepB", "pepAx2"):
        dirs = {e: results[e] / complex_id for e in results}
        assert {json.loads((d / "done.json").read_text())["engine"] for d in dirs.values()} \
            == {"boltz", "foldcp"}
        for sample in (0, 1):
            pae = {e: np.load(d / f"pae_model_{sample}.npz")["pae"] for e, d in dirs.items()}
            assert pae["boltz"].std() > 0.1  # a real PAE map, not a constant
            np.testing.assert_allclose(pae["foldcp"], pae["boltz"], atol=2e-3)
            coords = {e: cif_coords(d / f"model_{sample}.cif") for e, d in dirs.items()}
            scale = np.abs(coords["boltz"]).max()
            assert scale > 1.0
            np.testing.assert_allclose(coords["foldcp"], coords["boltz"], atol=max(5e-3, 3e-6 * scale))


def test_sampling_precision_reaches_the_sampling_loop(screen):
    """`model.sampling_precision: bf16` changes the structures (the switch is applied where
    the runner folds) and done.json records it; the default is Boltz's float32."""
    coords = {}
    for mode in ("float32", "bf16"):
        out = run_with(screen, "sampling_precision", mode)
        done = json.loads((out / "pepA__pepB" / "done.json").read_text())
        assert done["sampling_precision"] == mode
        coords[mode] = cif_coords(out / "pepA__pepB" / "model_0.cif")
    assert validate_config({"proteins": "p.fasta", "candidates": {"mode": "all_vs_all"}}
                           )["model"]["sampling_precision"] == "float32"
    assert np.isfinite(coords["bf16"]).all()
    assert np.abs(coords["bf16"] - coords["float32"]).max() > 1e-3


def test_featurizing_ahead_gives_the_same_outputs(screen):
    """`model.featurize_ahead: true`: the worker process featurizes each next complex while
    one folds; every file equals the in-process run's (same seeds, same features)."""
    outputs = {ahead: run_with(screen, "featurize_ahead", ahead) for ahead in (False, True)}
    for complex_id in ("P11540__pepA", "pepA__pepB", "pepAx2"):
        for name in ("model_0.cif", "model_1.cif"):
            assert (outputs[True] / complex_id / name).read_text() == \
                (outputs[False] / complex_id / name).read_text()
        for sample in (0, 1):
            assert np.array_equal(
                np.load(outputs[True] / complex_id / f"pae_model_{sample}.npz")["pae"],
                np.load(outputs[False] / complex_id / f"pae_model_{sample}.npz")["pae"])


def test_writing_behind_gives_the_same_outputs(screen):
    """`model.write_behind: true`: a worker process writes each complex's files while the next
    folds; every file equals the in-process run's, and each complex's status row and done.json
    come once its files are written (done.json's runtime covers the write)."""
    outputs = {behind: run_with(screen, "write_behind", behind) for behind in (False, True)}
    config, root, batch = screen
    for complex_id in ("P11540__pepA", "pepA__pepB", "pepAx2"):
        done = {b: json.loads((outputs[b] / complex_id / "done.json").read_text()) for b in outputs}
        assert done[True]["file_checks"] == done[False]["file_checks"]  # same bytes, same SHA-256
        assert done[True]["files"] == done[False]["files"] and len(done[True]["files"]) == 8
        assert done[True].keys() == done[False].keys()
        timings = done[True]["timings_s"]
        assert set(timings) == {"featurize", "model", "write"} and timings["write"] > 0
        assert done[True]["runtime_s"] >= timings["model"] + timings["write"]
    table = pd.read_parquet(outputs[True] / "batches" / f"{batch}.parquet").set_index("complex_id")
    for complex_id, row in table.iterrows():
        done = json.loads((outputs[True] / complex_id / "done.json").read_text())
        assert row["status"] == "ok" and row["runtime_s"] == done["runtime_s"]


def test_a_write_that_fails_behind_the_next_fold_stops_the_batch_there(screen):
    """The worker cannot write P11540__pepA, the second complex folded (a file stands where
    its folder goes): the batch stops with the error naming it once the fold after it ends;
    that fold's complex is not written (no write starts after a failed one; it folds again on
    the rerun), the one before is finished and kept."""
    config, root, batch = screen
    config["model"]["write_behind"] = True
    pred = root / "pred"
    pred.mkdir()
    (pred / "P11540__pepA").write_text("in the way\n")
    with pytest.raises(OutputError) as error:
        run(screen)
    assert f"cannot write {pred / 'P11540__pepA'}" in str(error.value)
    assert f"batch {batch} stopped at P11540__pepA (1 of 3 complexes finished" in str(error.value)
    assert str(error.value).count("stopped at") == 1  # said once, for the complex it hit
    assert is_done(pred / "pepA__pepB")
    assert not (pred / "pepAx2" / "done.json").exists()
    assert not (pred / "batches").exists()
    (pred / "P11540__pepA").unlink()
    again = run(screen).set_index("complex_id")["status"].to_dict()
    assert again == {"pepA__pepB": "already_done", "P11540__pepA": "ok", "pepAx2": "ok"}


def test_a_batch_folds_its_smallest_complex_first_then_the_largest(screen):
    """Folding order: the smallest complex first (its features are ready soonest, and the
    first fold compiles the kernels), then the rest largest first (the last fold's files,
    which no fold hides, are a small complex's)."""
    config, root, batch = screen
    plan = pd.read_parquet(root / "plan" / "plan.parquet")
    assert list(plan["complex_id"]) == ["P11540__pepA", "pepAx2", "pepA__pepB"]  # largest first
    order = ["pepA__pepB", "P11540__pepA", "pepAx2"]
    assert [plan["complex_id"][i] for i in predict.folding_order(list(plan["tokens"]))] == order
    assert list(run(screen)["complex_id"]) == order  # the status table, in folding order
    first = json.loads((root / "pred" / "pepA__pepB" / "done.json").read_text())
    later = json.loads((root / "pred" / "pepAx2" / "done.json").read_text())
    assert first["tokens"] < later["tokens"]
    assert predict.folding_order([900, 700, 700, 300, 500]) == [3, 0, 1, 2, 4]
    assert predict.folding_order([500, 300, 300]) == [1, 0, 2]  # the first of equals
    assert predict.folding_order([900, 700]) == [0, 1] and predict.folding_order([]) == []
    # a rerun orders what is left to fold (here two: plan order), the finished rows before
    shutil.rmtree(root / "pred" / "P11540__pepA")
    shutil.rmtree(root / "pred" / "pepAx2")
    again = run(screen)
    assert list(again["complex_id"]) == ["pepA__pepB", "P11540__pepA", "pepAx2"]
    assert list(again["status"]) == ["already_done", "ok", "ok"]


def test_a_writing_worker_that_dies_loses_nothing(screen, monkeypatch, caplog):
    """The writing worker is killed before the second complex's write: that write and the
    rest are done in the job's own process, with the same files."""
    reference = run_with(screen, "write_behind", False)
    real_start = write_behind.PendingWrite.start
    submitted = []

    def killing_start(self):
        if self.started:
            return real_start(self)
        submitted.append(self.job["manifest"]["complex_id"])
        if len(submitted) == 2:
            for process in list(self.owner.pool._processes.values()):
                process.kill()
                process.join()
        return real_start(self)

    monkeypatch.setattr(write_behind.PendingWrite, "start", killing_start)
    with caplog.at_level(logging.WARNING):
        out = run_with(screen, "write_behind", True)
    assert len(submitted) == 3
    assert "the writing worker stopped" in caplog.text
    for complex_id in ("P11540__pepA", "pepA__pepB", "pepAx2"):
        assert is_done(out / complex_id)
        assert json.loads((out / complex_id / "done.json").read_text())["file_checks"] == \
            json.loads((reference / complex_id / "done.json").read_text())["file_checks"]


def test_predict_command_sets_the_allocator_before_cuda(monkeypatch, tmp_path):
    """`foldcp predict` asks for expandable segments (the memory model was measured with them)
    before anything touches CUDA, and leaves a user's own allocator setting alone."""
    from foldcp import cli

    seen = []

    def run_batch(*args, **kwargs):
        seen.append(__import__("os").environ.get("PYTORCH_CUDA_ALLOC_CONF"))
        return pd.DataFrame()

    monkeypatch.setattr(predict, "run_batch", run_batch)
    argv = ["predict", "--config", "config/config.yaml", "--plan", str(tmp_path / "plan.parquet"),
            "--batch", "g1-00000", "--out", str(tmp_path)]
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    assert cli.main(argv) == 0
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "max_split_size_mb:512")
    assert cli.main(argv) == 0
    assert seen == ["expandable_segments:True", "max_split_size_mb:512"]


def test_an_error_log_that_cannot_be_written_does_not_hide_the_error(screen, monkeypatch, capsys):
    """When the model cannot load (or a grid rank fails) the process ends with the error
    after keeping its log beside the complex; if that log cannot be written, the error
    still ends the process (not the log's OutputError) and the lost log is reported."""
    def cannot_load(*args, **kwargs):
        raise RuntimeError("checkpoint unreadable")

    real_write_text = predict.write_text

    def full_disk(path, text):
        if "error.rank" in str(path):
            raise OutputError(f"cannot write {path}: No space left on device")
        return real_write_text(path, text)

    monkeypatch.setattr(predict, "BatchPredictor", cannot_load)
    monkeypatch.setattr(predict, "write_text", full_disk)
    with pytest.raises(RuntimeError, match="checkpoint unreadable"):
        run(screen)
    assert "error.rank0.log: No space left on device" in capsys.readouterr().err


def test_a_rerun_folds_the_smallest_of_what_is_left_first(tmp_path, monkeypatch):
    """Five complexes; a rerun with the smallest one and a middle one finished folds the
    smallest of the three left first, then the other two largest first, and hands the
    featurizing worker that order (no model: a stand-in writes each complex's files)."""
    from foldcp.runner import outputs

    seen = {}

    class StandIn:
        device, untrained, is_writer, grid = "cpu", True, True, None

        def __init__(self, config, grid_size=1, msa_dir=None, complexes=None, proteins=None, **_):
            seen["scheduled"] = [c.id for c in complexes]
            seen["folded"] = []

        def close(self):
            pass

        def compile_kernels_ahead(self, complex_, proteins, tokens):
            return None

        def fold(self, complex_, proteins, directory):
            seen["folded"].append(complex_.id)
            files = outputs.write_checked(directory, {"model_0.cif": b"data_x\n"})
            outputs.write_done(directory, {"complex_id": complex_.id, "files": list(files),
                                           "file_checks": files, "runtime_s": 1.0})

    monkeypatch.setattr(predict, "BatchPredictor", StandIn)
    lengths = {"pA": 10, "pB": 20, "pC": 30, "pD": 40, "pE": 50}
    (tmp_path / "p.fasta").write_text("".join(f">{p}\n{'MKVLAGWDEQ' * (n // 10)}\n"
                                              for p, n in lengths.items()))
    (tmp_path / "pairs.tsv").write_text("chains\n" + "".join(f"{p}:2\n" for p in lengths))
    config = validate_config({
        "proteins": str(tmp_path / "p.fasta"),
        "candidates": {"mode": "pairs", "pairs": str(tmp_path / "pairs.tsv")},
        "model": {"checkpoint": "demo", "device": "cpu"},
        "plan": {"batch": {"max_complexes": 8}},
    })
    plan = plan_screen(config, tmp_path / "plan")
    batch = plan["batch_id"].iloc[0]
    assert list(plan["complex_id"]) == ["pEx2", "pDx2", "pCx2", "pBx2", "pAx2"]  # largest first
    table = predict.run_batch(config, tmp_path / "plan" / "plan.parquet", batch, tmp_path / "pred")
    assert seen["folded"] == seen["scheduled"] == ["pAx2", "pEx2", "pDx2", "pCx2", "pBx2"]
    assert list(table["complex_id"]) == seen["folded"]
    for finished in ("pAx2", "pDx2"):
        shutil.rmtree(tmp_path / "pred" / finished)
    shutil.rmtree(tmp_path / "pred" / "batches")
    table = predict.run_batch(config, tmp_path / "plan" / "plan.parquet", batch, tmp_path / "pred")
    assert seen["folded"] == seen["scheduled"] == ["pDx2", "pAx2"]  # two left: plan order
    for finished in ("pBx2", "pCx2", "pEx2"):
        shutil.rmtree(tmp_path / "pred" / finished)
    table = predict.run_batch(config, tmp_path / "plan" / "plan.parquet", batch, tmp_path / "pred")
    assert seen["folded"] == seen["scheduled"] == ["pBx2", "pEx2", "pCx2"]
    assert list(table["complex_id"]) == ["pDx2", "pAx2", "pBx2", "pEx2", "pCx2"]
    assert list(table["status"]) == ["already_done"] * 2 + ["ok"] * 3


class CompilerStandIn:
    """triton_precompile.KernelCompiler without processes (no kernels compile on CPU)."""

    def __init__(self, workers, fail=False):
        self.events, self.fail = ["started"], fail

    def recording(self):
        import contextlib

        @contextlib.contextmanager
        def recording():
            self.events.append("recording")
            if self.fail:
                raise RuntimeError("no hook here")
            yield self
            self.events.append("recorded")
        return recording()

    def wait(self, timeout_s):
        self.events.append("waited")
        return {"recorded": 0, "compiled": 0, "failed": 0, "running": 0}

    def watching(self):
        import contextlib

        self.events.append("watching")
        return contextlib.nullcontext(self)

    def take_late(self):
        # the first real fold compiled one specialisation the throwaway fold had missed
        return ["_gated_kernel[i32D]"] if self.events.count("watching") == 1 else []

    def close(self):
        self.events.append("closed")


@pytest.mark.parametrize("fail", [False, True])
def test_kernels_compiled_ahead_leave_the_outputs_unchanged(screen, monkeypatch, capsys, fail):
    """Where the GPU kernels are compiled ahead, a throwaway fold of the first complex, its
    chains cut to a few residues, runs foldcp's model (0 recycles, 2 steps) under the
    compiler's recording before the first fold; every file equals a run without it. A
    failure there is reported and the batch goes on."""
    from foldcp.distributed import triton_precompile
    from foldcp.distributed.model import DistBoltz2

    compilers, sizes = [], []
    predict_ = DistBoltz2.predict

    def spy(self, features, layout, sampling_steps, recycling_steps, **kwargs):
        sizes.append((int(features["token_pad_mask"].sum()), recycling_steps, sampling_steps))
        return predict_(self, features, layout, sampling_steps=sampling_steps,
                        recycling_steps=recycling_steps, **kwargs)

    monkeypatch.setattr(DistBoltz2, "predict", spy)
    screen[0]["model"].update(recycling_steps=1, sampling_steps=3)  # not the throwaway fold's
    plain = run_with(screen, "single_gpu", "foldcp")
    assert len(sizes) == 3
    sizes.clear()
    monkeypatch.setattr(predict.BatchPredictor, "wants_kernels_ahead", lambda self: True)
    monkeypatch.setattr(triton_precompile, "KernelCompiler",
                        lambda workers: compilers.append(CompilerStandIn(workers, fail)) or compilers[-1])
    config, root, batch = screen
    config["model"]["single_gpu"] = "foldcp"
    ahead = root / "pred_ahead"
    table = predict.run_batch(config, root / "plan" / "plan.parquet", batch, ahead)
    assert list(table["status"]) == ["ok"] * 3
    (compiler,) = compilers
    if fail:
        # the folds are watched all the same: what they compile is named
        assert compiler.events == ["started", "recording", "waited", "closed"] + ["watching"] * 3
        assert "kernels not compiled ahead (RuntimeError: no hook here)" in capsys.readouterr().err
        assert len(sizes) == 3
    else:
        # then each real fold is watched for kernels compiled all the same, named in the log
        assert compiler.events == ["started", "recording", "recorded", "waited", "closed",
                                   "watching", "watching", "watching"]
        out = capsys.readouterr().out
        assert "GPU kernels compiled ahead: {'recorded': 0" in out
        assert out.count("GPU kernel compiled in its fold, not ahead") == 1
        assert "pepA__pepB: GPU kernel compiled in its fold, not ahead: _gated_kernel[i32D]" in out
        # the first complex folded (smallest first: pepA__pepB, 17 residues) cut to 8 + 8
        # (on CPU the token multiple is 1: no shorter cut)
        assert sizes[0] == (16, 0, 2) and [s[1:] for s in sizes[1:]] == [(1, 3)] * 3
    for complex_id in ("P11540__pepA", "pepA__pepB", "pepAx2"):
        for name in ("model_0.cif", "model_1.cif"):
            assert (ahead / complex_id / name).read_text() == (plain / complex_id / name).read_text()
        for sample in (0, 1):
            assert np.array_equal(np.load(ahead / complex_id / f"pae_model_{sample}.npz")["pae"],
                                  np.load(plain / complex_id / f"pae_model_{sample}.npz")["pae"])


def test_small_copy_keeps_chains_copies_and_ranges():
    from foldcp.inputs import Chain, Complex, Protein

    proteins = {"a": Protein("a", "M" * 50), "b": Protein("b", "K" * 5)}
    complex_ = Complex((Chain("a", 11, 40, copies=2), Chain("b")), "pairs.tsv:2")
    small = predict.small_copy(complex_, proteins)
    assert small.chains == (Chain("a", 11, 18, copies=2), Chain("b", 1, 5))  # 21 tokens
    assert small.source == complex_.source
    # never a multiple of the token multiple: padded tokens, as most complexes have
    even = Complex((Chain("a", copies=2),))
    assert predict.small_copy(even, proteins).chains == (Chain("a", 1, 7, copies=2),)  # 14
    assert predict.small_copy(even, proteins, multiple=32).chains == (Chain("a", 1, 8, copies=2),)
    assert predict.small_copy(even, proteins, multiple=1).chains == (Chain("a", 1, 8, copies=2),)
