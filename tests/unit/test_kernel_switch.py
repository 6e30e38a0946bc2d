"""triton_attention.KernelSwitch: an optional Triton kernel's on/off state and its fallback."""

import logging

import pytest

from foldcp.distributed import triton_attention

pytestmark = pytest.mark.skipif(not triton_attention.LAUNCH_ERRORS, reason="Triton is not installed")


def test_a_kernel_that_cannot_build_is_reported_once_and_not_tried_again(monkeypatch, caplog):
    monkeypatch.delenv("FOLDCP_TEST_KERNEL", raising=False)
    switch = triton_attention.KernelSwitch("FOLDCP_TEST_KERNEL", "test", "the unfused path")
    calls = []

    def kernel(x):
        calls.append(x)
        if x == "too big":
            raise triton_attention.LAUNCH_ERRORS[0](232448, 101376, "shared memory")
        return x + " done"

    assert switch.enabled() and switch.run(kernel, "fits") == "fits done"
    with caplog.at_level(logging.WARNING):
        assert switch.run(kernel, "too big") is None
    assert "Triton test kernel unavailable on this GPU" in caplog.text
    assert "shared memory" in caplog.text and "the unfused path" in caplog.text
    assert not switch.enabled()  # callers ask enabled() first: the unfused path from now on
    assert switch.run(kernel, "fits") is None and calls == ["fits", "too big"]  # not tried again
    other = triton_attention.KernelSwitch("FOLDCP_TEST_KERNEL", "test", "the unfused path")
    with pytest.raises(ValueError):  # other errors are the caller's bugs: not swallowed
        other.run(lambda: (_ for _ in ()).throw(ValueError("a bug")))
    assert other.enabled()


def test_turned_off_by_its_variable(monkeypatch):
    switch = triton_attention.KernelSwitch("FOLDCP_TEST_KERNEL", "test", "the unfused path")
    monkeypatch.setenv("FOLDCP_TEST_KERNEL", "0")
    assert not switch.enabled()
    monkeypatch.setenv("FOLDCP_TEST_KERNEL", "1")
    assert switch.enabled()
