"""Boltz-2 model construction, checkpoints and the residue library."""
