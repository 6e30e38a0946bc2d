"""Analysis: per-batch result tables, merging, ranking."""
