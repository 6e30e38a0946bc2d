"""MSA test data (conftest.py and the test_msa_* modules): a small sequence database made
of the example proteome plus decoys.

Decoys are mutated copies of example proteins with headers naming known species (UniRef
``TaxID=`` or UniProt ``OX=``), so the pairing of a heteromer is known in advance:

- histone H3 (P68431): mouse (8 % mutated), rat (15 %), zebrafish (20 %), a second, more
  distant mouse copy (30 %) and one without a species (25 %);
- histone H4 (P62805): mouse (8 %), rat (15 %), yeast (20 %).

So H3 + H4 pair on mouse (the closer mouse H3) and rat only. Shuffled copies of every
example protein (with species of their own) are noise that should find nothing.
"""

from __future__ import annotations

import random
from pathlib import Path

from foldcp.inputs import read_fasta

REPO = Path(__file__).resolve().parents[2]
PROTEOME = REPO / "config" / "example" / "proteins.fasta"
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
MOUSE, RAT, ZEBRAFISH, YEAST = 10090, 10116, 7955, 559292

# (protein, decoy name, header style, species, mutated fraction)
DECOYS = [
    ("P68431", "H3_MOUSE", "uniref", MOUSE, 0.08),
    ("P68431", "H3_RAT", "uniprot", RAT, 0.15),
    ("P68431", "H3_DANRE", "uniref", ZEBRAFISH, 0.20),
    ("P68431", "H3V_MOUSE", "uniprot", MOUSE, 0.30),
    ("P68431", "H3_NOTAX", "plain", None, 0.25),
    ("P62805", "H4_MOUSE", "uniprot", MOUSE, 0.08),
    ("P62805", "H4_RAT", "uniref", RAT, 0.15),
    ("P62805", "H4_YEAST", "uniprot", YEAST, 0.20),
]


def mutate(sequence: str, fraction: float, rng: random.Random) -> str:
    letters = list(sequence)
    for index in rng.sample(range(len(letters)), round(fraction * len(letters))):
        letters[index] = rng.choice([a for a in AMINO_ACIDS if a != letters[index]])
    return "".join(letters)


def header(name: str, style: str, species: int | None) -> str:
    if style == "uniref":
        return f"UniRef100_{name} decoy n=1 Tax=test TaxID={species} RepID={name}"
    if style == "uniprot":
        return f"tr|{name}|{name} decoy OS=test OX={species} GN=X PE=4 SV=1"
    return f"{name} decoy without species"


def decoy_sequences() -> dict[str, tuple[str, str]]:
    """name -> (header, sequence) of every decoy (deterministic)."""
    rng = random.Random(20261128)
    proteins = read_fasta(PROTEOME)
    decoys = {}
    for protein, name, style, species, fraction in DECOYS:
        decoys[name] = (header(name, style, species), mutate(proteins[protein].sequence, fraction, rng))
    for index, protein in enumerate(proteins.values()):
        letters = list(protein.sequence)
        rng.shuffle(letters)
        name = f"SHUF{index}"
        decoys[name] = (header(name, "uniref", 90000 + index), "".join(letters))
    return decoys
