"""`foldcp export`: the selected predictions of a finished screen, ready for deposition.

Reads the merged tables (ranked.parquet, complexes.parquet) of a results folder, picks the
models (select.py), and writes into the export folder (default ``{output_dir}/export``):

    models/{entry}.cif          ModelCIF (modelcif_writer.py)
    models/{entry}_pae.zip      its PAE associated file (when ``export.pae``)
    foldseek/                   Foldseek DB of the models (when ``export.foldseek`` and
                                ``foldseek`` is on PATH; otherwise skipped with a message)
    index.parquet               one row per model (index.py), written last

Entry IDs are ``{complex_id}_model_{sample}``. Each file is written atomically; the index
comes last, so its presence means a complete export. Files that an earlier export listed in
its index but this one does not (another selection) are removed after the new index is in
place; nothing else in the folder is touched.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from foldcp import __version__
from foldcp.errors import ExportError
from foldcp.export.entities import complex_entities
from foldcp.export.foldseek import build_foldseek_db
from foldcp.export.index import index_row, read_index, write_index
from foldcp.export.modelcif_writer import ModelInputs, write_modelcif
from foldcp.export.select import select_models
from foldcp.inputs import read_fasta

INDEX_NAME = "index.parquet"


def entry_id(complex_id: str, sample: int) -> str:
    return f"{complex_id}_model_{sample}"


def installed_boltz_version() -> str:
    try:
        return metadata.version("boltz")
    except metadata.PackageNotFoundError:
        return "unknown"


def selection_text(row, settings: dict, analysis: dict, complexes_ranked: int) -> str:
    """Why this model was exported, for the ModelCIF protocol."""
    which = "its best sample" if row.best_sample else f"sample {row.sample} (not its best sample)"
    limits = []
    if settings["confident_only"]:
        thresholds = ", ".join(f"{k} >= {v}" for k, v in analysis["confident"].items())
        limits.append(f"confident complexes only ({thresholds})")
    if settings["top_n"] is not None:
        limits.append(f"the top {settings['top_n']} complexes")
    return (
        f"Selected for export by foldcp: the complex ranks {row.rank} of {complexes_ranked} by "
        f"the ranking score {analysis['ranking_score']}; this model is {which}. Export "
        f"selection: {'every sample' if settings['samples'] == 'all' else 'best sample'} of "
        f"{', '.join(limits) if limits else 'every ranked complex'}."
    )


def _load(path: str | Path, key: str) -> np.ndarray:
    try:
        return np.load(path)[key]
    except (OSError, KeyError, ValueError) as exc:
        raise ExportError(f"cannot read {key!r} from {path}: {exc}") from exc


def _remove_stale(previous: pd.DataFrame | None, current: pd.DataFrame, export_dir: Path) -> list[str]:
    """Delete files the previous index listed and the current one does not."""
    if previous is None:
        return []
    keep = set()
    for column in ("model_path", "pae_path"):
        keep |= {p for p in current.get(column, []) if p}
    removed = []
    for column in ("model_path", "pae_path"):
        for relative in previous.get(column, []):
            if not relative or relative in keep:
                continue
            path = (export_dir / relative).resolve()
            if export_dir.resolve() in path.parents and path.is_file():
                path.unlink()
                removed.append(relative)
    return removed


def export_models(config: dict, results_dir: str | Path, export_dir: str | Path) -> pd.DataFrame:
    """Export the models `config['export']` selects from `results_dir`; return the index."""
    settings, analysis = config["export"], config["analysis"]
    results_dir, export_dir = Path(results_dir), Path(export_dir)
    try:
        ranked = pd.read_parquet(results_dir / "ranked.parquet")
        complexes = pd.read_parquet(results_dir / "complexes.parquet")
    except OSError as exc:
        raise ExportError(f"no merged result tables in {results_dir}: {exc}") from exc
    selected = select_models(ranked, complexes, settings)
    proteins = read_fasta(config["proteins"])
    created = datetime.now(UTC).replace(microsecond=0)
    models_dir = export_dir / "models"
    rows, structures, manifests = [], [], {}
    for row in selected.itertuples(index=False):
        directory = Path(row.model_path).parent
        if row.complex_id not in manifests:
            try:
                manifests[row.complex_id] = json.loads((directory / "done.json").read_text())
            except (OSError, ValueError) as exc:
                raise ExportError(
                    f"{row.complex_id}: cannot read {directory / 'done.json'}: {exc}") from exc
        manifest = manifests[row.complex_id]
        entities, chains = complex_entities(manifest, proteins)
        boltz_version = manifest.get("boltz_version") or installed_boltz_version()
        entry = entry_id(row.complex_id, int(row.sample))
        inputs = ModelInputs(
            entry_id=entry, complex_id=row.complex_id, sample=int(row.sample), manifest=manifest,
            entities=entities, chains=chains, structure_path=Path(row.model_path),
            plddt=_load(row.plddt_path, "plddt"), pae=_load(row.pae_path, "pae"),
            iptm=float(row.iptm), ptm=float(row.ptm), complex_plddt=float(row.complex_plddt),
            untrained=bool(row.untrained),
            selection=selection_text(row, settings, analysis, len(ranked)),
            msa_mode=config["msa"]["mode"], foldcp_version=manifest.get("foldcp_version", __version__),
            boltz_version=boltz_version, authors=list(settings["authors"]),
        )
        cif_path, zip_path = write_modelcif(inputs, models_dir, pae=settings["pae"])
        structures.append(cif_path)
        rows.append(index_row(entry, row, manifest, entities, export_dir, cif_path, zip_path,
                              boltz_version, created))
        print(f"[foldcp export] {entry}: {cif_path}", flush=True)
    if settings["foldseek"]:
        print(f"[foldcp export] {build_foldseek_db(structures, export_dir / 'foldseek')}", flush=True)
    else:
        print("[foldcp export] Foldseek database not requested (export.foldseek: false)", flush=True)
    previous = read_index(export_dir / INDEX_NAME)
    index = write_index(export_dir / INDEX_NAME, rows)
    for relative in _remove_stale(previous, index, export_dir):
        print(f"[foldcp export] removed {relative} (no longer selected)", flush=True)
    return index
