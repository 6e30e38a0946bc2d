"""Interruptions and damaged outputs: a batch killed with SIGKILL, truncated or corrupted files,
a full disk or an unwritable output folder. Every complex ends as a result or a failure, once,
and nothing half-written is taken for a result."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from foldcp import cli
from foldcp.analyze.tables import batch_tables
from foldcp.config import validate_config
from foldcp.errors import OutputError
from foldcp.plan import plan_screen
from foldcp.runner import outputs, predict

REPO = Path(__file__).resolve().parents[2]
FASTA = """>sp|P11540|BARS_BACAM Barstar
MKKAVINGEQIRSISDLHQTLKKELALPEYYGENLDALWDCLTGWVEYPLVLEWRQFEQSKQLTENGAESVLQVFREAKAEGCDITIILS
>pepA
MKVLAGWDEQRTSLLKA
>pepB
GSHMQRTYLLKEWDAQ
"""
COMPLEXES = ["P11540__pepA", "pepA__pepB", "pepAx2"]


def make_screen(root: Path) -> tuple[dict, Path, str]:
    """Three small complexes in one batch, folded by the demo model (2 samples)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "p.fasta").write_text(FASTA)
    (root / "pairs.tsv").write_text("chains\nP11540;pepA\npepA:2\npepB;pepA\n")
    config = {
        "proteins": str(root / "p.fasta"),
        "candidates": {"mode": "pairs", "pairs": str(root / "pairs.tsv")},
        "model": {"checkpoint": "demo", "device": "cpu", "recycling_steps": 0,
                  "sampling_steps": 2, "diffusion_samples": 2, "max_parallel_samples": 2},
        "plan": {"batch": {"max_complexes": 8}},
    }
    (root / "config.yaml").write_text(json.dumps(config))
    config = validate_config(config)
    plan = plan_screen(config, root / "plan")
    assert sorted(plan["complex_id"]) == COMPLEXES and plan["batch_id"].nunique() == 1
    return config, root, plan["batch_id"].iloc[0]


def run(config, root, batch) -> pd.DataFrame:
    return predict.run_batch(config, root / "plan" / "plan.parquet", batch, root / "pred")


def tables(config, root, batch) -> dict[str, pd.DataFrame]:
    return batch_tables(root / "pred" / "batches" / f"{batch}.parquet", root / "pred", config["analysis"])


def stamp(path: Path) -> tuple[int, str]:
    return path.stat().st_mtime_ns, json.loads(path.read_text())["runtime_s"]


