"""Distributed pieces of the Boltz-2 trunk against the serial Boltz2 model's own modules.

A demo-sized Boltz2 with RANDOMISED weights and real features of a 3-chain complex from
Boltz's featurizer (19 tokens: not divisible by the grids used).
"""

import pytest
import torch
from boltz.data.mol import load_canonicals
from boltz.model.models.boltz2 import Boltz2

from foldcp.distributed.guard import LargestTensor
from foldcp.distributed.layout import Layout
from foldcp.distributed.msa_module import DistMSAModule
from foldcp.distributed.pair_init import DistDistogram, DistPairInit
from foldcp.distributed.trunk import DistTrunk
from foldcp.distributed.confidence import DistConfidence
from foldcp.distributed.diffusion import sample_structure
from foldcp.distributed.model import DistBoltz2
from foldcp.inputs import make_complex, parse_complex
from foldcp.inputs.fasta import Protein
from foldcp.model.checkpoint import resolve_checkpoint
from foldcp.model.hparams import demo_hparams
from foldcp.model.sampling_precision import sampling_precision
from foldcp.model.weights import randomize_weights
from foldcp.runner.featurize import featurize, seed_everything
from tests.distributed.harness import keep_float64, run_on_grid

TOL = dict(rtol=1e-5, atol=1e-5)
# Sampled coordinates in float32, relative to their largest: random weights put atoms thousands
# of Å from the origin, where one float32 ulp is ~2e-4 Å, and the sampling steps (and, end to
# end, the trunk's layers) amplify rounding by an amount that depends on the draw. With the
# fixture's features (seeded: the featurizer draws random conformers) foldcp's largest
# differences from serial Boltz are 1e-6 to 5e-6 of it; another feature seed (1) gave up to
# 3e-5 end to end. An error in the algorithm moves coordinates by their own size.
COORD_RTOL = 1e-5


@pytest.fixture(scope="module")
def model_and_feats(foldcp_cache):
    proteins = {"A": Protein("A", "MKVLAGW"), "B": Protein("B", "GSHMQR"), "C": Protein("C", "PEKRTY")}
    complex_ = make_complex(parse_complex("A;B;C"))
    mol_dir = resolve_checkpoint("demo").mol_dir
    seed_everything(0)  # the featurizer draws from the global RNGs: the same features whatever ran before
    feats = featurize(complex_, proteins, mol_dir, load_canonicals(mol_dir)).features
    feats = {k: v for k, v in feats.items() if torch.is_tensor(v)}
    torch.manual_seed(0)
    hparams = demo_hparams()
    hparams["training_args"] = {}
    model = Boltz2(**hparams).eval()
    randomize_weights(model, seed=3, std=0.3)
    return model, feats


def serial_z_init(model, feats, s_inputs):
    """Boltz2.forward's pair initialisation, term by term, with the serial modules."""
    z = model.z_init_1(s_inputs)[:, :, None] + model.z_init_2(s_inputs)[:, None, :]
    z = z + model.rel_pos(feats)
    z = z + model.token_bonds(feats["token_bonds"].float())
    z = z + model.token_bonds_type(feats["type_bonds"].long())
    return z + model.contact_conditioning(feats)


def compare_block(layout, got, want, n, tol=TOL):
    expected = layout.shard_pair(want)
    r = min(expected.shape[1], max(0, n - layout.rows.start))
    c = min(expected.shape[2], max(0, n - layout.cols.start))
    torch.testing.assert_close(got[:, :r, :c], expected[:, :r, :c], **tol)


def _pair_init_and_distogram(grid, model, feats):
    n = feats["token_pad_mask"].shape[1]
    layout = Layout.for_tokens(grid, n)
    with torch.inference_mode():
        s_inputs = model.input_embedder(feats)
        want = serial_z_init(model, feats, s_inputs)
        assert want.abs().mean() > 0.1  # randomised weights: a non-trivial reference
        got = DistPairInit(model)(layout.pad_single(s_inputs), feats, layout)
        compare_block(layout, got, want, n)
        z = torch.randn(want.shape, generator=torch.Generator().manual_seed(1))
        compare_block(layout, DistDistogram(model.distogram_module)(layout.shard_pair(z), layout),
                      model.distogram_module(z), n)
    return True


