"""Boltz-2's pair initialisation and distogram head on a tiled pair tensor.

z_init[i, j] = z_init_1(s_inputs)[i] + z_init_2(s_inputs)[j] + rel_pos(i, j) + token_bonds(i, j)
             + bond_type(i, j) + contact_conditioning(i, j)

Every term depends only on the two tokens of the pair, so rank (p, q) builds its block
[R_p, C_q] without communication:
- the pair-shaped input features (token_bonds, type_bonds, contact_conditioning,
  contact_threshold) are sliced to the block before the serial modules see them;
- the relative position encoder takes per-token features and forms all pairs itself, so it
  is run on small token subsets (a chunk of my rows ∪ a chunk of my columns) and the
  rows × columns quadrant of its output is kept: the serial module, unchanged, on the pairs
  this rank owns, with transients bounded by the chunk size;
- the terms are summed strip by strip of rows (an 8th of the block), so none of them exists
  as a whole block — at 6,000 tokens on one GPU each would be 18 GiB.

The distogram head symmetrises z (z + zᵀ: one layout transpose) and is then per pair.
"""

from __future__ import annotations

import torch
from torch import nn

from foldcp.distributed.comm import transpose_pair
from foldcp.distributed.grid import pad_tokens
from foldcp.distributed.layout import Layout, assemble_rows, strip_rows

PAIR_FEATURES = ("token_bonds", "type_bonds", "contact_conditioning", "contact_threshold")
# Features Boltz's featurizer makes that inference never reads (only training losses do):
# a pair-shaped one and two token × atom one-hot maps (each 4.6 GB at 12,000 tokens).
UNUSED_FEATURES = ("disto_target", "r_set_to_rep_atom", "token_to_center_atom")
REL_POS_FEATURES = ("asym_id", "residue_index", "entity_id", "token_index", "sym_id", "cyclic_period")


def pair_feature_block(feats: dict, layout: Layout) -> dict:
    """The pair-shaped input features cut to this rank's block (padded tokens = zeros), where
    the features are: the whole N×N features may stay in host memory (see split_features)."""
    return {key: layout.shard_pair(feats[key]) for key in PAIR_FEATURES if key in feats}


def split_features(feats: dict, device) -> dict:
    """Features for a grid run: per-token and per-atom ones on `device`; the pair-shaped ones
    left in host memory (each rank moves only its block); unused pair-shaped ones dropped."""
    out = {}
    for key, value in feats.items():
        if key in UNUSED_FEATURES:
            continue
        if key == "token_to_rep_atom":  # [B, N, atoms] one-hot → its index (4.6 GB → 0.1 MB)
            out[REP_ATOM_INDEX] = one_hot_index(value).to(device)
            continue
        out[key] = value if (key in PAIR_FEATURES or not torch.is_tensor(value)) else value.to(device)
    return out


REP_ATOM_INDEX = "token_to_rep_atom_index"  # [B, N]: each token's representative atom, -1: none


def one_hot_index(one_hot: torch.Tensor) -> torch.Tensor:
    """A one-hot map [B, P, Q] (token → representative atom, atom → token) as indices
    [B, P]; -1 for a zero row (a token without one, a padding atom)."""
    index = one_hot.argmax(dim=-1)
    return torch.where(one_hot.sum(dim=-1) > 0, index, torch.full_like(index, -1))


