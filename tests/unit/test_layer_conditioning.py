"""layer_conditioning: every diffusion-transformer layer's s-only terms from stacked, folded
GEMMs, and the a-side helpers, against Boltz's own modules — float64, random inputs and
RANDOMISED weights (Boltz zero-initialises the output gates' weights: with those the gates
would be a constant and prove nothing)."""

import pytest
import torch
from boltz.model.modules.transformersv2 import DiffusionTransformerLayer

from foldcp.distributed import layer_conditioning as lc

DIM, COND, HEADS, DEPTH = 16, 12, 2, 5


def layers(depth=DEPTH, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    made = torch.nn.ModuleList(DiffusionTransformerLayer(HEADS, DIM, COND) for _ in range(depth))
    with torch.no_grad():
        for parameter in made.parameters():
            torch.nn.init.normal_(parameter, std=0.5)
    return made.to(dtype).eval()


def serial_terms(layer, s):
    """The six terms as Boltz's layer computes them inside its forward."""
    out = {}
    for name, adaln in (("attn", layer.adaln), ("trans", layer.transition.adaln)):
        normed = adaln.s_norm(s)
        out[f"{name}_scale"] = torch.sigmoid(adaln.s_scale(normed))
        out[f"{name}_bias"] = adaln.s_bias(normed)
    out["attn_gate"] = layer.output_projection(s)
    out["trans_gate"] = layer.transition.output_projection(s)
    return out


def compare(got, layer, s, **tol):
    want = serial_terms(layer, s)
    for name, value in want.items():
        assert value.abs().max() > 1e-3 and value.std() > 1e-3, name  # informative terms
        torch.testing.assert_close(getattr(got, name), value, msg=name, **tol)


@pytest.mark.parametrize("budget", [lc.GROUP_BYTES, 1, None])
def test_terms_equal_boltz_in_float64(budget):
    """budget None: two layers per group (three groups of 2, 2, 1); 1: one layer each."""
    model = layers()
    s = torch.randn(3, 7, COND, dtype=torch.float64)
    per_layer = 3 * 7 * lc.TERMS * DIM * 8
    budget = 2 * per_layer + 1 if budget is None else budget
    expected_groups = {lc.GROUP_BYTES: [(0, 5)], 1: [(i, i + 1) for i in range(5)]}.get(
        budget, [(0, 2), (2, 4), (4, 5)])
    assert lc.groups(model, s, budget) == expected_groups
    with torch.no_grad():
        got = list(lc.layer_terms(model, s, budget))
        assert len(got) == DEPTH
        for terms, layer in zip(got, model):
            compare(terms, layer, s, rtol=1e-12, atol=1e-12)


def test_windowed_conditioning_and_differing_eps():
    """The atom transformer's [B, K, W, Ds] s; layers whose norm eps differ get groups of
    their own (one n(s) per group), a layer whose two AdaLN norms differ runs unfused."""
    model = layers()
    model[2].adaln.s_norm.eps = 1e-3
    model[2].transition.adaln.s_norm.eps = 1e-3
    model[3].transition.adaln.s_norm.eps = 1e-2
    s = torch.randn(2, 3, 4, COND, dtype=torch.float64) * 0.1  # small: eps matters
    assert lc.groups(model, s) == [(0, 2), (2, 3), (3, 4), (4, 5)]
    with torch.no_grad():
        for terms, layer in zip(lc.layer_terms(model, s), model):
            assert terms.attn_scale.shape == (2, 3, 4, DIM)
            compare(terms, layer, s, rtol=1e-12, atol=1e-12)


def test_stacked_weights_made_once_and_remade_on_change():
    model = layers()
    s = torch.randn(2, 5, COND, dtype=torch.float64)
    with torch.no_grad():
        first = lc._stacked(model, torch.float64)
        assert lc._stacked(model, torch.float64) is first
        model[3].transition.adaln.s_norm.weight.mul_(2)  # in place, as loading weights does
        assert lc._stacked(model, torch.float64) is not first
        for terms, layer in zip(lc.layer_terms(model, s, budget=1), model):
            compare(terms, layer, s, rtol=1e-12, atol=1e-12)


def test_layer_from_terms_equals_boltz_layer():
    """adaln, add_gated and transition with the terms, around Boltz's own attention, give
    Boltz's DiffusionTransformerLayer.forward (float64)."""
    model = layers(depth=2)
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(2, 9, DIM, generator=gen, dtype=torch.float64)
    s = torch.randn(2, 9, COND, generator=gen, dtype=torch.float64)
    bias = torch.randn(2, 9, 9, HEADS, generator=gen, dtype=torch.float64)
    mask = torch.ones(2, 9, dtype=torch.float64)
    mask[:, 3] = 0
    with torch.no_grad():
        want, got, owned = a, a.clone(), False
        for layer, terms in zip(model, lc.layer_terms(model, s)):
            want = layer(want, s, bias, mask)
            b = lc.adaln(layer.adaln, got, terms.attn_scale, terms.attn_bias)
            b = layer.pair_bias_attn(s=b, z=bias, mask=mask, k_in=b)
            got = lc.add_gated(got, terms.attn_gate, b, in_place=owned)
            owned = True
            torch.testing.assert_close(
                lc.transition(layer.transition, got, terms.trans_scale, terms.trans_bias),
                layer.transition(got, s) / terms.trans_gate, rtol=1e-10, atol=1e-10)
            got = lc.add_gated(got, terms.trans_gate, lc.transition(
                layer.transition, got, terms.trans_scale, terms.trans_bias), in_place=True)
        assert want.abs().mean() > 0.1
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_bf16_autocast_mirrors_boltz():
    """Under CPU bf16 autocast (the bf16 sampling mode on CPU) the terms have the dtypes
    Boltz's modules give there — bf16 from the GEMMs and sigmoids — and its values within
    bf16 rounding; the stacked weights are made in bf16 once (no cast per GEMM)."""
    model = layers(dtype=torch.float32)
    s = torch.randn(2, 6, COND)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for terms, layer in zip(lc.layer_terms(model, s), model):
            want = serial_terms(layer, s)
            for name, value in want.items():
                got = getattr(terms, name)
                assert got.dtype == value.dtype == torch.bfloat16, name
                torch.testing.assert_close(got.float(), value.float(), rtol=2e-2, atol=2e-2, msg=name)
        assert lc._stacked(model, torch.bfloat16)[0].dtype == torch.bfloat16
        a = torch.randn(2, 6, DIM)
        layer, terms = model[0], next(lc.layer_terms(model, s))
        got = lc.transition(layer.transition, a, terms.trans_scale, terms.trans_bias)
        want = layer.transition(a, s)
        assert got.dtype == torch.bfloat16 and want.dtype == torch.bfloat16
        # (the products of bf16-rounded factors: compared relative to the largest value)
        scale = float(want.float().abs().max())
        assert scale > 1.0
        torch.testing.assert_close(got.float() * terms.trans_gate.float(), want.float(),
                                   rtol=0, atol=2e-2 * scale)
