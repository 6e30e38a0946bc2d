"""Merge per-batch tables into the screen's result tables and the ranking.

Writes into `results_dir`: complexes.parquet, chain_pairs.parquet, interface_residues.parquet,
failures.parquet, skipped.parquet (from the plan), ranked.parquet and ranked.tsv (top N rows).

Rows are in batch order (sorted batch IDs), each batch's rows together, and the files' row
groups hold whole batches (a new row group starts once ROW_GROUP_ROWS rows are buffered), so
the files depend only on the batches' tables. The large per-pair and per-residue tables
are streamed: merging thousands of batches holds about one row group in memory. The
complexes table (one row per complex × sample) is merged in memory, since ranking and the
known/novel flag need all of it.

Incremental merge (`cache_dir`): the cache holds the previous merge's concatenated tables and
a manifest of the batch files they came from (size, mtime, inode), each batch's rows (first
row, count) and its schema. A merge reads only the batch tables that are new or
changed since; unchanged batches come from the cache, removed ones are dropped; the outputs
are the same as a full merge's (tests/unit/test_merge.py). A cache that does not match its
manifest (a merge killed midway, files edited) is ignored: the merge reads everything. The
manifest is written last, every file atomically.

The outputs are written complete into `{results}/.merge-staging/`, then renamed into place
together (and a previous `check.json`, which vouched for the old tables, removed): a merge
that fails (disk full, killed) leaves the previous outputs as they were.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from foldcp.analyze.tables import (
    COMPLEX_COLUMNS,
    FAILURE_COLUMNS,
    INTERFACE_COLUMNS,
    PAIR_COLUMNS,
    SCHEMA_VERSION,
    annotate_known,
    ranked_table,
    read_known_interactions,
)
from foldcp.io import atomic_path, output_error, write_json, write_parquet, write_tsv

#: merged tables: name -> columns, in the order the per-batch files are named
TABLES = {
    "complexes": COMPLEX_COLUMNS,
    "failures": FAILURE_COLUMNS,
    "chain_pairs": PAIR_COLUMNS,
    "interface_residues": INTERFACE_COLUMNS,
}
STREAMED = ("chain_pairs", "interface_residues")  # outputs = the cache's files
ROW_GROUP_ROWS = 1 << 17
CACHE_VERSION = 2
MANIFEST = "manifest.json"


def _versioned(schema: pa.Schema) -> pa.Schema:
    metadata = dict(schema.metadata or {})
    metadata[b"foldcp_schema_version"] = str(SCHEMA_VERSION).encode()
    return schema.with_metadata(metadata)


def _write_versioned(path: Path, frame: pd.DataFrame) -> None:
    """Parquet with the schema version in the file's key-value metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(_versioned(table.schema).metadata), tmp)


def _unify(schemas: list[pa.Schema], columns: list[str]) -> pa.Schema:
    """One schema for the merged table: the inputs' types unified (a batch whose column is
    all missing has a null type there), in the table's column order."""
    if not schemas:
        return pa.schema([pa.field(c, pa.null()) for c in columns])
    schema = pa.unify_schemas(schemas, promote_options="permissive")
    return pa.schema([schema.field(c) for c in columns])


def stream_concat(paths: list[Path], columns: list[str], out: Path) -> int:
    """Concatenate Parquet files into `out` in one pass (row groups of whole inputs, a new one
    once ROW_GROUP_ROWS rows are buffered). Returns the number of rows written."""
    sources = [_Source(batch=str(p), path=Path(p)) for p in paths]
    for source in sources:
        source.inspect()
    with atomic_path(out) as tmp:
        _write_stream(tmp, sources, "table", columns, None)
    return sum(s.rows["table"] for s in sources)


# ---------------------------------------------------------------------------------------------
# batch sources: a per-batch file, or the batch's rows in the cache


@dataclass
class _Source:
    """One batch's rows of every table: read from its files, or taken from the cache."""

    batch: str
    path: Path | None = None  # stream_concat: the single table's file
    files: dict[str, Path] = field(default_factory=dict)
    signature: dict[str, list[int]] = field(default_factory=dict)
    cached: dict | None = None  # the manifest entry when the cache has this batch as it is
    rows: dict[str, int] = field(default_factory=dict)
    schema: dict[str, str] = field(default_factory=dict)  # serialized schema (base64)

    def file(self, table: str) -> Path:
        return self.path if self.path is not None else self.files[table]

    def inspect(self, tables=("table",)) -> None:
        """Row count and schema of each of the batch's files (footers only)."""
        for table in tables:
            meta = pq.ParquetFile(self.file(table))
            self.rows[table] = meta.metadata.num_rows
            self.schema[table] = _schema_key(meta.schema_arrow) if self.rows[table] else ""


