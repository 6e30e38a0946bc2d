"""Which predictions to export (config section ``export``), from the merged result tables.

Reads only these columns, so new analysis columns never break it:
- ranked.parquet:    complex_id, rank, confident (one row per complex: its best sample)
- complexes.parquet: complex_id, sample, best_sample, iptm, ptm, complex_plddt, untrained,
                     model_path, pae_path, plddt_path (one row per complex x sample)

Selection, in this order:
1. ``confident_only``: keep complexes whose ``confident`` is true (the best sample
   meeting every ``analysis.confident`` threshold);
2. ``top_n``: keep the N best-ranked of those (null: all);
3. ``samples``: ``best`` exports each kept complex's best sample, ``all`` every sample.

Returns one row per model to export, ordered by rank then sample.
"""

from __future__ import annotations

import pandas as pd

RANKED_COLUMNS = ["complex_id", "rank", "confident"]
SAMPLE_COLUMNS = [
    "complex_id", "sample", "best_sample", "iptm", "ptm", "complex_plddt", "untrained",
    "model_path", "pae_path", "plddt_path",
]
SELECTED_COLUMNS = RANKED_COLUMNS + SAMPLE_COLUMNS[1:]


def select_models(ranked: pd.DataFrame, complexes: pd.DataFrame, settings: dict) -> pd.DataFrame:
    """Rows of `complexes` to export (plus rank and confident), per the ``export`` settings."""
    missing = [c for c in RANKED_COLUMNS if c not in ranked.columns]
    missing += [c for c in SAMPLE_COLUMNS if c not in complexes.columns]
    if missing:
        raise ValueError(f"result tables lack the column(s) {missing}")
    kept = ranked[RANKED_COLUMNS].sort_values(["rank", "complex_id"])
    if settings["confident_only"]:
        kept = kept.loc[kept["confident"].astype(bool)]
    if settings["top_n"] is not None:
        kept = kept.head(settings["top_n"])
    samples = complexes[SAMPLE_COLUMNS]
    if settings["samples"] == "best":
        samples = samples.loc[samples["best_sample"].astype(bool)]
    selected = kept.merge(samples, on="complex_id", how="inner", validate="one_to_many")
    selected = selected.sort_values(["rank", "sample"], kind="stable").reset_index(drop=True)
    selected["rank"] = selected["rank"].astype(int)
    selected["sample"] = selected["sample"].astype(int)
    return selected[SELECTED_COLUMNS]
