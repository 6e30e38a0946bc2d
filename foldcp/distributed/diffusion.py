"""Boltz-2's structure module under context parallelism.

The diffusion loop (noise, augmentation, the atom-level encoder and decoder, steering) runs
unchanged and identically on every rank: it works on atoms and tokens, not token pairs, and
every rank draws the same random numbers from the same seed, so coordinates equal the serial
run's. The two places where pair tensors enter are replaced:

- Diffusion conditioning: the pairwise conditioner runs per pair block; the atom-pair bias
  takes z only at (token of query atom, token of key atom) inside each atom window, which
  each rank gathers from its own block (zero elsewhere) and the grid sums (all-reduce) —
  the serial one-hot einsum picks exactly those entries.
- Token transformer: the N×N×(layers·heads) pair bias is never formed. A `ShardedPairBias`
  keeps the conditioned pair block and each layer's projection, and the distributed token
  transformer projects one layer's heads from the block when that layer runs; attention
  combines partial softmaxes over the grid row exactly (DistAttentionPairBias).

On GPUs, where the whole pair tensor fits each of them, sample_structure does neither (the
default; FOLDCP_REPLICATED_SAMPLING=0 turns it off): every rank gathers z and samples as a
grid of one, denoising its share of the samples (replicated_sampling.py).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.profiler import record_function

from boltz.model.modules.encodersv2 import get_indexing_matrix, single_to_keys
from foldcp.distributed.atom_transformer import DistAtomTransformer
from foldcp.distributed.attention_pair_bias import DistAttentionPairBias, attention_key_bias
from foldcp.distributed.comm import all_reduce, grid_group
from foldcp.distributed import fused_attention, graphed_sampling, replicated_sampling, triton_attention
from foldcp.distributed.graphed import GraphedScoreModel
from foldcp.distributed.grid import pad_tokens
from foldcp.distributed.host_sync_free import host_sync_free_sampling
from foldcp.distributed.derived_weights import release
from foldcp.distributed.layer_conditioning import adaln, add_gated, layer_terms, transition
from foldcp.distributed.layout import Layout, assemble_rows, assemble_rows_heads_first, strip_rows
from foldcp.distributed.memory import allocatable_bytes
from foldcp.distributed.pair_init import one_hot_index, relative_position_rows
from foldcp.distributed.steering import effective_steering
from foldcp.distributed.swap import swapped
from foldcp.model.sampling_precision import active_arithmetic


class ShardedPairBias:
    """The token transformer's pair bias, kept as the conditioned pair block + projections.

    Stands where Boltz passes the [B, N, N, layers·heads] tensor; `.float()` is a no-op so the
    serial DiffusionModule can hand it on unchanged.

    Each layer's [B, |R_p|, |C_q|, heads] bias is projected once and kept (compute dtype) when
    all layers' biases fit comfortably in free memory — every sampling step reuses them, as
    Boltz's precomputed tensor does — otherwise projected from the block when the layer runs
    (a LayerNorm and a linear over the block per layer and step: slower, but no
    N·N·layers·heads tensor at the sizes where it would not fit). Same values either way.
    """

    FREE_MEMORY_SHARE = 0.5  # the cached biases may take at most this share of free memory

    def __init__(self, z_block: torch.Tensor, projections: nn.ModuleList,
                 cache: bool | None = None) -> None:
        self.z_block = z_block
        self.projections = projections
        # Boltz projects these biases in DiffusionConditioning, i.e. under the caller's
        # autocast; sampling then runs with autocast off. Project under the same autocast.
        self.autocast_enabled = torch.is_autocast_enabled("cuda")
        self.autocast_dtype = torch.get_autocast_dtype("cuda")
        if cache is None:
            cache = self._fits_in_memory()
        self.cached = [self._project(i) for i in range(len(projections))] if cache else None

    def _fits_in_memory(self) -> bool:
        z = self.z_block
        if not z.is_cuda:
            return True
        heads = sum(p[-1].out_features if isinstance(p, nn.Sequential) else p.out_features
                    for p in self.projections)
        itemsize = torch.empty((), dtype=self.autocast_dtype if self.autocast_enabled else z.dtype).element_size()
        needed = z[..., 0].numel() * heads * itemsize
        return needed <= self.FREE_MEMORY_SHARE * allocatable_bytes(z.device)

    def float(self) -> "ShardedPairBias":
        return self

    def _project(self, index: int) -> torch.Tensor:
        """Strip by strip of rows: the projection's LayerNorm returns float32, which over the
        whole block would be twice a bf16 z (17 GiB at 36 M pairs per GPU)."""
        projection = self.projections[index]
        z = self.z_block
        dtype = None if self.autocast_enabled else next(projection.parameters()).dtype

        def rows(r0: int, r1: int) -> torch.Tensor:
            strip = z[:, r0:r1] if dtype is None else z[:, r0:r1].to(dtype)
            with torch.autocast("cuda", dtype=self.autocast_dtype, enabled=self.autocast_enabled):
                return projection(strip)

        # [B, I, J, H] as Boltz's bias, its memory heads first: the attention's Rearrange to
        # [B, H, I, J] is then a contiguous view, as its fused kernel reads the bias
        return assemble_rows_heads_first(rows, z.shape[1], strip_rows(z.shape[1])).permute(0, 2, 3, 1)

    def layer(self, index: int) -> torch.Tensor:
        """[B, |R_p|, |C_q|, heads] bias of transformer layer `index`, in the dtype it was
        projected in; the attention adds it to its float32 logits (exact promotion)."""
        if self.cached is not None:
            return self.cached[index]
        return self._project(index)


class DistDiffusionConditioning(nn.Module):
    """Boltz's DiffusionConditioning with z tiled (shares its modules)."""

    def __init__(self, serial: nn.Module, rel_pos: nn.Module) -> None:
        super().__init__()
        self.serial = serial
        self.rel_pos = rel_pos  # the model's relative position encoder (Boltz passes its output)

    def forward(self, s_trunk, z_block, feats, layout: Layout) -> dict:
        m = self.serial
        # Boltz's pairwise conditioner is per pair: run it strip by strip of rows, with the
        # relative-position encoding made per strip (no whole-block encoding or concatenation)
        z = assemble_rows(
            lambda r0, r1: m.pairwise_conditioner(
                z_block[:, r0:r1], relative_position_rows(self.rel_pos, feats, layout, r0, r1)),
            z_block.shape[1], strip_rows(z_block.shape[1]))
        q, c, p, to_keys = self._atom_encoder(feats, s_trunk, z, layout)
        return {
            "q": q, "c": c, "to_keys": to_keys,
            "atom_enc_bias": torch.cat([layer(p) for layer in m.atom_enc_proj_z], dim=-1),
            "atom_dec_bias": torch.cat([layer(p) for layer in m.atom_dec_proj_z], dim=-1),
            "token_trans_bias": ShardedPairBias(z, m.token_trans_proj_z),
        }

    def _atom_encoder(self, feats, s_trunk, z, layout: Layout):
        """Boltz's AtomEncoder (structure-module variant), step for step, with the z term
        gathered from the local pair block and summed over the grid."""
        enc = self.serial.atom_encoder
        with torch.autocast("cuda", enabled=False):
            batch, atoms, _ = feats["ref_pos"].shape
            atom_mask = feats["atom_pad_mask"].bool()
            ref_pos = feats["ref_pos"]
            uid = feats["ref_space_uid"]
            parts = [ref_pos, feats["ref_charge"].unsqueeze(-1), feats["ref_element"]]
            if not enc.use_no_atom_char:
                parts.append(feats["ref_atom_name_chars"].reshape(batch, atoms, 4 * 64))
            if enc.use_atom_backbone_feat:
                parts.append(feats["atom_backbone_feat"])
            if enc.use_residue_feats_atoms:
                raise NotImplementedError("use_residue_feats_atoms is not used by Boltz-2")
            c = enc.embed_atom_features(torch.cat(parts, dim=-1))
            width, keys = enc.atoms_per_window_queries, enc.atoms_per_window_keys
            windows = atoms // width
            indexing = get_indexing_matrix(windows, width, keys, c.device)

            def to_keys(x):
                return single_to_keys(x, indexing_matrix=indexing, W=width, H=keys)

            pos_q = ref_pos.view(batch, windows, width, 1, 3)
            pos_k = to_keys(ref_pos).view(batch, windows, 1, keys, 3)
            d = pos_k - pos_q
            d_norm = 1 / (1 + torch.sum(d * d, dim=-1, keepdim=True))
            mask_q = atom_mask.view(batch, windows, width, 1)
            mask_k = to_keys(atom_mask.unsqueeze(-1).float()).view(batch, windows, 1, keys).bool()
            uid_q = uid.view(batch, windows, width, 1)
            uid_k = to_keys(uid.unsqueeze(-1).float()).view(batch, windows, 1, keys).long()
            v = (mask_q & mask_k & (uid_q == uid_k)).float().unsqueeze(-1)
            p = enc.embed_atompair_ref_pos(d) * v
            p = p + enc.embed_atompair_ref_dist(d_norm) * v
            p = p + enc.embed_atompair_mask(v) * v
            q = c

            atom_to_token = feats["atom_to_token"].float()
            c = c + torch.bmm(atom_to_token, enc.s_to_c_trans(s_trunk.float())).to(c)
            p = p + self._pair_term(enc, z, atom_to_token, indexing, layout).to(p)
            p = p + enc.c_to_p_trans_q(c.view(batch, windows, width, 1, c.shape[-1]))
            p = p + enc.c_to_p_trans_k(to_keys(c).view(batch, windows, 1, keys, c.shape[-1]))
            p = p + enc.p_mlp(p)
        return q, c, p, to_keys

    @staticmethod
    def _pair_term(enc, z, atom_to_token, indexing, layout: Layout) -> torch.Tensor:
        """Σ_ij z_to_p[i, j] · [token(query) = i] · [token(key) = j], from my block + all-reduce."""
        # [B, |R_p|, |C_q|, atom_z], strip by strip: its LayerNorm over a float32 copy of the
        # whole block would be 4× a bf16 z
        z_to_p = assemble_rows(lambda r0, r1: enc.z_to_p_trans(z[:, r0:r1].float()),
                               z.shape[1], strip_rows(z.shape[1]))
        batch, atoms, _ = atom_to_token.shape
        width, keys = enc.atoms_per_window_queries, enc.atoms_per_window_keys
        windows = atoms // width
        token = one_hot_index(atom_to_token).double().unsqueeze(-1)  # -1: padding atom
        token_q = token.view(batch, windows, width, 1).long()

        def to_keys(x):  # Boltz's window gather, in float64: token indices stay exact
            return single_to_keys(x, indexing_matrix=indexing.double(), W=width, H=keys)

        token_k = to_keys(token).round().view(batch, windows, 1, keys).long()
        key_real = to_keys((token >= 0).double()).view(batch, windows, 1, keys) > 0.5
        rows, cols = layout.rows, layout.cols
        inside = ((token_q >= rows.start) & (token_q < rows.stop)
                  & (token_k >= cols.start) & (token_k < cols.stop) & key_real)
        flat = ((token_q - rows.start).clamp(0, rows.stop - rows.start - 1) * (cols.stop - cols.start)
                + (token_k - cols.start).clamp(0, cols.stop - cols.start - 1))
        values = z_to_p.reshape(batch, -1, z_to_p.shape[-1])
        gathered = torch.stack([values[b][flat[b]] for b in range(batch)])  # [B, K, W, H, d]
        gathered = gathered * inside.unsqueeze(-1)
        return all_reduce(gathered, grid_group(layout.grid))


