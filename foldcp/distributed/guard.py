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
        out = func(*args, **(kwargs or {}))
        # Views allocate nothing: their storage was counted when it was created (or, a view of
        # a parameter under inference mode — not marked as a view —, it is the input's)
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor)}
        for item in tree_flatten(out)[0]:
            if isinstance(item, torch.Tensor) and not item._is_view() and item.numel() > self.numel \
                    and item.untyped_storage().data_ptr() not in inputs:
                self.numel, self.shape, self.op = item.numel(), tuple(item.shape), func
        return out
