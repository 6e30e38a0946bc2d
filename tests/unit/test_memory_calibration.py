"""The planner's default memory model against the GPU peaks recorded in bench/results/.

Every full-inference row of foldcp's current pair-stack code (commits below) must sit under
the model — the plan must never give a complex a grid it does not fit — and not far under it
(a model far above every measurement wastes GPUs)."""

import json
from pathlib import Path

import pytest

from foldcp.plan import MemoryModel
from foldcp.runner.predict import single_gpu_engine

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
# bounded pair-stack transients onwards (81015c8 …), Triton kernels and strip-wise pair terms
CURRENT_CODE = ("81015c8", "7102bdd", "30064a8", "119dc29", "1f3a36d", "b06fe11", "cf52da7")


def measured_rows():
    """Full-inference rows of the current code: named by the row's own commit field, or by
    the file name where rows carry none."""
    rows = []
    for path in sorted(RESULTS.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            commit = row.get("commit")
            current = commit in CURRENT_CODE if commit else any(c in path.name for c in CURRENT_CODE)
            if current and "cp_peak_gib_per_gpu" in row and not row.get("oom") \
                    and not row.get("pairformer_blocks"):
                rows.append(row)
    return rows


def test_there_are_measurements_to_calibrate_against():
    rows = measured_rows()
    grids = {row["grid"] for row in rows}
    assert len(rows) >= 4 and {"1x1", "1x2", "2x2"} <= grids


@pytest.mark.parametrize("row", measured_rows(), ids=lambda r: f"{r['tokens']}-{r['grid']}")
def test_model_covers_every_measured_peak(row):
    rows, cols = map(int, row["grid"].split("x"))
    modelled = MemoryModel().gib_per_gpu(row["tokens"], rows * cols)
    assert row["cp_peak_gib_per_gpu"] <= modelled <= 1.35 * row["cp_peak_gib_per_gpu"], modelled


PLAN = {"gpu_memory_gib": 80, "safety_margin": 0.1, "memory_model": {}}


def test_single_gpu_engine():
    cuda, cpu = __import__("torch").device("cuda"), __import__("torch").device("cpu")
    assert single_gpu_engine("auto", 1000, cpu, False, PLAN) == "boltz"
    # a GPU without Boltz's kernels: foldcp's are faster and smaller at every size
    assert single_gpu_engine("auto", 500, cuda, False, PLAN) == "foldcp"
    # with the kernels on, Boltz while its memory fits (2 + 8.13 (N/1000)^2 <= 72 GiB)
    assert single_gpu_engine("auto", 2900, cuda, True, PLAN) == "boltz"
    assert single_gpu_engine("auto", 3000, cuda, True, PLAN) == "foldcp"
    assert single_gpu_engine("foldcp", 100, cpu, False, PLAN) == "foldcp"
    assert single_gpu_engine("boltz", 5000, cuda, False, PLAN) == "boltz"