@contextmanager
def predicting(root: Path, batch: str, log_path: Path):
    """`foldcp predict` of the batch in a subprocess, yielded once its first complex is done;
    killed on leaving the block if still running."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "foldcp.cli", "predict", "--config", str(root / "config.yaml"),
               "--plan", str(root / "plan" / "plan.parquet"), "--batch", batch, "--out", str(root / "pred")]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 600
            while not list((root / "pred").glob("*/done.json")):
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert time.time() < deadline
                time.sleep(0.01)
            yield proc
        finally:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def folded(tmp_path_factory, foldcp_cache):
    """The three complexes folded once; tests work on copies."""
    config, root, batch = make_screen(tmp_path_factory.mktemp("folded"))
    assert list(run(config, root, batch)["status"]) == ["ok"] * 3
    return config, root, batch


@pytest.fixture
def screen(folded, tmp_path):
    config, root, batch = folded
    copy = tmp_path / "screen"
    shutil.copytree(root, copy)
    config = validate_config(json.loads((root / "config.yaml").read_text()) | {"proteins": str(copy / "p.fasta")})
    return config, copy, batch


# ---------------------------------------------------------------------------------------------
# SIGKILL in the middle of a batch


def test_batch_killed_midway_resumes_without_redoing_or_duplicating(tmp_path, foldcp_cache):
    config, root, batch = make_screen(tmp_path / "screen")
    with predicting(root, batch, tmp_path / "predict.log") as proc:
        proc.send_signal(signal.SIGKILL)
    status = root / "pred" / "batches" / f"{batch}.parquet"
    assert not status.exists(), "the batch finished before it was killed"
    finished = [c for c in COMPLEXES if (root / "pred" / c / "done.json").exists()]
    assert 1 <= len(finished) < 3
    before = {c: stamp(root / "pred" / c / "done.json") for c in finished}
    # what a kill during a write leaves: a temp file, and files of a complex without done.json
    unfinished = next(c for c in COMPLEXES if c not in finished)
    (root / "pred" / unfinished).mkdir(parents=True, exist_ok=True)
    (root / "pred" / unfinished / ".model_0.cif.k1ll3d.tmp").write_text("half a model")
    (root / "pred" / unfinished / "model_0.cif").write_text("data_from_the_killed_run\n")

    again = run(config, root, batch).set_index("complex_id")["status"]
    assert {c: again[c] for c in finished} == dict.fromkeys(finished, "already_done")
    assert set(again.drop(finished)) == {"ok"}
    assert {c: stamp(root / "pred" / c / "done.json") for c in finished} == before  # not redone
    assert not list((root / "pred").rglob("*.tmp"))
    assert outputs.is_done(root / "pred" / unfinished)
    assert "data_from_the_killed_run" not in (root / "pred" / unfinished / "model_0.cif").read_text()
    result = tables(config, root, batch)
    complexes = result["complexes"]
    assert result["failures"].empty and sorted(complexes["complex_id"].unique()) == COMPLEXES
    assert not complexes.duplicated(["complex_id", "sample"]).any() and len(complexes) == 3 * 2
    assert not result["chain_pairs"].duplicated(["complex_id", "sample", "chain_a", "chain_b"]).any()


# ---------------------------------------------------------------------------------------------
# damaged outputs


def test_truncated_and_corrupted_files_are_detected_and_the_complexes_redone(screen):
    config, root, batch = screen
    pred = root / "pred"
    pae = pred / "pepA__pepB" / "pae_model_1.npz"
    pae.write_bytes(pae.read_bytes()[: pae.stat().st_size // 2])  # truncated
    cif = pred / "pepAx2" / "model_0.cif"
    data = bytearray(cif.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit flipped, size unchanged
    cif.write_bytes(bytes(data))
    intact = stamp(pred / "P11540__pepA" / "done.json")

    assert "pae_model_1.npz has" in outputs.check_outputs(pred / "pepA__pepB")
    assert "model_0.cif differs from the SHA-256" in outputs.check_outputs(pred / "pepAx2")
    assert outputs.check_outputs(pred / "pepAx2", verify=False) is None  # sizes alone miss it
    result = tables(config, root, batch)
    failures = result["failures"].set_index("complex_id")
    assert sorted(failures.index) == ["pepA__pepB", "pepAx2"]
    assert set(failures["status"]) == {"corrupt_output"}
    assert "pae_model_1.npz" in failures.loc["pepA__pepB", "error"]
    assert "model_0.cif" in failures.loc["pepAx2", "error"]
    # the rest of the tables are unaffected
    assert set(result["complexes"]["complex_id"]) == {"P11540__pepA"} == set(result["chain_pairs"]["complex_id"])

    again = run(config, root, batch).set_index("complex_id")["status"].to_dict()
    assert again == {"P11540__pepA": "already_done", "pepA__pepB": "ok", "pepAx2": "ok"}
    assert stamp(pred / "P11540__pepA" / "done.json") == intact
    result = tables(config, root, batch)
    assert result["failures"].empty and sorted(result["complexes"]["complex_id"].unique()) == COMPLEXES


def test_unreadable_intact_files_are_recorded_as_analysis_failures(screen):
    """A done.json from before file checks, over a file that cannot be read: the analysis
    records that complex as failed and goes on."""
    config, root, batch = screen
    directory = root / "pred" / "pepAx2"
    manifest = json.loads((directory / "done.json").read_text())
    del manifest["file_checks"]
    (directory / "done.json").write_text(json.dumps(manifest))
    (directory / "plddt_model_0.npz").write_bytes(b"PK\x03\x04 not a zip")
    result = tables(config, root, batch)
    failure = result["failures"].set_index("complex_id").loc["pepAx2"]
    assert failure["status"] == "analysis_failed" and "plddt_model_0.npz" in failure["error"]
    assert sorted(result["complexes"]["complex_id"].unique()) == ["P11540__pepA", "pepA__pepB"]


# ---------------------------------------------------------------------------------------------
# no space, unwritable folder (the model plays no part: a stand-in writes the files)


class StandIn:
    """Writes a complex's files as the predictor does (checked files, done.json last)."""

    device, untrained, is_writer, grid = "cpu", True, True, None

    def __init__(self, config, grid_size=1, msa_dir=None, complexes=None, proteins=None, **_):
        pass

    def close(self):
        pass

    def compile_kernels_ahead(self, complex_, proteins, tokens):
        return None

    def fold(self, complex_, proteins, directory):
        files = outputs.write_checked(directory, {"model_0.cif": b"data_x\n" * 100,
                                                  "pae_model_0.npz": os.urandom(4096)})
        outputs.write_done(directory, {"complex_id": complex_.id, "files": list(files),
                                       "file_checks": files, "runtime_s": 1.0})