@pytest.mark.parametrize("rows, cols", [(1, 2), (2, 2), (2, 3)])
def test_pair_init_and_distogram(model_and_feats, rows, cols):
    assert all(run_on_grid(rows, cols, _pair_init_and_distogram, *model_and_feats))


def with_random_msa(feats, depth: int, seed: int) -> dict:
    """The complex's features with a random MSA of `depth` rows (some positions masked)."""
    from boltz.data import const

    n = feats["token_pad_mask"].shape[1]
    gen = torch.Generator().manual_seed(seed)
    feats = dict(feats)
    feats["msa"] = torch.randint(0, const.num_tokens, (1, depth, n), generator=gen)
    feats["has_deletion"] = torch.randint(0, 2, (1, depth, n), generator=gen).bool()
    feats["deletion_value"] = torch.rand(1, depth, n, generator=gen)
    feats["msa_paired"] = torch.randint(0, 2, (1, depth, n), generator=gen).float()
    mask = (torch.rand(1, depth, n, generator=gen) > 0.2).long()
    mask[:, 0] = 1  # the query row is complete
    feats["msa_mask"] = mask
    return feats


def _msa_module(grid, model, feats, opm_row_chunk=None, projected_first=None):
    """float64 throughout (Boltz's .float() casts kept at float64): a tight comparison."""
    with torch.inference_mode():
        s_inputs = model.input_embedder(feats).double()  # the embedder itself runs in float32
    model = model.double()
    feats = {k: (v.double() if v.is_floating_point() else v) for k, v in feats.items()}
    with keep_float64(torch.float64):
        return _msa_module_64(grid, model, feats, s_inputs, opm_row_chunk, projected_first)


