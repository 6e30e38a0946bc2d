"""A3M MSAs: reading and checking (errors name the file and line), slicing, writing.

An A3M record is a ``>`` header followed by one aligned sequence (it may be wrapped over
several lines). Upper-case letters and ``-`` are match columns, one per query residue;
lower-case letters are insertions relative to the query. The first record is the query: no
gaps, no insertions. Lines starting with ``#`` (ColabFold's size line) and blank lines are
skipped; NUL bytes (MMseqs2 database entry ends) are ignored; ``.`` (an A2M gap in an insert
column) is dropped, which is what A3M leaves out.

Letters are those Boltz reads: the 20 amino acids, ``X`` and ``B``/``Z``/``J``/``U``/``O``
(read as unknown). A hit's species, used to pair heteromers, comes from its header
(`foldcp.msa.pairing.taxonomy_of`).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

from foldcp.errors import InputError
from foldcp.msa.pairing import taxonomy_of

MATCH_LETTERS = frozenset("ACDEFGHIKLMNPQRSTVWYXBZJUO")
MATCH_CHARS = MATCH_LETTERS | {"-"}
INSERT_CHARS = frozenset(c.lower() for c in MATCH_LETTERS)


@dataclass
class MsaRow:
    header: str  # without '>'
    sequence: str  # A3M: match columns upper-case or '-', insertions lower-case
    key: int | None = None  # species / pairing key
    line: int = 0  # where the record starts in its source file (0 = not from a file)

    @property
    def residues(self) -> str:
        """The hit's own residues (no gaps), upper-case."""
        return self.sequence.replace("-", "").upper()

    @property
    def match_columns(self) -> int:
        return sum(1 for c in self.sequence if c == "-" or c.isupper())


@dataclass
class ProteinMsa:
    """The MSA of one protein: rows[0] is the query, the hits follow best first."""

    path: str
    rows: list[MsaRow] = field(default_factory=list)

    @property
    def depth(self) -> int:
        return len(self.rows)

    @property
    def keyed(self) -> int:
        """Hits with a species (pairing key)."""
        return sum(1 for row in self.rows[1:] if row.key is not None)

    @property
    def query(self) -> str:
        return self.rows[0].sequence

    def check_query(self, sequence: str, protein_id: str) -> None:
        """The query row must be the protein's sequence (Boltz would silently drop the MSA)."""
        first = self.rows[0]
        if first.sequence.upper() != sequence.upper():
            at = next((i for i, (a, b) in enumerate(zip(first.sequence.upper(), sequence.upper()))
                       if a != b), min(len(first.sequence), len(sequence)))
            raise InputError(
                self.path, first.line,
                f"the first row (the query) is not the sequence of {protein_id}: it has "
                f"{len(first.sequence)} residues, the FASTA {len(sequence)}, first difference "
                f"at position {at + 1}",
            )

    def to_a3m(self) -> str:
        return "".join(f">{row.header}\n{row.sequence}\n" for row in self.rows)


def check_chars(sequence: str, path: str, line: int) -> None:
    """Only letters Boltz can read, '-' and lower-case insertions."""
    for column, char in enumerate(sequence, start=1):
        if char not in MATCH_CHARS and char not in INSERT_CHARS:
            raise InputError(
                path, line,
                f"character {char!r} at position {column} is not an amino-acid letter, "
                f"'-' (gap) or a lower-case insertion",
            )


def check_columns(sequence: str, path: str, line: int, query_columns: int | None) -> None:
    """As many match columns as the query (None: this is the query: no gaps, no insertions)."""
    if query_columns is None:
        if any(c == "-" or c.islower() for c in sequence):
            raise InputError(path, line, "the first row (the query) must have no gaps or "
                                         "lower-case insertions")
        return
    columns = sum(1 for c in sequence if c == "-" or c.isupper())
    if columns != query_columns:
        raise InputError(
            path, line,
            f"row has {columns} match columns (upper-case letters and '-'), the query has "
            f"{query_columns}",
        )


def parse_a3m(text: str, path: str | Path) -> ProteinMsa:
    """Read A3M text; raise InputError naming `path` and the line of any problem (a
    record's line is that of its header)."""
    path = str(path)
    rows: list[MsaRow] = []
    header: tuple[str, int] | None = None
    chunks: list[str] = []
    query_columns: int | None = None

    def finish() -> None:
        nonlocal query_columns
        if header is None:
            return
        name, line = header
        sequence = "".join(chunks)
        if not sequence:
            raise InputError(path, line, f"record {name.split()[0] if name else '>'!r} has "
                                         f"no sequence")
        check_columns(sequence, path, line, query_columns)
        if query_columns is None:
            query_columns = len(sequence)
        rows.append(MsaRow(name, sequence, taxonomy_of(name) if rows else None, line))

    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.replace("\x00", "").strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(">"):
            finish()
            header, chunks = (line[1:].strip(), number), []
            continue
        if header is None:
            raise InputError(path, number, "sequence before the first '>' header")
        line = line.replace(".", "")
        check_chars(line, path, number)
        chunks.append(line)
    finish()
    if not rows:
        raise InputError(path, 0, "empty MSA: no '>' records")
    return ProteinMsa(path, rows)


def read_a3m(path: str | Path) -> ProteinMsa:
    """Read an .a3m or .a3m.gz file."""
    path = Path(path)
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        text = data.decode()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise InputError(str(path), 0, f"cannot read MSA file: {exc}") from exc
    return parse_a3m(text, path)


def slice_row(sequence: str, start: int, end: int) -> str:
    """The A3M row restricted to match columns start..end (1-based, inclusive).

    Insertions inside the range stay with the column they precede; those before the first
    kept column and after the last are dropped.
    """
    out = []
    column = 0
    pending: list[str] = []
    for char in sequence:
        if char.islower():
            pending.append(char)
            continue
        column += 1
        if start <= column <= end:
            if column > start:
                out.extend(pending)
            out.append(char)
        pending = []
        if column >= end:
            break
    return "".join(out)
