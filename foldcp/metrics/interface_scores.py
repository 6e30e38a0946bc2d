"""ipSAE, pDockQ, pDockQ2 and LIS/LIA for one ordered chain pair, as ipsae.py version 4 defines them.

Reference implementation: ipsae.py v4 (Dunbrack lab, github DunbrackLab/IPSAE). Papers:
ipSAE — Dunbrack, bioRxiv 2025.02.10.637595; pDockQ — Bryant, Pozzati & Elofsson, Nat Commun
13:1265 (2022); pDockQ2 — Zhu et al., Bioinformatics 39:btad424 (2023); LIS — Kim et al.,
bioRxiv 2024.02.19.580970.

Inputs per ordered pair (A → B, "residues of A aligned, residues of B scored"):
    pae_ab   [n_a, n_b]  PAE(i aligned, j scored) in Å, i ∈ A, j ∈ B
    dist_ab  [n_a, n_b]  distances between representative atoms (Cβ; Cα for Gly) in Å
    plddt_a  [n_a], plddt_b [n_b]  pLDDT on the 0–100 scale

Definitions (v4):
- ptm(x, d0) = 1 / (1 + (x / d0)²); d0(L) = 1.24·(L − 15)^(1/3) − 1.8, at least 1.0
  (2.0 when either chain is a nucleic acid). The scalar form (d0chn, d0dom) gives 1.0 for
  L ≤ 27; the per-residue form (d0res) floors L at 26 first. Both are v4's exactly.
- ipSAE(A→B) = max over i ∈ A of mean over {j ∈ B: PAE < cutoff} of ptm(PAE, d0(n0_i)),
  n0_i = |{j: PAE_ij < cutoff}|; a residue with no such j scores 0.
  ipSAE_d0chn uses d0(n_a + n_b); ipSAE_d0dom uses d0(residues of A and of B that take part
  in any PAE < cutoff pair); ipTM_d0chn is the mean over all j (no cutoff) with d0chn.
- pDockQ (symmetric): contacts = pairs with Cβ–Cβ ≤ 8 Å; x = mean pLDDT of the interface
  residues of both chains × log10(contacts); 0.724 / (1 + e^(−0.052 (x − 152.611))) + 0.018;
  0 without contacts.
- pDockQ2(A→B): x = the same mean interface pLDDT × mean over contacts of ptm(PAE_ab, 10);
  1.31 / (1 + e^(−0.075 (x − 84.733))) + 0.005; 0 without contacts.
- LIS(A→B) = mean of (12 − PAE)/12 over PAE_ab ≤ 12 Å (0 if none); LIA(A→B) = how many
  such pairs. For the unordered pair ipsae.py reports the mean of LIS(A→B) and LIS(B→A);
  we do the same for LIA.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PDOCKQ_CONTACT = 8.0
LIS_PAE = 12.0


def ptm(x: np.ndarray, d0) -> np.ndarray:
    return 1.0 / (1.0 + (np.asarray(x, dtype=np.float64) / d0) ** 2)


def d0_scalar(length: float, nucleic: bool = False) -> float:
    """v4 calc_d0: 1.0 for L ≤ 27, else Yang–Skolnick's d0; floor 1.0 (2.0 nucleic)."""
    d0 = 1.24 * (float(length) - 15.0) ** (1.0 / 3.0) - 1.8 if length > 27 else 1.0
    return max(2.0 if nucleic else 1.0, d0)


def d0_per_residue(lengths: np.ndarray, nucleic: bool = False) -> np.ndarray:
    """v4 calc_d0_array: L floored at 26, then Yang–Skolnick's d0; floor 1.0 (2.0 nucleic)."""
    lengths = np.maximum(26.0, np.asarray(lengths, dtype=np.float64))
    return np.maximum(2.0 if nucleic else 1.0, 1.24 * (lengths - 15.0) ** (1.0 / 3.0) - 1.8)


@dataclass
class DirectedScores:
    """Scores of one ordered pair A → B (see the module docstring)."""

    ipsae: float
    ipsae_d0chn: float
    ipsae_d0dom: float
    iptm_d0chn: float
    n0res: int  # n0 of the residue that gives ipSAE
    d0res: float
    n0chn: int
    d0chn: float
    n0dom: int
    d0dom: float
    pdockq2: float
    lis: float
    lia: int


def _mean_where(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Row means of `values` over `mask` (0 for rows with nothing selected)."""
    counts = mask.sum(axis=1)
    sums = np.where(mask, values, 0.0).sum(axis=1)
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)


def directed_scores(pae_ab: np.ndarray, contact_ab: np.ndarray, interface_plddt: float,
                    pae_cutoff: float = 10.0, nucleic: bool = False) -> DirectedScores:
    """ipSAE family, pDockQ2 and LIS/LIA for A → B; `contact_ab` = Cβ–Cβ ≤ 8 Å."""
    pae_ab = np.asarray(pae_ab, dtype=np.float64)
    n_a, n_b = pae_ab.shape
    valid = pae_ab < pae_cutoff
    n0 = valid.sum(axis=1)

    n0chn = n_a + n_b
    d0chn = d0_scalar(n0chn, nucleic)
    ptm_chn = ptm(pae_ab, d0chn)
    n0dom = int(valid.any(axis=1).sum() + valid.any(axis=0).sum())
    d0dom = d0_scalar(n0dom, nucleic)
    d0res = d0_per_residue(n0, nucleic)

    by_res = _mean_where(ptm(pae_ab, d0res[:, None]), valid)
    best = int(np.argmax(by_res)) if n_a else 0
    empty = n_a == 0 or n_b == 0

    contacts = int(contact_ab.sum())
    if contacts:
        x = interface_plddt * float(ptm(pae_ab[contact_ab], 10.0).mean())
        pdockq2 = 1.31 / (1.0 + np.exp(-0.075 * (x - 84.733))) + 0.005
    else:
        pdockq2 = 0.0
    confident = pae_ab[pae_ab <= LIS_PAE]
    return DirectedScores(
        ipsae=0.0 if empty else float(by_res[best]),
        ipsae_d0chn=0.0 if empty else float(_mean_where(ptm_chn, valid).max()),
        ipsae_d0dom=0.0 if empty else float(_mean_where(ptm(pae_ab, d0dom), valid).max()),
        iptm_d0chn=0.0 if empty else float(ptm_chn.mean(axis=1).max()),
        n0res=0 if empty else int(n0[best]), d0res=float(d0res[best]) if n_a else 1.0,
        n0chn=n0chn, d0chn=d0chn, n0dom=n0dom, d0dom=d0dom,
        pdockq2=float(pdockq2),
        lis=float(((LIS_PAE - confident) / LIS_PAE).mean()) if confident.size else 0.0,
        lia=int(confident.size),
    )


def pdockq(contact_ab: np.ndarray, plddt_a: np.ndarray, plddt_b: np.ndarray) -> tuple[float, float]:
    """(pDockQ, mean interface pLDDT) of a pair; both 0 without contacts."""
    contacts = int(contact_ab.sum())
    if not contacts:
        return 0.0, 0.0
    interface = np.concatenate([plddt_a[contact_ab.any(axis=1)], plddt_b[contact_ab.any(axis=0)]])
    mean_plddt = float(interface.mean())
    x = mean_plddt * np.log10(contacts)
    return float(0.724 / (1.0 + np.exp(-0.052 * (x - 152.611))) + 0.018), mean_plddt
