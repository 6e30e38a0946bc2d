"""Contacts on a real experimental complex (PDB 2OOB, Cbl-b UBA + ubiquitin) against an
independent calculation: Biopython's parser and brute-force numpy distances."""

import numpy as np
import pytest
from Bio.PDB import PDBParser
from Bio.PDB.Polypeptide import is_aa

from foldcp.metrics.contacts import representative_atoms, structure_contacts

STRUCTURE = "tests/data/2oob.pdb"


def independent_contacts(path, cutoff):
    model = next(iter(PDBParser(QUIET=True).get_structure("x", path)))
    coords = {}
    for chain in model:
        xyz = []
        for residue in chain:
            if not is_aa(residue, standard=True):
                continue
            name = "CA" if residue.get_resname() == "GLY" or "CB" not in residue else "CB"
            if name in residue:
                xyz.append(residue[name].coord)
        coords[chain.id] = np.array(xyz, dtype=float)
    a, b = coords["A"], coords["B"]
    dist = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    close = dist <= cutoff
    return len(a), len(b), int(close.sum()), set(np.nonzero(close.any(1))[0]), set(np.nonzero(close.any(0))[0])


@pytest.mark.parametrize("cutoff", [5.0, 8.0, 12.0])
def test_contacts_match_independent_calculation(cutoff):
    n_a, n_b, count, iface_a, iface_b = independent_contacts(STRUCTURE, cutoff)
    (pair,) = structure_contacts(STRUCTURE, cutoff)
    assert (pair.chain_a, pair.chain_b) == ("A", "B")
    assert pair.contacts == count
    assert set(pair.interface_a) == iface_a and set(pair.interface_b) == iface_b
    assert count > 0


def test_representative_atoms_skip_water_and_count_modelled_residues():
    chains = representative_atoms(STRUCTURE)
    assert set(chains) == {"A", "B"}
    # 2OOB models 44 UBA residues (chain A) and 72 ubiquitin residues (chain B)
    assert len(chains["A"]) == 44 and len(chains["B"]) == 72


def test_contacts_grow_with_cutoff():
    counts = [structure_contacts(STRUCTURE, c)[0].contacts for c in (4.0, 8.0, 16.0)]
    assert counts[0] < counts[1] < counts[2]