def _msa_module_64(grid, model, feats, s_inputs, opm_row_chunk=None, projected_first=None):
    n = feats["token_pad_mask"].shape[1]
    layout = Layout.for_tokens(grid, n)
    token_mask = feats["token_pad_mask"].float()
    pair_mask = token_mask[:, :, None] * token_mask[:, None, :]
    z = torch.randn(1, n, n, model.msa_module.layers[0].pairformer_layer.tri_mul_out.p_in.in_features,
                    generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.inference_mode():
        want = model.msa_module(z, s_inputs, feats)
        assert (want - z).abs().mean() > 0.1
        dist_module = DistMSAModule(model.msa_module)
        for layer in dist_module.layers:
            layer.opm_row_chunk = opm_row_chunk
            layer.outer_product_mean.projected_first = projected_first
        blocks = layout.shard_pair(z), layout.pad_single(s_inputs), layout.shard_pair(pair_mask)
        with LargestTensor() as largest:
            got = dist_module(blocks[0], blocks[1], feats, blocks[2], layout)
        compare_block(layout, got, want, n, dict(rtol=1e-10, atol=1e-10))
    if grid.size > 1 and opm_row_chunk is None:  # (a forced chunk's outer product is c_h² wide)
        assert largest.numel < layout.n_padded**2 * z.shape[-1], (largest.shape, largest.op)
    return largest.numel


@pytest.mark.parametrize("rows, cols, depth, opm_row_chunk, projected_first",
                         [(1, 2, 5, None, False), (2, 2, 3, None, True), (2, 3, 7, None, None),
                          (1, 1, 4, 2, True), (2, 1, 3, 3, False), (1, 1, 1, None, None),
                          (1, 2, 1, 3, True)])
def test_msa_module(model_and_feats, rows, cols, depth, opm_row_chunk, projected_first):
    """opm_row_chunk: the outer product mean added into z a few rows at a time (each chunk
    reduced over the grid on its own), as at real sizes. projected_first: its projection
    applied to b before the sum over sequences (True), after the c_h² outer product (False),
    or as chosen by the depth and block size (None: at these few tokens, after)."""
    model, feats = model_and_feats
    feats = with_random_msa(feats, depth, seed=rows * 10 + cols)
    run_on_grid(rows, cols, _msa_module, model, feats, opm_row_chunk, projected_first)


def serial_trunk(model, feats, s_inputs, recycling_steps):
    """Boltz2.forward up to the distogram, with the serial modules (no templates given)."""
    s_init = model.s_init(s_inputs)
    z_init = serial_z_init(model, feats, s_inputs)
    mask = feats["token_pad_mask"].float()
    pair_mask = mask[:, :, None] * mask[:, None, :]
    s, z = torch.zeros_like(s_init), torch.zeros_like(z_init)
    for _ in range(recycling_steps + 1):
        s = s_init + model.s_recycle(model.s_norm(s))
        z = z_init + model.z_recycle(model.z_norm(z))
        z = z + model.template_module(z, feats, pair_mask)
        z = z + model.msa_module(z, s_inputs, feats)
        s, z = model.pairformer_module(s, z, mask=mask, pair_mask=pair_mask)
    return s, z, model.distogram_module(z)


def _trunk_float64(grid, model, feats, input_to_host=None):
    with torch.inference_mode():
        s_inputs = model.input_embedder(feats).double()
    model = model.double()
    feats = {k: (v.double() if v.is_floating_point() else v) for k, v in feats.items()}
    n = feats["token_pad_mask"].shape[1]
    layout = Layout.for_tokens(grid, n)
    with keep_float64(torch.float64), torch.inference_mode():
        want_s, want_z, want_d = serial_trunk(model, feats, s_inputs, recycling_steps=1)
        trunk = DistTrunk(model)
        trunk.force_input_to_host = input_to_host  # True: the MSA stage's input held aside
        trunk.force_recompute_z_init = input_to_host  # and z_init made afresh each recycle
        got = trunk(feats, layout, recycling_steps=1, s_inputs=s_inputs)
    tight = dict(rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(got.s[:, :n], want_s, **tight)
    compare_block(layout, got.z, want_z, n, tight)
    compare_block(layout, got.pdistogram, want_d, n, tight)
    return True


def _trunk_vs_boltz_forward(grid, model, feats):
    """float32, against the distogram, s and z of Boltz2.forward itself."""
    n = feats["token_pad_mask"].shape[1]
    layout = Layout.for_tokens(grid, n)
    with torch.inference_mode():
        torch.manual_seed(0)
        out = model(feats, recycling_steps=1, num_sampling_steps=2, diffusion_samples=1)
        got = DistTrunk(model)(feats, layout, recycling_steps=1)
    # float32 against float32 in other orders of operations (and, in the atom transformers,
    # AdaLN weights folded into their linear maps): each tensor to a few float32 ulps of its
    # largest values — the random-weight distogram's logits reach ~3,000, where one ulp is
    # 2.4e-4, more than a fixed 1e-4 absolute tolerance allows its small entries
    for got_t, want_t, block in ((got.s[:, :n], out["s"], False), (got.z, out["z"], True),
                                 (got.pdistogram, out["pdistogram"], True)):
        tol = dict(rtol=1e-4, atol=max(1e-4, 1e-6 * float(want_t.abs().max())))
        if block:
            compare_block(layout, got_t, want_t, n, tol)
        else:
            torch.testing.assert_close(got_t, want_t, **tol)
    return True


@pytest.mark.parametrize("rows, cols, input_to_host", [(1, 2, None), (2, 3, None), (1, 1, True),
                                                      (2, 1, True)])
def test_trunk_float64(model_and_feats, rows, cols, input_to_host):
    """input_to_host: the MSA module's input waits in host memory and the module takes z
    over, and z_init's strips are made afresh at each recycle (what a GPU short of memory
    does) — the same trunk."""
    model, feats = model_and_feats
    run_on_grid(rows, cols, _trunk_float64, model, with_random_msa(feats, 4, seed=5), input_to_host)


def test_trunk_matches_boltz2_forward(model_and_feats):
    model, feats = model_and_feats
    run_on_grid(2, 2, _trunk_vs_boltz_forward, model, with_random_msa(feats, 3, seed=6))


def _structure(grid, model, feats, steps, samples, precision="float32"):
    with sampling_precision(model.structure_module, precision):
        return _structure_in_precision(grid, model, feats, steps, samples, precision)


def _structure_in_precision(grid, model, feats, steps, samples, precision, max_parallel_samples=None):
    n = feats["token_pad_mask"].shape[1]
    layout = Layout.for_tokens(grid, n)
    gen = torch.Generator().manual_seed(4)
    dtype = model.s_init.weight.dtype
    s_trunk = torch.randn(1, n, model.s_init.out_features, generator=gen, dtype=dtype)
    z = torch.randn(1, n, n, model.z_init_1.out_features, generator=gen, dtype=dtype)
    with torch.inference_mode():
        s_inputs = model.input_embedder(feats)
        conditioning = dict(zip(
            ["q", "c", "to_keys", "atom_enc_bias", "atom_dec_bias", "token_trans_bias"],
            model.diffusion_conditioning(s_trunk, z, model.rel_pos(feats), feats)))
        torch.manual_seed(123)
        want = model.structure_module.sample(
            s_trunk=s_trunk, s_inputs=s_inputs, feats=feats, num_sampling_steps=steps,
            atom_mask=feats["atom_pad_mask"].float(), multiplicity=samples,
            max_parallel_samples=max_parallel_samples or samples, steering_args=model.steering_args,
            diffusion_conditioning=conditioning)["sample_atom_coords"]
        torch.manual_seed(123)
        got = sample_structure(model, s_trunk, s_inputs, layout.shard_pair(z), feats, layout,
                               steps, samples, max_parallel_samples or samples)["sample_atom_coords"]
    # the sampler's stacked weights left with the sampling (derived_weights.release)
    assert not any("_foldcp_derived_weights" in m.__dict__ for m in model.structure_module.modules())
    scale = float(want.abs().max())
    assert scale > 1.0  # real coordinates, not a collapsed reference
    # (a 1e-6 relative change of z moves the serial result itself by ~2e-3 Å: COORD_RTOL;
    # 1e-3 Å for coordinates of realistic size)
    diff = float((got - want).abs().max())
    if precision == "bf16":  # both runs round the score network to bf16, in different orders
        assert diff <= 3e-2 * scale, (diff, scale)
        return want, diff / scale
    assert diff <= max(1e-3, COORD_RTOL * scale), (diff, scale)
    return diff / scale


@pytest.mark.parametrize("rows, cols", [(1, 2), (2, 3)])
def test_structure_sampling_matches_serial(model_and_feats, rows, cols):
    """The tiled sampler (the default): the token transformer's pair bias stays in blocks,
    attention combined over the grid."""
    model, feats = model_and_feats
    relative = run_on_grid(rows, cols, _structure, model, feats, 3, 2)
    assert max(relative) <= COORD_RTOL


def _structure_replicated(grid, model, feats, steps, samples, max_parallel_samples):
    """_structure, noting the sample chunks this rank's loop denoised and what it printed
    (Boltz's alignment warns of rank-deficient covariances: none may appear)."""
    import contextlib
    import io
    from foldcp.distributed import graphed_sampling
    loops = []
    original = graphed_sampling._Loop

    class Noted(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            loops.append(self.chunks)

    graphed_sampling._Loop = Noted
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), sampling_precision(model.structure_module, "float32"):
            relative = _structure_in_precision(grid, model, feats, steps, samples, "float32",
                                               max_parallel_samples)
    finally:
        graphed_sampling._Loop = original
    return relative, loops, printed.getvalue()


@pytest.mark.parametrize("rows, cols, samples, max_parallel, chunks", [
    (1, 2, 3, 3, [[(0, 1)], [(1, 3)]]),
    # Boltz's chunks of 2 + 1 samples, cut at the shares' boundary
    (1, 2, 3, 2, [[(0, 1)], [(1, 2), (2, 3)]]),
    # 4 samples over 6 ranks: two ranks denoise none
    (2, 3, 4, 4, [[], [(0, 1)], [(1, 2)], [], [(2, 3)], [(3, 4)]])])
def test_replicated_sampling_matches_serial(model_and_feats, monkeypatch, rows, cols, samples,
                                            max_parallel, chunks):
    """FOLDCP_REPLICATED_SAMPLING=1 (the pair tensor always fits off GPUs): every rank
    gathers z, samples as a grid of one and denoises its own share of the samples; the
    shares' coordinates, broadcast, equal serial Boltz's for every sample on every rank."""
    monkeypatch.setenv("FOLDCP_REPLICATED_SAMPLING", "1")  # the forked ranks inherit it
    model, feats = model_and_feats
    results = run_on_grid(rows, cols, _structure_replicated, model, feats, 3, samples, max_parallel)
    assert max(relative for relative, _, _ in results) <= COORD_RTOL
    assert [loops for _, loops, _ in results] == [[rank_chunks] for rank_chunks in chunks]
    assert not any("Warning" in printed for _, _, printed in results)


def _structure_fitting_on_rank_zero_only(grid, model, feats, steps, samples):
    from foldcp.distributed import replicated_sampling
    replicated_sampling.fits = lambda *args: grid.rank == 0  # (this forked rank's copy)
    return _structure_replicated(grid, model, feats, steps, samples, samples)


def test_replicated_sampling_only_where_it_fits_on_every_rank(model_and_feats, monkeypatch):
    """Free memory differs between GPUs: where the pair tensor fits on one rank but not on
    the other, both keep the tiled sampler (a rank each way would wait in different
    collectives) — and the result is still serial Boltz's."""
    monkeypatch.setenv("FOLDCP_REPLICATED_SAMPLING", "1")
    model, feats = model_and_feats
    results = run_on_grid(1, 2, _structure_fitting_on_rank_zero_only, model, feats, 3, 2)
    assert max(relative for relative, _, _ in results) <= COORD_RTOL
    assert [loops for _, loops, _ in results] == [[], []]  # Boltz's loop, no shares


def test_replicated_sampling_only_where_asked_and_fitting(monkeypatch):
    """On by default for GPU folds, on CPU grids only with FOLDCP_REPLICATED_SAMPLING=1, off
    with =0; never on a grid of one, for steered sampling or
    with Boltz's own loop asked for; its memory estimate keeps 8,605 tokens (the released
    sizes: z of 128 channels, 24 layers × 16 heads of biases) tiled on an 80 GB GPU while
    3,605 tokens replicate."""
    from types import SimpleNamespace
    from foldcp.distributed import replicated_sampling as replicated
    from foldcp.distributed.grid import Grid

    model = SimpleNamespace(
        structure_module=SimpleNamespace(training=False, alignment_reverse_diff=True),
        diffusion_conditioning=SimpleNamespace(token_trans_proj_z=torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.LayerNorm(128), torch.nn.Linear(128, 16, bias=False))
            for _ in range(24))))
    z_block = torch.zeros(1, 2, 2, 128)
    pair = Layout.for_tokens(Grid(1, 2, 0), 50)
    monkeypatch.delenv("FOLDCP_REPLICATED_SAMPLING", raising=False)
    monkeypatch.delenv("FOLDCP_GRAPHED_SAMPLING", raising=False)
    assert not replicated.wanted(model, z_block, pair, None)  # CPU: tiled by default
    with monkeypatch.context() as gpu:  # as if z were on a GPU (where it fits: always here)
        gpu.setattr(replicated, "on_gpu", lambda z: True)
        assert replicated.wanted(model, z_block, pair, None)
        gpu.setenv("FOLDCP_REPLICATED_SAMPLING", "0")
        assert not replicated.wanted(model, z_block, pair, None)
    monkeypatch.setenv("FOLDCP_REPLICATED_SAMPLING", "1")
    assert replicated.wanted(model, z_block, pair, None)
    assert not replicated.wanted(model, z_block, Layout.for_tokens(Grid(1, 1), 50), None)
    assert not replicated.wanted(model, z_block, pair, {"fk_steering": True})
    monkeypatch.setenv("FOLDCP_GRAPHED_SAMPLING", "0")
    assert not replicated.wanted(model, z_block, pair, None)
    monkeypatch.delenv("FOLDCP_GRAPHED_SAMPLING")
    half_of_80_gb = replicated.MEMORY_SHARE * (79.18 - 20) * 2**30  # less the trunk's ~20 GiB
    bf16 = 2  # the biases' itemsize in a fold (bf16 autocast)
    small = replicated.replicated_bytes(model, z_block, Layout.for_tokens(Grid(1, 2, 0), 3605, 16), bf16)
    large = replicated.replicated_bytes(model, z_block, Layout.for_tokens(Grid(1, 2, 0), 8605, 16), bf16)
    assert small < half_of_80_gb < large
    assert large == 8608**2 * (128 * (4 + 4) + 24 * 16 * bf16)


