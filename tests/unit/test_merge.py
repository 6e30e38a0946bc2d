"""Merging many per-batch tables: streamed, incremental (a merge cache), and the results check."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from foldcp.analyze import merge as merge_module
from foldcp.analyze.check import ResultsError, check_results
from foldcp.analyze.merge import TABLES, merge_tables, stream_concat, write_batch_tables
from foldcp.analyze.tables import (
    COMPLEX_COLUMNS,
    FAILURE_COLUMNS,
    INTERFACE_COLUMNS,
    PAIR_COLUMNS,
)
from foldcp.io import write_parquet

ANALYSIS = {"confident": {"iptm": 0.6}, "top_n": 5}


def batch_frame(batch: int, rows: int, rng) -> pd.DataFrame:
    frame = pd.DataFrame({column: rng.random(rows) for column in PAIR_COLUMNS})
    frame["complex_id"] = [f"c{batch}_{k}" for k in range(rows)]
    frame["sample"] = np.arange(rows)
    for column in ("protein_a", "protein_b", "chain_a", "chain_b"):
        frame[column] = "A"
    frame["best_sample"] = frame["untrained"] = True
    if batch % 7 == 3:  # a batch where one metric is missing everywhere (an all-null column)
        frame["interface_pae_ab"] = None
    return frame[PAIR_COLUMNS]


def test_many_batches_stream_into_one_file(tmp_path, monkeypatch):
    monkeypatch.setattr(merge_module, "ROW_GROUP_ROWS", 50)
    rng = np.random.default_rng(0)
    paths, frames = [], []
    for batch in range(150):
        rows = 0 if batch % 10 == 0 else int(rng.integers(1, 6))
        frame = batch_frame(batch, rows, rng) if rows else pd.DataFrame(columns=PAIR_COLUMNS)
        path = tmp_path / f"b{batch:04d}.chain_pairs.parquet"
        write_parquet(path, frame)
        paths.append(path)
        frames.append(frame)
    out = tmp_path / "chain_pairs.parquet"
    written = stream_concat(paths, PAIR_COLUMNS, out)
    expected = pd.concat([f.astype({"interface_pae_ab": float}) for f in frames if len(f)],
                         ignore_index=True)
    assert written == len(expected)
    meta = pq.ParquetFile(out).metadata
    # row groups of whole batches, each closed once it holds 50 rows or more
    sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    assert sum(sizes) == len(expected) and all(50 <= n < 55 for n in sizes[:-1])
    assert pq.read_schema(out).metadata[b"foldcp_schema_version"] == b"2"
    merged = pd.read_parquet(out)
    assert list(merged.columns) == PAIR_COLUMNS
    assert merged["complex_id"].tolist() == expected["complex_id"].tolist()
    np.testing.assert_allclose(merged["ipsae"], expected["ipsae"].astype(float))
    assert merged["interface_pae_ab"].isna().sum() == expected["interface_pae_ab"].isna().sum() > 0


def test_no_rows_gives_an_empty_table_with_columns(tmp_path):
    path = tmp_path / "b.parquet"
    write_parquet(path, pd.DataFrame(columns=PAIR_COLUMNS))
    out = tmp_path / "out.parquet"
    assert stream_concat([path], PAIR_COLUMNS, out) == 0
    assert list(pd.read_parquet(out).columns) == PAIR_COLUMNS


# ---------------------------------------------------------------------------------------------
# a screen's per-batch tables, synthetic


def screen_batch(batch_id: str, seed: int, size: int = 4, fail: int = 1) -> dict[str, pd.DataFrame]:
    """All four tables of one batch: `size` complexes, the last `fail` of them failed."""
    rng = np.random.default_rng(seed)
    complexes, pairs, residues, failures = [], [], [], []
    for k in range(size):
        cid = f"{batch_id}_c{k}"
        if k >= size - fail:
            failures.append({"complex_id": cid, "batch_id": batch_id, "status": "failed",
                             "error": f"RuntimeError: {seed}"})
            continue
        best = int(rng.integers(0, 2))
        for sample in range(2):
            row = {c: float(rng.random()) for c in COMPLEX_COLUMNS}
            row.update(complex_id=cid, chains="A;B", batch_id=batch_id, sample=sample,
                       proteins=["A", "B"], num_chains=2, chain_lengths="10,12", tokens=22,
                       msa_mode="none", msa_depth=1, msa_fallback=False,
                       interchain_contacts=int(rng.integers(0, 9)), heavy_atom_contacts=3,
                       clashes=0, best_sample=sample == best, untrained=True,
                       model_path=f"p/{cid}/model_{sample}.cif", pae_path="x", plddt_path="y")
            if seed % 5 == 2:
                row["interface_plddt"] = None  # all-null in this batch
            complexes.append(row)
            pair = {c: float(rng.random()) for c in PAIR_COLUMNS}
            pair.update(complex_id=cid, sample=sample, protein_a="A", protein_b="B", chain_a="A",
                        chain_b="B", residues_a=10, residues_b=12, contacts=4,
                        best_sample=sample == best, untrained=True)
            pairs.append(pair)
            for index in range(int(rng.integers(0, 5))):
                residues.append({"complex_id": cid, "sample": sample, "protein": "A", "chain": "A",
                                 "partner_chain": "B", "residue_index": index,
                                 "residue_number": index + 1, "residue_name": "ALA",
                                 "plddt": float(rng.random() * 100), "partner_contacts": 1,
                                 "best_sample": sample == best})
    return {
        "complexes": pd.DataFrame(complexes, columns=COMPLEX_COLUMNS),
        "chain_pairs": pd.DataFrame(pairs, columns=PAIR_COLUMNS),
        "interface_residues": pd.DataFrame(residues, columns=INTERFACE_COLUMNS),
        "failures": pd.DataFrame(failures, columns=FAILURE_COLUMNS),
    }


def write_plan(plan_dir, batches: dict[str, int], skipped=("S1__S2",)) -> None:
    rows = [{"complex_id": f"{b}_c{k}", "batch_id": b} for b, size in batches.items() for k in range(size)]
    write_parquet(plan_dir / "plan.parquet", pd.DataFrame(rows, columns=["complex_id", "batch_id"]))
    write_parquet(plan_dir / "skipped.parquet", pd.DataFrame(
        {"complex_id": list(skipped), "chains": "S1;S2", "tokens": 9000, "reason": "too_large"}))


def read_outputs(results) -> dict[str, pd.DataFrame]:
    names = list(TABLES) + ["skipped", "ranked"]
    frames = {name: pd.read_parquet(results / f"{name}.parquet") for name in names}
    frames["ranked.tsv"] = (results / "ranked.tsv").read_text()
    return frames


def assert_same_outputs(a, b) -> None:
    one, two = read_outputs(a), read_outputs(b)
    for name in one:
        if name == "ranked.tsv":
            assert one[name] == two[name]
        else:
            pd.testing.assert_frame_equal(one[name], two[name], check_exact=True, obj=name)
            assert pq.read_schema(a / f"{name}.parquet").equals(pq.read_schema(b / f"{name}.parquet"))


@pytest.fixture
def screen(tmp_path, monkeypatch):
    """12 batches (g1-00000 … g1-00011) of metrics, and a spy on the batch files read."""
    monkeypatch.setattr(merge_module, "ROW_GROUP_ROWS", 7)  # several row groups per table
    metrics = tmp_path / "metrics"
    for index in range(12):
        write_batch_tables(screen_batch(f"g1-{index:05d}", index), metrics, f"g1-{index:05d}")
    read = []
    real = merge_module._read_batch_file

    def spy(path):
        read.append(os.path.basename(str(path)).split(".")[0])
        return real(path)

    monkeypatch.setattr(merge_module, "_read_batch_file", spy)
    return tmp_path, metrics, read


def merge(root, metrics, batches, out, cache=True):
    return merge_tables(metrics, batches, root / "plan", root / out, ANALYSIS, None,
                        cache_dir=metrics / "merge_cache" if cache else None)


def test_incremental_merge_reads_only_new_batches_and_equals_a_full_merge(screen):
    root, metrics, read = screen
    first = [f"g1-{i:05d}" for i in range(10)]
    write_plan(root / "plan", dict.fromkeys(first, 4))
    stats = merge(root, metrics, first, "inc")["stats"]
    assert (stats.read, stats.reused) == (10, 0) and sorted(set(read)) == first

    # the screen grows: two more grid-1 batches and a grid-2 one (sorted between old ones
    # and after them)
    write_batch_tables(screen_batch("g2-00000", 99, size=1, fail=0), metrics, "g2-00000")
    final = first + ["g1-00010", "g1-00011", "g2-00000"]
    write_plan(root / "plan", dict.fromkeys(final, 4) | {"g2-00000": 1})
    read.clear()
    tables = merge(root, metrics, final, "inc")
    assert (tables["stats"].read, tables["stats"].reused) == (3, 10)
    assert sorted(set(read)) == ["g1-00010", "g1-00011", "g2-00000"]  # nothing old re-read
    merge(root, metrics, final, "full", cache=False)
    assert_same_outputs(root / "inc", root / "full")
    assert len(tables["complexes"]) == 2 * (12 * 3 + 1) and len(tables["failures"]) == 12
    check_results(root / "plan", root / "inc")

    # a batch re-analysed (its tables rewritten) and one dropped from the plan
    write_batch_tables(screen_batch("g1-00004", 1234), metrics, "g1-00004")
    final.remove("g1-00007")
    read.clear()
    stats = merge(root, metrics, final, "inc")["stats"]
    assert (stats.read, stats.reused) == (1, 11) and set(read) == {"g1-00004"}
    merge(root, metrics, final, "full", cache=False)
    assert_same_outputs(root / "inc", root / "full")
    # a rerun with nothing new reads no batch table
    read.clear()
    assert merge(root, metrics, final, "inc")["stats"].read == 0 and read == []
    assert_same_outputs(root / "inc", root / "full")


def test_incremental_merge_records_missing_complexes_as_a_full_merge_does(screen):
    root, metrics, read = screen
    batches = [f"g1-{i:05d}" for i in range(12)]
    # the plan has a fifth complex in batches 3 and 8 that their status tables left out
    sizes = dict.fromkeys(batches, 4) | {"g1-00003": 5, "g1-00008": 5}
    write_plan(root / "plan", sizes)
    merge(root, metrics, batches[:10], "inc")
    # the screen grows by two batches; g1-00011 lost one complex too
    write_plan(root / "plan", sizes | {"g1-00011": 5})
    read.clear()
    tables = merge(root, metrics, batches, "inc")
    assert (tables["stats"].read, tables["stats"].reused) == (2, 10)
    merge(root, metrics, batches, "full", cache=False)
    assert_same_outputs(root / "inc", root / "full")
    failures = pd.read_parquet(root / "inc" / "failures.parquet")
    missing = failures[failures["status"] == "missing"]
    assert sorted(missing["complex_id"]) == ["g1-00003_c4", "g1-00008_c4", "g1-00011_c4"]
    assert sorted(missing["batch_id"]) == ["g1-00003", "g1-00008", "g1-00011"]
    assert (failures["status"] == "failed").sum() == 12
    # the chain-pair and residue tables are those of the complexes with results only
    for name in ("chain_pairs", "interface_residues"):
        rows = pd.read_parquet(root / "inc" / f"{name}.parquet")
        assert not set(rows["complex_id"]) & set(failures["complex_id"])
        assert len(rows) == tables[f"{name}_rows"] > 0
    counts = check_results(root / "plan", root / "inc")
    assert counts["failed"] == 15 and counts["failed_by_status"] == {"failed": 12, "missing": 3}
    assert counts["with_results"] == 12 * 3 and counts["candidates"] == 12 * 4 + 3 + 1

    # batch 8 runs again and now has its fifth complex: no longer missing
    write_batch_tables(screen_batch("g1-00008", 8, size=5, fail=1), metrics, "g1-00008")
    read.clear()
    stats = merge(root, metrics, batches, "inc")["stats"]
    assert (stats.read, stats.reused) == (1, 11) and set(read) == {"g1-00008"}
    merge(root, metrics, batches, "full", cache=False)
    assert_same_outputs(root / "inc", root / "full")
    counts = check_results(root / "plan", root / "inc")
    assert counts["failed_by_status"] == {"failed": 12, "missing": 2}
    assert counts["with_results"] == 12 * 3 + 1


def test_a_cache_that_does_not_match_its_manifest_is_not_used(screen):
    root, metrics, _ = screen
    batches = [f"g1-{i:05d}" for i in range(12)]
    write_plan(root / "plan", dict.fromkeys(batches, 4))
    merge(root, metrics, batches, "inc")
    cache = metrics / "merge_cache"
    manifest = json.loads((cache / "manifest.json").read_text())
    assert set(manifest["batches"]) == set(batches)
    # a touched output (Snakemake may) is the same file: the cache holds
    os.utime(root / "inc" / "chain_pairs.parquet", ns=(1, 1))
    assert merge(root, metrics, batches, "inc")["stats"].reused == 12
    # e.g. a merge killed after replacing a cache file, before writing the manifest
    shutil.copyfile(cache / "failures.parquet", cache / "failures.copy")
    os.replace(cache / "failures.copy", cache / "failures.parquet")
    stats = merge(root, metrics, batches, "inc")["stats"]
    assert (stats.read, stats.reused) == (12, 0)
    (cache / "manifest.json").write_text("{not json")
    assert merge(root, metrics, batches, "inc")["stats"].read == 12
    merge(root, metrics, batches, "full", cache=False)
    assert_same_outputs(root / "inc", root / "full")


def test_outputs_are_published_atomically_and_the_cache_survives_their_removal(screen):
    root, metrics, _ = screen
    batches = [f"g1-{i:05d}" for i in range(12)]
    write_plan(root / "plan", dict.fromkeys(batches, 4))
    merge(root, metrics, batches, "inc")
    for name in ("chain_pairs", "interface_residues"):
        (root / "inc" / f"{name}.parquet").unlink()  # as Snakemake does before a re-run
    assert merge(root, metrics, batches, "inc")["stats"].reused == 12
    merge(root, metrics, batches, "full", cache=False)
    assert_same_outputs(root / "inc", root / "full")
    assert not list((root / "inc").glob(".*.tmp")) and not (root / "full" / ".merge").exists()


# ---------------------------------------------------------------------------------------------
# the results check


@pytest.fixture
def merged(tmp_path):
    metrics = tmp_path / "metrics"
    batches = {"g1-00000": 4, "g1-00001": 4}
    for index, batch in enumerate(batches):
        write_batch_tables(screen_batch(batch, index), metrics, batch)
    write_plan(tmp_path / "plan", batches)
    merge_tables(metrics, list(batches), tmp_path / "plan", tmp_path / "results", ANALYSIS, None)
    return tmp_path


def test_check_passes_when_every_complex_is_in_one_place(merged):
    counts = check_results(merged / "plan", merged / "results")
    assert counts["candidates"] == 9 and counts["with_results"] == 6
    assert counts["failed"] == 2 and counts["skipped"] == 1
    assert counts["failed_by_status"] == {"failed": 2}


def test_check_lists_missing_and_duplicated_complexes(merged):
    results = merged / "results"
    complexes = pd.read_parquet(results / "complexes.parquet")
    failures = pd.read_parquet(results / "failures.parquet")
    # g1-00000_c0 lost its rows; g1-00001_c3 (failed) also has results; a row twice
    kept = complexes[complexes["complex_id"] != "g1-00000_c0"]
    extra = kept[kept["complex_id"] == "g1-00001_c0"].assign(complex_id="g1-00001_c3")
    twice = kept.iloc[[0]]
    write_parquet(results / "complexes.parquet", pd.concat([kept, extra, twice]))
    write_parquet(results / "failures.parquet", pd.concat([failures, failures.iloc[[0]]]))
    with pytest.raises(ResultsError) as error:
        check_results(merged / "plan", results)
    text = str(error.value)
    assert "planned but in none of complexes, failures and skipped (1): g1-00000_c0" in text
    # (g1-00000_c3 too: its failures row is there twice)
    assert "in more than one of complexes, failures and skipped (2): g1-00000_c3, g1-00001_c3" in text
    assert f"duplicated rows in complexes.parquet (complex_id, sample) (1): {twice['complex_id'].iloc[0]}" in text
    assert "duplicated rows in failures.parquet (1)" in text
    assert "rows in chain_pairs.parquet without a complexes row (1): g1-00000_c0" in text
    assert "results but not ranked (1): g1-00001_c3" in text
    assert "ranked without results (1): g1-00000_c0" in text


def test_check_finds_unplanned_and_unskipped_complexes(merged):
    write_plan(merged / "plan", {"g1-00000": 4, "g1-00001": 3}, skipped=("S1__S2", "S3__S4"))
    with pytest.raises(ResultsError) as error:
        check_results(merged / "plan", merged / "results")
    text = str(error.value)
    assert "in the results but not a candidate of the plan (1): g1-00001_c3" in text
    assert "planned but in none of complexes, failures and skipped (1): S3__S4" in text
    assert "skipped by the plan but not in skipped.parquet (1): S3__S4" in text


def test_a_planned_complex_without_any_row_becomes_a_missing_failure():
    from foldcp.analyze.merge import add_missing
    from foldcp.analyze.tables import COMPLEX_COLUMNS, FAILURE_COLUMNS

    plan = pd.DataFrame({"complex_id": ["a", "b", "c", "d"], "batch_id": ["g1-0", "g1-0", "g2-0", "g4-0"]})
    complexes = pd.DataFrame([{**dict.fromkeys(COMPLEX_COLUMNS), "complex_id": "a"}])
    failures = pd.DataFrame([{"complex_id": "b", "batch_id": "g1-0", "status": "failed", "error": "x"}],
                            columns=FAILURE_COLUMNS)
    merged = add_missing(failures, complexes, plan, ["g1-0", "g2-0"])
    assert merged.set_index("complex_id")["status"].to_dict() == {"b": "failed", "c": "missing"}
    assert list(merged.columns) == FAILURE_COLUMNS
    assert add_missing(failures, complexes, plan, ["g1-0"]) is failures
