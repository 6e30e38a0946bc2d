"""Join saved complexes (bench/cp_inputs.py files) into one larger complex: the chains of the
first, then the chains of the second, as if featurized together.

For sizes whose featurization does not fit the CPU machine (Boltz's featurizer needs ~24 GB
at 6,000 tokens; the GPU machine has no RDKit): 12,000 = 6,000 + 6,000, 8,500 = 6,000 + 2,500.

    python bench/join_inputs.py .payload/cp/features_6000.pt .payload/cp/features_6000.pt \
        --out .payload/cp/features_12000.pt

Every per-token, per-atom and MSA feature is the featurizer's own for those chains; chain,
entity and reference-space ids of the second part are shifted past the first's; atom indices
(token → atom maps, frames) point into the joined atom list; pair features between the two
parts take the value the first part holds between its own first and last chain (what the
featurizer gives any two unbonded chains). tests/unit/test_join_inputs.py checks the result
equals featurizing the two chains together.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch

TOKEN = ("token_index", "residue_index", "asym_id", "entity_id", "sym_id", "mol_type", "res_type",
         "disto_center", "token_pad_mask", "token_resolved_mask", "token_disto_mask",
         "method_feature", "modified", "cyclic_period", "affinity_token_mask", "deletion_mean",
         "profile")  # [1, N, ...]
PAIR = ("token_bonds", "type_bonds", "contact_conditioning", "contact_threshold")  # [1, N, N, ...]
ATOM = ("ref_pos", "atom_resolved_mask", "ref_atom_name_chars", "ref_element", "ref_charge",
        "ref_chirality", "atom_backbone_feat", "ref_space_uid", "atom_pad_mask", "bfactor",
        "plddt")  # [1, M, ...]
ATOM_TO_TOKEN = ("atom_to_token",)  # [1, M, N] one-hot
TOKEN_TO_ATOM = ("token_to_rep_atom", "r_set_to_rep_atom", "token_to_center_atom")  # [1, N, M]
ROWS_BY_TOKEN = ("frame_resolved_mask", "msa", "msa_paired", "deletion_value", "has_deletion",
                 "msa_mask", "template_restype", "template_frame_rot", "template_frame_t",
                 "template_cb", "template_ca", "template_mask_cb", "template_mask_frame",
                 "template_mask", "query_to_template", "visibility_ids")  # [1, S, N, ...]
SHIFTED_IDS = ("asym_id", "entity_id", "ref_space_uid")  # ids unique per chain / residue
SAME = ("ensemble_ref_idxs",)


ATOM_WINDOW = 32  # the featurizer pads atoms to whole windows of the atom attention


def join(a: dict, b: dict) -> dict:
    """Dense feature dicts of two complexes (batch of one) -> the dict of both together."""
    n_a, n_b = a["token_pad_mask"].shape[1], b["token_pad_mask"].shape[1]
    m_a, m_b = (int(x["atom_pad_mask"].sum()) for x in (a, b))  # real atoms come first
    m_padded = -(-(m_a + m_b) // ATOM_WINDOW) * ATOM_WINDOW
    a, b = unpad_atoms(a, m_a), unpad_atoms(b, m_b)
    out = {}
    for key, x in a.items():
        y = b[key]
        if key in SHIFTED_IDS:
            y = y + (x.max() + 1)
        if key == "token_index":
            out[key] = torch.arange(n_a + n_b, dtype=x.dtype)[None]
        elif key in TOKEN or key in ATOM:
            out[key] = torch.cat([x, y], dim=1)
        elif key == "coords":  # [1, conformers, M, 3]
            out[key] = torch.cat([x, y], dim=2)
        elif key == "frames_idx":  # [1, 1, N, 3] atom indices
            out[key] = torch.cat([x, y + m_a], dim=2)
        elif key in ROWS_BY_TOKEN:
            if x.shape[1] != y.shape[1]:
                raise ValueError(f"{key}: {x.shape[1]} vs {y.shape[1]} rows; join equal MSA depths")
            out[key] = torch.cat([x, y], dim=2)
        elif key in PAIR or key in ATOM_TO_TOKEN or key in TOKEN_TO_ATOM:
            out[key] = block_diagonal(x, y, fill=x[0, 0, -1] if key in PAIR else torch.zeros_like(x[0, 0, 0]))
        elif key in SAME:
            if not torch.equal(x, y):
                raise ValueError(f"{key} differs between the parts")
            out[key] = x
        elif x.numel() == 0 and y.numel() == 0:  # ligand-only restraints: none for proteins
            out[key] = x
        else:
            raise ValueError(f"don't know how to join feature {key!r} of shape {tuple(x.shape)}")
    return pad_atoms(out, m_padded)


def atom_dims(key: str) -> tuple[int, ...]:
    """The dims of feature `key` that run over atoms."""
    if key in ATOM or key in ATOM_TO_TOKEN:
        return (1,)
    if key == "coords" or key in TOKEN_TO_ATOM:
        return (2,)
    return ()


def unpad_atoms(features: dict, atoms: int) -> dict:
    out = dict(features)
    for key in out:
        for dim in atom_dims(key):
            out[key] = out[key].narrow(dim, 0, atoms)
    return out


def pad_atoms(features: dict, atoms: int) -> dict:
    """Zero atoms appended up to `atoms` (the featurizer's padding is zero in every feature)."""
    out = dict(features)
    for key in out:
        for dim in atom_dims(key):
            x = out[key]
            shape = list(x.shape)
            shape[dim] = atoms - shape[dim]
            out[key] = torch.cat([x, x.new_zeros(shape)], dim=dim)
    return out


def block_diagonal(x: torch.Tensor, y: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """[1, P, Q, ...] and [1, P', Q', ...] -> [1, P+P', Q+Q', ...], `fill` off the two blocks."""
    p, q = x.shape[1], x.shape[2]
    out = fill.expand(1, p + y.shape[1], q + y.shape[2], *x.shape[3:]).clone()
    out[:, :p, :q] = x
    out[:, p:, q:] = y
    return out


def join_saved(a: dict, b: dict) -> dict:
    """`join` on saved (compact) feature dicts, returning a saved dict. The token×atom one-hot
    maps are joined as their index vectors: dense they would be 4 × 4.6 GB at 12,000 tokens."""
    from cp_inputs import compact, expand

    maps = [key for key in ONE_HOT_ATOM_TOKEN_MAPS if key in a]
    dense = join(expand({k: v for k, v in a.items() if k not in maps}, "cpu"),
                 expand({k: v for k, v in b.items() if k not in maps}, "cpu"))
    out = compact(dense)
    m_padded = dense["atom_pad_mask"].shape[1]
    small = expand({"t": a["token_pad_mask"], "m": a["atom_pad_mask"]}, "cpu")
    n_a, m_a = small["t"].shape[1], int(small["m"].sum())
    for key in maps:
        x, y = a[key]["onehot_index"].long(), b[key]["onehot_index"].long()
        if key in ATOM_TO_TOKEN:  # [1, M] token of each atom (-1: padding atom)
            m_b = int((y >= 0).sum())
            index = torch.cat([x[:, :m_a], torch.where(y[:, :m_b] >= 0, y[:, :m_b] + n_a, -1)], dim=1)
            index = torch.cat([index, index.new_full((1, m_padded - index.shape[1]), -1)], dim=1)
            width = dense["token_pad_mask"].shape[1]
        else:  # [1, N] an atom of each token
            index = torch.cat([x, torch.where(y >= 0, y + m_a, -1)], dim=1)
            width = m_padded
        out[key] = {"onehot_index": index.int(), "width": width, "dtype": a[key]["dtype"]}
    return out


ONE_HOT_ATOM_TOKEN_MAPS = ATOM_TO_TOKEN + TOKEN_TO_ATOM


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("parts", nargs="+", help="features_N.pt files, joined in this order")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    joined = torch.load(args.parts[0], weights_only=False)
    for part in args.parts[1:]:
        joined = join_saved(joined, torch.load(part, weights_only=False))
    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    torch.save(joined, tmp)
    tmp.replace(out)
    print(joined["token_index"].shape[1], "tokens ->", out)


if __name__ == "__main__":
    main()