def test_sample_shares():
    from foldcp.distributed.replicated_sampling import shares
    assert shares(5, 2) == [(0, 2), (2, 5)]
    assert shares(1, 2) == [(0, 0), (0, 1)]
    assert shares(4, 6) == [(0, 0), (0, 1), (1, 2), (2, 2), (2, 3), (3, 4)]
    for samples, ranks in [(5, 2), (1, 4), (7, 3), (8, 8)]:
        got = shares(samples, ranks)
        assert got[0][0] == 0 and got[-1][1] == samples
        assert all(a[1] == b[0] for a, b in zip(got, got[1:]))
        assert max(l - f for f, l in got) - min(l - f for f, l in got) <= 1


@pytest.mark.parametrize("rows, cols", [(1, 2), (2, 3)])
def test_structure_sampling_through_the_graphed_loop_matches_serial(model_and_feats, monkeypatch,
                                                                    rows, cols):
    """FOLDCP_GRAPHED_SAMPLING=1: foldcp's own loop (graphed_sampling.py; its step functions
    eagerly off CUDA) on 1×2 and 2×3 grids with z tiled, against serial Boltz's loop."""
    monkeypatch.setenv("FOLDCP_GRAPHED_SAMPLING", "1")  # the forked ranks inherit it
    model, feats = model_and_feats
    relative = run_on_grid(rows, cols, _structure, model, feats, 3, 2)
    assert max(relative) <= COORD_RTOL


