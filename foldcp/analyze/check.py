"""The results check: every candidate complex ends in exactly one place.

A candidate is either planned (plan/plan.parquet) or skipped (plan/skipped.parquet). After
the merge, each planned complex must have result rows (complexes.parquet, one best sample)
or one failures.parquet row (a complex its batch's status table left out is one with status
`missing`, added by the merge), and each skipped one a skipped.parquet row, never two of these
and nothing for complexes that were not candidates. The other tables must agree: one ranked
row per complex with results, chain pairs and interface residues only of result rows, and no
duplicated rows anywhere. `check_results` returns the counts or raises ResultsError listing
the offending complex IDs; the workflow runs it last (rule `check_results`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from foldcp.errors import FoldcpError

SHOWN = 20  # IDs listed per problem


class ResultsError(FoldcpError):
    """The result tables do not account for every candidate exactly once."""


def _ids(values) -> str:
    values = sorted(set(values))
    shown = ", ".join(values[:SHOWN])
    return shown + (f", … ({len(values) - SHOWN} more)" if len(values) > SHOWN else "")


def _key_codes(path: Path, keys: list[str]) -> tuple[list[np.ndarray], list]:
    """Each key column of a table as integer codes (strings dictionary-encoded), and the
    complex IDs the codes of `complex_id` (the first key) stand for. Integer arrays keep the
    check of a table of millions of rows to a few hundred MB."""
    schema = pq.read_schema(path)
    strings = [k for k in keys if pa.types.is_string(schema.field(k).type)
               or pa.types.is_large_string(schema.field(k).type)]
    table = pq.read_table(path, columns=keys, read_dictionary=strings).unify_dictionaries()
    codes, ids = [], []
    for key in keys:
        column = table[key]
        if key in strings:
            codes.append(np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in column.chunks]
                                        or [np.zeros(0, np.int32)]).astype(np.int64))
            if key == keys[0]:
                ids = column.chunks[0].dictionary.to_pylist() if column.num_chunks else []
        else:
            codes.append(column.to_numpy().astype(np.int64))
    return codes, ids


def _repeated(codes: list[np.ndarray]) -> np.ndarray:
    """Row indices of rows equal on every code to the row before them, in sorted order."""
    order = np.lexsort(codes[::-1])
    same = np.ones(len(order) - 1, dtype=bool) if len(order) else np.zeros(0, bool)
    for code in codes:
        sorted_code = code[order]
        same &= sorted_code[1:] == sorted_code[:-1]
    return order[1:][same]


def _column(path: Path, columns: list[str]) -> pd.DataFrame:
    return pq.read_table(path, columns=columns).to_pandas()


def check_results(plan_dir: str | Path, results_dir: str | Path) -> dict:
    """Counts of the check, or ResultsError naming every problem (with up to 20 IDs each)."""
    plan_dir, results_dir = Path(plan_dir), Path(results_dir)
    plan = _column(plan_dir / "plan.parquet", ["complex_id"])["complex_id"]
    planned_skip = _column(plan_dir / "skipped.parquet", ["complex_id"])["complex_id"]
    complexes = _column(results_dir / "complexes.parquet", ["complex_id", "sample", "best_sample"])
    failure_rows = _column(results_dir / "failures.parquet", ["complex_id", "status"])
    failures = failure_rows["complex_id"]
    skipped = _column(results_dir / "skipped.parquet", ["complex_id"])["complex_id"]
    ranked = _column(results_dir / "ranked.parquet", ["complex_id"])["complex_id"]
    problems = []

    def problem(text: str, ids) -> None:
        ids = list(ids)
        if ids:
            problems.append(f"{text} ({len(set(ids))}): {_ids(ids)}")

    # the plan itself
    problem("planned more than once", plan[plan.duplicated()])
    problem("both planned and skipped by the plan", set(plan) & set(planned_skip))
    # where each candidate ended
    with_results = set(complexes["complex_id"])
    places = pd.concat([pd.Series(sorted(with_results), dtype=object), failures, skipped],
                       ignore_index=True)
    counts = places.value_counts()
    candidates = set(plan) | set(planned_skip)
    problem("in more than one of complexes, failures and skipped", counts.index[counts > 1])
    problem("planned but in none of complexes, failures and skipped", candidates - set(counts.index))
    problem("in the results but not a candidate of the plan", set(counts.index) - candidates)
    problem("skipped in the results but planned", set(skipped) & set(plan))
    problem("skipped by the plan but not in skipped.parquet", set(planned_skip) - set(skipped))
    # within the tables
    problem("duplicated rows in complexes.parquet (complex_id, sample)",
            complexes.loc[complexes.duplicated(["complex_id", "sample"]), "complex_id"])
    best = complexes.groupby("complex_id")["best_sample"].sum()
    problem("not exactly one best_sample", best.index[best != 1])
    problem("duplicated rows in failures.parquet", failures[failures.duplicated()])
    problem("duplicated rows in skipped.parquet", skipped[skipped.duplicated()])
    problem("ranked more than once", ranked[ranked.duplicated()])
    problem("ranked without results", set(ranked) - with_results)
    problem("results but not ranked", with_results - set(ranked))
    samples = set(zip(complexes["complex_id"], complexes["sample"].astype(int)))
    rows = {"complexes": len(complexes)}
    for name, keys in (("chain_pairs", ["complex_id", "sample", "chain_a", "chain_b"]),
                       ("interface_residues",
                        ["complex_id", "sample", "chain", "partner_chain", "residue_index"])):
        path = results_dir / f"{name}.parquet"
        rows[name] = pq.ParquetFile(path).metadata.num_rows
        if not rows[name]:
            continue
        codes, ids = _key_codes(path, keys)
        problem(f"duplicated rows in {name}.parquet ({', '.join(keys[2:])})",
                (ids[i] for i in codes[0][_repeated(codes)]))
        width = int(codes[1].max()) + 1
        pairs = np.unique(codes[0] * width + codes[1])
        problem(f"rows in {name}.parquet without a complexes row",
                (ids[c] for c, sample in zip(pairs // width, pairs % width)
                 if (ids[c], int(sample)) not in samples))
    if problems:
        raise ResultsError(
            f"the results in {results_dir} do not account for every complex of the plan in "
            f"{plan_dir} exactly once:\n  " + "\n  ".join(problems))
    return {
        "candidates": len(candidates),
        "planned": len(plan),
        "with_results": len(with_results),
        "failed": len(failures),
        # e.g. failed, out_of_memory, corrupt_output, missing (planned, but its batch's status
        # table has no row for it: the merge records it as a failure)
        "failed_by_status": {str(k): int(v) for k, v in
                             sorted(failure_rows["status"].value_counts().items())},
        "skipped": len(skipped),
        "rows": rows,
    }

