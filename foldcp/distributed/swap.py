"""Run serial Boltz code with some of its submodules replaced by distributed ones.

Where a serial module's own forward is right as it is and only a part inside it touches
pair tensors or splits across ranks, the part is swapped in for the call and restored after,
even on error, so the serial model stays usable as the reference.
"""

from __future__ import annotations

import contextlib

from torch import nn


@contextlib.contextmanager
def swapped(*replacements: tuple[nn.Module, str, nn.Module]):
    """swapped((owner, "attribute", replacement), ...) for the duration of a with-block."""
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in replacements]
    try:
        for owner, name, replacement in replacements:
            setattr(owner, name, replacement)
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
