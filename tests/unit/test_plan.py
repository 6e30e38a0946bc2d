import pandas as pd
import pytest

from foldcp.inputs import make_complex, parse_complex
from foldcp.inputs.fasta import Protein
from foldcp.plan import MemoryModel, build_plan, choose_grid, gpu_memory_gib, pack_batches

PLAN = {
    "grids": [1, 2, 4, 8], "gpu_memory_gib": 80, "safety_margin": 0.1,
    "memory_model": {"fixed_gib": 2.0, "pair_gib_per_ktoken2": 8.13},
    "batch": {"max_complexes": 3, "max_tokens": 1000},
}


def test_stock_boltz_term_bounds_anchor_figures():
    model = MemoryModel()
    # stock Boltz-2, one H100: 10.1 GiB @1000, 34.5 @2000, 52.8 @2500 tokens; out of memory at
    # 3000 with 70.8 GiB allocated and 8.6 more asked for
    for tokens, gib in [(1000, 10.1), (2000, 34.5), (2500, 52.8), (3000, 70.8 + 8.6)]:
        assert gib <= model.boltz_gib(tokens) <= 1.06 * gib
    assert model.gib_per_gpu(4000, 4) < model.gib_per_gpu(4000, 2) < model.gib_per_gpu(4000, 1)
    assert model.gib_per_gpu(2500, 1) < model.boltz_gib(2500)  # foldcp's kernels on one GPU


def test_grid_is_smallest_that_fits():
    model = MemoryModel()
    h100 = gpu_memory_gib({"gpu_kind": "h100-80gb"})
    # the measured capacities (bench/RESULTS.md): 6,000 tokens on one H100, 8,605 on 1x2;
    # one H100 is planned up to ~7,100 (2 + 1.49 x 51.8 = 79.2 GiB > 76.8 at 7,200)
    assert choose_grid(6000, [1, 2, 4], model, h100, 0.03).gpus == 1
    assert choose_grid(7000, [1, 2, 4], model, h100, 0.03).gpus == 1
    assert choose_grid(7200, [1, 2, 4], model, h100, 0.03).gpus == 2
    assert choose_grid(8500, [1, 2, 4], model, h100, 0.03).gpus == 2
    assert choose_grid(8500, [1, 4], model, h100, 0.03).gpus == 4
    assert choose_grid(12000, [1, 2, 4, 8], model, h100, 0.03).gpus == 4
    # an H200 holds 8,000 on one GPU (2 + 0.07 x 64 + 1.425 x 64 = 97.7 GiB of 135)
    h200 = gpu_memory_gib({"gpu_kind": "h200-141gb"})
    assert choose_grid(8000, [1, 2, 4], model, h200, 0.03).gpus == 1
    assert choose_grid(8000, [1, 2, 4], model, h100, 0.03).gpus == 2
    too_big = choose_grid(20000, [1, 2, 4], model, h100, 0.03)
    assert too_big.gpus is None and "20000 tokens" in too_big.reason


def test_gpu_memory_from_kind_unless_set():
    assert gpu_memory_gib({"gpu_kind": "h100-80gb", "gpu_memory_gib": None}) == pytest.approx(79.18)
    assert gpu_memory_gib({"gpu_kind": "h100-80gb", "gpu_memory_gib": 40}) == 40
    with pytest.raises(ValueError, match="known kinds are h100-80gb, h200-141gb"):
        gpu_memory_gib({"gpu_kind": "a100-40gb"})


def test_pack_batches_respects_caps():
    items = [(f"c{i}", t) for i, t in enumerate([100, 900, 300, 300, 50, 2000, 10])]
    batches = pack_batches(items, max_complexes=3, max_tokens=1000)
    assert sorted(sum(batches, [])) == sorted(c for c, _ in items)
    sizes = dict(items)
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or sum(sizes[c] for c in batch) <= 1000
    assert batches[0] == ["c5"]  # largest first, alone when over the token cap


