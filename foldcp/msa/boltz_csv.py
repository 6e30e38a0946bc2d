"""Boltz-style CSV MSAs (``key,sequence``): reading with file:line errors, and writing.

What Boltz 2.2.1 does with such a file (boltz/data/parse/csv.py and the featurizer's
``construct_paired_msa``): the header must name exactly the columns ``key`` and
``sequence``; each row is one A3M-style aligned sequence, the first is the query; rows whose
gap-free sequence repeats an earlier row are dropped; the key is stored as the row's
"taxonomy" (an int32), with -1 or an empty key meaning "no key". When a complex is
featurized (Boltz 2.2.1 ``construct_paired_msa``), each chain has a queue of its rows after
the query, in file order, and all of them: the test meant to leave out rows already used in
paired rows never matches. The model's MSA is then: row 0, the queries; one paired row per
key carried by at least two rows of the complex's chains together (a query with a key
too), one row of each chain having it (several rows of one key in a chain give several
paired rows, rolling over them; the copies of one entity share one file, so they pair
every key of it with themselves), while chains without the key take the next row of their
queue there (marked unpaired); then rows from the queues side by side until the longest
is empty, gap rows for chains that ran out. That is 1 + P + (rows left in the longest
queue) rows for P paired rows, cut at 16384. (Its deletion counts are dropped too: the
featurizer slices the deletion table in place, so after the query's empty slice no row has
any.)

foldcp reads a user's CSV the same way but treats a key as a species: the keys of a complex's
input are reassigned by `foldcp.msa.assemble` (paired rows 1..P, the rest -1).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from foldcp.errors import InputError
from foldcp.msa.a3m import MsaRow, ProteinMsa, check_chars, check_columns


def parse_key(text: str, path: str, line: int) -> int | None:
    text = text.strip()
    if text in ("", "nan", "NaN", "None"):
        return None
    try:
        value = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            number = None
        if number is None or not number.is_integer():
            raise InputError(path, line, f"key {text!r} is not an integer (species / pairing "
                                         f"key; -1 or empty = none)") from None
        value = int(number)
    if value < 0:
        return None
    if value >= 2**31:
        raise InputError(path, line, f"key {value} does not fit Boltz's int32 key")
    return value


def parse_csv(text: str, path: str | Path, name: str = "row") -> ProteinMsa:
    """Read a Boltz-style CSV MSA; raise InputError naming `path` and the line."""
    path = str(path)
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise InputError(path, 0, "empty MSA: no header line 'key,sequence' and no rows")
    reader = csv.reader(io.StringIO(text))
    rows: list[MsaRow] = []
    columns = None
    query_columns = None
    for record in reader:
        number = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        if columns is None:
            names = [cell.strip() for cell in record]
            if sorted(names) != ["key", "sequence"]:
                raise InputError(path, number, f"header {','.join(names)!r}: a Boltz MSA CSV "
                                               f"has exactly the columns 'key' and 'sequence'")
            columns = {n: i for i, n in enumerate(names)}
            continue
        if len(record) != 2:
            raise InputError(path, number, f"{len(record)} fields, expected 2 (key,sequence)")
        sequence = record[columns["sequence"]].strip()
        if not sequence:
            raise InputError(path, number, "empty sequence")
        check_chars(sequence, path, number)
        check_columns(sequence, path, number, query_columns)
        if query_columns is None:
            query_columns = len(sequence)
            key = None
        else:
            key = parse_key(record[columns["key"]], path, number)
        header = f"{name}{len(rows)}" + (f" foldcp_key={key}" if key is not None else "")
        rows.append(MsaRow(header, sequence, key, number))
    if not rows:
        raise InputError(path, 0, "empty MSA: a header line but no rows")
    return ProteinMsa(path, rows)


def read_csv(path: str | Path, name: str = "row") -> ProteinMsa:
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), 0, f"cannot read MSA file: {exc}") from exc
    return parse_csv(text, path, name)


def to_csv(rows: list[tuple[int, str]]) -> str:
    """``key,sequence`` text from (key, A3M sequence) pairs; key -1 = none."""
    return "key,sequence\n" + "".join(f"{key},{sequence}\n" for key, sequence in rows)
