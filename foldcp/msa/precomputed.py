"""``msa.mode: precomputed``: one MSA file per protein ID in a folder.

The file is ``{dir}/{ID}.a3m``, ``{ID}.a3m.gz`` or ``{ID}.csv`` (Boltz-style
``key,sequence``); its first row must be the protein's sequence. Two files for one ID are
an error (which one was meant?). No file means the protein has no MSA (``msa.missing``
decides what then happens).
"""

from __future__ import annotations

from pathlib import Path

from foldcp.errors import InputError
from foldcp.msa.a3m import ProteinMsa, read_a3m
from foldcp.msa.boltz_csv import read_csv

SUFFIXES = (".a3m", ".a3m.gz", ".csv")


def find_msa_file(directory: str | Path, protein_id: str) -> Path | None:
    directory = Path(directory)
    found = [directory / f"{protein_id}{s}" for s in SUFFIXES if (directory / f"{protein_id}{s}").is_file()]
    if len(found) > 1:
        raise InputError(str(directory), 0, f"more than one MSA file for {protein_id}: "
                                            f"{', '.join(p.name for p in found)}; keep one")
    return found[0] if found else None


def read_msa_file(path: str | Path, protein_id: str) -> ProteinMsa:
    path = Path(path)
    if path.name.endswith(".csv"):
        return read_csv(path, name=f"{protein_id}_row")
    return read_a3m(path)


def check_folder(settings: dict, protein_ids) -> None:
    """Before a screen starts: with ``msa.missing: error`` every protein needs a file."""
    from foldcp.errors import FoldcpError

    directory = Path(settings["precomputed"]["dir"])
    if not directory.is_dir():
        raise FoldcpError(f"msa.precomputed.dir {directory}: no such folder")
    if settings["missing"] != "error":
        return
    missing = sorted(p for p in set(protein_ids) if find_msa_file(directory, p) is None)
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise FoldcpError(
            f"msa.precomputed.dir {directory} has no MSA (ID.a3m, ID.a3m.gz or ID.csv) for "
            f"{len(missing)} protein(s) of the screen: {shown}; add them or set "
            f"msa.missing: single_sequence"
        )
