"""The workflow survives a predict job killed with SIGKILL: a rerun finishes the screen without
redoing finished complexes, and the results check passes (every complex exactly once)."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import yaml
from test_workflow import SNAKEMAKE, make_workspace, snakemake


def screen_workspace(tmp_path: Path, max_complexes: int, pairs: str) -> Path:
    """The workflow tests' workspace with batches of `max_complexes`, no export, these pairs."""
    root = make_workspace(tmp_path, known_interactions=None)
    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    config["plan"]["batch"] = {"max_complexes": max_complexes, "max_tokens": 20000}
    config["export"] = {"enabled": False}
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    (root / "pairs.tsv").write_text(pairs)
    return root


def descendants(pid: int) -> list[int]:
    """Processes started (directly or not) by `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def test_predict_job_killed_then_workflow_rerun(tmp_path, foldcp_cache):
    root = screen_workspace(tmp_path, max_complexes=3, pairs="chains\nP69905;P68871\nP00441:2\nP11540;P62805\n")
    predictions = root / "results" / "predictions"
    killed = []
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen([*SNAKEMAKE, "--cores", "1"], cwd=root, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 900
            while not list(predictions.glob("*/done.json")):
                assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
                assert time.time() < deadline
                time.sleep(0.01)
            # the predict job is killed (as Slurm kills a job, or a node dies): its shell first,
            # so that it cannot record the run as failed, then the foldcp process
            jobs = [(pid, os.path.basename(args[0])) for pid, args in
                    ((pid, cmdline(pid)) for pid in descendants(first.pid))
                    if any("predict" in arg for arg in args)]
            for pid, program in sorted(jobs, key=lambda job: not job[1].endswith("sh")):
                os.kill(pid, signal.SIGKILL)
                killed.append(program)
            first.wait(timeout=600)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
    # the job's shell and its foldcp process
    assert any(p.endswith("sh") for p in killed) and any(p.startswith("python") for p in killed), killed
    assert first.returncode != 0  # the batch job failed
    batch_status = list((predictions / "batches").glob("*.parquet")) if (predictions / "batches").exists() else []
    assert not batch_status
    finished = {p.parent.name: (p.stat().st_mtime_ns, json.loads(p.read_text())["runtime_s"])
                for p in predictions.glob("*/done.json")}
    assert 1 <= len(finished) < 3

    result = snakemake(root)
    assert result.returncode == 0, result.stderr[-4000:]
    after = {name: (p.stat().st_mtime_ns, json.loads(p.read_text())["runtime_s"])
             for name, p in ((n, predictions / n / "done.json") for n in finished)}
    assert after == finished  # finished complexes were not folded again
    status = pd.concat(pd.read_parquet(p) for p in (predictions / "batches").glob("*.parquet"))
    assert (status.set_index("complex_id").loc[list(finished), "status"] == "already_done").all()
    assert not list(predictions.rglob("*.tmp"))
    results = root / "results"
    check = json.loads((results / "check.json").read_text())
    assert check["ok"] and check["planned"] == 3 and check["with_results"] == 3
    complexes = pd.read_parquet(results / "complexes.parquet")
    assert len(complexes) == 3 * 2 and not complexes.duplicated(["complex_id", "sample"]).any()
    assert "results check passed" in (results / "logs" / "check_results.log").read_text()


def test_adding_complexes_reruns_only_what_is_new(tmp_path, foldcp_cache):
    """A screen grows: the re-plan keeps the existing batches, so only the new batch is folded
    and analysed, no existing MSA is redone, and the merge reads only the new batch's tables."""
    root = screen_workspace(tmp_path, max_complexes=1, pairs="chains\nP69905;P68871\nP00441:2\n")
    result = snakemake(root)
    assert result.returncode == 0, result.stderr[-4000:]
    results = root / "results"
    old_batches = pd.read_parquet(results / "plan" / "plan.parquet").set_index("complex_id")["batch_id"]

    def stamps():
        files = [*results.glob("predictions/batches/*.parquet"), *results.glob("metrics/*.parquet"),
                 *results.glob("msa/*.a3m"), *results.glob("msa/*.json"),
                 *results.glob("predictions/*/done.json")]
        return {str(p.relative_to(results)): p.stat().st_mtime_ns for p in files}

    before = stamps()
    with open(root / "pairs.tsv", "a") as pairs:
        pairs.write("P11540;P62805\n")
    result = snakemake(root)
    assert result.returncode == 0, result.stderr[-4000:]
    plan = pd.read_parquet(results / "plan" / "plan.parquet").set_index("complex_id")["batch_id"]
    assert (plan[old_batches.index] == old_batches).all()
    new_batch = plan["P11540__P62805"]
    assert new_batch not in set(old_batches)
    after = stamps()
    assert {k: after[k] for k in before} == before  # nothing old was redone
    assert sorted(set(after) - set(before)) == sorted([
        f"predictions/batches/{new_batch}.parquet", "predictions/P11540__P62805/done.json",
        "msa/P11540.a3m", "msa/P11540.json", "msa/P62805.a3m", "msa/P62805.json",
        *(f"metrics/{new_batch}.{t}.parquet" for t in
          ("complexes", "chain_pairs", "interface_residues", "failures"))])
    merge_log = (results / "logs" / "merge.log").read_text()
    assert "batch tables: 1 of 3 batches read, 2 from the merge cache" in merge_log
    check = json.loads((results / "check.json").read_text())
    assert check["ok"] and check["with_results"] == 3
