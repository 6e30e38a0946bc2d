"""Kernels compiled ahead (foldcp/distributed/triton_precompile.py): the recording hook, the
deferred launch's PyTorch path, and the worker pool's accounting. (Compiling itself needs a
GPU driver: bench/targets_2gpu_session.sh's throughput part measures it on a GPU.)"""

import logging
from types import SimpleNamespace

import pytest
import torch

from foldcp.distributed import layout, triton_attention, triton_layer_norm, triton_precompile
from foldcp.runner import write_behind
from foldcp.distributed.triton_attention import KernelDeferred, KernelSwitch


def test_workers_leave_two_cores_and_need_two():
    assert triton_precompile.worker_count(cpus=16) == 8
    assert triton_precompile.worker_count(cpus=6) == 4
    assert triton_precompile.worker_count(cpus=4) == 2
    assert triton_precompile.worker_count(cpus=3) == 0  # one worker would not win it back
    assert triton_precompile.worker_count(cpus=1) == 0


def test_a_deferred_launch_is_no_failure():
    """KernelDeferred makes a switch's caller take its PyTorch path for that call only; the
    next call tries the kernel again. A real build error still turns the kernel off."""
    switch = KernelSwitch("FOLDCP_TEST_SWITCH", "test", "the test's PyTorch path")
    calls = []

    def deferred():
        calls.append("deferred")
        raise KernelDeferred("later")

    assert switch.run(deferred) is None
    assert not switch.failed and switch.enabled()
    assert switch.run(lambda: "ran") == "ran"
    saved = triton_attention._failed
    try:
        triton_attention._failed = False
        triton_attention.failed(KernelDeferred("later"))
        assert triton_attention._failed is False
    finally:
        triton_attention._failed = saved
    if triton_attention.LAUNCH_ERRORS:  # Triton installed: callers catch it with the others
        assert KernelDeferred in triton_attention.LAUNCH_ERRORS


def test_layer_norm_falls_back_on_a_deferred_launch(monkeypatch):
    norm = torch.nn.LayerNorm(8)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 5, 3, 8)
    monkeypatch.setattr(triton_layer_norm, "available", lambda *_: True)

    def deferred(*_):
        raise KernelDeferred("later")

    monkeypatch.setattr(triton_layer_norm, "layer_norm", deferred)
    out = layout.layer_norm_to(norm, x, torch.float64)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, norm(x).double())


class Future:
    def __init__(self, error=None):
        self.error = error

    def exception(self):
        return self.error

    def done(self):
        return True


