"""Candidate complexes: the chain grammar, canonical form and stable IDs.

A complex is a multiset of chains. A chain names a protein, optionally a 1-based inclusive
residue range, and a copy number::

    P00648            one copy of the whole protein
    P00648:2          two copies
    P00648:1-300      residues 1..300
    P00648:1-300:2    two copies of residues 1..300

The canonical form sorts chains and merges identical ones (``A;B`` == ``B;A``,
``A;A`` == ``A:2``), so a complex has one ID however it was written.
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass
from functools import cached_property

from foldcp.inputs.fasta import Protein

_RANGE = re.compile(r"^(\d+)-(\d+)$")
_COPIES = re.compile(r"^\d+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]")
MAX_ID_LENGTH = 120


class ChainSyntaxError(ValueError):
    """A chain or complex specification that does not follow the grammar."""


@dataclass(frozen=True, order=True)
class Chain:
    """One chain entity of a complex: a protein, an optional range, a copy number."""

    protein_id: str
    start: int | None = None  # 1-based, inclusive
    end: int | None = None
    copies: int = 1

    @property
    def spec(self) -> str:
        text = self.protein_id
        if self.start is not None:
            text += f":{self.start}-{self.end}"
        if self.copies != 1:
            text += f":{self.copies}"
        return text

    def residues(self, proteins: dict[str, Protein]) -> str:
        """The chain's sequence (one copy)."""
        sequence = proteins[self.protein_id].sequence
        if self.start is None:
            return sequence
        return sequence[self.start - 1 : self.end]

    def tokens(self, proteins: dict[str, Protein]) -> int:
        """Boltz tokens of all copies: one per residue for proteins."""
        return len(self.residues(proteins)) * self.copies


def parse_chain(text: str) -> Chain:
    """Parse one chain token (``ID``, ``ID:2``, ``ID:1-300``, ``ID:1-300:2``)."""
    parts = text.strip().split(":")
    protein_id = parts[0].strip()
    if not protein_id:
        raise ChainSyntaxError(f"chain {text!r} has no protein ID")
    start = end = None
    copies = None
    for part in (p.strip() for p in parts[1:]):
        range_match = _RANGE.match(part)
        if range_match and start is None:
            start, end = int(range_match.group(1)), int(range_match.group(2))
            if start < 1 or end < start:
                raise ChainSyntaxError(
                    f"chain {text!r}: range {part!r} must be START-END with 1 <= START <= END"
                )
        elif _COPIES.match(part) and copies is None:
            copies = int(part)
            if copies < 1:
                raise ChainSyntaxError(f"chain {text!r}: copy number must be >= 1")
        else:
            raise ChainSyntaxError(
                f"chain {text!r}: cannot read {part!r}; expected a range like 1-300 "
                f"or a copy number like 2"
            )
    return Chain(protein_id, start, end, copies or 1)


def parse_complex(text: str) -> tuple[Chain, ...]:
    """Parse ``A;B`` or ``A+B+C`` into chains (not yet canonical)."""
    pieces = [p for p in re.split(r"[;+]", text) if p.strip()]
    if not pieces:
        raise ChainSyntaxError(f"complex {text.strip()!r} has zero chains")
    return tuple(parse_chain(p) for p in pieces)


def canonical_chains(chains: tuple[Chain, ...]) -> tuple[Chain, ...]:
    """Merge identical chains into copy numbers and sort, so order never matters."""
    counts: dict[tuple, int] = {}
    for chain in chains:
        key = (chain.protein_id, chain.start, chain.end)
        counts[key] = counts.get(key, 0) + chain.copies
    merged = [Chain(pid, s, e, n) for (pid, s, e), n in counts.items()]
    return tuple(sorted(merged, key=lambda c: (c.protein_id, c.start or 0, c.end or 0)))


def complex_id(chains: tuple[Chain, ...]) -> str:
    """A stable, filesystem- and Snakemake-safe ID of canonical chains.

    ``P00648__P11540``, ``P00648x2``, ``P00648_1-300__P11540``. Characters outside
    [A-Za-z0-9.-] become '-', and an ID that had to be altered or shortened gets a short hash
    of the canonical spec so two different complexes never share an ID.
    """
    parts = []
    raw_parts = []
    for chain in chains:
        part = _UNSAFE.sub("-", chain.protein_id)
        if chain.start is not None:
            part += f"_{chain.start}-{chain.end}"
        if chain.copies != 1:
            part += f"x{chain.copies}"
        parts.append(part)
        raw_parts.append(chain.spec)
    readable = "__".join(parts)
    altered = any(_UNSAFE.search(c.protein_id) for c in chains)
    if altered or len(readable) > MAX_ID_LENGTH:
        digest = hashlib.sha1(";".join(raw_parts).encode()).hexdigest()[:10]
        readable = readable[: MAX_ID_LENGTH - 11].rstrip("_-") + "-" + digest
    return readable


def chain_letters(count: int) -> list[str]:
    """Chain names for Boltz: A..Z, then AA, AB, ... (Excel-style)."""
    letters = string.ascii_uppercase
    names = []
    for index in range(count):
        name = ""
        n = index
        while True:
            name = letters[n % 26] + name
            n = n // 26 - 1
            if n < 0:
                break
        names.append(name)
    return names


@dataclass(frozen=True)
class Complex:
    """A candidate complex in canonical form, with where it was first defined.

    `id` and `spec` are computed once per object (a proteome screen asks for them a few
    times for each of 10^5 complexes)."""

    chains: tuple[Chain, ...]
    source: str = ""

    @cached_property
    def id(self) -> str:
        return complex_id(self.chains)

    @cached_property
    def spec(self) -> str:
        return ";".join(c.spec for c in self.chains)

    @property
    def num_chains(self) -> int:
        return sum(c.copies for c in self.chains)

    def tokens(self, proteins: dict[str, Protein]) -> int:
        return sum(c.tokens(proteins) for c in self.chains)

    def chain_instances(self) -> list[tuple[str, Chain]]:
        """(Boltz chain name, chain) for every copy, in canonical order."""
        names = iter(chain_letters(self.num_chains))
        return [(next(names), c) for c in self.chains for _ in range(c.copies)]


def make_complex(chains: tuple[Chain, ...], source: str = "") -> Complex:
    return Complex(canonical_chains(chains), source)
