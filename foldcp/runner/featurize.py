"""Boltz-2 input features for one complex, with Boltz's own parser, tokenizer and featurizer.

We call the pieces `boltz predict` uses (parse_boltz_schema → Boltz2Tokenizer →
Boltz2Featurizer → collate) directly instead of its DataModule: the DataModule prints and
silently substitutes another example when featurization fails, and a screen must record the
failure of the complex that failed.

MSAs: with ``msa.mode: none`` every chain is ``msa: empty`` (single sequence). Otherwise each
chain entity's MSA is assembled from its protein's MSA (`foldcp.msa.assemble`) into a
Boltz-style CSV in a scratch folder, named as the entity's ``msa`` in the schema, and read
with Boltz's own CSV parser, as `boltz predict` does with the CSVs it writes.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from foldcp.inputs import Complex, Protein

FEATURIZER_SEED = 42  # the value Boltz's inference dataset uses


def seed_everything(seed: int) -> None:
    """Seed the global RNGs that parts of Boltz's pipeline and sampling draw from (before
    each complex's featurization and fold: its result does not depend on what ran before)."""
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Featurized:
    features: dict  # collated batch of one (tensors on CPU, plus "record")
    structure: object  # boltz StructureV2 of the input (for writing mmCIF)
    chains: list[dict]  # per Boltz chain: {"chain": "A", "protein_id", "start", "end", "entity"}
    msa: list[dict] = field(default_factory=list)  # per Boltz chain: its MSA input (see featurize)


def boltz_schema(
    complex_: Complex, proteins: dict[str, Protein], msa_paths: list | None = None
) -> tuple[dict, list[dict]]:
    """The Boltz input schema (as a YAML file would hold it) and the chain map.

    `msa_paths` gives each chain entity's MSA file; None = single sequence (``empty``).
    """
    sequences = []
    chain_map = []
    names = iter(name for name, _ in complex_.chain_instances())
    for entity, chain in enumerate(complex_.chains):
        ids = [next(names) for _ in range(chain.copies)]
        msa = str(msa_paths[entity]) if msa_paths else "empty"
        sequences.append({"protein": {"id": ids, "sequence": chain.residues(proteins), "msa": msa}})
        for name in ids:
            chain_map.append({
                "chain": name, "protein_id": chain.protein_id,
                "start": chain.start or 1,
                "end": chain.end or len(proteins[chain.protein_id]),
                "entity": entity,
            })
    return {"version": 1, "sequences": sequences}, chain_map


def featurize(
    complex_: Complex, proteins: dict[str, Protein], mol_dir: Path, canonicals: dict,
    msa_store=None, msa_settings: dict | None = None,
) -> Featurized:
    """Parse, tokenize and featurize one complex exactly as Boltz-2 inference does.

    With `msa_store` (a foldcp.msa.assemble.MsaStore) and `msa_settings` (config ``msa``),
    the chains get their assembled MSAs; without, they are single sequence.
    """
    if msa_store is None or msa_settings is None or msa_settings["mode"] == "none":
        return _featurize(complex_, proteins, mol_dir, canonicals, None, None)
    from foldcp.msa.assemble import assemble

    with tempfile.TemporaryDirectory(prefix=f"foldcp-msa-{complex_.id[:40]}-") as scratch:
        chain_msas = assemble(complex_, proteins, msa_store, msa_settings, scratch)
        return _featurize(complex_, proteins, mol_dir, canonicals, chain_msas,
                          msa_settings["max_seqs"])


def _featurize(complex_, proteins, mol_dir, canonicals, chain_msas, max_seqs) -> Featurized:
    from boltz.data import const
    from boltz.data.feature.featurizerv2 import Boltz2Featurizer
    from boltz.data.module.inferencev2 import collate
    from boltz.data.parse.schema import parse_boltz_schema
    from boltz.data.tokenize.boltz2 import Boltz2Tokenizer
    from boltz.data.types import Input

    from boltz.data.parse.csv import parse_csv

    paths = [c.path for c in chain_msas] if chain_msas else None
    schema, chain_map = boltz_schema(complex_, proteins, paths)
    # Boltz echoes a warning for every single-sequence chain; keep job logs readable.
    with contextlib.redirect_stdout(io.StringIO()):
        target = parse_boltz_schema(complex_.id, schema, canonicals, mol_dir, boltz_2=True)
    record = target.record
    msas, msa_summary = {}, []
    if chain_msas:
        # as boltz predict's process_input: one parsed MSA per file, named {record}_{index}
        parsed, names = {}, {}
        for chain in record.chains:
            if chain.msa_id == -1:
                continue
            key = str(chain.msa_id)
            if key not in parsed:
                parsed[key] = parse_csv(Path(key), max_seqs=max_seqs)
                names[key] = f"{record.id}_{len(names)}"
            msas[chain.chain_id] = parsed[key]
            chain.msa_id = names[key]
        for info, entity_msa in zip(chain_map, (chain_msas[c["entity"]] for c in chain_map)):
            msa_summary.append({
                "chain": info["chain"], "protein_id": entity_msa.protein_id,
                "rows": entity_msa.rows, "paired_rows": entity_msa.paired,
                "protein_msa_rows": entity_msa.source_depth, "mode": entity_msa.mode,
                "fallback": entity_msa.fallback,
            })
    input_data = Input(
        target.structure, msas, record=record, residue_constraints=target.residue_constraints,
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
    return Featurized(collate([features]), target.structure, chain_map, msa_summary)
