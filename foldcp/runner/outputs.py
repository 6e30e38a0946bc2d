"""Per-complex prediction files, written atomically; ``done.json`` is written last.

results/predictions/{complex_id}/
    model_{k}.cif                 mmCIF of diffusion sample k (B-factor column = pLDDT x 100)
    confidence_model_{k}.json     Boltz's confidence keys (+ ``untrained``), chain keys = chain names
    pae_model_{k}.npz             ``pae``: token x token predicted aligned error (Å), float32
    plddt_model_{k}.npz           ``plddt``: per-token pLDDT in [0, 1], float32
    done.json                     marker + manifest: chains, settings, files, runtime, and
                                  `file_checks` (bytes and SHA-256 of every file)

A complex counts as finished only when done.json exists and every file it lists exists with
the size and SHA-256 recorded there (`check_outputs`): a truncated or altered file makes it
unfinished, so the next run of its batch folds it again and the analysis records it as
`corrupt_output` meanwhile. (A done.json of an older foldcp without `file_checks` needs its
files to exist and be non-empty.)
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from foldcp.io import TEMP_GLOB, write_bytes, write_json

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


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def write_checked(directory: Path, files: dict[str, bytes]) -> dict[str, dict]:
    """Write each file atomically; return {name: {bytes, sha256}} for done.json."""
    checks = {}
    for name, data in files.items():
        write_bytes(directory / name, data)
        checks[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return checks


def write_sample(
    directory: Path, sample: int, structure, coords: np.ndarray, plddt: np.ndarray,
    pae: np.ndarray, confidence: dict, untrained: bool,
) -> dict[str, dict]:
    """Write one sample's files; return {name: {bytes, sha256}} of each."""
    import torch
    from boltz.data.write.mmcif import to_mmcif

    cif = to_mmcif(sample_structure(structure, coords), plddts=torch.from_numpy(plddt), boltz2=True)
    if untrained:
        # Say it twice: a comment for people, a data item for programs.
        cif = UNTRAINED_BANNER + cif.replace(
            "_struct.pdbx_model_details .",
            "_struct.pdbx_model_details 'UNTRAINED random-weight demo model (foldcp)'", 1,
        )
    return write_checked(directory, {
        f"model_{sample}.cif": cif.encode(),
        f"confidence_model_{sample}.json": (json.dumps(confidence, indent=2) + "\n").encode(),
        f"pae_model_{sample}.npz": _npz_bytes(pae=pae.astype(np.float32)),
        f"plddt_model_{sample}.npz": _npz_bytes(plddt=plddt.astype(np.float32)),
    })


def write_done(directory: Path, manifest: dict) -> None:
    """done.json, written last: the complex's files are complete once it exists."""
    write_json(directory / "done.json", manifest)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def check_outputs(directory: Path, verify: bool = True) -> str | None:
    """None if the complex is finished with its files intact, else what is wrong.

    Finished: done.json parses and every file it lists exists with the recorded size and
    (with `verify`) SHA-256."""
    marker = directory / "done.json"
    try:
        manifest = json.loads(marker.read_text())
    except FileNotFoundError:
        return "no done.json (not finished)"
    except (OSError, ValueError) as exc:
        return f"done.json cannot be read: {exc}"
    if not isinstance(manifest, dict) or not manifest.get("files"):
        return "done.json lists no files"
    checks = manifest.get("file_checks") or {}
    for name in manifest["files"]:
        path = directory / name
        try:
            size = path.stat().st_size
        except OSError:
            return f"{name} is missing"
        record = checks.get(name)
        if record is None:
            if size == 0:
                return f"{name} is empty"
            continue
        if size != record["bytes"]:
            return f"{name} has {size} bytes, done.json recorded {record['bytes']} (truncated or replaced)"
        if verify:
            try:
                digest = sha256_file(path)
            except OSError as exc:
                return f"{name} cannot be read: {exc}"
            if digest != record["sha256"]:
                return f"{name} differs from the SHA-256 recorded in done.json (corrupted)"
    return None


def is_done(directory: Path, verify: bool = True) -> bool:
    """True if the complex is finished and its files are intact (`check_outputs`)."""
    return check_outputs(directory, verify) is None


def clear_unfinished(directory: Path) -> None:
    """Before folding a complex again: remove its stale done.json (its files failed the
    checks) and temp files a killed run left, so nothing old can pass for the new result.
    Not the temp files of grid ranks' error logs (`error.rank{k}.log`): on a grid, rank 0
    clears a complex's folder when it reaches it, and another rank that already failed on
    that complex may be writing its log there at that moment — the log `foldcp
    record-failure` reads to tell an out-of-memory failure from others."""
    if not directory.is_dir():
        return
    (directory / "done.json").unlink(missing_ok=True)
    for stale in directory.glob(TEMP_GLOB):
        if not stale.name.startswith(".error.rank"):
            stale.unlink(missing_ok=True)