def _schema_key(schema: pa.Schema) -> str:
    return base64.b64encode(schema.remove_metadata().serialize().to_pybytes()).decode()


def _schema_of(key: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(key)))


def _signature(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino]


def _cache_signature(path: Path) -> list:
    """A cache file's identity without its mtime: the published outputs are hard links to
    the cache's files, and Snakemake may touch its outputs. Size, inode and a digest of the
    last 64 KiB (the Parquet footer, new on every write)."""
    stat = path.stat()
    with open(path, "rb") as handle:
        handle.seek(max(0, stat.st_size - (1 << 16)))
        tail = hashlib.sha256(handle.read()).hexdigest()
    return [stat.st_size, stat.st_ino, tail]


def _starts(sources: list[_Source], table: str) -> list[int]:
    """First row of each source's rows in the merged table."""
    starts, total = [], 0
    for source in sources:
        starts.append(total)
        total += source.rows[table]
    return starts


class _CacheReader:
    """Rows of a cached table by position, for requests in increasing order: each row group
    is read once."""

    def __init__(self, path: Path | None) -> None:
        self.file = pq.ParquetFile(path) if path is not None else None
        self.bounds = []  # (first row, end row) of each row group
        if self.file is not None:
            first = 0
            for group in range(self.file.metadata.num_row_groups):
                end = first + self.file.metadata.row_group(group).num_rows
                self.bounds.append((first, end))
                first = end
        self.window = (0, 0, None)  # rows [first, end) loaded as a table

    def rows(self, start: int, count: int) -> pa.Table:
        first, end, table = self.window
        if not (first <= start and start + count <= end):
            groups = [g for g, (lo, hi) in enumerate(self.bounds) if lo < start + count and hi > start]
            table = self.file.read_row_groups(groups)
            first, end = self.bounds[groups[0]][0], self.bounds[groups[-1]][1]
            self.window = (first, end, table)
        return table.slice(start - first, count)


def _read_batch_file(path: Path) -> pa.Table:
    """One per-batch table (single-threaded: ~4x faster than pq.read_table on small files)."""
    return pq.ParquetFile(path).read(use_threads=False)


def _pieces(sources: list[_Source], table: str, cache: _CacheReader | None):
    """Each source's rows of `table` (None for none), in order."""
    for source in sources:
        if not source.rows[table]:
            yield None
        elif source.cached is not None:
            start, count = source.cached["rows"][table]
            yield cache.rows(start, count)
        else:
            yield _read_batch_file(source.file(table))


def _write_stream(tmp: Path, sources, table, columns, cache) -> None:
    """Write the sources' rows of `table` into `tmp`: row groups of whole sources, a new
    one once ROW_GROUP_ROWS rows are buffered."""
    keys = list(dict.fromkeys(s.schema[table] for s in sources if s.rows[table]))
    schema = _versioned(_unify([_schema_of(k) for k in keys], columns))
    buffered, count = [], 0
    with pq.ParquetWriter(tmp, schema) as writer:
        for piece in _pieces(sources, table, cache):
            if piece is None:
                continue
            if count >= ROW_GROUP_ROWS:
                writer.write_table(pa.concat_tables(buffered), row_group_size=count)
                buffered, count = [], 0
            buffered.append(piece.select(columns).cast(schema))
            count += piece.num_rows
        if buffered:
            writer.write_table(pa.concat_tables(buffered), row_group_size=count)


# ---------------------------------------------------------------------------------------------
# the merge


@dataclass
class MergeStats:
    batches: int = 0
    read: int = 0  # batches whose tables were read from metrics_dir
    reused: int = 0  # batches taken from the cache
    rows: dict[str, int] = field(default_factory=dict)


def _load_manifest(cache_dir: Path | None) -> dict:
    """The cache's manifest if it matches its files and this foldcp, else {}."""
    if cache_dir is None:
        return {}
    try:
        manifest = json.loads((cache_dir / MANIFEST).read_text())
        if (manifest.get("version") != CACHE_VERSION
                or manifest.get("schema_version") != SCHEMA_VERSION
                or manifest.get("columns") != TABLES):
            return {}
        for name in TABLES:
            if _cache_signature(cache_dir / f"{name}.parquet") != manifest["tables"][name]:
                return {}
        return manifest
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _publish(cache_file: Path, out: Path) -> None:
    """`out` becomes the cache's file: a hard link where the file system allows it, else a
    copy; either way atomically."""
    with atomic_path(out) as tmp:
        try:
            tmp.unlink()
            os.link(cache_file, tmp)
        except OSError:
            shutil.copyfile(cache_file, tmp)