@pytest.fixture
def planned(tmp_path, monkeypatch):
    monkeypatch.setattr(predict, "BatchPredictor", StandIn)
    config, root, batch = make_screen(tmp_path / "screen")
    return config, root, batch


def test_disk_full_stops_the_batch_with_a_clear_error_and_leaves_nothing_half_written(planned, monkeypatch):
    config, root, batch = planned
    real_replace = os.replace

    def full_disk(src, dst):  # the batch folds pepA__pepB, P11540__pepA, pepAx2 in this order
        if "P11540__pepA" in str(dst) and str(dst).endswith("pae_model_0.npz"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OutputError) as error:
        run(config, root, batch)
    text = str(error.value)
    assert f"cannot write {root / 'pred' / 'P11540__pepA' / 'pae_model_0.npz'}: No space left on device" in text
    assert f"batch {batch} stopped at P11540__pepA (1 of 3 complexes finished" in text
    pred = root / "pred"
    assert outputs.is_done(pred / "pepA__pepB")
    assert not (pred / "P11540__pepA" / "done.json").exists()
    assert not (pred / "P11540__pepA" / "pae_model_0.npz").exists()
    assert not list(pred.rglob("*.tmp")) and not (pred / "batches").exists()
    assert not (pred / "pepAx2").exists()  # the batch stopped: no failure recorded for the rest

    monkeypatch.setattr(os, "replace", real_replace)  # space again
    again = run(config, root, batch).set_index("complex_id")["status"].to_dict()
    assert again == {"pepA__pepB": "already_done", "P11540__pepA": "ok", "pepAx2": "ok"}


