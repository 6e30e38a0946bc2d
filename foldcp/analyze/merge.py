"""Merge per-batch tables into the screen's result tables and the ranking.

Writes into `results_dir`: complexes.parquet, chain_pairs.parquet, interface_residues.parquet,
failures.parquet, skipped.parquet (from the plan), ranked.parquet and ranked.tsv (top N rows).

The large per-pair and per-residue tables are streamed: one pass over the batch files, each
batch appended as a row group, so merging thousands of batches holds one batch in memory.
The complexes table (one row per complex × sample) is merged in memory, since ranking and
the known/novel flag need all of it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from foldcp.analyze.tables import (
    COMPLEX_COLUMNS, FAILURE_COLUMNS, INTERFACE_COLUMNS, PAIR_COLUMNS, SCHEMA_VERSION,
    annotate_known, ranked_table, read_known_interactions,
)
from foldcp.io import atomic_path, write_parquet, write_tsv


def _concat(paths: list[Path], columns: list[str]) -> pd.DataFrame:
    tables = [pq.read_table(p) for p in paths]
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return pd.DataFrame(columns=columns)
    return pa.concat_tables(tables, promote_options="default").to_pandas()


def _versioned(schema: pa.Schema) -> pa.Schema:
    metadata = dict(schema.metadata or {})
    metadata[b"foldcp_schema_version"] = str(SCHEMA_VERSION).encode()
    return schema.with_metadata(metadata)


def _write_versioned(path: Path, frame: pd.DataFrame) -> None:
    """Parquet with the schema version in the file's key-value metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(_versioned(table.schema).metadata), tmp)


def stream_concat(paths: list[Path], columns: list[str], out: Path) -> int:
    """Concatenate Parquet files into `out` in one pass, a row group per non-empty input.

    Column types are unified from the inputs' footers first (a batch whose column is all
    missing has a null type there). Returns the number of rows written.
    """
    schemas = [pq.read_schema(p) for p in paths if pq.ParquetFile(p).metadata.num_rows]
    if not schemas:
        _write_versioned(out, pd.DataFrame(columns=columns))
        return 0
    schema = pa.unify_schemas([s.remove_metadata() for s in schemas], promote_options="permissive")
    schema = _versioned(pa.schema([schema.field(c) for c in columns]))
    rows = 0
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for path in paths:
            table = pq.read_table(path)
            if table.num_rows:
                writer.write_table(table.select(columns).cast(schema))
                rows += table.num_rows
    return rows


def merge_tables(
    metrics_dir: str | Path, batch_ids: list[str], plan_dir: str | Path, results_dir: str | Path,
    analysis: dict, known_interactions: str | None,
) -> dict[str, pd.DataFrame]:
    """Merged tables in `results_dir`; returns the in-memory ones (complexes, failures,
    skipped, ranked) and the row counts of the streamed ones."""
    metrics_dir, results_dir = Path(metrics_dir), Path(results_dir)
    batches = sorted(batch_ids)
    tables = {}
    for name, columns in (("complexes", COMPLEX_COLUMNS), ("failures", FAILURE_COLUMNS)):
        tables[name] = _concat([metrics_dir / f"{batch}.{name}.parquet" for batch in batches], columns)
    tables["failures"] = add_missing(tables["failures"], tables["complexes"],
                                     pd.read_parquet(Path(plan_dir) / "plan.parquet"), batches)
    tables["complexes"] = annotate_known(tables["complexes"], read_known_interactions(known_interactions))
    tables["skipped"] = pd.read_parquet(Path(plan_dir) / "skipped.parquet")
    ranked = ranked_table(tables["complexes"], analysis["confident"])
    tables["ranked"] = ranked
    for name in ("complexes", "failures", "skipped", "ranked"):
        _write_versioned(results_dir / f"{name}.parquet", tables[name])
    for name, columns in (("chain_pairs", PAIR_COLUMNS), ("interface_residues", INTERFACE_COLUMNS)):
        paths = [metrics_dir / f"{batch}.{name}.parquet" for batch in batches]
        tables[f"{name}_rows"] = stream_concat(paths, columns, results_dir / f"{name}.parquet")
    write_tsv(results_dir / "ranked.tsv", ranked.head(analysis["top_n"]))
    return tables


def add_missing(failures: pd.DataFrame, complexes: pd.DataFrame, plan: pd.DataFrame,
                batches: list[str]) -> pd.DataFrame:
    """No planned complex goes silently missing: one that has neither results nor a failure
    row (its batch's status table left it out) becomes a failure with status ``missing``."""
    planned = plan[plan["batch_id"].isin(batches)]
    seen = set(complexes["complex_id"]) | set(failures["complex_id"])
    lost = planned[~planned["complex_id"].isin(seen)]
    if lost.empty:
        return failures
    rows = pd.DataFrame({
        "complex_id": lost["complex_id"], "batch_id": lost["batch_id"], "status": "missing",
        "error": "no result and no failure recorded in its batch's status table"})
    rows = rows[FAILURE_COLUMNS].reset_index(drop=True)
    return rows if failures.empty else pd.concat([failures, rows], ignore_index=True)


def write_batch_tables(tables: dict[str, pd.DataFrame], metrics_dir: str | Path, batch_id: str) -> None:
    for name, frame in tables.items():
        write_parquet(Path(metrics_dir) / f"{batch_id}.{name}.parquet", frame)
