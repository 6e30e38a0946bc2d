"""derived_weights.derived: a weight made from parameters once, remade when they change."""

import torch
from torch import nn

from foldcp.distributed.derived_weights import derived, release


def stacked(module: nn.Module, made: list) -> torch.Tensor:
    def make():
        made.append(1)
        return torch.cat([module[0].weight, 2 * module[1].weight]).to(torch.bfloat16)
    return derived(module, "stacked", make, module[0].weight, module[1].weight)


def test_made_once_then_reused_in_inference():
    module, made = nn.Sequential(nn.Linear(3, 4), nn.Linear(3, 4)), []
    with torch.inference_mode():
        first, again = stacked(module, made), stacked(module, made)
    assert again is first and len(made) == 1
    torch.testing.assert_close(first, torch.cat([module[0].weight, 2 * module[1].weight])
                               .detach().to(torch.bfloat16))
    assert "_foldcp_derived_weights" not in module.state_dict()


def test_remade_when_a_source_changes():
    module, made = nn.Sequential(nn.Linear(3, 4), nn.Linear(3, 4)), []
    with torch.no_grad():
        before = stacked(module, made)
        module[1].weight.mul_(3)  # in place, as loading or randomising weights does
        after = stacked(module, made)
        torch.testing.assert_close(after[4:], (2 * module[1].weight).to(torch.bfloat16))
        assert not torch.equal(before, after)
        module[0].weight = nn.Parameter(torch.zeros(4, 3))  # a new tensor
        assert stacked(module, made)[:4].abs().max() == 0
    assert len(made) == 3


def test_made_every_call_with_grad_mode_on():
    module, made = nn.Sequential(nn.Linear(3, 4), nn.Linear(3, 4)), []
    stacked(module, made)
    stacked(module, made)
    assert len(made) == 2


def test_parameters_made_in_inference_mode_are_not_cached():
    """They keep no version counter, so a change could not be noticed: made every call."""
    made = []
    with torch.inference_mode():
        module = nn.Sequential(nn.Linear(3, 4), nn.Linear(3, 4))
        stacked(module, made)
        module[1].weight.mul_(3)
        torch.testing.assert_close(stacked(module, made)[4:], (2 * module[1].weight).to(torch.bfloat16))
    assert len(made) == 2


def test_release_forgets_every_module_and_they_are_made_again():
    outer = nn.Sequential(nn.Sequential(nn.Linear(3, 4), nn.Linear(3, 4)))
    inner, made = outer[0], []
    with torch.inference_mode():
        first = stacked(inner, made)
        release(outer)
        assert not any("_foldcp_derived_weights" in m.__dict__ for m in outer.modules())
        again = stacked(inner, made)
    assert len(made) == 2 and again is not first and torch.equal(again, first)
