"""Inter-chain residue contacts from a structure file, read with gemmi.

A residue pair (one residue from each of two chains) is in contact when the distance between
their representative atoms is <= cutoff (default 8 Å): Cβ, or Cα for glycine (and for any
residue whose Cβ is missing). Only amino-acid residues of polymer chains count; waters and
ligands are ignored. Multi-model files use the first model.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import gemmi
import numpy as np
from scipy.spatial import cKDTree


@dataclass
class ChainPairContacts:
    chain_a: str
    chain_b: str
    contacts: int  # residue pairs within the cutoff
    interface_a: list[int]  # 0-based residue positions in chain a (its order in the file)
    interface_b: list[int]


def representative_atoms(path: str | Path) -> dict[str, np.ndarray]:
    """Per chain name: coordinates [residues, 3] of Cβ (Cα for Gly / missing Cβ)."""
    structure = gemmi.read_structure(str(path))
    structure.setup_entities()
    model = structure[0]
    chains: dict[str, np.ndarray] = {}
    for chain in model:
        coords = []
        for residue in chain:
            info = gemmi.find_tabulated_residue(residue.name)
            if info is None or not info.is_amino_acid():
                continue
            atom = None
            if residue.name != "GLY":
                atom = residue.find_atom("CB", "*")
            if atom is None:
                atom = residue.find_atom("CA", "*")
            if atom is None:
                continue
            coords.append(atom.pos.tolist())
        if coords:
            chains[chain.name] = np.asarray(coords, dtype=np.float64)
    return chains


def chain_pair_contacts(
    chains: dict[str, np.ndarray], cutoff: float = 8.0
) -> list[ChainPairContacts]:
    """Contacts for every unordered pair of chains (in file order)."""
    trees = {name: cKDTree(xyz) for name, xyz in chains.items()}
    results = []
    for a, b in combinations(chains, 2):
        neighbours = trees[a].query_ball_tree(trees[b], r=cutoff)
        pairs = [(i, j) for i, js in enumerate(neighbours) for j in js]
        results.append(ChainPairContacts(
            a, b, len(pairs),
            sorted({i for i, _ in pairs}), sorted({j for _, j in pairs}),
        ))
    return results


def structure_contacts(path: str | Path, cutoff: float = 8.0) -> list[ChainPairContacts]:
    return chain_pair_contacts(representative_atoms(path), cutoff)
