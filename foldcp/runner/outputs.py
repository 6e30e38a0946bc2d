"""Per-complex prediction files, written atomically; ``done.json`` is written last.

results/predictions/{complex_id}/
    model_{k}.cif                 mmCIF of diffusion sample k (B-factor column = pLDDT x 100)
    confidence_model_{k}.json     Boltz's confidence keys (+ ``untrained``), chain keys = chain names
    pae_model_{k}.npz             ``pae``: token x token predicted aligned error (Å), float32
    plddt_model_{k}.npz           ``plddt``: per-token pLDDT in [0, 1], float32
    done.json                     marker + manifest: chains, settings, files, runtime

A complex counts as finished only when done.json exists and every file it lists exists.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from foldcp.io import write_json, write_npz, write_text

CONFIDENCE_SCALARS = [
    "confidence_score", "ptm", "iptm", "ligand_iptm", "protein_iptm", "complex_plddt",
    "complex_iplddt", "complex_pde", "complex_ipde",
]
UNTRAINED_BANNER = (
    "# foldcp: UNTRAINED random-weight demo model - this file is NOT a structure prediction\n"
)


def sample_structure(structure, coords: np.ndarray):
    """Boltz StructureV2 with the predicted atom coordinates (as boltz's writer builds it)."""
    from boltz.data.types import Coords, Interface

    structure = structure.remove_invalid_chains()
    atoms = structure.atoms.copy()
    atoms["coords"] = coords
    atoms["is_present"] = True
    residues = structure.residues.copy()
    residues["is_present"] = True
    return replace(
        structure, atoms=atoms, residues=residues,
        interfaces=np.array([], dtype=Interface),
        coords=np.array([(x,) for x in coords], dtype=Coords),
    )


def confidence_summary(out: dict, sample: int, chain_names: list[str], untrained: bool) -> dict:
    """Boltz's confidence JSON for one sample, chain indices replaced by chain names."""
    summary = {key: float(out[key][sample]) for key in CONFIDENCE_SCALARS}
    pair = out["pair_chains_iptm"]
    summary["chains_ptm"] = {chain_names[i]: float(pair[i][i][sample]) for i in pair}
    summary["pair_chains_iptm"] = {
        chain_names[i]: {chain_names[j]: float(pair[i][j][sample]) for j in pair[i]} for i in pair
    }
    summary["untrained"] = untrained
    return summary


def write_sample(
    directory: Path, sample: int, structure, coords: np.ndarray, plddt: np.ndarray,
    pae: np.ndarray, confidence: dict, untrained: bool,
) -> list[str]:
    """Write one sample's files; return their names."""
    import torch
    from boltz.data.write.mmcif import to_mmcif

    cif = to_mmcif(sample_structure(structure, coords), plddts=torch.from_numpy(plddt), boltz2=True)
    if untrained:
        # Say it twice: a comment for people, a data item for programs.
        cif = UNTRAINED_BANNER + cif.replace(
            "_struct.pdbx_model_details .",
            "_struct.pdbx_model_details 'UNTRAINED random-weight demo model (foldcp)'", 1,
        )
    names = {
        "cif": f"model_{sample}.cif",
        "confidence": f"confidence_model_{sample}.json",
        "pae": f"pae_model_{sample}.npz",
        "plddt": f"plddt_model_{sample}.npz",
    }
    write_text(directory / names["cif"], cif)
    write_json(directory / names["confidence"], confidence)
    write_npz(directory / names["pae"], pae=pae.astype(np.float32))
    write_npz(directory / names["plddt"], plddt=plddt.astype(np.float32))
    return list(names.values())


def write_done(directory: Path, manifest: dict) -> None:
    write_json(directory / "done.json", manifest)


def is_done(directory: Path) -> bool:
    """True if done.json exists, parses, and every file it lists exists and is non-empty."""
    marker = directory / "done.json"
    try:
        manifest = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return all((directory / name).is_file() and (directory / name).stat().st_size > 0
               for name in manifest.get("files", []))
