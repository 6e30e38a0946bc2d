"""Boltz-2's MSA module under context parallelism, the MSA sharded by sequences.

Placement: the MSA representation m [B, S, N, c_m] is split by sequences over all P ranks
(rank k holds sequences S_k for every token: S·N·c_m/P values); the pair tensor z is tiled
as everywhere else. S is padded to a multiple of P with masked sequences.

- MSA transition: per (sequence, token), local.
- Pair-weighted averaging, o[s, i] = Σ_j softmax_j(b[i, j]) v[s, j] with b projected from z:
  each rank normalises its block of weights exactly (max and sum all-reduced over the grid
  row), then the weight blocks (H heads, not C channels) are broadcast one block at a time,
  the next posted before the current one is used, and every rank applies each block to its
  own sequences.
- Outer-product mean, z[i, j] = proj_o(Σ_s a[s, i] ⊗ b[s, j] / n[i, j]): every rank forms its
  sequences' partial sums for one target block at a time, projected to C_z channels before
  they travel (the projection is linear, its bias is added once), and the partials are
  summed onto the block's owner. Rows are chunked so the c_h² outer product never exceeds a
  pair block's size. With few sequences (fewer than c_h / 2 on a rank: single-sequence
  screens have one; and blocks of at least 8·S_k·c_h rows, so that W·b stays small) the
  projection is applied to b first, W·b [S_k·c_h, |C_q|·C_z], and
  each chunk's partial sum is one GEMM a [rows, S_k·c_h] × W·b: 2·S_k·c_h·C_z flops per
  pair instead of the c_h²-wide outer product (2·c_h²·C_z flops and c_h² values written and
  read per pair) — the same sum in another order.
- The layer's triangle updates and attention are the distributed Pairformer pieces.

Built from Boltz's MSAModule / MSALayer and sharing their parameters.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function

from boltz.data import const

from foldcp.distributed.comm import all_reduce
from foldcp.distributed.grid import pad_tokens
from foldcp.distributed.layout import Layout, assemble_rows, row_chunks, rowwise, strip_rows
from foldcp.distributed.rng import replay_dropout_draw
from foldcp.distributed.pairformer import DistPairStack


def sequence_shard(x: torch.Tensor, layout: Layout) -> torch.Tensor:
    """This rank's sequences of a [B, S, N, ...] MSA tensor: S padded to a multiple of P with
    zeros (= masked), tokens padded to N'."""
    grid = layout.grid
    per_rank = -(-x.shape[1] // grid.size)
    x = pad_tokens(x, per_rank * grid.size, (1,))
    x = pad_tokens(x, layout.n_padded, (2,))
    return x[:, grid.rank * per_rank : (grid.rank + 1) * per_rank].contiguous()


def _broadcast_blocks(blocks_shape, layout: Layout, mine: torch.Tensor, dtype, device):
    """Yield (owner_rank, block) for every grid block, one broadcast ahead of use."""
    grid = layout.grid

    def post(owner: int):
        if owner == grid.rank:
            buffer = mine.contiguous()
        else:
            rows, cols = grid.block_of(layout.n_padded, owner)
            buffer = torch.empty((*blocks_shape, rows.stop - rows.start, cols.stop - cols.start),
                                 dtype=dtype, device=device)
        work = dist.broadcast(buffer, owner, async_op=True) if grid.size > 1 else None
        return owner, buffer, work

    pending = post(0)
    for owner in range(grid.size):
        current = pending
        if owner + 1 < grid.size:
            pending = post(owner + 1)
        if current[2] is not None:
            current[2].wait()
        yield current[0], current[1]


class DistPairWeightedAveraging(nn.Module):
    def __init__(self, serial: nn.Module) -> None:
        super().__init__()
        self.serial = serial

    def forward(self, m: torch.Tensor, z: torch.Tensor, pair_mask: torch.Tensor,
                layout: Layout) -> torch.Tensor:
        """m: [B, S_k, N', c_m] my sequences; z, pair_mask: my pair block. Returns Δm."""
        pwa = self.serial
        grid = layout.grid
        m = pwa.norm_m(m)
        # proj_z(norm_z(z)) strip by strip of rows: the normed block (float32 under autocast)
        # would be a second z; the result has only H channels
        b = assemble_rows(lambda r0, r1: pwa.proj_z(pwa.norm_z(z[:, r0:r1])), z.shape[1],
                          strip_rows(z.shape[1]))
        b = b.permute(0, 3, 1, 2)  # [B, H, |R_p|, |C_q|]
        b = b + (1 - pair_mask[:, None]) * -pwa.inf
        b = b + layout.padding_bias(layout.cols, z.device, b.dtype, pwa.inf)
        row_max = all_reduce(b.amax(dim=-1), grid.row_group, dist.ReduceOp.MAX)
        weights = torch.exp(b - row_max.unsqueeze(-1))
        weights = weights / all_reduce(weights.sum(dim=-1), grid.row_group).unsqueeze(-1)
        # One head at a time (as Boltz's chunked path does): the per-head values, gates and
        # outputs are each S_k·N'·c_h, never the H·c_h-wide projections at once.
        out = None
        for head in range(pwa.num_heads):
            channels = slice(head * pwa.c_h, (head + 1) * pwa.c_h)
            v = F.linear(m, pwa.proj_m.weight[channels])  # [B, S_k, N', c_h]
            head_out = torch.zeros(v.shape, dtype=torch.promote_types(v.dtype, torch.float32),
                                   device=v.device)  # summed over blocks: not in bf16
            for owner, block in _broadcast_blocks((m.shape[0],), layout, weights[:, head],
                                                  weights.dtype, weights.device):
                rows, cols = grid.block_of(layout.n_padded, owner)
                head_out[:, :, rows] += torch.einsum("bij,bsjd->bsid", block, v[:, :, cols])
            gate = F.linear(m, pwa.proj_g.weight[channels]).sigmoid()
            part = F.linear(gate * head_out.to(v.dtype), pwa.proj_o.weight[:, channels])
            out = part if out is None else out + part
        return out


class DistOuterProductMean(nn.Module):
    def __init__(self, serial: nn.Module) -> None:
        super().__init__()
        self.serial = serial
        # the projection applied to b first (few sequences; see the module docstring):
        # None decides by the number of sequences, True / False force it (tests)
        self.projected_first: bool | None = None

    def forward(self, m: torch.Tensor, msa_mask: torch.Tensor, layout: Layout, into: torch.Tensor,
                row_chunk: int | None = None) -> torch.Tensor:
        """m: [B, S_k, N', c_m], msa_mask: [B, S_k, N'] → `into` + the outer product mean on my
        pair block [B, |R_p|, |C_q|, C_z], added into `into` in place chunk by chunk of rows
        (so the update never exists as a whole block; `into` must have the sum's dtype)."""
        opm = self.serial
        grid, n = layout.grid, layout.n_padded
        mask = msa_mask.unsqueeze(-1).to(m)
        m = opm.norm(m)
        a = (opm.proj_a(m) * mask).float()
        b = (opm.proj_b(m) * mask).float()
        hidden = opm.c_hidden
        weight = opm.proj_o.weight  # [C_z, c_h·c_h]
        depth = a.shape[1]  # my sequences (padded: the same on every rank)
        block_rows = grid.block_of(n, 0)[0]
        # W·b below is depth·c_h rows of a block's columns: with at most an 8th of a block's
        # rows it stays within the chunks' transients (the choice is the same on every rank:
        # the chunks, and so the reductions, follow it)
        projected_first = self.projected_first if self.projected_first is not None \
            else 2 * depth < hidden and 8 * depth * hidden <= block_rows.stop - block_rows.start
        if projected_first:  # a: [B, N', S_k·c_h], (s, c) columns
            a_rows = a.permute(0, 2, 1, 3).reshape(a.shape[0], a.shape[2], depth * hidden)
            a_rows = a_rows.to(weight.dtype)
            w = weight.reshape(weight.shape[0], hidden, hidden)  # [o, c, d]
        for owner in range(grid.size):
            rows, cols = grid.block_of(n, owner)
            n_rows = rows.stop - rows.start
            with torch.autocast("cuda", enabled=False):  # counts up to S: not in bf16
                count = torch.einsum("bsi,bsj->bij", msa_mask[:, :, rows].float(),
                                     msa_mask[:, :, cols].float()).contiguous()
            if grid.size > 1:
                dist.reduce(count, owner)
            if projected_first:
                # W·b: [B, S_k·c_h, |C_q|·C_z], (s, c) rows against (j, o) columns
                wb = torch.einsum("bsjd,ocd->bscjo", b[:, :, cols].to(weight.dtype), w)
                wb = wb.reshape(b.shape[0], depth * hidden, -1)
            # a chunk's partial sums at most a 16th of the z block's bytes: each chunk's outer
            # products (float32, c_h² wide; then their bf16 copy) — at 6,000 tokens on one
            # GPU the whole-block-sized chunk was 17 GiB —, or (projected first) its C_z-wide
            # sums
            width = weight.shape[0] if projected_first else hidden * hidden
            chunk = row_chunk or max(1, n_rows * weight.shape[0] // (width * 16))
            for r0, r1 in row_chunks(n_rows, chunk):
                r = slice(rows.start + r0, rows.start + r1)
                if projected_first:
                    total = torch.matmul(a_rows[:, r], wb).float()
                    total = total.reshape(total.shape[0], r1 - r0, -1, weight.shape[0])
                else:
                    outer = torch.einsum("bsic,bsjd->bijcd", a[:, :, r], b[:, :, cols])
                    outer = outer.reshape(*outer.shape[:3], hidden * hidden)
                    total = F.linear(outer.to(weight.dtype), weight).float()
                    del outer
                if grid.size > 1:
                    dist.reduce(total, owner)
                if owner == grid.rank:  # total / count + bias (same operations), then z +
                    update = total.div_(count[:, r0:r1].clamp(min=1).unsqueeze(-1))
                    into[:, r0:r1] += update.add_(opm.proj_o.bias).to(m.dtype)
        return into


class DistMSALayer(nn.Module):
    def __init__(self, serial: nn.Module) -> None:
        super().__init__()
        self.serial = serial
        self.pair_weighted_averaging = DistPairWeightedAveraging(serial.pair_weighted_averaging)
        self.outer_product_mean = DistOuterProductMean(serial.outer_product_mean)
        self.pairformer_layer = DistPairStack(serial.pairformer_layer)
        self.opm_row_chunk: int | None = None  # rows per outer-product chunk (None: sized)

    def forward(self, z, m, pair_mask, msa_mask, layout: Layout, depth: int,
                consume_z: bool = False):
        """consume_z: the caller hands z over (updated in place); otherwise the layer's first
        update makes its own block and the caller's z is untouched."""
        replay_dropout_draw(m.shape[0], depth, m.device)  # Boltz's MSA dropout mask
        # record_function labels let bench/cp_model.py --profile-msa split the time
        with record_function("foldcp.msa.pair_weighted_averaging"):
            m = m + self.pair_weighted_averaging(m, z, pair_mask, layout)
        with record_function("foldcp.msa.transition"):
            m = m + rowwise(self.serial.msa_transition, m, expansion=4)  # chunks of sequences
        with record_function("foldcp.msa.outer_product_mean"):
            # z + opm(m)'s dtype: opm's is its LayerNorm's (float32 under autocast, else m's)
            dtype = torch.promote_types(z.dtype, torch.promote_types(m.dtype, torch.float32))
            if not consume_z or z.dtype != dtype:
                z = z.to(dtype, copy=True)  # the caller's z stays as it was
            z = self.outer_product_mean(m, msa_mask, layout, into=z, row_chunk=self.opm_row_chunk)
        z = self.pairformer_layer(z, pair_mask, layout, consume_z=True)  # z is ours now
        return z, m


class DistMSAModule(nn.Module):
    """Boltz's MSAModule (v2): returns the updated pair block, as the serial module does."""

    def __init__(self, serial: nn.Module) -> None:
        super().__init__()
        if serial.subsample_msa:
            raise NotImplementedError("MSA subsampling (random) is not supported under CP")
        self.serial = serial
        self.layers = nn.ModuleList(DistMSALayer(layer) for layer in serial.layers)

    def forward(self, z: torch.Tensor, emb: torch.Tensor, feats: dict, pair_mask: torch.Tensor,
                layout: Layout, consume_z: bool = False) -> torch.Tensor:
        """z: pair block; emb: s_inputs [B, N', C_s] whole; feats: whole (unpadded) features.
        consume_z: the caller hands z over (updated in place); otherwise it is only read."""
        module = self.serial
        def shard(key):  # my sequences only, before anything is expanded
            return sequence_shard(feats[key], layout)

        msa = torch.nn.functional.one_hot(shard("msa"), num_classes=const.num_tokens)
        parts = [msa, shard("has_deletion").unsqueeze(-1), shard("deletion_value").unsqueeze(-1)]
        if module.use_paired_feature:
            parts.append(shard("msa_paired").unsqueeze(-1))
        m = torch.cat(parts, dim=-1)
        msa_mask = shard("msa_mask")
        m = module.msa_proj(m)
        m = m + module.s_proj(emb).unsqueeze(1)
        for index, layer in enumerate(self.layers):  # the caller's z is read, never written
            z, m = layer(z, m, pair_mask, msa_mask, layout, depth=feats["msa"].shape[1],
                         consume_z=consume_z or index > 0)
        return z
