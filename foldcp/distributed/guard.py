"""Record the largest tensor a rank creates, to prove no rank materialises N×N×C or N×N×N.

Used by the tests around a distributed forward pass; it intercepts every ATen op's outputs
(TorchDispatchMode), so it sees transients inside library code too.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LargestTensor(TorchDispatchMode):
    """Context manager: `.numel` / `.shape` of the largest tensor produced inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.numel = 0
        self.shape: tuple = ()
        self.op = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        # The inputs' storages, taken before the op runs (an op that resizes an input gives it
        # a new one, which counts). An output in one of them is an input's memory — a view,
        # an in-place result — and allocates nothing. (Inside a dispatch mode no output is
        # marked as a view, so this is what leaves views out.)
        inputs = {_storage(t) for t in tree_flatten((args, kwargs))[0]} - {None}
        out = func(*args, **(kwargs or {}))
        for item in tree_flatten(out)[0]:
            if isinstance(item, torch.Tensor) and item.numel() > self.numel \
                    and _storage(item) not in inputs:  # (None never is: taken out above)
                self.numel, self.shape, self.op = item.numel(), tuple(item.shape), func
        return out


def _storage(t) -> int | None:
    """The address of a dense tensor's memory; None for anything else (sparse or meta tensors,
    wrapper subclasses, empty storages)."""
    if not isinstance(t, torch.Tensor) or t.layout != torch.strided or t.is_meta:
        return None
    try:
        return t.untyped_storage().data_ptr() or None
    except (RuntimeError, NotImplementedError):
        return None
