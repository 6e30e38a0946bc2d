"""The residues interface metrics run over, read from any predicted structure (mmCIF or PDB).

One entry per polymer residue that has a Cα (C1' for nucleotides), in file order, with:
- its representative atom for distances: Cβ, Cα for glycine (C3' for nucleotides), as in
  ipsae.py and pDockQ;
- its heavy atoms (for heavy-atom contacts and clashes);
- its token: the row of the token × token PAE matrix that belongs to it. AlphaFold3 and Boltz
  give polymer residues one token each and ligand (non-polymer) residues one token per heavy
  atom, in file order; AlphaFold2 PDB files hold polymer residues only. `token_of` tries both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np

from foldcp.errors import FoldcpError

NUCLEIC = frozenset({"DA", "DC", "DT", "DG", "DU", "A", "C", "G", "U"})


@dataclass(frozen=True)
class Residues:
    """Polymer residues of one structure, index r = 0 … R-1 in file order.

    chain [R] str, number [R] int (author sequence number), name [R] str (3-letter),
    representative [R, 3] float64 (Cβ / Cα for Gly / C3'), token [R] int (PAE row),
    atom_plddt [R] float (B-factor of the representative atom, for files that store pLDDT
    there), heavy_xyz [A, 3] and heavy_residue [A] (the heavy atoms and their residue index).
    """

    chain: np.ndarray
    number: np.ndarray
    name: np.ndarray
    representative: np.ndarray
    token: np.ndarray
    atom_plddt: np.ndarray
    heavy_xyz: np.ndarray
    heavy_residue: np.ndarray
    tokens_in_file: int

    def __len__(self) -> int:
        return len(self.chain)

    def chains(self) -> list[str]:
        return list(dict.fromkeys(self.chain.tolist()))

    def is_nucleic(self, chain: str) -> bool:
        return bool(np.isin(self.name[self.chain == chain], list(NUCLEIC)).any())


def _is_heavy(atom: gemmi.Atom) -> bool:
    return atom.element.name not in ("H", "D")


def read_residues(path: str | Path) -> Residues:
    """Residues of the first model of `path` (gemmi reads mmCIF and PDB alike)."""
    path = Path(path)
    try:
        structure = gemmi.read_structure(str(path))
    except (RuntimeError, ValueError) as error:
        raise FoldcpError(f"{path}: cannot read structure: {error}") from error
    structure.setup_entities()
    if len(structure) == 0:
        raise FoldcpError(f"{path}: no model in the file")
    chain, number, name, rep, token, bfac = [], [], [], [], [], []
    heavy_xyz, heavy_residue = [], []
    next_token = 0
    for gemmi_chain in structure[0]:
        for residue in gemmi_chain:
            heavy = [a for a in residue if _is_heavy(a)]
            polymer = residue.entity_type == gemmi.EntityType.Polymer
            if not polymer:
                if residue.name not in ("HOH", "WAT", "DOD"):
                    next_token += len(heavy)  # ligands: one token per heavy atom
                continue
            anchor = residue.find_atom("CA", "*") or residue.find_atom("C1'", "*")
            if anchor is None:
                continue
            pick = None
            if residue.name != "GLY":
                pick = residue.find_atom("CB", "*") or residue.find_atom("C3'", "*")
            pick = pick or anchor
            index = len(chain)
            chain.append(gemmi_chain.name)
            number.append(residue.seqid.num)
            name.append(residue.name)
            rep.append(pick.pos.tolist())
            bfac.append(pick.b_iso)
            token.append(next_token)
            next_token += 1
            for atom in heavy:
                heavy_xyz.append(atom.pos.tolist())
                heavy_residue.append(index)
    if not chain:
        raise FoldcpError(f"{path}: no polymer residue with a CA or C1' atom")
    return Residues(
        chain=np.asarray(chain), number=np.asarray(number, dtype=int), name=np.asarray(name),
        representative=np.asarray(rep, dtype=np.float64), token=np.asarray(token, dtype=int),
        atom_plddt=np.asarray(bfac, dtype=np.float64),
        heavy_xyz=np.asarray(heavy_xyz, dtype=np.float64).reshape(-1, 3),
        heavy_residue=np.asarray(heavy_residue, dtype=int), tokens_in_file=next_token,
    )


def token_of(residues: Residues, n_tokens: int, source: str = "PAE") -> np.ndarray:
    """Row of an [n_tokens, n_tokens] matrix for each residue, or a clear error."""
    if n_tokens == residues.tokens_in_file:
        return residues.token
    if n_tokens == len(residues):  # residues only (AlphaFold2; ligands absent)
        return np.arange(len(residues))
    raise FoldcpError(
        f"{source} has {n_tokens} tokens but the structure has {len(residues)} polymer "
        f"residues ({residues.tokens_in_file} tokens counting ligand atoms): they do not "
        "belong to the same prediction"
    )
