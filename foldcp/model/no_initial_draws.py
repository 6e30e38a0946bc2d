"""Build Boltz-2 for a strict checkpoint load without drawing its initial weights first.

    with no_initial_draws():
        model = Boltz2.load_from_checkpoint(path, strict=True, ...)

Boltz2.__init__ initialises its ~507M parameters twice over: nn.Linear's Kaiming draws, then
Boltz's own truncated-normal draws (boltz.model.layers.initialize.trunc_normal_init_: scipy's
truncnorm on the CPU, one float64 sample per weight). Every batch job paid them before its
first fold — 16 of the 27 s that loading the released model's sizes took on a CPU machine
(bench/RESULTS.md) — and the strict load then overwrites every parameter and persistent
buffer anyway. Inside the context both draws are skipped (parameters keep what torch.empty
left in them), so use it only around a construction that a strict load completes; the
drawing functions are restored on leaving, also after an error.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


def _skip(*args, **kwargs) -> None:
    return None


@contextmanager
def no_initial_draws():
    import boltz.model.layers.initialize as boltz_init

    # Boltz's lecun / he initialisers call trunc_normal_init_ through the module's globals,
    # and its layers call those through the module: replacing the attribute reaches them all
    saved = boltz_init.trunc_normal_init_, torch.nn.Linear.reset_parameters
    boltz_init.trunc_normal_init_ = _skip
    torch.nn.Linear.reset_parameters = _skip
    try:
        yield
    finally:
        boltz_init.trunc_normal_init_, torch.nn.Linear.reset_parameters = saved
