"""Boltz's windowed atom transformer (diffusion atom encoder and decoder) split over the ranks.

Atoms are grouped in windows of W queries that attend to H keys around them. Each rank runs
the attention and transition of a contiguous range of windows (windows split evenly over all
P ranks); the per-atom conditioning (AdaLN) and the keys are formed for every window from the
whole atom tensor, so no halo bookkeeping is needed, and after each layer the ranks
all-gather the updated windows. Per-window results are those of the serial layer; the work
of the attention and transition (the cost) is divided by P.

The layers' s-only terms (AdaLN scales and biases, output gates) come for all layers from a
few GEMMs per call (layer_conditioning.py), the AdaLNs and residuals are addcmuls and the
transition's two input GEMMs one (fewer, larger kernels in a denoising step: ~1,636 kernels,
13.5 ms at 1,000 tokens on an H200 before; not yet measured after). The attention is Boltz's
own module (its keys, to_keys(b), differ from its queries: four projections).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from foldcp.distributed.layer_conditioning import adaln, add_gated, layer_terms, transition
from foldcp.distributed.layout import Layout


class DistAtomTransformer(nn.Module):
    def __init__(self, serial: nn.Module, layout: Layout) -> None:
        super().__init__()
        self.serial = serial
        self.layout = layout

    def forward(self, q, c, bias, to_keys, mask, multiplicity=1):
        """q: [B, M, D], c: [B, M, Ds], bias: [B/mult, K, W, H, heads·layers], mask: [B, M]."""
        width, keys = self.serial.attn_window_queries, self.serial.attn_window_keys
        grid = self.layout.grid
        batch, atoms, dim = q.shape
        windows = atoms // width
        per_rank = -(-windows // grid.size)
        first = min(windows, grid.rank * per_rank)
        last = min(windows, first + per_rank)
        mine = slice(first, last)

        a = q.view(batch, windows, width, dim)
        s = c.view(batch, windows, width, -1)
        mask = mask.view(batch, windows, width).float()
        bias = bias.repeat_interleave(multiplicity, 0)
        bias = bias.view(batch, windows, width, keys, -1)[:, mine]
        transformer = self.serial.diffusion_transformer
        layers = len(transformer.layers)
        bias = bias.view(*bias.shape[:-1], layers, bias.shape[-1] // layers)

        def to_keys_windows(x):  # [B, K, W, d] -> [B, K, H, d] (keys of every window)
            return to_keys(x.reshape(batch, windows * width, -1)).view(batch, windows, keys, -1)

        key_mask = to_keys_windows(mask.unsqueeze(-1)).squeeze(-1)[:, mine]
        owned = False  # a is a view of the caller's q until the first residual
        # every layer's s-only terms from a few GEMMs (layer_conditioning.py), for every
        # window: the AdaLN of the keys needs them all (the gates and the transition's terms
        # only my windows': on grids of several ranks, work a per-rank slice could save)
        terms_per_layer = layer_terms(transformer.layers, s)
        for index, (layer, terms) in enumerate(zip(transformer.layers, terms_per_layer)):
            # every window: the keys need their neighbours
            b = adaln(layer.adaln, a, terms.attn_scale, terms.attn_bias)
            a_mine = a[:, mine]
            if last > first:  # small complexes leave some ranks without a window
                k_in = to_keys_windows(b)[:, mine]
                b_mine = b[:, mine]
                flat = lambda t: t.reshape(batch * (last - first), *t.shape[2:])  # noqa: E731
                update = layer.pair_bias_attn(s=flat(b_mine), z=flat(bias[..., index, :]),
                                              mask=flat(key_mask), multiplicity=1, k_in=flat(k_in))
                update = update.view(b_mine.shape)
                a_mine = add_gated(a_mine, terms.attn_gate[:, mine], update, in_place=owned)
                update = transition(layer.transition, a_mine, terms.trans_scale[:, mine],
                                    terms.trans_bias[:, mine])
                a_mine = add_gated(a_mine, terms.trans_gate[:, mine], update, in_place=True)
                a_mine = layer.post_lnorm(a_mine)
            owned = True  # a is the gathered windows from here on (or my own a_mine)
            a = self._gather_windows(a_mine, a, per_rank, first)
            del terms
        return a.reshape(batch, atoms, dim)

    def _gather_windows(self, mine: torch.Tensor, whole: torch.Tensor, per_rank: int, first: int):
        grid = self.layout.grid
        if grid.size == 1:
            return mine
        batch, _, width, dim = whole.shape
        windows = whole.shape[1]
        padded = mine.new_zeros((batch, per_rank, width, dim))
        padded[:, : mine.shape[1]] = mine
        parts = [torch.empty_like(padded) for _ in range(grid.size)]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat(parts, dim=1)[:, :windows]