class DistTokenTransformer(nn.Module):
    """Boltz's DiffusionTransformer (token level) with the pair bias tiled, its layers
    restructured to launch fewer kernels and run fewer, larger GEMMs.

    Why: on an H200 at 1,000 tokens a denoising step (replayed as one CUDA graph) launched
    ~1,636 kernels in 13.5 ms, ~375 of them small TF32 GEMMs at only ~128 TFLOP/s, most of
    them in this transformer's 24 layers (dim 768, 16 heads). Per layer, as Boltz writes it
    (counted: aten ops of one eager call on CPU, views and no-op casts left out): two AdaLNs
    (7 kernels each, 2 GEMMs), the q, k, v, g projections (4 GEMMs + a sigmoid), the output
    gates (a GEMM and a sigmoid each), the transition's three GEMMs with SwiGLU's products,
    the attention's key bias rebuilt (6) and its kernel — 42 kernels of which 14 GEMMs. Here:

    - all layers' s-only terms (AdaLN scales and biases, output gates) come per call from
      layer_conditioning.layer_terms: one LayerNorm and, per group of layers, 2 GEMMs and 2
      sigmoids;
    - AdaLN = a_norm + one addcmul; each residual one addcmul (in place after the first);
    - attention: q | k | v | g one GEMM where queries and keys are the same rows (a grid of
      one row, as on one GPU; DistAttentionPairBias._projections), the key bias once per call;
    - transition: swish_gate[0] | a_to_b one GEMM, the SwiGLU products in place, b_to_a.

    Per layer 16 kernels of which 4 GEMMs (qkvg, proj_o, the transition's two); per call 7
    (n(s), the key bias) and 4 per group of layers for the terms (2 GEMMs). At 1,000 tokens ×
    5 samples (12 groups of 2 layers) ~440 kernels and 120 GEMMs a call against 1,008 and 336.
    Not yet measured on a GPU. Same values as Boltz's layers within floating-point rounding
    (tests: float64/float32 against Boltz's modules).
    [B·M, N, D] in and out; s [B·M, N, Ds]; mask [B·M, N].
    """

    def __init__(self, serial: nn.Module, layout: Layout) -> None:
        super().__init__()
        self.serial = serial
        self.layout = layout
        self.attention = nn.ModuleList(
            DistAttentionPairBias(layer.pair_bias_attn) for layer in serial.layers
        )

    def forward(self, a, s, bias: ShardedPairBias, mask=None, to_keys=None, multiplicity=1):
        layout = self.layout
        n = a.shape[1]
        a = pad_tokens(a, layout.n_padded, (1,))
        s = pad_tokens(s, layout.n_padded, (1,))
        mask = pad_tokens(mask, layout.n_padded, (1,))
        layers = self.serial.layers
        inf = layers[0].pair_bias_attn.inf
        # one mask, so one key bias for every layer's fused attention core (there only)
        key_bias = (attention_key_bias(mask, layout, inf) if fused_attention.fused_available(a)
                    and triton_attention.usable(a) else None)
        owned = False  # a is the caller's until the first residual makes a new one
        for index, (layer, attention, terms) in enumerate(
                zip(layers, self.attention, layer_terms(layers, s))):
            # record_function labels: bench/cp_model.py --profile-step splits a step's time
            with record_function("foldcp.token_attention"):
                b = adaln(layer.adaln, a, terms.attn_scale, terms.attn_bias)
                b = attention(b, bias.layer(index), mask, b, layout, multiplicity=multiplicity,
                              key_bias=key_bias if layer.pair_bias_attn.inf == inf else None,
                              fuse_projections=True)
                a = add_gated(a, terms.attn_gate, b, in_place=owned)
                owned = True
            with record_function("foldcp.token_transition"):
                update = transition(layer.transition, a, terms.trans_scale, terms.trans_bias)
                a = add_gated(a, terms.trans_gate, update, in_place=True)
                a = layer.post_lnorm(a)  # Identity in Boltz-2's token transformer
            del b, update, terms  # let the terms' group go when its last layer is done
        return a[:, :n]