def compiler_without_workers(monkeypatch, submitted):
    """A KernelCompiler whose pool only records what it is given (no processes)."""

    class Pool:
        def __init__(self, **_):
            pass

        def submit(self, fn, *args):
            submitted.append((fn, args))
            return Future(RuntimeError("no GPU driver") if args and args[1] == "broken" else None)

        def shutdown(self, **_):
            submitted.append("shutdown")

    monkeypatch.setattr(triton_precompile.concurrent.futures, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(triton_precompile.concurrent.futures, "wait",
                        lambda futures, timeout: (set(futures), set()))
    return triton_precompile.KernelCompiler(workers=3)


def hook_call(compiler, module, name, data):
    return compiler._hook(key="k", repr=name, fn=SimpleNamespace(module=module, name=name),
                          compile={"specialization_data": data}, is_manual_warmup=False,
                          already_compiled=False)


def test_each_specialisation_is_recorded_once_and_its_launch_deferred(monkeypatch, caplog):
    submitted = []
    compiler = compiler_without_workers(monkeypatch, submitted)
    assert [fn for fn, _ in submitted] == [write_behind._ready] * 3  # every worker started now
    submitted.clear()
    module = "foldcp.distributed.triton_transition"
    for data in ('{"a": 1}', '{"a": 1}', '{"a": 2}'):
        with pytest.raises(KernelDeferred):
            hook_call(compiler, module, "_transition_kernel", data)
    with pytest.raises(KernelDeferred):
        hook_call(compiler, module, "broken", '{"b": 1}')
    # a kernel that is not foldcp's (Inductor's, a user's) compiles in place, as ever
    assert hook_call(compiler, "torch._inductor.something", "triton_poi", '{"c": 1}') is False
    assert submitted == [
        (triton_precompile.compile_recorded, (module, "_transition_kernel", '{"a": 1}')),
        (triton_precompile.compile_recorded, (module, "_transition_kernel", '{"a": 2}')),
        (triton_precompile.compile_recorded, (module, "broken", '{"b": 1}')),
    ]
    with caplog.at_level(logging.WARNING):
        counts = compiler.wait(timeout_s=1)
    assert counts == {"recorded": 3, "compiled": 2, "failed": 1, "running": 0}
    assert "no GPU driver" in caplog.text
    compiler.close()
    compiler.close()  # once is enough
    assert submitted[-1] == "shutdown" and submitted.count("shutdown") == 1


@pytest.mark.parametrize("context, hook", [("recording", "_hook"), ("watching", "_watch_hook")])
def test_each_context_sets_and_restores_tritons_hook(monkeypatch, context, hook):
    """recording() (the throwaway fold) and watching() (each real fold) set Triton's
    jit_cache_hook to their own hook inside and restore it after, a failure inside too."""
    if not triton_precompile.hook_available():
        pytest.skip("this Triton has no jit_cache_hook")
    from triton import knobs

    compiler = compiler_without_workers(monkeypatch, [])
    before = knobs.runtime.jit_cache_hook
    with getattr(compiler, context)():
        assert knobs.runtime.jit_cache_hook == getattr(compiler, hook)
    assert knobs.runtime.jit_cache_hook is before
    with pytest.raises(ValueError), getattr(compiler, context)():
        raise ValueError("the fold failed")
    assert knobs.runtime.jit_cache_hook is before


def test_a_worker_finds_each_kernel_by_name():
    """compile_recorded looks a recorded kernel up among its module's lazy kernels (the GPU
    driver, absent here, is the first thing Triton's preload asks for)."""
    if triton_attention.triton is None:
        pytest.skip("no Triton")
    for name in triton_precompile.KERNEL_MODULES:
        module = __import__(name, fromlist=["_kernel"])
        kernels = [v for v in vars(module).values() if getattr(v, "lazy_triton_kernel", False)]
        assert len(kernels) == 1, name
    with pytest.raises(LookupError, match="no Triton kernel _missing"):
        triton_precompile.compile_recorded("foldcp.distributed.triton_transition", "_missing", "{}")


def test_watching_names_the_specialisations_compiled_in_a_real_fold(monkeypatch):
    """After the kernels compiled ahead, a specialisation the throwaway fold missed compiles
    in place (never deferred: a real fold's result must not depend on it) and is named once."""
    compiler = compiler_without_workers(monkeypatch, [])
    module = "foldcp.distributed.triton_gated_projection"
    with pytest.raises(KernelDeferred):
        hook_call(compiler, module, "_gated_kernel", '{"a": 1}')
    compiler.wait(timeout_s=1)
    compiler.close()

    def watched(module, name, data):
        return compiler._watch_hook(key=f"key-{data}", repr=f"{name}[{data}]",
                                    fn=SimpleNamespace(module=module, name=name),
                                    compile={"specialization_data": data},
                                    is_manual_warmup=False, already_compiled=False)

    assert watched(module, "_gated_kernel", '{"a": 1}') is False  # compiled ahead: loaded
    assert compiler.take_late() == []
    for _ in range(2):
        assert watched(module, "_gated_kernel", '{"a": 3}') is False
    assert watched("torch._inductor.x", "triton_poi", '{"c": 1}') is False  # not ours
    assert compiler.take_late() == ['_gated_kernel[{"a": 3}] (cache key key-{"a": 3})']
    assert compiler.take_late() == []

