"""Boltz-2 input features for one complex, with Boltz's own parser, tokenizer and featurizer.

We call the pieces `boltz predict` uses (parse_boltz_schema → Boltz2Tokenizer →
Boltz2Featurizer → collate) directly instead of its DataModule: the DataModule prints and
silently substitutes another example when featurization fails, and a screen must record the
failure of the complex that failed.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foldcp.inputs import Complex, Protein

FEATURIZER_SEED = 42  # the value Boltz's inference dataset uses


@dataclass
class Featurized:
    features: dict  # collated batch of one (tensors on CPU, plus "record")
    structure: object  # boltz StructureV2 of the input (for writing mmCIF)
    chains: list[dict]  # per Boltz chain: {"chain": "A", "protein_id", "start", "end", "entity"}


def boltz_schema(complex_: Complex, proteins: dict[str, Protein]) -> tuple[dict, list[dict]]:
    """The Boltz input schema (as a YAML file would hold it) and the chain map."""
    sequences = []
    chain_map = []
    names = iter(name for name, _ in complex_.chain_instances())
    for entity, chain in enumerate(complex_.chains):
        ids = [next(names) for _ in range(chain.copies)]
        sequences.append({"protein": {"id": ids, "sequence": chain.residues(proteins), "msa": "empty"}})
        for name in ids:
            chain_map.append({
                "chain": name, "protein_id": chain.protein_id,
                "start": chain.start or 1,
                "end": chain.end or len(proteins[chain.protein_id]),
                "entity": entity,
            })
    return {"version": 1, "sequences": sequences}, chain_map


def featurize(
    complex_: Complex, proteins: dict[str, Protein], mol_dir: Path, canonicals: dict
) -> Featurized:
    """Parse, tokenize and featurize one complex exactly as Boltz-2 inference does."""
    from boltz.data import const
    from boltz.data.feature.featurizerv2 import Boltz2Featurizer
    from boltz.data.module.inferencev2 import collate
    from boltz.data.parse.schema import parse_boltz_schema
    from boltz.data.tokenize.boltz2 import Boltz2Tokenizer
    from boltz.data.types import Input

    schema, chain_map = boltz_schema(complex_, proteins)
    # Boltz echoes a warning for every single-sequence chain; keep job logs readable.
    with contextlib.redirect_stdout(io.StringIO()):
        target = parse_boltz_schema(complex_.id, schema, canonicals, mol_dir, boltz_2=True)
    record = target.record
    input_data = Input(
        target.structure, {}, record=record, residue_constraints=target.residue_constraints,
        templates=None, extra_mols=target.extra_mols,
    )
    tokenized = Boltz2Tokenizer().tokenize(input_data)
    molecules = dict(canonicals)
    molecules.update(target.extra_mols or {})
    features = Boltz2Featurizer().process(
        tokenized,
        molecules=molecules,
        random=np.random.default_rng(FEATURIZER_SEED),
        training=False,
        max_atoms=None,
        max_tokens=None,
        max_seqs=const.max_msa_seqs,
        pad_to_max_seqs=False,
        single_sequence_prop=0.0,
        compute_frames=True,
        inference_pocket_constraints=None,
        inference_contact_constraints=None,
        compute_constraint_features=True,
        override_method=None,
        compute_affinity=False,
    )
    features["record"] = record
    return Featurized(collate([features]), target.structure, chain_map)