def distributed_score_model(model: nn.Module, layout: Layout, cuda_graphs: bool = False):
    """While sampling: the score model's token transformer tiled, its atom encoder / decoder
    transformers split by windows; with cuda_graphs on a grid of one, each step replayed as
    a CUDA graph (graphed.py; grids of several GPUs run eagerly: their steps hold NCCL
    collectives, not recorded yet)."""
    score = model.structure_module.score_model
    encoder, decoder = score.atom_attention_encoder, score.atom_attention_decoder
    swaps = [
        (score, "token_transformer", DistTokenTransformer(score.token_transformer, layout)),
        (encoder, "atom_encoder", DistAtomTransformer(encoder.atom_encoder, layout)),
        (decoder, "atom_decoder", DistAtomTransformer(decoder.atom_decoder, layout)),
    ]
    if cuda_graphs and layout.grid.size == 1:
        swaps.append((model.structure_module, "score_model", GraphedScoreModel(score)))
    return swapped(*swaps)


def sample_structure(model: nn.Module, s_trunk, s_inputs, z_block, feats, layout: Layout,
                     num_sampling_steps: int, diffusion_samples: int,
                     max_parallel_samples: int | None = None, cuda_graphs: bool = True) -> dict:
    """Boltz2.forward's structure step on a tiled trunk output (s_trunk, s_inputs unpadded).
    cuda_graphs: replay the denoising steps as CUDA graphs where possible (same results).
    On GPU grids where the whole pair tensor fits each GPU (replicated sampling, the
    default there), every rank samples with it whole and denoises its share of the samples
    (replicated_sampling.py); otherwise z stays tiled."""
    steering_args = effective_steering(model.steering_args, feats)

    def sampler(z, sampling_layout: Layout, samples_computed=None) -> dict:
        return _sample_structure(model, s_trunk, s_inputs, z, feats, sampling_layout,
                                 num_sampling_steps, diffusion_samples, max_parallel_samples,
                                 cuda_graphs, steering_args, samples_computed)

    try:
        if replicated_sampling.wanted(model, z_block, layout, steering_args):
            return replicated_sampling.sample(sampler, z_block, layout, diffusion_samples)
        return sampler(z_block, layout)
    finally:
        # the score network's stacked weights (~0.9 GB) leave with the sampling: see
        # derived_weights.release
        release(model.structure_module)