def merge_tables(
    metrics_dir: str | Path, batch_ids: list[str], plan_dir: str | Path, results_dir: str | Path,
    analysis: dict, known_interactions: str | None, cache_dir: str | Path | None = None,
) -> dict:
    """Merged tables in `results_dir`; returns the in-memory ones (complexes, failures,
    skipped, ranked), the row counts of the streamed ones and `stats` (MergeStats).

    With `cache_dir`, reads only the batch tables that are new or changed since the cache's
    merge (see the module docstring)."""
    metrics_dir, results_dir = Path(metrics_dir), Path(results_dir)
    cache_dir = Path(cache_dir) if cache_dir is not None else None
    manifest = _load_manifest(cache_dir)
    known_batches = manifest.get("batches", {})
    sources = []
    for batch in sorted(batch_ids):
        source = _Source(batch, files={t: metrics_dir / f"{batch}.{t}.parquet" for t in TABLES})
        source.signature = {t: _signature(p) for t, p in source.files.items()}
        entry = known_batches.get(batch)
        if entry is not None and entry["files"] == source.signature:
            source.cached = entry
            source.rows = {t: entry["rows"][t][1] for t in TABLES}
            source.schema = {t: manifest["schemas"][t][entry["schema"][t]] if entry["schema"][t] >= 0
                             else "" for t in TABLES}
        else:
            source.inspect(TABLES)
        sources.append(source)
    stats = MergeStats(batches=len(sources), reused=sum(s.cached is not None for s in sources))
    stats.read = stats.batches - stats.reused
    work = cache_dir if cache_dir is not None else results_dir / ".merge"
    starts = {t: _starts(sources, t) for t in TABLES}
    new_cache = {}
    for name, columns in TABLES.items():
        reader = _CacheReader(cache_dir / f"{name}.parquet" if stats.reused else None)
        with atomic_path(work / f"{name}.parquet.new") as tmp:
            _write_stream(tmp, sources, name, columns, reader)
        new_cache[name] = work / f"{name}.parquet.new"
        stats.rows[name] = sum(s.rows[name] for s in sources)

    # every output is written complete into a staging folder first, then renamed into place
    # together: a merge that fails (disk full, killed) leaves the previous outputs as they were
    staging = results_dir / ".merge-staging"
    shutil.rmtree(staging, ignore_errors=True)
    tables: dict = {}
    for name in ("complexes", "failures"):
        frame = pq.read_table(new_cache[name]).to_pandas()
        tables[name] = frame if len(frame) else pd.DataFrame(columns=TABLES[name])
    # planned complexes with neither results nor a failure row: failures with status `missing`
    # (from the plan, after the batch tables: the same for a full and an incremental merge)
    tables["failures"] = add_missing(
        tables["failures"], tables["complexes"],
        pd.read_parquet(Path(plan_dir) / "plan.parquet", columns=["complex_id", "batch_id"]),
        [s.batch for s in sources])
    tables["complexes"] = annotate_known(tables["complexes"], read_known_interactions(known_interactions))
    tables["skipped"] = pd.read_parquet(Path(plan_dir) / "skipped.parquet")
    ranked = ranked_table(tables["complexes"], analysis["confident"])
    tables["ranked"] = ranked
    for name in ("complexes", "failures", "skipped", "ranked"):
        _write_versioned(staging / f"{name}.parquet", tables[name])
    write_tsv(staging / "ranked.tsv", ranked.head(analysis["top_n"]))
    for name in STREAMED:
        _publish(new_cache[name], staging / f"{name}.parquet")
        tables[f"{name}_rows"] = stats.rows[name]
    try:
        (results_dir / "check.json").unlink(missing_ok=True)  # it vouched for the old tables
        for path in sorted(staging.iterdir()):
            os.replace(path, results_dir / path.name)
        staging.rmdir()
        # the new cache: its files, then the manifest that vouches for them
        for name, path in new_cache.items():
            os.replace(path, work / f"{name}.parquet")
    except OSError as exc:
        raise output_error(results_dir, exc) from exc
    if cache_dir is not None:
        schemas = {t: list(dict.fromkeys(s.schema[t] for s in sources if s.schema[t])) for t in TABLES}
        write_json(cache_dir / MANIFEST, {
            "version": CACHE_VERSION,
            "schema_version": SCHEMA_VERSION,
            "columns": TABLES,
            "tables": {t: _cache_signature(cache_dir / f"{t}.parquet") for t in TABLES},
            "schemas": schemas,
            "batches": {
                s.batch: {
                    "files": s.signature,
                    "rows": {t: [starts[t][i], s.rows[t]] for t in TABLES},
                    "schema": {t: schemas[t].index(s.schema[t]) if s.schema[t] else -1 for t in TABLES},
                }
                for i, s in enumerate(sources)
            },
        })
    else:
        shutil.rmtree(work, ignore_errors=True)
    tables["stats"] = stats
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