def test_structure_sampling_in_bf16_matches_serial_in_bf16(model_and_feats):
    """model.sampling_precision bf16: CP and serial Boltz under the same mode agree to bf16
    rounding. On CPU Boltz's float32 islands (its `autocast("cuda", enabled=False)` attention
    cores) stay under CPU autocast too, so the two runs round differently in more places than
    on a GPU: ~1e-2 relative after three steps of random weights, against O(1) for a wrong
    bias or mask. The mode is really on: float32 sampling differs from it."""
    model, feats = model_and_feats
    results = run_on_grid(1, 2, _structure, model, feats, 3, 2, "bf16")
    assert max(relative for _, relative in results) <= 3e-2
    want_float32 = run_on_grid(1, 1, _structure_reference, model, feats, 3, 2)[0]
    want_bf16 = results[0][0]
    assert float((want_bf16 - want_float32).abs().max() / want_float32.abs().max()) > 1e-3
    assert "sample" not in vars(model.structure_module)  # the class's method again


def _structure_reference(grid, model, feats, steps, samples):
    """Serial float32 coordinates of _structure's inputs."""
    return _structure_in_precision(grid, model, feats, steps, samples, "bf16")[0]


def test_structure_sampling_without_cached_pair_biases(model_and_feats, monkeypatch):
    """Where the token transformer's per-layer biases would not fit in free GPU memory they
    are projected from the pair block at every step instead: same result."""
    from foldcp.distributed.diffusion import ShardedPairBias
    monkeypatch.setattr(ShardedPairBias, "_fits_in_memory", lambda self: False)
    model, feats = model_and_feats
    relative = run_on_grid(1, 2, _structure, model, feats, 3, 2)
    assert max(relative) <= COORD_RTOL



