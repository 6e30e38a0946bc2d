"""Boltz-2's steering as it would act on one input: contact guidance with nothing to guide.

`boltz predict` leaves contact guidance on by default (BoltzSteeringParams:
contact_guidance_update=True). In the sampling loop that means, at every step, 20 gradient
steps over two potentials — contact constraints and forced templates — each computing its
gradient and adding it in. An input with no contact constraints and no forced templates
gives both potentials an empty index, and Boltz then returns zero gradients and adds zeros:
the coordinates are exactly those of a loop without contact guidance, after about 100 small
kernels per step spent on zeros (counted from Boltz's code: 20 gradient steps, the contact
potential every 4th, the template potential every 2nd; not profiled alone). The loop's eager
part was 20–30 % of a denoising step on an H200 (bench/RESULTS.md, eleventh session).

    args = effective_steering(model.steering_args, feats)   # what the loop is then given
"""

from __future__ import annotations

from boltz.model.potentials.potentials import get_potentials


def effective_steering(steering_args: dict | None, feats: dict) -> dict | None:
    """steering_args, with contact_guidance_update turned off where every contact-guidance
    potential has nothing in `feats` to act on (its gradients would be zeros; Boltz's own
    test, an empty index from compute_args). FK steering and physical guidance are left as
    they are (they act on any input)."""
    if not steering_args or not steering_args.get("contact_guidance_update"):
        return steering_args
    if steering_args.get("fk_steering"):
        return steering_args  # the contact potentials also weigh FK resampling
    contact_only = dict(steering_args, physical_guidance_update=False)
    potentials = get_potentials(contact_only, boltz2=True)
    if any(potential.compute_args(feats, potential.compute_parameters(1.0))[0].shape[1] > 0
           for potential in potentials):
        return steering_args
    return dict(steering_args, contact_guidance_update=False)
