"""Keep the random-number generator in step with serial Boltz.

Boltz draws a dropout mask before every pair update and every MSA update even at inference
(`get_dropout_mask` calls torch.rand, then keeps everything because the rate is 0). Those
draws advance the generator, so the diffusion noise that follows depends on them. The
distributed layers make the same draws, with the serial shapes (real token count, MSA depth),
in the same order; the masks are all ones and are discarded, exactly as in Boltz.
"""

from __future__ import annotations

import torch


def replay_dropout_draw(batch: int, length: int, device, columnwise: bool = False) -> None:
    shape = (batch, 1, length, 1) if columnwise else (batch, length, 1, 1)
    torch.rand(shape, dtype=torch.float32, device=device)


def replay_pair_stack_draws(batch: int, length: int, device) -> None:
    """The four draws of one Pairformer (or no-sequence Pairformer) layer."""
    for columnwise in (False, False, False, True):
        replay_dropout_draw(batch, length, device, columnwise)
