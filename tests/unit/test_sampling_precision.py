"""model.sampling_precision: the switch wraps only the sampling call and always restores."""

import pytest
import torch
from torch import nn

from foldcp.model.sampling_precision import MODES, sampling_precision


class Sampler(nn.Module):
    """Stands for Boltz's structure module: what `sample` computes in, seen from inside."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.seen = None

    def sample(self, s_trunk, fail=False):
        self.seen = (self.linear(s_trunk).dtype, torch.backends.cuda.matmul.allow_tf32)
        if fail:
            raise RuntimeError("boom")
        return self.linear(s_trunk)


@pytest.mark.parametrize("mode, dtype, tf32", [("float32", torch.float32, False),
                                                ("tf32", torch.float32, True),
                                                ("bf16", torch.bfloat16, True)])
def test_mode_holds_inside_sample_only(mode, dtype, tf32):
    module, x = Sampler(), torch.randn(2, 4)
    torch.backends.cuda.matmul.allow_tf32 = False
    with sampling_precision(module, mode):
        module.sample(s_trunk=x)
        assert module.seen == (dtype, tf32)
        assert module.linear(x).dtype == torch.float32  # outside sample: unchanged
    assert torch.backends.cuda.matmul.allow_tf32 is False
    assert "sample" not in vars(module)
    module.sample(x)
    assert module.seen == (torch.float32, False)


def test_restored_after_an_error():
    module, x = Sampler(), torch.randn(2, 4)
    torch.backends.cuda.matmul.allow_tf32 = False
    with pytest.raises(RuntimeError, match="boom"):
        with sampling_precision(module, "bf16"):
            module.sample(x, fail=True)
    assert torch.backends.cuda.matmul.allow_tf32 is False and "sample" not in vars(module)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="float32, tf32, bf16"):
        with sampling_precision(Sampler(), "fp8"):
            pass
    assert MODES == ("float32", "tf32", "bf16")


def test_active_arithmetic_follows_the_block():
    """Code that runs the sampling loop without calling `sample` (graphed_sampling.py) gets
    the block's arithmetic from active_arithmetic; float32 (nothing) outside a block."""
    from foldcp.model.sampling_precision import active_arithmetic

    module, x = Sampler(), torch.randn(2, 4)
    torch.backends.cuda.matmul.allow_tf32 = False
    with sampling_precision(module, "tf32"):
        with active_arithmetic(module, x):
            assert torch.backends.cuda.matmul.allow_tf32 is True
        assert torch.backends.cuda.matmul.allow_tf32 is False
    with active_arithmetic(module, x):
        assert torch.backends.cuda.matmul.allow_tf32 is False
