"""The 21 canonical protein residues Boltz's featurizer needs (``mols/{RES}.pkl``).

Boltz ships them in ``mols.tar`` (downloaded with the checkpoint). Where that cannot be
fetched, RDKit builds equivalent ones: each residue as a free amino acid from its one-letter
code, atoms named as in the PDB (the ``name`` property Boltz reads), hydrogens added and one
3D conformer embedded with a fixed seed. UNK uses alanine's backbone + CB, which is exactly
Boltz's reference atom set for UNK.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from boltz.data import const

from foldcp.io import write_bytes

_ONE_LETTER = {three: one for one, three in const.prot_letter_to_token.items() if len(one) == 1}


def _residue_mol(three_letter: str):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    one = "A" if three_letter == "UNK" else _ONE_LETTER[three_letter]
    mol = Chem.MolFromSequence(one)
    for atom in mol.GetAtoms():
        atom.SetProp("name", atom.GetPDBResidueInfo().GetName().strip())
        atom.SetProp("leaving_atom", "1" if atom.GetProp("name") == "OXT" else "0")
    mol = Chem.AddHs(mol, addCoords=False)
    for index, atom in enumerate(mol.GetAtoms()):
        if not atom.HasProp("name"):
            atom.SetProp("name", f"H{index}")
            atom.SetProp("leaving_atom", "0")
    if AllChem.EmbedMolecule(mol, randomSeed=0) != 0:
        raise RuntimeError(f"RDKit could not embed a conformer for {three_letter}")
    mol.GetConformer().SetProp("name", "Computed")
    missing = set(const.ref_atoms[three_letter]) - {a.GetProp("name") for a in mol.GetAtoms()}
    if missing:
        raise RuntimeError(f"RDKit {three_letter} lacks Boltz reference atoms {sorted(missing)}")
    return mol


def ensure_canonical_mols(mol_dir: str | Path) -> Path:
    """Make sure `mol_dir` holds a pickle for every canonical residue; build missing ones."""
    from rdkit import Chem

    mol_dir = Path(mol_dir)
    missing = [r for r in const.canonical_tokens if not (mol_dir / f"{r}.pkl").exists()]
    if missing:
        # Keep the properties (atom names) in the pickle, as Boltz's own files do.
        Chem.SetDefaultPickleProperties(Chem.PropertyPickleOptions.AllProps)
        for residue in missing:
            write_bytes(mol_dir / f"{residue}.pkl", pickle.dumps(_residue_mol(residue)))
    return mol_dir