def test_unwritable_output_folder_is_a_clear_error_from_the_command(planned, capsys):
    _, root, batch = planned
    (root / "pred").write_text("a file where the predictions folder should be\n")
    code = cli.main(["predict", "--config", str(root / "config.yaml"), "--plan",
                     str(root / "plan" / "plan.parquet"), "--batch", batch, "--out", str(root / "pred")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("foldcp predict: error: cannot write ")
    assert "pepA__pepB" in err and "0 of 3 complexes finished" in err  # the first folded
    assert (root / "pred").read_text().startswith("a file where")


def test_merge_out_of_space_keeps_the_previous_outputs(tmp_path, monkeypatch):
    """A merge that cannot write leaves the previous, consistent outputs (and its cache)."""
    from test_merge import ANALYSIS, screen_batch, write_plan

    from foldcp.analyze.merge import merge_tables, write_batch_tables

    metrics, results = tmp_path / "metrics", tmp_path / "results"
    for index in range(3):
        write_batch_tables(screen_batch(f"g1-{index:05d}", index), metrics, f"g1-{index:05d}")
    write_plan(tmp_path / "plan", {"g1-00000": 4, "g1-00001": 4})
    merge_tables(metrics, ["g1-00000", "g1-00001"], tmp_path / "plan", results, ANALYSIS, None,
                 cache_dir=metrics / "merge_cache")
    (results / "check.json").write_text("{}")
    before = {p.name: p.read_bytes() for p in results.iterdir()}
    real_replace = os.replace

    def full_disk(src, dst):
        if str(dst).endswith("ranked.parquet"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk)
    write_plan(tmp_path / "plan", {"g1-00000": 4, "g1-00001": 4, "g1-00002": 4})
    with pytest.raises(OutputError, match="No space left on device"):
        merge_tables(metrics, ["g1-00000", "g1-00001", "g1-00002"], tmp_path / "plan", results,
                     ANALYSIS, None, cache_dir=metrics / "merge_cache")
    assert {p.name: p.read_bytes() for p in results.iterdir() if p.name != ".merge-staging"} == before
    monkeypatch.setattr(os, "replace", real_replace)
    merged = merge_tables(metrics, ["g1-00000", "g1-00001", "g1-00002"], tmp_path / "plan", results,
                          ANALYSIS, None, cache_dir=metrics / "merge_cache")
    assert merged["stats"].reused == 2 and len(merged["failures"]) == 3
    assert not (results / "check.json").exists() and not (results / ".merge-staging").exists()


def test_clearing_a_complex_spares_another_ranks_error_log_being_written(tmp_path):
    """On a grid, rank 0 clears a complex's folder when it reaches it; a rank that already
    failed there may be writing its error log (through a temp file) at that moment — that
    log tells record-failure an out-of-memory failure from others, so it is spared."""
    directory = tmp_path / "P1__P2"
    directory.mkdir()
    (directory / "done.json").write_text("{}")
    (directory / ".model_0.cif.k1ll3d.tmp").write_text("half a model")
    in_flight = directory / ".error.rank1.log.a1b2c3.tmp"
    in_flight.write_text("torch.OutOfMemoryError: CUDA out of memory")
    outputs.clear_unfinished(directory)
    assert sorted(p.name for p in directory.iterdir()) == [in_flight.name]


def test_sigterm_ends_a_batch_through_its_cleanup_and_leaves_no_workers(tmp_path, foldcp_cache):
    """SIGTERM (Slurm's time limit, scancel, torchrun stopping ranks) mid-batch: the process
    ends through its cleanup — the writing worker finishes the write in hand, both workers
    stop — so no worker outlives the job, and what was finished is intact."""
    config, root, batch = make_screen(tmp_path / "screen")
    raw = json.loads((root / "config.yaml").read_text())
    raw["model"] |= {"write_behind": True, "featurize_ahead": True}  # both workers, on CPU too
    (root / "config.yaml").write_text(json.dumps(raw))

    def children(pid: int) -> set[int]:
        found = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(stat.parent.name))
        return found

    with predicting(root, batch, tmp_path / "predict.log") as proc:
        workers = children(proc.pid)
        assert len(workers) >= 2, workers  # the featurizing and the writing worker
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    deadline = time.time() + 30
    while any(Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
              for pid in workers):
        assert time.time() < deadline, f"workers {workers} outlived the job"
        time.sleep(0.1)
    finished = [c for c in COMPLEXES if (root / "pred" / c / "done.json").exists()]
    assert finished and all(outputs.is_done(root / "pred" / c) for c in finished)
    assert not list((root / "pred").rglob("*.tmp"))