def test_build_plan_tables():
    proteins = {"S": Protein("S", "M" * 200), "M": Protein("M", "K" * 1600),
                "H": Protein("H", "A" * 9000)}
    complexes = [make_complex(parse_complex(s)) for s in ["S;S", "S;M", "M:2", "S;H", "S:3"]]
    plan, skipped = build_plan(complexes, proteins, PLAN)
    by_id = plan.set_index("complex_id")
    assert by_id.loc["Sx2", "grid"] == 1 and by_id.loc["Sx3", "grid"] == 1
    assert by_id.loc["M__S", "tokens"] == 1800
    assert by_id.loc["Mx2", "grid"] == 2  # 3200 tokens: 2 + 8.13 x 3.2^2 = 85 GiB > 72 on one GPU
    assert list(skipped["complex_id"]) == ["H__S"]
    assert skipped["reason"].iloc[0].startswith("too_large")
    # grid-1 batches obey the caps; bigger grids one complex per batch
    for batch_id, members in plan.groupby("batch_id"):
        if batch_id.startswith("g1-"):
            assert len(members) <= 3 and (len(members) == 1 or members["tokens"].sum() <= 1000)
        else:
            assert len(members) == 1
    assert set(plan.columns) >= {"complex_id", "chains", "tokens", "grid", "batch_id", "proteins"}
    assert isinstance(plan, pd.DataFrame) and plan["batch_id"].notna().all()


def test_replan_keeps_batches_and_puts_new_complexes_in_new_batches(tmp_path, write):
    """Stable batches: adding proteins to an all-vs-all screen adds batches, never reshuffles
    the existing ones (their predictions, status and metric tables stay valid)."""
    from foldcp.config import validate_config
    from foldcp.plan import plan_screen

    fasta = "".join(f">P{i}\n{'ACDEFGHIKL'[i % 10] * (60 + 7 * i)}\n" for i in range(14))
    write("p.fasta", fasta)
    write("ids.txt", "\n".join(f"P{i}" for i in range(10)) + "\n")
    config = validate_config({"proteins": str(tmp_path / "p.fasta"),
                              "candidates": {"mode": "all_vs_all", "ids": str(tmp_path / "ids.txt")},
                              "plan": dict(PLAN, grids=[1])})
    first = plan_screen(config, tmp_path / "plan", base=tmp_path)
    assert (tmp_path / "plan" / "assignments.parquet").is_file()
    assert plan_screen(config, tmp_path / "plan", base=tmp_path).equals(first)  # idempotent

    write("ids.txt", "\n".join(f"P{i}" for i in range(1, 14)) + "\n")  # P0 out, P10-P13 in
    second = plan_screen(config, tmp_path / "plan", base=tmp_path)
    old = first.set_index("complex_id")["batch_id"]
    new = second.set_index("complex_id")["batch_id"]
    kept = old.index.intersection(new.index)
    assert len(kept) == 36 and (new[kept] == old[kept]).all()
    added = new.drop(kept)
    assert len(added) == 13 * 12 // 2 - 36
    assert not set(added) & set(old)  # only new batches for new complexes
    assert min(int(b.split("-")[1]) for b in added) == max(int(b.split("-")[1]) for b in old) + 1
    for batch_id, members in second.groupby("batch_id"):  # new batches obey the caps
        if batch_id in set(added):
            assert len(members) <= 3 and (len(members) == 1 or members["tokens"].sum() <= 1000)

    # P0 comes back: its complexes return to their old batches; nothing is renumbered
    write("ids.txt", "\n".join(f"P{i}" for i in range(14)) + "\n")
    third = plan_screen(config, tmp_path / "plan", base=tmp_path).set_index("complex_id")["batch_id"]
    assert (third[old.index] == old).all() and (third[new.index] == new).all()


def test_build_plan_without_history_is_a_fresh_packing():
    proteins = {"S": Protein("S", "M" * 200), "M": Protein("M", "K" * 300)}
    complexes = [make_complex(parse_complex(s)) for s in ["S;S", "S;M", "M:2", "S:3"]]
    fresh, _ = build_plan(complexes, proteins, PLAN)
    empty = pd.DataFrame(columns=["complex_id", "grid", "batch_id"])
    assert build_plan(complexes, proteins, PLAN, empty)[0].equals(fresh)
    assert sorted(fresh["batch_id"].unique())[0] == "g1-00000"
