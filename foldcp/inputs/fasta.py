"""Protein FASTA reading with errors that name the file and line.

A header is either UniProt style (``>sp|P00648|RNBR_BACAM Barnase ...`` → ID ``P00648``)
or plain (``>my_protein some description`` → ID ``my_protein``). Sequences may span lines;
letters are case-insensitive and must be one of the 20 amino acids or ``X``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from foldcp.errors import InputError

AMINO_ACIDS = frozenset("ACDEFGHIKLMNPQRSTVWY")
ALLOWED_RESIDUES = AMINO_ACIDS | {"X"}
_UNIPROT_HEADER = re.compile(r"^(sp|tr)\|([A-Za-z0-9_.-]+)\|(\S+)")
# IDs end up in file names, Snakemake wildcards and Boltz record names.
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Protein:
    """One protein: its ID (UniProt accession where the header has one) and sequence."""

    id: str
    sequence: str
    description: str = ""
    accession: str | None = None
    entry_name: str | None = None

    def __len__(self) -> int:
        return len(self.sequence)


def parse_header(header: str, path: str, line: int) -> tuple[str, str | None, str | None, str]:
    """Split a FASTA header (without ``>``) into (id, accession, entry name, description)."""
    header = header.strip()
    if not header:
        raise InputError(path, line, "empty FASTA header: expected '>ID description'")
    match = _UNIPROT_HEADER.match(header)
    if match:
        accession, entry_name = match.group(2), match.group(3)
        return accession, accession, entry_name, header[match.end():].strip()
    identifier, _, description = header.partition(" ")
    if not _SAFE_ID.match(identifier):
        raise InputError(
            path, line,
            f"protein ID {identifier!r} has characters other than letters, digits, '_', '.', '-'",
        )
    return identifier, None, None, description.strip()


def read_fasta(path: str | Path) -> dict[str, Protein]:
    """Read proteins from a FASTA file, in file order, keyed by ID.

    Raises InputError naming the line for: text before the first header, duplicate IDs,
    empty sequences, and residue letters outside the 20 amino acids + X.
    """
    path = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InputError(path, 0, f"cannot read FASTA file: {exc.strerror}") from exc
    proteins: dict[str, Protein] = {}
    header_line = {}
    current: tuple[str, str | None, str | None, str, int] | None = None
    chunks: list[str] = []

    def finish() -> None:
        if current is None:
            return
        identifier, accession, entry_name, description, line = current
        sequence = "".join(chunks)
        if not sequence:
            raise InputError(path, line, f"protein {identifier!r} has an empty sequence")
        proteins[identifier] = Protein(identifier, sequence, description, accession, entry_name)

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            finish()
            identifier, accession, entry_name, description = parse_header(line[1:], path, number)
            if identifier in header_line:
                raise InputError(
                    path, number,
                    f"duplicate protein ID {identifier!r} (first defined on line "
                    f"{header_line[identifier]})",
                )
            header_line[identifier] = number
            current = (identifier, accession, entry_name, description, number)
            chunks = []
            continue
        if current is None:
            raise InputError(path, number, "sequence before the first '>' header")
        letters = line.replace(" ", "").upper()
        for column, letter in enumerate(letters, start=1):
            if letter not in ALLOWED_RESIDUES:
                position = sum(len(c) for c in chunks) + column
                raise InputError(
                    path, number,
                    f"protein {current[0]!r}: residue {letter!r} at sequence position "
                    f"{position} is not one of the 20 amino acids or X",
                )
        chunks.append(letters)
    finish()
    if not proteins:
        raise InputError(path, 0, "no sequences found (expected FASTA '>ID' headers)")
    return proteins
