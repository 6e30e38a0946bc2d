"""Merge per-batch tables into the screen's result tables and the ranking.

Writes into `results_dir`: complexes.parquet, chain_pairs.parquet, failures.parquet,
skipped.parquet (from the plan), ranked.parquet and ranked.tsv (top N rows).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from foldcp.analyze.tables import (
    COMPLEX_COLUMNS, FAILURE_COLUMNS, PAIR_COLUMNS, SCHEMA_VERSION, annotate_known,
    ranked_table, read_known_interactions,
)
from foldcp.io import atomic_path, write_parquet, write_tsv


def _concat(paths: list[Path], columns: list[str]) -> pd.DataFrame:
    tables = [pq.read_table(p) for p in paths]
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return pd.DataFrame(columns=columns)
    return pa.concat_tables(tables, promote_options="default").to_pandas()


def _write_versioned(path: Path, frame: pd.DataFrame) -> None:
    """Parquet with the schema version in the file's key-value metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[b"foldcp_schema_version"] = str(SCHEMA_VERSION).encode()
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(metadata), tmp)


def merge_tables(
    metrics_dir: str | Path, batch_ids: list[str], plan_dir: str | Path, results_dir: str | Path,
    analysis: dict, known_interactions: str | None,
) -> dict[str, pd.DataFrame]:
    metrics_dir, results_dir = Path(metrics_dir), Path(results_dir)
    tables = {}
    for name, columns in (("complexes", COMPLEX_COLUMNS), ("chain_pairs", PAIR_COLUMNS),
                          ("failures", FAILURE_COLUMNS)):
        paths = [metrics_dir / f"{batch}.{name}.parquet" for batch in sorted(batch_ids)]
        tables[name] = _concat(paths, columns)
    tables["complexes"] = annotate_known(tables["complexes"], read_known_interactions(known_interactions))
    tables["skipped"] = pd.read_parquet(Path(plan_dir) / "skipped.parquet")
    ranked = ranked_table(tables["complexes"], analysis["confident_iptm"])
    tables["ranked"] = ranked
    for name in ("complexes", "chain_pairs", "failures", "skipped", "ranked"):
        _write_versioned(results_dir / f"{name}.parquet", tables[name])
    write_tsv(results_dir / "ranked.tsv", ranked.head(analysis["top_n"]))
    return tables


def write_batch_tables(tables: dict[str, pd.DataFrame], metrics_dir: str | Path, batch_id: str) -> None:
    for name, frame in tables.items():
        write_parquet(Path(metrics_dir) / f"{batch_id}.{name}.parquet", frame)
