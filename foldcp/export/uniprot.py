"""UniProt accessions and sequence checksums.

An accession is recognised with the pattern UniProt documents for UniProtKB accession
numbers (https://www.uniprot.org/help/accession_numbers)::

    [OPQ][0-9][A-Z0-9]{3}[0-9] | [A-NR-Z][0-9]([A-Z][A-Z0-9]{2}[0-9]){1,2}

optionally followed by an isoform suffix ``-N`` (``P69905-2``). Anything else (``pepA``,
``my_protein``) is not given a UniProt reference: a wrong database link is worse than none.

Checksums are the CRC64 that UniProt and SWISS-PROT print for a sequence (ISO 3309
polynomial), computed by Biopython; returned as 16 upper-case hex digits, the form of
UniProt's ``CRC64`` field and ModelCIF's ``ma_target_ref_db_details.seq_db_sequence_checksum``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from Bio.SeqUtils.CheckSum import crc64

_ACCESSION = re.compile(
    r"^(?P<accession>[OPQ][0-9][A-Z0-9]{3}[0-9]|[A-NR-Z][0-9](?:[A-Z][A-Z0-9]{2}[0-9]){1,2})"
    r"(?:-(?P<isoform>[0-9]+))?$"
)


@dataclass(frozen=True)
class Accession:
    accession: str  # e.g. P69905
    isoform: str | None  # e.g. P69905-2, or None for the canonical sequence


def parse_accession(identifier: str) -> Accession | None:
    """The UniProt accession in a protein ID, or None if the ID is not one."""
    match = _ACCESSION.match(identifier)
    if not match:
        return None
    isoform = identifier if match.group("isoform") else None
    return Accession(match.group("accession"), isoform)


def sequence_crc64(sequence: str) -> str:
    """CRC64 of a one-letter sequence as 16 upper-case hex digits (UniProt's form)."""
    return crc64(sequence.upper()).removeprefix("CRC-")
