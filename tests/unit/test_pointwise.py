"""pointwise.py: each fused element-wise chain, compiled (torch.compile, forced on CPU here)
equals its eager PyTorch form, updates its first argument in place, and falls back to eager
where compilation fails or is turned off."""

from __future__ import annotations

import shutil

import pytest
import torch

from foldcp.distributed import pointwise


# torch.compile on CPU writes C++: without a compiler the fused path cannot be checked here
needs_compiler = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                    reason="torch.compile on CPU needs a C++ compiler")


def eager_and_compiled(fn, make_args, monkeypatch):
    monkeypatch.setenv("FOLDCP_COMPILE", "1")
    fused = pointwise._Fused(fn)
    eager_args, compiled_args = make_args(), make_args()
    want = fn(*eager_args)
    got = fused(*compiled_args)
    assert fused.compiled is not None and not fused.failed  # the compiled path ran
    assert got.data_ptr() == compiled_args[0].data_ptr()  # in place, as the eager form
    return want, got


def random(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


@needs_compiler
@pytest.mark.parametrize("with_keep", [False, True])
def test_gate(with_keep, monkeypatch):
    def make():
        keep = (random(1, 1, 40, seed=2) > 0).float() if with_keep else None
        return random(1, 8, 40), random(1, 8, 40, seed=1), keep
    want, got = eager_and_compiled(pointwise._gate, make, monkeypatch)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    assert not torch.equal(got, make()[0])  # the gate changed x


@needs_compiler
def test_add_gated_into_float32_from_bfloat16(monkeypatch):
    def make():  # z float32 (the pair track), the update in bf16 (autocast's output)
        return (random(1, 6, 5, 16), random(1, 6, 5, 16, dtype=torch.bfloat16, seed=1),
                random(1, 6, 5, 16, dtype=torch.bfloat16, seed=2))
    want, got = eager_and_compiled(pointwise._add_gated, make, monkeypatch)
    assert got.dtype == torch.float32
    # compiled code may keep sigmoid · x in float32 where eager rounds it to bf16
    torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-2)


@needs_compiler
@pytest.mark.parametrize("transposed", [False, True])
def test_add_into_float32_from_bfloat16(transposed, monkeypatch):
    """The residual add of a bf16 update into the float32 pair track, also through a
    transposed view of it (the ending node's rows are z's columns)."""
    def make():
        z = random(1, 6, 5, 16)
        update = random(1, *((5, 6) if transposed else (6, 5)), 16, dtype=torch.bfloat16, seed=1)
        return z.transpose(1, 2) if transposed else z, update
    want, got = eager_and_compiled(pointwise._add, make, monkeypatch)
    assert got.dtype == torch.float32 and got.is_contiguous() != transposed
    torch.testing.assert_close(got, want, rtol=0, atol=0)  # one rounding either way


@needs_compiler
def test_silu_gate(monkeypatch):
    want, got = eager_and_compiled(pointwise._silu_gate,
                                   lambda: (random(3, 7, 32), random(3, 7, 32, seed=1)), monkeypatch)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_off_and_failure_fall_back_to_eager(monkeypatch):
    monkeypatch.setenv("FOLDCP_COMPILE", "0")
    fused = pointwise._Fused(pointwise._silu_gate)
    a, b = random(4, 8), random(4, 8, seed=1)
    fused(a.clone(), b)
    assert fused.compiled is None  # off: never compiled

    def not_compilable(x):  # a host read inside the graph: fullgraph compilation refuses it
        return x.add_(float(x.sum().item()) if x.sum().item() > 0 else 1.0)

    monkeypatch.setenv("FOLDCP_COMPILE", "1")
    fused = pointwise._Fused(not_compilable)
    x = random(5)
    got = fused(x.clone())
    assert fused.failed
    torch.testing.assert_close(got, not_compilable(x.clone()))


def test_compiled_on_gpus_only_for_large_tensors(monkeypatch):
    """On a GPU a chain is compiled from COMPILE_MIN_ELEMENTS elements (a compiled call's CPU
    cost outweighs small kernels) and, in folds, from COMPILE_MIN_TOKENS tokens (compiling
    costs more than small folds gain); off GPUs only when forced; never with FOLDCP_COMPILE=0."""
    from types import SimpleNamespace

    def tensor(elements, cuda=True):
        return SimpleNamespace(is_cuda=cuda, numel=lambda: elements)

    monkeypatch.delenv("FOLDCP_COMPILE", raising=False)
    limit = pointwise.COMPILE_MIN_ELEMENTS
    assert pointwise._wanted(tensor(limit)) and not pointwise._wanted(tensor(limit - 1))
    assert not pointwise._wanted(tensor(limit, cuda=False))
    # inside a fold, only folds from COMPILE_MIN_TOKENS tokens up compile (and only inside it)
    with pointwise.fold_of(pointwise.COMPILE_MIN_TOKENS - 16):
        assert not pointwise._wanted(tensor(10 * limit))
        with pointwise.fold_of(pointwise.COMPILE_MIN_TOKENS):
            assert pointwise._wanted(tensor(limit)) and not pointwise._wanted(tensor(limit - 1))
        assert not pointwise._wanted(tensor(10 * limit))
    assert pointwise._wanted(tensor(limit))
    monkeypatch.setenv("FOLDCP_COMPILE", "0")
    assert not pointwise._wanted(tensor(10 * limit))
    with pointwise.fold_of(4 * pointwise.COMPILE_MIN_TOKENS):
        assert not pointwise._wanted(tensor(10 * limit))
    monkeypatch.setenv("FOLDCP_COMPILE", "1")
    assert pointwise._wanted(tensor(1, cuda=False))
    with pointwise.fold_of(16):
        assert pointwise._wanted(tensor(1, cuda=False))