def representative_atoms(feats: dict, x: torch.Tensor) -> torch.Tensor:
    """bmm(token_to_rep_atom, x) — [B, N, 3] coordinates of each token's representative atom
    (zeros where none) — from the index split_features keeps, or from the one-hot map."""
    index = feats[REP_ATOM_INDEX] if REP_ATOM_INDEX in feats else \
        one_hot_index(feats["token_to_rep_atom"])
    picked = torch.gather(x, 1, index.clamp(min=0).unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    return picked * (index >= 0).unsqueeze(-1).to(x.dtype)


def relative_position_rows(rel_pos: nn.Module, feats: dict, layout: Layout, r0: int, r1: int,
                           chunk: int | None = None) -> torch.Tensor:
    """Rows r0:r1 of my block of rel_pos(feats): [B, r1 - r0, |C_q|, C_z]. The serial encoder
    runs on token subsets (≤ chunk of the rows ∪ ≤ chunk of my columns), so its one-hot
    transients stay (2·chunk)² pairs."""
    token = {key: pad_tokens(feats[key], layout.n_padded, (1,)) for key in REL_POS_FEATURES}
    rows = torch.arange(layout.rows.start + r0, layout.rows.start + r1)
    cols = torch.arange(layout.cols.start, layout.cols.stop)
    n_rows = layout.rows.stop - layout.rows.start
    # bounded transients: (2·chunk)² pairs ≈ a 16th of the block
    chunk = chunk or max(1, int((n_rows * len(cols)) ** 0.5) // 8)
    row_pieces = []
    for a in range(0, len(rows), chunk):
        row_idx = rows[a : a + chunk]
        pieces = []
        for c0 in range(0, len(cols), chunk):
            col_idx = cols[c0 : c0 + chunk]
            subset = torch.cat([row_idx, col_idx]).to(token["asym_id"].device)
            encoded = rel_pos({key: value[:, subset] for key, value in token.items()})
            pieces.append(encoded[:, : len(row_idx), len(row_idx) :])
        row_pieces.append(torch.cat(pieces, dim=2))
    return torch.cat(row_pieces, dim=1) if len(row_pieces) > 1 else row_pieces[0]


def add_pair_input_features(module: nn.Module, z: torch.Tensor, feats: dict,
                            layout: Layout) -> torch.Tensor:
    """z + rel_pos + token_bonds (+ bond types) + contact conditioning, with `module`'s own
    encoders (the trunk's and the confidence module's each have theirs), strip by strip of
    rows, so no term exists as a whole block."""
    strip = pair_input_rows(module, lambda r0, r1: z[:, r0:r1], feats, layout, z.device)
    return assemble_rows(strip, z.shape[1], strip_rows(z.shape[1]))


def pair_input_rows(module: nn.Module, base, feats: dict, layout: Layout, device):
    """fn(r0, r1) → rows r0:r1 of base + rel_pos + token_bonds (+ bond types) + contact
    conditioning on my block, where base(r0, r1) gives those rows of the base term. Sums in
    Boltz's order and dtypes (its bond-type embedding is float32 under autocast: the result
    is then float32 too)."""
    # the block's features stay where they are (host memory in grid runs) and move to the
    # GPU a strip at a time: the trunk calls this at every recycle, and the one-hot contact
    # conditioning alone is 40 bytes a pair (1.3 GiB of a 6,000-token block)
    block = pair_feature_block(feats, layout)

    def rows(r0: int, r1: int) -> torch.Tensor:
        part = {key: value[:, r0:r1].to(device) for key, value in block.items()}
        out = base(r0, r1) + relative_position_rows(module.rel_pos, feats, layout, r0, r1)
        out = out + module.token_bonds(part["token_bonds"].float())
        if module.bond_type_feature:
            out = out + module.token_bonds_type(part["type_bonds"].long())
        return out + module.contact_conditioning(part)

    return rows


class DistPairInit(nn.Module):
    """z_init block of a Boltz2 model (shares its modules)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, s_inputs: torch.Tensor, feats: dict, layout: Layout) -> torch.Tensor:
        """s_inputs: [B, N', C_s] whole (padded); feats: the whole (unpadded) feature dict."""
        rows = layout.rows.stop - layout.rows.start
        return assemble_rows(self.rows(s_inputs, feats, layout), rows, strip_rows(rows))

    def rows(self, s_inputs: torch.Tensor, feats: dict, layout: Layout):
        """fn(r0, r1) → rows r0:r1 of my z_init block [B, r1 - r0, |C_q|, C_z], computed anew
        at each call: where memory is short the trunk adds them into z strip by strip at
        every recycle rather than keep a whole z_init block (z's size: float32, 18 GiB at
        6,000 tokens on one GPU)."""
        m = self.model
        left = m.z_init_1(s_inputs)[:, layout.rows]  # [B, |R_p|, C_z]
        right = m.z_init_2(s_inputs)[:, None, layout.cols]  # [B, 1, |C_q|, C_z]
        return pair_input_rows(m, lambda r0, r1: left[:, r0:r1, None] + right, feats, layout,
                               s_inputs.device)


class DistDistogram(nn.Module):
    """Boltz's DistogramModule on a pair block: [B, |R_p|, |C_q|, distograms, bins]."""

    def __init__(self, serial: nn.Module) -> None:
        super().__init__()
        self.serial = serial

    def forward(self, z: torch.Tensor, layout: Layout) -> torch.Tensor:
        m = self.serial
        z = z + transpose_pair(z, layout.grid, layout.n_padded)
        return m.distogram(z).reshape(z.shape[0], z.shape[1], z.shape[2], m.num_distograms,
                                      m.num_bins)
