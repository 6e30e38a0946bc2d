"""Streaming merge of many per-batch tables: one pass, a row group per batch, types unified."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from foldcp.analyze.merge import stream_concat
from foldcp.analyze.tables import PAIR_COLUMNS
from foldcp.io import write_parquet


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


def test_many_batches_stream_into_one_file(tmp_path):
    rng = np.random.default_rng(0)
    paths, frames = [], []
    for batch in range(400):
        rows = 0 if batch % 10 == 0 else int(rng.integers(1, 6))
        frame = batch_frame(batch, rows, rng) if rows else pd.DataFrame(columns=PAIR_COLUMNS)
        path = tmp_path / f"b{batch:04d}.chain_pairs.parquet"
        write_parquet(path, frame)
        paths.append(path)
        frames.append(frame)
    out = tmp_path / "chain_pairs.parquet"
    written = stream_concat(paths, PAIR_COLUMNS, out)
    expected = pd.concat([f for f in frames if len(f)], ignore_index=True)
    assert written == len(expected)
    meta = pq.ParquetFile(out).metadata
    assert meta.num_row_groups == sum(1 for f in frames if len(f))
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