def _sample_structure(model, s_trunk, s_inputs, z_block, feats, layout: Layout,
                      num_sampling_steps, diffusion_samples, max_parallel_samples, cuda_graphs,
                      steering_args, samples_computed) -> dict:
    conditioning = DistDiffusionConditioning(model.diffusion_conditioning, model.rel_pos)(
        s_trunk, z_block, feats, layout)
    arguments = dict(
        s_trunk=s_trunk.float(),
        s_inputs=s_inputs.float(),
        feats=feats,
        num_sampling_steps=num_sampling_steps,
        atom_mask=feats["atom_pad_mask"].float(),
        multiplicity=diffusion_samples,
        max_parallel_samples=max_parallel_samples,
        # contact guidance with no constraints adds zeros at every step: left out (steering.py)
        steering_args=steering_args,
        diffusion_conditioning=conditioning,
    )
    structure = model.structure_module
    one_gpu = cuda_graphs and layout.grid.size == 1 and s_trunk.is_cuda
    # each whole step one CUDA graph (graphed_sampling.py); steered sampling, which that loop
    # hands to Boltz's, keeps the graphed network and host-sync-free alignment below; a share
    # of the samples (replicated sampling) is only possible in that loop
    if (samples_computed is not None or graphed_sampling.wanted(one_gpu)) and \
            graphed_sampling.applies(structure, steering_args):
        with distributed_score_model(model, layout, cuda_graphs=False), \
                torch.autocast("cuda", enabled=False), active_arithmetic(structure, s_trunk):
            return graphed_sampling.sample(structure, graphs=one_gpu,
                                           samples_computed=samples_computed, **arguments)
    with distributed_score_model(model, layout, cuda_graphs), torch.autocast("cuda", enabled=False), \
            host_sync_free_sampling(structure):
        return structure.sample(**arguments)
