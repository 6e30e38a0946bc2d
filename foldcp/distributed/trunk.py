"""The Boltz-2 trunk under context parallelism: embeddings, recycling, MSA module, Pairformer,
distogram — the part of Boltz2.forward before the structure module.

Placement: s_inputs, s (tokens × C_s) whole on every rank; z and every pair-shaped tensor
tiled. Templates: with none given (screens never give any) Boltz's template module adds
exactly zero (its output projection has no bias and every template is masked), so it is
skipped; inputs that do carry templates are refused under CP with a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from foldcp.distributed.atom_transformer import DistAtomTransformer
from foldcp.distributed.layout import Layout, row_chunks, strip_rows
from foldcp.distributed.memory import allocatable_bytes
from foldcp.distributed.msa_module import DistMSAModule
from foldcp.distributed.pair_init import DistDistogram, DistPairInit
from foldcp.distributed.pairformer import DistPairformerModule
from foldcp.distributed.rng import replay_pair_stack_draws
from foldcp.distributed.swap import swapped


@dataclass
class TrunkOutput:
    s_inputs: torch.Tensor  # [B, N', C_s] whole
    s: torch.Tensor  # [B, N', C_s] whole
    z: torch.Tensor  # [B, |R_p|, |C_q|, C_z] block
    pdistogram: torch.Tensor  # [B, |R_p|, |C_q|, distograms, bins] block


class DistTrunk(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model  # Boltz2: every parameter below is its own
        self.pair_init = DistPairInit(model)
        self.msa_module = DistMSAModule(model.msa_module)
        self.pairformer = DistPairformerModule(model.pairformer_module)
        self.distogram = DistDistogram(model.distogram_module)
        self.force_input_to_host: bool | None = None  # msa_stage: None decides by free memory
        self.force_recompute_z_init: bool | None = None  # likewise

    def forward(self, feats: dict, layout: Layout, recycling_steps: int,
                s_inputs: torch.Tensor | None = None) -> TrunkOutput:
        """feats: the whole (unpadded) feature dict of one complex (batch of one)."""
        m = self.model
        if m.use_templates and bool(feats["template_mask"].any()):
            raise NotImplementedError(
                "templates are not supported under context parallelism; fold this complex "
                "on one GPU (grid 1) or without templates"
            )
        if s_inputs is None:
            encoder = m.input_embedder.atom_attention_encoder  # its windows split too
            with swapped((encoder, "atom_encoder", DistAtomTransformer(encoder.atom_encoder, layout))):
                s_inputs = m.input_embedder(feats)
        s_inputs = layout.pad_single(s_inputs)
        s_init = m.s_init(s_inputs)
        block_rows = layout.rows.stop - layout.rows.start
        if self.recompute_z_init(layout, s_inputs):
            z_init_rows = self.pair_init.rows(s_inputs, feats, layout)
        else:  # room for it: made once and kept
            z_init = self.pair_init(s_inputs, feats, layout)
            z_init_rows = lambda r0, r1: z_init[:, r0:r1]  # noqa: E731
        mask = layout.pad_single(feats["token_pad_mask"].float())
        pair_mask = mask[:, layout.rows, None] * mask[:, None, layout.cols]
        s = torch.zeros_like(s_init)
        z = None  # zeros of z_init's shape and dtype, made at the first strip
        for _ in range(recycling_steps + 1):
            s = s_init + m.s_recycle(m.s_norm(s))
            # z = z_init + z_recycle(z_norm(z)), in place strip by strip of rows (each strip
            # reads only itself; z is the loop's own); z_init's strip is the kept block's or,
            # where memory is short, made afresh — then the only pair block held here is z
            for r0, r1 in row_chunks(block_rows, strip_rows(block_rows)):
                init = z_init_rows(r0, r1)
                if z is None:
                    z = init.new_zeros(init.shape[0], block_rows, *init.shape[2:])
                z[:, r0:r1] = init + m.z_recycle(m.z_norm(z[:, r0:r1]))
                del init
            if m.use_templates:  # adds exactly zero, but draws random numbers (rng.py)
                templates = feats["template_restype"].shape[1]
                for _ in m.template_module.pairformer.layers:
                    replay_pair_stack_draws(z.shape[0] * templates, layout.n_real, z.device)
            z = self.msa_stage(z, s_inputs, feats, pair_mask, layout)
            s, z = self.pairformer(s, z, mask, pair_mask, layout, consume_z=True)  # z is fresh
        return TrunkOutput(s_inputs, s, z, self.distogram(z, layout))

    def msa_stage(self, z: torch.Tensor, s_inputs: torch.Tensor, feats: dict,
                  pair_mask: torch.Tensor, layout: Layout) -> torch.Tensor:
        """z + msa_module(z). The module makes its own z from the input, which must outlive
        it for the sum: where the GPU is short of memory the input waits in host memory
        (copied out and back, same values) and the module takes z over instead."""
        if not self.input_to_host(z):
            # the module's result is its own block, so the sum goes there
            return self.msa_module(z, s_inputs, feats, pair_mask, layout).add_(z)
        saved = z.to("cpu", copy=True)
        out = self.msa_module(z, s_inputs, feats, pair_mask, layout, consume_z=True)
        return out.add_(saved.to(out.device))

    def input_to_host(self, z: torch.Tensor) -> bool:
        """Whether msa_stage keeps its input in host memory (`force_input_to_host`: tests)."""
        if self.force_input_to_host is not None:
            return self.force_input_to_host
        return short_of_memory(z.numel() * z.element_size(), z.device)

    def recompute_z_init(self, layout: Layout, s_inputs: torch.Tensor) -> bool:
        """Whether z_init's strips are made afresh at each recycle rather than kept as a
        block (`force_recompute_z_init`: tests): where free memory is under
        KEEP_Z_INIT_FREE_Z blocks — z_init, z and the MSA stage's 2.5 z beside them."""
        if self.force_recompute_z_init is not None:
            return self.force_recompute_z_init
        block = (layout.rows.stop - layout.rows.start) * (layout.cols.stop - layout.cols.start)
        z_bytes = s_inputs.shape[0] * block * self.model.z_init_1.out_features * 4  # float32
        return short_of_memory(z_bytes, s_inputs.device, KEEP_Z_INIT_FREE_Z)


# Hold a pair block in host memory while a stage runs when free GPU memory is below this many
# such blocks: the stage's own z and its pair stack's transients (~1.5 z) come on top of it.
HOST_BELOW_FREE_Z = 3.5
KEEP_Z_INIT_FREE_Z = 6.0  # see DistTrunk.recompute_z_init


def short_of_memory(z_bytes: int, device: torch.device, blocks: float = HOST_BELOW_FREE_Z) -> bool:
    """Whether this process can allocate less on `device` (reusable cached blocks included,
    a per-process memory cap respected: memory.py) than `blocks` pair blocks of z_bytes each;
    False off GPUs (unbounded there)."""
    return allocatable_bytes(device) < blocks * z_bytes
