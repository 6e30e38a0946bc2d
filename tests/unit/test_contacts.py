"""Contacts on a real experimental complex (PDB 2OOB, Cbl-b UBA + ubiquitin) against an
independent calculation: Biopython's parser and brute-force numpy distances."""

import numpy as np
import pytest
from Bio.PDB import PDBParser
from Bio.PDB.Polypeptide import is_aa

from foldcp.metrics.residues import read_residues
from foldcp.metrics.score import ScoreSettings, score_residues

STRUCTURE = "tests/data/2oob.pdb"


def contacts_of(path, cutoff):
    """(chain_a, chain_b, contacts, interface positions of a, of b) from foldcp's report."""
    residues = read_residues(path)
    n = len(residues)
    report = score_residues(residues, np.full((n, n), 5.0), settings=ScoreSettings(contact_cutoff=cutoff))
    (pair,) = report.pairs.to_dict("records")
    iface = report.residues.groupby("chain")["residue_index"].apply(set).to_dict()
    return pair, iface.get("A", set()), iface.get("B", set())


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
    pair, ours_a, ours_b = contacts_of(STRUCTURE, cutoff)
    assert (pair["chain_a"], pair["chain_b"]) == ("A", "B")
    assert (pair["residues_a"], pair["residues_b"]) == (n_a, n_b)
    assert pair["contacts"] == count
    assert ours_a == iface_a and ours_b == iface_b
    assert pair["interface_residues_a"] == len(iface_a) and count > 0


def test_representative_atoms_skip_water_and_count_modelled_residues():
    residues = read_residues(STRUCTURE)
    assert residues.chains() == ["A", "B"]
    # 2OOB models 44 UBA residues (chain A) and 72 ubiquitin residues (chain B)
    assert (residues.chain == "A").sum() == 44 and (residues.chain == "B").sum() == 72


def test_contacts_grow_with_cutoff():
    counts = [contacts_of(STRUCTURE, c)[0]["contacts"] for c in (4.0, 8.0, 16.0)]
    assert counts[0] < counts[1] < counts[2]
