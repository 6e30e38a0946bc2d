"""Interface metrics of any AlphaFold-style prediction: a structure + a token × token PAE
(+ optional per-token pLDDT) → one row per chain pair and one row per interface residue.

    from foldcp.metrics.score import score_prediction
    report = score_prediction("model.cif", pae, plddt)      # arrays or file paths
    report.pairs        # pandas DataFrame, one row per unordered chain pair (file order)
    report.residues     # one row per (chain pair, interface residue)

Columns are documented in README.md ("chain_pairs" and "interface_residues"). Works for
foldcp/Boltz outputs (pae_*.npz / plddt_*.npz), AlphaFold3 (full_data JSON "pae"; pLDDT from
the Cβ atoms' B-factors when no per-token pLDDT is given) and AlphaFold2 (PDB + scores JSON).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from foldcp.errors import FoldcpError
from foldcp.metrics.interface_scores import PDOCKQ_CONTACT, directed_scores, pdockq
from foldcp.metrics.residues import Residues, read_residues, token_of

PAIR_COLUMNS = [
    "chain_a", "chain_b", "residues_a", "residues_b", "iptm_ab", "iptm_ba",
    "ipsae_ab", "ipsae_ba", "ipsae", "ipsae_d0chn", "ipsae_d0dom", "iptm_d0chn",
    "pdockq", "pdockq2_ab", "pdockq2_ba", "pdockq2", "lis_ab", "lis_ba", "lis",
    "lia_ab", "lia_ba", "lia", "contacts", "interface_residues_a", "interface_residues_b",
    "heavy_atom_contacts", "clashes", "interface_plddt", "interface_pae_ab", "interface_pae_ba",
]
RESIDUE_COLUMNS = [
    "chain", "partner_chain", "residue_index", "residue_number", "residue_name", "plddt",
    "partner_contacts",
]


@dataclass(frozen=True)
class ScoreSettings:
    """pae_cutoff: ipSAE's PAE cutoff (10 Å, the value ipsae.py recommends for Boltz and AF3).
    contact_cutoff: Cβ–Cβ distance for `contacts` and interface residues (8 Å).
    heavy_contact_cutoff: heavy-atom distance for `heavy_atom_contacts` (5 Å).
    clash_cutoff: inter-chain heavy atoms closer than this are a clash (1.0 Å)."""

    pae_cutoff: float = 10.0
    contact_cutoff: float = 8.0
    heavy_contact_cutoff: float = 5.0
    clash_cutoff: float = 1.0


@dataclass
class InterfaceReport:
    pairs: pd.DataFrame
    residues: pd.DataFrame


def _array(value, key: str, what: str) -> np.ndarray:
    """An array given directly or read from .npz/.npy/.json (AlphaFold keys understood)."""
    if value is None or isinstance(value, np.ndarray):
        return value
    path = Path(value)
    if not path.exists():
        raise FoldcpError(f"{what} file not found: {path}")
    if path.suffix == ".npz":
        data = np.load(path)
        if key not in data:
            raise FoldcpError(f"{path}: no '{key}' array (has {', '.join(data.files)})")
        return np.asarray(data[key])
    if path.suffix == ".npy":
        return np.load(path)
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        if isinstance(data, list):  # AlphaFold DB / ColabFold: [{"predicted_aligned_error": …}]
            data = data[0]
        for name in ({"pae": ("pae", "predicted_aligned_error")}.get(key, ()) + (key,)):
            if name in data:
                return np.asarray(data[name], dtype=np.float64)
        raise FoldcpError(f"{path}: no '{key}' field")
    raise FoldcpError(f"{path}: {what} must be .npz, .npy or .json")


def _residue_plddt(residues: Residues, plddt: np.ndarray | None) -> np.ndarray:
    """Per-residue pLDDT on 0–100: the token's value if given, else the Cβ atom's B-factor."""
    if plddt is None:
        values = residues.atom_plddt
    else:
        plddt = np.asarray(plddt, dtype=np.float64).reshape(-1)
        values = plddt[token_of(residues, len(plddt), "pLDDT")]
    return values * 100.0 if values.size and values.max() <= 1.0 else values


def _close_pairs(xyz_a: np.ndarray, xyz_b: np.ndarray, cutoff: float) -> np.ndarray:
    """[k, 2] index pairs (i in a, j in b) with distance ≤ cutoff."""
    if not len(xyz_a) or not len(xyz_b):
        return np.zeros((0, 2), dtype=int)
    found = cKDTree(xyz_a).query_ball_tree(cKDTree(xyz_b), r=cutoff)
    pairs = [(i, j) for i, js in enumerate(found) for j in js]
    return np.asarray(pairs, dtype=int).reshape(-1, 2)


def _atom_contacts(residues: Residues, a: np.ndarray, b: np.ndarray, settings: ScoreSettings):
    """(residue pairs with heavy atoms ≤ heavy_contact_cutoff, heavy-atom pairs < clash_cutoff)."""
    in_a = np.isin(residues.heavy_residue, a)
    in_b = np.isin(residues.heavy_residue, b)
    close = _close_pairs(residues.heavy_xyz[in_a], residues.heavy_xyz[in_b], settings.heavy_contact_cutoff)
    res_a, res_b = residues.heavy_residue[in_a], residues.heavy_residue[in_b]
    residue_pairs = {(res_a[i], res_b[j]) for i, j in close}
    if len(close):
        gaps = np.linalg.norm(residues.heavy_xyz[in_a][close[:, 0]] - residues.heavy_xyz[in_b][close[:, 1]], axis=1)
        clashes = int((gaps < settings.clash_cutoff).sum())
    else:
        clashes = 0
    return len(residue_pairs), clashes


def score_residues(residues: Residues, pae: np.ndarray, plddt: np.ndarray | None = None,
                   pair_iptm: dict | None = None, settings: ScoreSettings = ScoreSettings()) -> InterfaceReport:
    """Metrics for every unordered chain pair of `residues` (see module docstring)."""
    pae = np.asarray(pae, dtype=np.float64)
    if pae.ndim != 2 or pae.shape[0] != pae.shape[1]:
        raise FoldcpError(f"PAE must be a square matrix, got shape {pae.shape}")
    rows = token_of(residues, pae.shape[0])
    residue_pae = pae[np.ix_(rows, rows)]
    plddt_r = _residue_plddt(residues, plddt)
    pairs, interface_rows = [], []
    for chain_a, chain_b in combinations(residues.chains(), 2):
        a = np.flatnonzero(residues.chain == chain_a)
        b = np.flatnonzero(residues.chain == chain_b)
        nucleic = residues.is_nucleic(chain_a) or residues.is_nucleic(chain_b)
        xyz_a, xyz_b = residues.representative[a], residues.representative[b]
        dist = np.linalg.norm(xyz_a[:, None, :] - xyz_b[None, :, :], axis=-1)
        pdockq_contact = dist <= PDOCKQ_CONTACT
        score_pdockq, interface_plddt = pdockq(pdockq_contact, plddt_r[a], plddt_r[b])
        pae_ab, pae_ba = residue_pae[np.ix_(a, b)], residue_pae[np.ix_(b, a)]
        ab = directed_scores(pae_ab, pdockq_contact, interface_plddt, settings.pae_cutoff, nucleic)
        ba = directed_scores(pae_ba, pdockq_contact.T, interface_plddt, settings.pae_cutoff, nucleic)
        contact = dist <= settings.contact_cutoff
        heavy_contacts, clashes = _atom_contacts(residues, a, b, settings)
        iptm = (pair_iptm or {})
        pairs.append({
            "chain_a": chain_a, "chain_b": chain_b, "residues_a": len(a), "residues_b": len(b),
            "iptm_ab": float(iptm.get(chain_a, {}).get(chain_b, np.nan)),
            "iptm_ba": float(iptm.get(chain_b, {}).get(chain_a, np.nan)),
            "ipsae_ab": ab.ipsae, "ipsae_ba": ba.ipsae, "ipsae": max(ab.ipsae, ba.ipsae),
            "ipsae_d0chn": max(ab.ipsae_d0chn, ba.ipsae_d0chn),
            "ipsae_d0dom": max(ab.ipsae_d0dom, ba.ipsae_d0dom),
            "iptm_d0chn": max(ab.iptm_d0chn, ba.iptm_d0chn),
            "pdockq": score_pdockq, "pdockq2_ab": ab.pdockq2, "pdockq2_ba": ba.pdockq2,
            "pdockq2": max(ab.pdockq2, ba.pdockq2),
            "lis_ab": ab.lis, "lis_ba": ba.lis, "lis": (ab.lis + ba.lis) / 2,
            "lia_ab": ab.lia, "lia_ba": ba.lia, "lia": (ab.lia + ba.lia) / 2,
            "contacts": int(contact.sum()),
            "interface_residues_a": int(contact.any(axis=1).sum()),
            "interface_residues_b": int(contact.any(axis=0).sum()),
            "heavy_atom_contacts": heavy_contacts, "clashes": clashes,
            "interface_plddt": interface_plddt if contact.any() else np.nan,
            "interface_pae_ab": float(pae_ab[contact].mean()) if contact.any() else np.nan,
            "interface_pae_ba": float(pae_ba[contact.T].mean()) if contact.any() else np.nan,
        })
        for own, partner, members, counts in ((chain_a, chain_b, a, contact.sum(axis=1)),
                                              (chain_b, chain_a, b, contact.sum(axis=0))):
            first = members[0]
            for k in np.flatnonzero(counts):
                r = members[k]
                interface_rows.append({
                    "chain": own, "partner_chain": partner, "residue_index": int(r - first),
                    "residue_number": int(residues.number[r]), "residue_name": str(residues.name[r]),
                    "plddt": float(plddt_r[r]), "partner_contacts": int(counts[k]),
                })
    return InterfaceReport(pd.DataFrame(pairs, columns=PAIR_COLUMNS),
                           pd.DataFrame(interface_rows, columns=RESIDUE_COLUMNS))


def score_prediction(structure, pae, plddt=None, pair_iptm: dict | None = None,
                     settings: ScoreSettings = ScoreSettings()) -> InterfaceReport:
    """`structure`: mmCIF/PDB path; `pae`, `plddt`: arrays or .npz/.npy/.json paths."""
    return score_residues(read_residues(structure), _array(pae, "pae", "PAE"),
                          _array(plddt, "plddt", "pLDDT"), pair_iptm, settings)
