"""A complex's MSA input, assembled from the MSAs of its proteins (computed once each).

For every chain entity of the complex foldcp writes one Boltz-style CSV (``key,sequence``)
and names it as that entity's ``msa`` in the Boltz schema, as `boltz predict` does with its
own CSVs (what Boltz then does with the keys: `foldcp.msa.boltz_csv`):

1. The protein's MSA is cut to the chain's residue range (if it has one); rows left with
   no residue, and rows repeating an earlier row's residues, are dropped (Boltz would drop
   the repeats too; dropping them first keeps the depth and pairing counts exact).
2. Heteromers (two or more distinct chain sequences) are paired by species
   (`foldcp.msa.pairing.pair_rows`; the query's own species comes from ``OX=``/``TaxID=`` in
   its FASTA header, else from a hit identical to the whole query): paired row j gets key j
   (1, 2, ...) in every chain that takes part in it; every other row, the query included,
   gets -1. So the rows Boltz puts side by side as paired are exactly these. A homomer's
   copies share one file with every key -1: Boltz then lines up row i of every copy.
3. Depth caps: at most ``msa.max_paired`` paired rows, and at most ``msa.max_seqs`` rows per
   chain in all (query, paired rows, then unpaired rows in the protein MSA's order). Boltz
   2.2.1 lists the paired rows once more among the unpaired ones, so the model's MSA has
   up to ``max_seqs`` + P rows for P paired rows, cut at 16384 by its featurizer (with the
   default 8192 nothing is cut).

Entities with the same sequence share one file (Boltz requires it).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from foldcp.errors import InputError
from foldcp.inputs import Complex, Protein
from foldcp.io import write_text
from foldcp.msa.a3m import ProteinMsa, read_a3m, slice_row
from foldcp.msa.boltz_csv import to_csv
from foldcp.msa.pairing import pair_rows, taxonomy_of


@dataclass
class ChainMsa:
    """The MSA input of one chain entity of a complex."""

    entity: int
    protein_id: str
    path: Path  # the CSV given to Boltz
    rows: int  # rows in the CSV (query included)
    paired: int  # rows with a pairing key
    source_depth: int  # rows of the protein's own MSA
    mode: str  # how the protein's MSA was made (from its record)
    fallback: bool  # the protein had no MSA and runs single-sequence


class MsaStore:
    """The per-protein MSAs of a screen (``{msa_dir}/{ID}.a3m`` and ``{ID}.json``), read
    and checked once per process and kept for the next complex."""

    def __init__(self, msa_dir: str | Path, proteins: dict[str, Protein], keep: int = 64) -> None:
        self.msa_dir = Path(msa_dir)
        self.proteins = proteins
        self.keep = keep
        self._cache: OrderedDict[str, tuple[ProteinMsa, dict]] = OrderedDict()

    def get(self, protein_id: str) -> tuple[ProteinMsa, dict]:
        if protein_id in self._cache:
            self._cache.move_to_end(protein_id)
            return self._cache[protein_id]
        path = self.msa_dir / f"{protein_id}.a3m"
        if not path.exists():
            raise InputError(str(path), 0, f"no MSA for protein {protein_id} (run `foldcp msa` "
                                           f"for it first)")
        msa = read_a3m(path)
        msa.check_query(self.proteins[protein_id].sequence, protein_id)
        record_path = self.msa_dir / f"{protein_id}.json"
        record = json.loads(record_path.read_text()) if record_path.exists() else {}
        self._cache[protein_id] = (msa, record)
        while len(self._cache) > self.keep:
            self._cache.popitem(last=False)
        return msa, record


def _self_key(msa: ProteinMsa) -> int | None:
    """The species of a hit identical to the whole query (the query's own database entry)."""
    query = msa.rows[0].residues
    return next((row.key for row in msa.rows[1:] if row.key is not None and row.residues == query),
                None)


def _unit_rows(msa: ProteinMsa, start: int | None, end: int | None) -> list[tuple[str, int | None]]:
    """(sequence, key) rows of one chain: cut to its range, empty and repeated rows dropped."""
    rows = msa.rows
    if start is not None:
        sliced = [(slice_row(r.sequence, start, end), r.key) for r in rows]
    else:
        sliced = [(r.sequence, r.key) for r in rows]
    query = sliced[0][0]
    kept = [(query, None)]
    seen = {query.upper()}
    for sequence, key in sliced[1:]:
        residues = sequence.replace("-", "").upper()
        if residues and residues not in seen:
            seen.add(residues)
            kept.append((sequence, key))
    return kept


def assemble(
    complex_: Complex,
    proteins: dict[str, Protein],
    store: MsaStore,
    settings: dict,
    out_dir: str | Path,
) -> list[ChainMsa]:
    """Write one CSV per chain entity of `complex_` under `out_dir`; one ChainMsa each."""
    out_dir = Path(out_dir)
    max_seqs = settings["max_seqs"]
    max_paired = min(settings["max_paired"], max_seqs - 1)
    units: OrderedDict[str, list[int]] = OrderedDict()
    for entity, chain in enumerate(complex_.chains):
        units.setdefault(chain.residues(proteins), []).append(entity)
    unit_rows, query_keys, sources = [], [], []
    for entities in units.values():
        chain = complex_.chains[entities[0]]
        msa, record = store.get(chain.protein_id)
        unit_rows.append(_unit_rows(msa, chain.start, chain.end))
        query_keys.append(taxonomy_of(proteins[chain.protein_id].description) or _self_key(msa))
        sources.append((msa, record))
    paired = []
    if settings["pairing"] == "taxonomy":
        paired = pair_rows([[key for _, key in rows] for rows in unit_rows], query_keys,
                           max_paired)
    result = []
    for u, (entities, rows) in enumerate(zip(units.values(), unit_rows)):
        out = [(-1, rows[0][0])]
        used = {0}
        for j, pair in enumerate(paired, start=1):
            if pair[u] is not None:
                out.append((j, rows[pair[u]][0]))
                used.add(pair[u])
        n_paired = len(out) - 1
        for index, (sequence, _) in enumerate(rows):
            if len(out) >= max_seqs:
                break
            if index not in used:
                out.append((-1, sequence))
        chain = complex_.chains[entities[0]]
        path = out_dir / f"{u}_{chain.protein_id}.csv"
        write_text(path, to_csv(out))
        msa, record = sources[u]
        for entity in entities:
            result.append(ChainMsa(
                entity=entity, protein_id=complex_.chains[entity].protein_id, path=path,
                rows=len(out), paired=n_paired, source_depth=msa.depth,
                mode=record.get("mode", "unknown"), fallback=bool(record.get("fallback", False)),
            ))
    return sorted(result, key=lambda c: c.entity)
