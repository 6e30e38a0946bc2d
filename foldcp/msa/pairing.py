"""Pairing MSA rows of different chains by species.

A hit's species ("pairing key") comes from its header: UniRef ``TaxID=9606``, UniProt
``OX=9606``, or ``foldcp_key=N`` (how foldcp keeps the ``key`` of a Boltz-style CSV row in
an A3M). Rows without one are never paired.

The rule (AlphaFold-Multimer / ColabFold style): for every species found in the MSAs of at
least two different chains, the best hit of that species (its first row: MSAs are ordered
best first) in each of those chains forms one paired row. Other hits of the same species
stay unpaired. The query's own species is already represented by the query row (row 0,
which Boltz always pairs), so a chain's hits of its query's species are left unpaired;
this keeps e.g. human paralogs of two human queries from being paired with each other.

Paired rows are ordered by how many chains they cover (most first), then by the mean rank
of their hits, then by key; at most `max_paired` are kept.
"""

from __future__ import annotations

import re

_KEY_PATTERNS = (
    re.compile(r"(?:^|\s)TaxID=(\d+)(?=\s|$)"),
    re.compile(r"(?:^|\s)OX=(\d+)(?=\s|$)"),
    re.compile(r"(?:^|\s)foldcp_key=(\d+)(?=\s|$)"),
)
# Boltz stores a row's key in an int32 field (MSASequence.taxonomy).
MAX_KEY = 2**31 - 1


def taxonomy_of(header: str) -> int | None:
    """The species (pairing key) named in a FASTA/A3M header, or None."""
    for pattern in _KEY_PATTERNS:
        match = pattern.search(header)
        if match:
            value = int(match.group(1))
            return value if value <= MAX_KEY else None
    return None


def pair_rows(
    keys: list[list[int | None]],
    query_keys: list[int | None] | None = None,
    max_paired: int = 8192,
) -> list[list[int | None]]:
    """Paired rows across units (chains with distinct sequences).

    keys[u][i] is the pairing key of row i of unit u's MSA (row 0, the query, is ignored).
    query_keys[u] is the species of unit u's query, if known. Returns one list per paired
    row, holding for each unit the row index paired in it, or None where that unit has no
    hit of the species (Boltz then fills the slot with an unpaired row of that unit).
    """
    units = len(keys)
    if units < 2 or max_paired <= 0:
        return []
    query_keys = query_keys or [None] * units
    best: list[dict[int, int]] = []
    for unit_keys, query_key in zip(keys, query_keys):
        first: dict[int, int] = {}
        for index, key in enumerate(unit_keys):
            if index == 0 or key is None or key == query_key:
                continue
            first.setdefault(key, index)
        best.append(first)
    candidates = []
    for key in set().union(*best):
        rows = [unit_best.get(key) for unit_best in best]
        present = [r for r in rows if r is not None]
        if len(present) < 2:
            continue
        candidates.append((-len(present), sum(present) / len(present), key, rows))
    candidates.sort(key=lambda c: c[:3])
    return [rows for *_, rows in candidates[:max_paired]]
