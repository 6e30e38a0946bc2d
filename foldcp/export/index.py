"""The export index: one row per exported model, in the spirit of AlphaFold DB's metadata.

``{export}/index.parquet`` (written last: its presence means the export is complete); the
columns are documented in README.md. Lists (``proteins``, ``accessions``, ``copies``,
``sequence_crc64``) have one item per entity (distinct chain sequence), in the entity order
of the ModelCIF file. Paths are relative to the folder of the index, so the export folder
can be moved or published as a whole. The Parquet metadata carries
``foldcp_export_schema_version``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from foldcp.export.entities import ExportEntity
from foldcp.io import atomic_path

SCHEMA_VERSION = 1
SCHEMA = pa.schema([
    ("entry_id", pa.string()),
    ("complex_id", pa.string()),
    ("sample", pa.int64()),
    ("rank", pa.int64()),
    ("best_sample", pa.bool_()),
    ("chains", pa.string()),
    ("num_chains", pa.int64()),
    ("residues", pa.int64()),
    ("proteins", pa.list_(pa.string())),
    ("accessions", pa.list_(pa.string())),
    ("copies", pa.list_(pa.int64())),
    ("sequence_crc64", pa.list_(pa.string())),
    ("iptm", pa.float64()),
    ("ptm", pa.float64()),
    ("complex_plddt", pa.float64()),
    ("confident", pa.bool_()),
    ("untrained", pa.bool_()),
    ("model_path", pa.string()),
    ("pae_path", pa.string()),
    ("source_model_path", pa.string()),
    ("foldcp_version", pa.string()),
    ("boltz_version", pa.string()),
    ("checkpoint_sha256", pa.string()),
    ("created", pa.timestamp("us", tz="UTC")),
])
INDEX_COLUMNS = SCHEMA.names


def index_row(
    entry_id: str, selected, manifest: dict, entities: list[ExportEntity], index_dir: Path,
    model_path: Path, pae_path: Path | None, boltz_version: str, created: datetime,
) -> dict:
    """One index row. `selected` is the model's row of the selection (select.py)."""
    def relative(path: Path | None) -> str | None:
        return None if path is None else Path(path).resolve().relative_to(index_dir.resolve()).as_posix()

    accessions = [e.accession.accession if e.accession else None for e in entities]
    return {
        "entry_id": entry_id,
        "complex_id": selected.complex_id,
        "sample": int(selected.sample),
        "rank": int(selected.rank),
        "best_sample": bool(selected.best_sample),
        "chains": manifest["spec"],
        "num_chains": len(manifest["chains"]),
        "residues": int(manifest["tokens"]),
        "proteins": [e.protein.id for e in entities],
        "accessions": accessions,
        "copies": [len(e.chains) for e in entities],
        "sequence_crc64": [e.crc64 for e in entities],
        "iptm": float(selected.iptm),
        "ptm": float(selected.ptm),
        "complex_plddt": float(selected.complex_plddt),
        "confident": bool(selected.confident),
        "untrained": bool(selected.untrained),
        "model_path": relative(model_path),
        "pae_path": relative(pae_path),
        "source_model_path": str(selected.model_path),
        "foldcp_version": manifest.get("foldcp_version", ""),
        "boltz_version": boltz_version,
        "checkpoint_sha256": manifest.get("checkpoint", {}).get("sha256") or "",
        "created": created,
    }


def write_index(path: str | Path, rows: list[dict]) -> pd.DataFrame:
    """Write the index atomically (fixed schema, also when empty); return it as a frame."""
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    metadata = {b"foldcp_export_schema_version": str(SCHEMA_VERSION).encode()}
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(metadata), tmp)
    return table.to_pandas()


def read_index(path: str | Path) -> pd.DataFrame | None:
    """A previous index, or None if there is none (or it cannot be read)."""
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError):
        return None
