"""Boltz-2's PairformerLayer / PairformerModule (v2) under context parallelism.

The pair tensor z is tiled ([B, |R_p|, |C_q|, C_z] per rank), the single track s and the token
mask are whole on every rank. Each distributed layer wraps the serial Boltz layer and uses its
parameters, so a checkpoint loads into the serial model and runs tiled unchanged. Inference
only (no dropout).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.profiler import record_function

from foldcp.distributed.attention_pair_bias import DistAttentionPairBias
from foldcp.distributed.layout import Layout, add_transition
from foldcp.distributed.rng import replay_dropout_draw
from foldcp.distributed.triangle_attention import DistTriangleAttention
from foldcp.distributed.triangle_multiplication import DistTriangleMultiplication


class DistPairStack(nn.Module):
    """The pair half of a Pairformer layer — triangle multiplications, triangle attentions,
    pair transition — on a pair block. It is Boltz's PairformerNoSeqLayer entire (the MSA
    and template modules use that one) and the z update of PairformerLayer."""

    def __init__(self, serial: nn.Module) -> None:
        super().__init__()
        self.serial = serial
        self.tri_mul_out = DistTriangleMultiplication(serial.tri_mul_out, outgoing=True)
        self.tri_mul_in = DistTriangleMultiplication(serial.tri_mul_in, outgoing=False)
        self.tri_att_start = DistTriangleAttention(serial.tri_att_start)
        self.tri_att_end = DistTriangleAttention(serial.tri_att_end)

    def forward(self, z, pair_mask, layout: Layout, consume_z: bool = False):
        """consume_z: the caller hands z over (it will not read it again), so it is updated
        in place — no second pair block exists during the layer. Otherwise the first update
        makes the layer's own copy and the caller's z is untouched."""
        batch, length, device = z.shape[0], layout.n_real, z.device
        replay_dropout_draw(batch, length, device)
        # record_function labels let bench/pairformer_layer.py --profile split the time
        # Each update is added into z chunk by chunk as it is made (into=z): z is read only
        # through the update's own normed copy, so no update exists as a whole block.
        with record_function("foldcp.tri_mul_out"):
            if consume_z:
                self.tri_mul_out(z, pair_mask, layout, into=z)
            else:
                z = z + self.tri_mul_out(z, pair_mask, layout)
        replay_dropout_draw(batch, length, device)
        with record_function("foldcp.tri_mul_in"):
            self.tri_mul_in(z, pair_mask, layout, into=z)
        replay_dropout_draw(batch, length, device)
        with record_function("foldcp.tri_att_start"):
            self.tri_att_start(z, pair_mask, layout, into=z)
        replay_dropout_draw(batch, length, device, columnwise=True)
        with record_function("foldcp.tri_att_end"):
            self.tri_att_end(z, pair_mask, layout, into=z)
        with record_function("foldcp.transition_z"):
            return add_transition(self.serial.transition_z, z)


class DistPairformerLayer(nn.Module):
    def __init__(self, serial: nn.Module) -> None:
        super().__init__()
        self.serial = serial
        self.pair_stack = DistPairStack(serial)
        self.attention = DistAttentionPairBias(serial.attention)

    def forward(self, s, z, mask, pair_mask, layout: Layout, consume_z: bool = False):
        """s: [B, N', C_s] whole; z: pair block; mask: [B, N']; pair_mask: pair-mask block.
        consume_z: see DistPairStack."""
        m = self.serial
        z = self.pair_stack(z, pair_mask, layout, consume_z)
        with torch.autocast("cuda", enabled=False), record_function("foldcp.attention_pair_bias"):
            s_normed = m.pre_norm_s(s.float())
            s = s.float() + self.attention(s_normed, z.float(), mask.float(), s_normed, layout)
            s = s + m.transition_s(s)
            s = m.s_post_norm(s)
        return s, z


class DistPairformerModule(nn.Module):
    def __init__(self, serial: nn.Module) -> None:
        super().__init__()
        self.serial = serial
        self.layers = nn.ModuleList(DistPairformerLayer(layer) for layer in serial.layers)

    def forward(self, s, z, mask, pair_mask, layout: Layout, consume_z: bool = False):
        """consume_z: the caller hands z over (updated in place, see DistPairStack); after
        the first layer the module owns z either way."""
        for index, layer in enumerate(self.layers):
            s, z = layer(s, z, mask, pair_mask, layout, consume_z=consume_z or index > 0)
        return s, z