def _confidence(grid, model, feats):
    n = feats["token_pad_mask"].shape[1]
    atoms = feats["atom_pad_mask"].shape[1]
    layout = Layout.for_tokens(grid, n)
    gen = torch.Generator().manual_seed(8)
    token_s, token_z = model.s_init.out_features, model.z_init_1.out_features
    s_inputs = torch.randn(1, n, token_s, generator=gen)
    s = torch.randn(1, n, token_s, generator=gen)
    z = torch.randn(1, n, n, token_z, generator=gen)
    x_pred = 6.0 * torch.randn(1, atoms, 3, generator=gen)
    pdistogram = torch.randn(1, n, n, 64, generator=gen)
    with torch.inference_mode():
        want = model.confidence_module(s_inputs, s, z, x_pred, feats, pdistogram, multiplicity=1)
        got = DistConfidence(model.confidence_module)(
            s_inputs, s, layout.shard_pair(z), x_pred, feats, layout.shard_pair(pdistogram), layout)
    tol = dict(rtol=1e-4, atol=1e-4)
    for key in ("plddt", "complex_plddt", "complex_iplddt", "complex_pde", "complex_ipde",
                "ptm", "iptm", "protein_iptm", "ligand_iptm"):
        torch.testing.assert_close(got[key], want[key], **tol, msg=key)
    for first, row in want["pair_chains_iptm"].items():
        for second, value in row.items():
            torch.testing.assert_close(got["pair_chains_iptm"][first][second], value, **tol)
    compare_block(layout, got["pae_block"], want["pae"], n, tol)
    compare_block(layout, got["pde_block"], want["pde"], n, tol)
    assert 0.0 < float(want["iptm"]) < 1.0 and want["pae"].std() > 0.1  # informative scores
    return True


