"""MSAs: one per protein, computed once and reused by every complex containing it.

Modes (config ``msa.mode``): ``none`` (single sequence). The file written per protein is an
A3M whose only row is the query, so downstream steps always find one MSA per protein.
"""

from __future__ import annotations

from pathlib import Path

from foldcp.inputs import read_fasta
from foldcp.io import write_text


def write_msa(config: dict, protein_id: str, out: str | Path) -> None:
    proteins = read_fasta(config["proteins"])
    if protein_id not in proteins:
        raise KeyError(f"protein {protein_id!r} is not in {config['proteins']}")
    mode = config["msa"]["mode"]
    if mode == "none":
        write_text(out, f">{protein_id}\n{proteins[protein_id].sequence}\n")
        return
    raise ValueError(f"msa.mode {mode!r} is not supported")
