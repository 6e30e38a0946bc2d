"""Weight re-drawing for tests and demo models (imports nothing of Boltz's pipeline)."""

from __future__ import annotations

import torch


def randomize_weights(model: torch.nn.Module, seed: int, std: float) -> None:
    """Redraw every parameter: Boltz zero-initialises gates and output projections, so a
    freshly built model returns exactly zero updates. Norm weights are centred on 1."""
    # drawn where the model is: on a GPU host's CPU the released model's draws took over a
    # minute (bench/cp_model.py); a model on the CPU gets the values it always had
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            base = 1.0 if (param.ndim == 1 and name.endswith("weight")) else 0.0
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float32,
                                device=device)
            param.copy_((base + std * noise).to(param.device, param.dtype))
