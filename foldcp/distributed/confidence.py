"""Boltz-2's confidence module under context parallelism, one diffusion sample at a time.

Pair features (z, relative positions, bonds, contact conditioning, the predicted-distance
embedding) are built per block; the 8-block Pairformer is the distributed one; the PAE / PDE
heads are per pair. Every score that reduces over pairs is reduced over the grid instead of
gathering logits: pTM, ipTM, per-chain-pair ipTM (row sums over my columns → all-reduce in
the grid row → max over my rows → all-reduce max over the grid column), complex PDE / iPDE
(sums → all-reduce), the interface mask of complex ipLDDT (row max → all-reduce). Per-token
outputs (pLDDT) are whole on every rank; PAE and PDE stay as blocks (gather_pair writes them).
Built from Boltz's ConfidenceModule and sharing its parameters.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from boltz.data import const
from boltz.model.layers.confidence_utils import (
    compute_aggregated_metric,
    compute_frame_pred,
    tm_function,
)
from foldcp.distributed.comm import all_gather_cat, all_reduce, grid_group, transpose_pair
from foldcp.distributed.grid import pad_tokens
from foldcp.distributed.layout import Layout, compute_dtype, row_chunks, strip_rows
from foldcp.distributed.pair_init import add_pair_input_features, representative_atoms
from foldcp.distributed.pairformer import DistPairformerModule

class DistConfidence(nn.Module):
    def __init__(self, serial: nn.Module) -> None:
        super().__init__()
        if not serial.confidence_heads.token_level_confidence:
            raise NotImplementedError("atom-level confidence is not supported under CP")
        self.serial = serial
        self.pairformer = DistPairformerModule(serial.pairformer_stack)

    def forward(self, s_inputs, s, z_block, x_pred, feats, pdistogram_block, layout: Layout) -> dict:
        """One sample. s_inputs, s: [1, N, C] whole (unpadded); z_block, pdistogram_block
        ([.., bins] of distogram 0): my blocks — z_block may be a function returning it (a
        block brought back from host memory then lives only until its norm is taken);
        x_pred: [1, atoms, 3]."""
        m = self.serial
        n = s.shape[1]
        rows, cols = layout.rows, layout.cols
        s_inputs = m.s_inputs_norm(s_inputs)
        if not m.no_update_s:
            s = m.s_norm(s)
        if m.add_s_input_to_s:
            s = s + m.s_input_to_s(s_inputs)
        z = m.z_norm(z_block() if callable(z_block) else z_block)
        if m.add_z_input_to_z:
            z = add_pair_input_features(m, z, feats, layout)
        s_inputs = layout.pad_single(s_inputs)
        # z is a block of our own from here on (made by the norm or the sum above): in place
        z += m.s_to_z(s_inputs)[:, rows, None, :]
        z += m.s_to_z_transpose(s_inputs)[:, None, cols, :]
        # Boltz's bmm with the one-hot map; under autocast that bmm returns the compute dtype
        x = x_pred.float()
        rep = representative_atoms(feats, x).to(compute_dtype(x))
        rep = layout.pad_single(rep)
        d = torch.cdist(rep[:, rows], rep[:, cols])  # [1, |R_p|, |C_q|]
        # per-pair terms strip by strip of rows: no whole-block transient
        prod_rows = m.s_to_z_prod_in1(s_inputs)[:, rows] if m.add_s_to_z_prod else None
        prod_cols = m.s_to_z_prod_in2(s_inputs)[:, cols] if m.add_s_to_z_prod else None
        for r0, r1 in row_chunks(z.shape[1], strip_rows(z.shape[1])):
            if m.add_s_to_z_prod:
                z[:, r0:r1] += m.s_to_z_prod_out(prod_rows[:, r0:r1, None, :] * prod_cols[:, None, :, :])
            z[:, r0:r1] += m.dist_bin_pairwise_embed(
                (d[:, r0:r1].unsqueeze(-1) > m.boundaries).sum(dim=-1).long())
        mask = layout.pad_single(feats["token_pad_mask"].float())
        pair_mask = mask[:, rows, None] * mask[:, None, cols]
        s, z = self.pairformer(layout.pad_single(s), z, mask, pair_mask, layout, consume_z=True)
        return self._heads(s, z, d, x_pred, feats, pdistogram_block, layout, n)

    def _heads(self, s, z, d, x_pred, feats, pdistogram_block, layout: Layout, n: int) -> dict:
        h = self.serial.confidence_heads
        grid = layout.grid
        rows, cols = layout.rows, layout.cols
        asym = pad_tokens(feats["asym_id"], layout.n_padded, (1,))
        same_chain = (asym[:, rows, None] == asym[:, None, cols]).float().unsqueeze(-1)
        pae, pde, tm = self._pair_heads(z, same_chain, feats, layout)
        s = s[:, :n]
        plddt = compute_aggregated_metric(h.to_plddt_logits(s))
        token_pad = feats["token_pad_mask"].float()
        complex_plddt = (plddt * token_pad).sum(dim=-1) / token_pad.sum(dim=-1)

        # interface tokens: in contact (< 8 Å) with a token of another chain, not a ligand
        ligand = (pad_tokens(feats["mol_type"], layout.n_padded, (1,))
                  == const.chain_type_ids["NONPOLYMER"]).float()
        real_cols = (torch.arange(layout.n_padded, device=d.device)[cols] < n).float()
        contact = ((d < 8).float() * (1 - same_chain[..., 0]) * real_cols
                   * (1 - ligand[:, rows]).unsqueeze(-1))
        row_interface = all_reduce(contact.amax(dim=-1), grid.row_group, dist.ReduceOp.MAX)
        interface = all_gather_cat(row_interface, grid.col_group, dim=1)[:, :n]
        ligand = ligand[:, :n]
        weight = ligand * 20 + interface * 10 + (1 - interface) * (1 - ligand) * 1
        complex_iplddt = (plddt * token_pad * weight).sum(dim=-1) / (token_pad * weight).sum(dim=-1)

        prob_contact = torch.softmax(pdistogram_block, dim=-1)[..., :20].sum(-1)
        pad = pad_tokens(feats["token_pad_mask"].float(), layout.n_padded, (1,))
        index = torch.arange(layout.n_padded, device=z.device)
        off_diagonal = (index[rows, None] != index[None, cols]).float()
        pair = pad[:, rows, None] * pad[:, None, cols] * off_diagonal * prob_contact
        inter = pair * (1 - same_chain[..., 0])
        sums = torch.stack([(pde * pair).sum(), pair.sum(), (pde * inter).sum(), inter.sum()])
        sums = all_reduce(sums, grid_group(grid))
        out = dict(
            plddt=plddt, complex_plddt=complex_plddt, complex_iplddt=complex_iplddt,
            complex_pde=(sums[0] / sums[1]).reshape(1), complex_ipde=(sums[2] / (sums[3] + 1e-5)).reshape(1),
            pae_block=pae, pde_block=pde,
        )
        out.update(self._ptms(tm, x_pred, feats, layout, n))
        return out

    def _pair_heads(self, z, same_chain, feats, layout: Layout):
        """PAE and PDE ([B, |R_p|, |C_q|] expected values) and the pTM integrand tm (expected
        TM term of the PAE bins) on my block, strip by strip of rows: the logits and z + zᵀ
        of the PDE head exist a strip at a time (as whole blocks they were ~3 z at the
        end of a fold, beside the trunk's z)."""
        h = self.serial.confidence_heads
        z_t = transpose_pair(z, layout.grid, layout.n_padded)  # zᵀ block, for the PDE head
        tm_value = None
        parts = []
        for r0, r1 in row_chunks(z.shape[1], strip_rows(z.shape[1])):
            z_s, same = z[:, r0:r1], same_chain[:, r0:r1]
            zz = z_s + z_t[:, r0:r1]
            if h.use_separate_heads:
                pae_logits = h.to_pae_intra_logits(z_s) * same + h.to_pae_inter_logits(z_s) * (1 - same)
                pde_logits = h.to_pde_intra_logits(zz) * same + h.to_pde_inter_logits(zz) * (1 - same)
            else:
                pae_logits, pde_logits = h.to_pae_logits(z_s), h.to_pde_logits(zz)
            del zz
            if tm_value is None:
                tm_value = _tm_value(pae_logits.shape[-1], feats, z.device)
            parts.append((compute_aggregated_metric(pae_logits, end=32),
                          compute_aggregated_metric(pde_logits, end=32),
                          torch.sum(torch.softmax(pae_logits, dim=-1) * tm_value, dim=-1)))
        return [torch.cat(column, dim=1) for column in zip(*parts)]

    @staticmethod
    def _ptms(tm, x_pred, feats, layout: Layout, n: int) -> dict:
        """Boltz's compute_ptms from the tm block (see _pair_heads): masked row means, then
        row maxima."""
        grid = layout.grid
        rows, cols = layout.rows, layout.cols
        _, collinear = compute_frame_pred(x_pred, feats["frames_idx"], feats, 1, inference=True)
        valid_frame = pad_tokens(collinear.reshape(1, -1).float(), layout.n_padded, (1,))
        pad = pad_tokens(feats["token_pad_mask"].float(), layout.n_padded, (1,))
        asym = pad_tokens(feats["asym_id"], layout.n_padded, (1,))
        mol = pad_tokens(feats["mol_type"], layout.n_padded, (1,))

        base = valid_frame[:, rows, None] * pad[:, rows, None] * pad[:, None, cols]
        different = (asym[:, rows, None] != asym[:, None, cols]).float()
        protein = (mol == const.chain_type_ids["PROTEIN"]).float()
        ligand = (mol == const.chain_type_ids["NONPOLYMER"]).float()

        def score(mask: torch.Tensor) -> torch.Tensor:
            numer = all_reduce(torch.sum(tm * mask, dim=-1), grid.row_group)
            denom = all_reduce(torch.sum(mask, dim=-1), grid.row_group)
            best = (numer / (denom + 1e-5)).amax(dim=1)
            return all_reduce(best, grid.col_group, dist.ReduceOp.MAX)

        out = {
            "ptm": score(base),
            "iptm": score(base * different),
            "ligand_iptm": score(base * different * (ligand[:, rows, None] * protein[:, None, cols]
                                                      + protein[:, rows, None] * ligand[:, None, cols])),
            "protein_iptm": score(base * different * protein[:, rows, None] * protein[:, None, cols]),
        }
        chains = torch.unique(feats["asym_id"]).tolist()
        out["pair_chains_iptm"] = {
            first: {
                second: score(base * (asym[:, None, cols] == first).float()
                              * (asym[:, rows, None] == second).float())
                for second in chains
            }
            for first in chains
        }
        return out


def _tm_value(num_bins: int, feats: dict, device) -> torch.Tensor:
    """Boltz's TM term at each PAE bin centre: [B, 1, 1, bins]."""
    width = 32.0 / num_bins
    pae_value = torch.arange(0.5 * width, 32.0, width, device=device).unsqueeze(0)
    n_res = feats["token_pad_mask"].sum(dim=-1, keepdim=True)
    return tm_function(pae_value, n_res).unsqueeze(1).unsqueeze(2)
