"""Boltz-2 hyper-parameters: the released model's sizes, and the small demo model.

The real sizes are those of the public Boltz-2 training configuration as loaded by
`boltz predict` (boltz 2.2.1: PairformerArgsV2, MSAModuleArgs, Boltz2DiffusionParams,
BoltzSteeringParams). The demo model keeps every module and code path but shrinks widths and
depths so it runs in seconds on a CPU; its weights are random, its outputs untrained.
"""

from __future__ import annotations

import copy
from dataclasses import asdict

from boltz.main import Boltz2DiffusionParams, BoltzSteeringParams, MSAModuleArgs, PairformerArgsV2

RELEASED = dict(
    atom_s=128, atom_z=16, token_s=384, token_z=128, num_bins=64,
    atom_feature_dim=388, atoms_per_window_queries=32, atoms_per_window_keys=128,
    training_args={}, validation_args={}, diffusion_loss_args={},
    embedder_args=dict(
        atom_encoder_depth=3, atom_encoder_heads=4, add_method_conditioning=True,
        add_modified_flag=True, add_cyclic_flag=True, add_mol_type_feat=True,
    ),
    msa_args=asdict(MSAModuleArgs(use_paired_feature=True)),
    pairformer_args=asdict(PairformerArgsV2()),
    score_model_args=dict(
        sigma_data=16, dim_fourier=256, atom_encoder_depth=3, atom_encoder_heads=4,
        token_transformer_depth=24, token_transformer_heads=16, atom_decoder_depth=3,
        atom_decoder_heads=4, conditioning_transition_layers=2,
    ),
    diffusion_process_args=asdict(Boltz2DiffusionParams()),
    confidence_prediction=True,
    alpha_pae=1.0,
    confidence_model_args=dict(
        num_dist_bins=64, max_dist=22, add_s_to_z_prod=True, add_s_input_to_s=True,
        add_z_input_to_z=True,
        pairformer_args=dict(num_blocks=8, num_heads=16, dropout=0.0, v2=True),
        confidence_args=dict(
            num_plddt_bins=50, num_pde_bins=64, num_pae_bins=64, use_separate_heads=True
        ),
    ),
    use_templates=True, use_templates_v2=True,
    template_args=dict(template_dim=64, template_blocks=2),
    bond_type_feature=True, fix_sym_check=True, cyclic_pos_enc=True,
    steering_args=asdict(BoltzSteeringParams()),
    structure_prediction_training=False,
    validate_structure=False,
    ema=False,
)


def demo_hparams() -> dict:
    """Released structure, small sizes: every module present, a few seconds per fold on CPU."""
    hp = copy.deepcopy(RELEASED)
    hp.update(atom_s=32, atom_z=8, token_s=64, token_z=32)
    hp["embedder_args"].update(atom_encoder_depth=1, atom_encoder_heads=2)
    hp["msa_args"].update(msa_s=16, msa_blocks=1, pairwise_head_width=8, pairwise_num_heads=1)
    # Triangle attention is O(N^3 x heads): one narrow head keeps the demo fast on CPU.
    hp["pairformer_args"].update(
        num_blocks=2, num_heads=2, pairwise_head_width=8, pairwise_num_heads=1
    )
    hp["score_model_args"].update(
        dim_fourier=32, atom_encoder_depth=1, atom_encoder_heads=2, token_transformer_depth=2,
        token_transformer_heads=2, atom_decoder_depth=1, atom_decoder_heads=2,
        conditioning_transition_layers=1,
    )
    hp["confidence_model_args"]["pairformer_args"].update(
        num_blocks=1, num_heads=2, pairwise_head_width=8, pairwise_num_heads=1
    )
    hp["template_args"].update(
        template_dim=16, template_blocks=1, pairwise_head_width=8, pairwise_num_heads=1
    )
    return hp


def runtime_overrides(stored: dict, settings: dict) -> dict:
    """What the runner passes to load_from_checkpoint, on top of the stored hyper-parameters.

    Mirrors `boltz predict`: predict, diffusion and steering arguments come from the run's
    settings; the trunk's sizes (pairformer/MSA blocks) stay as the checkpoint stored them, so
    the same call loads the released checkpoint and the demo one.
    """
    diffusion = dict(stored.get("diffusion_process_args") or asdict(Boltz2DiffusionParams()))
    steering = dict(stored.get("steering_args") or asdict(BoltzSteeringParams()))
    steering.update(fk_steering=False, physical_guidance_update=False)
    return dict(
        predict_args=dict(
            recycling_steps=settings["recycling_steps"],
            sampling_steps=settings["sampling_steps"],
            diffusion_samples=settings["diffusion_samples"],
            max_parallel_samples=settings["max_parallel_samples"],
            write_confidence_summary=True, write_full_pae=True, write_full_pde=False,
        ),
        diffusion_process_args=diffusion,
        steering_args=steering,
        ema=False,
        use_kernels=settings.get("use_kernels", False),
    )