@pytest.mark.parametrize("rows, cols", [(1, 2), (2, 3)])
def test_confidence_matches_serial(model_and_feats, rows, cols):
    run_on_grid(rows, cols, _confidence, *model_and_feats)


def _end_to_end(grid, model, feats, confidence_z_to_host=None, multiple=1):
    n = feats["token_pad_mask"].shape[1]
    layout = Layout.for_tokens(grid, n, multiple)
    if multiple > 1:  # the test's point: tokens padded beyond what the grid needs
        assert layout.n_padded % multiple == 0 and layout.n_padded > grid.padded(n)
    settings = dict(recycling_steps=1, diffusion_samples=2)
    with torch.inference_mode():
        torch.manual_seed(7)
        want = model(feats, num_sampling_steps=3, run_confidence_sequentially=True,
                     max_parallel_samples=2, **settings)
        torch.manual_seed(7)
        dist_model = DistBoltz2(model)
        dist_model.force_confidence_z_to_host = confidence_z_to_host
        got = dist_model.predict(feats, layout, sampling_steps=3, max_parallel_samples=2, **settings)
    scale = float(want["sample_atom_coords"].abs().max())
    diff = float((got["sample_atom_coords"] - want["sample_atom_coords"]).abs().max())
    assert diff <= max(1e-3, COORD_RTOL * scale), (diff, scale)
    tol = dict(rtol=1e-4, atol=1e-4)
    for key in ("plddt", "complex_plddt", "ptm", "iptm"):
        torch.testing.assert_close(got[key], want[key], **tol, msg=key)
    compare_block(layout, got["pae_block"], want["pae"], n, tol)
    for a, row in want["pair_chains_iptm"].items():
        for b, value in row.items():
            torch.testing.assert_close(got["pair_chains_iptm"][a][b], value, **tol)
    return diff


@pytest.mark.parametrize("rows, cols, confidence_z_to_host",
                         [(1, 2, None), (2, 2, None), (2, 3, None), (1, 1, True)])
def test_end_to_end_matches_boltz2(model_and_feats, rows, cols, confidence_z_to_host):
    """confidence_z_to_host: the trunk's z waits in host memory during confidence and
    returns for each of the two samples (what a GPU short of memory does)."""
    model, feats = model_and_feats
    run_on_grid(rows, cols, _end_to_end, model, with_random_msa(feats, 3, seed=9),
                confidence_z_to_host)


def test_representative_atoms_from_the_index_split_features_keeps():
    """split_features swaps the dense token → atom one-hot (4.6 GB at 12,000 tokens) for its
    index; the confidence module's representative coordinates are Boltz's bmm either way,
    also in the dtype that bmm returns under autocast."""
    from foldcp.distributed.layout import compute_dtype
    from foldcp.distributed.pair_init import REP_ATOM_INDEX, representative_atoms, split_features

    one_hot = torch.zeros(2, 5, 9)
    for b, token, atom in ((0, 0, 3), (0, 1, 8), (0, 3, 0), (1, 2, 5), (1, 4, 1)):
        one_hot[b, token, atom] = 1  # tokens without a representative atom: zero rows
    x = torch.randn(2, 9, 3, generator=torch.Generator().manual_seed(0))
    split = split_features({"token_to_rep_atom": one_hot}, "cpu")
    assert list(split) == [REP_ATOM_INDEX]
    for feats in ({"token_to_rep_atom": one_hot}, split):
        assert torch.equal(representative_atoms(feats, x), torch.bmm(one_hot, x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            want = torch.bmm(one_hot, x)
            got = representative_atoms(feats, x).to(compute_dtype(x))
        assert got.dtype == want.dtype == torch.bfloat16 and torch.equal(got, want)


@pytest.mark.parametrize("rows, cols, multiple", [(1, 1, 8), (1, 2, 4)])
def test_end_to_end_with_tokens_padded_for_alignment(model_and_feats, rows, cols, multiple):
    """GPU folds pad tokens to a multiple of 16 (layout.token_multiple): the 19 tokens padded
    to 24 on one rank and on 1×2 still give serial Boltz-2's result."""
    model, feats = model_and_feats
    run_on_grid(rows, cols, _end_to_end, model, with_random_msa(feats, 3, seed=9), None, multiple)
