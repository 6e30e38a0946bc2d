"""Distributed pieces of the Boltz-2 trunk against the serial Boltz2 model's own modules.

A demo-sized Boltz2 with RANDOMISED weights and real features of a 3-chain complex from
Boltz's featurizer (19 tokens: not divisible by the grids used).
"""

import pytest
import torch
from boltz.data.mol import load_canonicals
from boltz.model.models.boltz2 import Boltz2

from foldcp.distributed.layout import Layout
from foldcp.distributed.pair_init import DistDistogram, DistPairInit
from foldcp.inputs import make_complex, parse_complex
from foldcp.inputs.fasta import Protein
from foldcp.model.checkpoint import resolve_checkpoint
from foldcp.model.hparams import demo_hparams
from foldcp.model.weights import randomize_weights
from foldcp.runner.featurize import featurize
from tests.distributed.harness import run_on_grid

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def model_and_feats(foldcp_cache):
    proteins = {"A": Protein("A", "MKVLAGW"), "B": Protein("B", "GSHMQR"), "C": Protein("C", "PEKRTY")}
    complex_ = make_complex(parse_complex("A;B;C"))
    mol_dir = resolve_checkpoint("demo").mol_dir
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


def compare_block(layout, got, want, n):
    expected = layout.shard_pair(want)
    r = min(expected.shape[1], max(0, n - layout.rows.start))
    c = min(expected.shape[2], max(0, n - layout.cols.start))
    torch.testing.assert_close(got[:, :r, :c], expected[:, :r, :c], **TOL)


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
