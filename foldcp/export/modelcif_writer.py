"""One predicted model as a deposit-ready ModelCIF file (python-modelcif), with its PAE.

Written per exported model (``{entry}`` = the entry ID):

    {entry}.cif          ModelCIF: entities (sequence, UniProt reference when the protein ID
                         is an accession), chains, atoms (B-factor = pLDDT, 0-100), software
                         and protocol (foldcp, Boltz, checkpoint SHA-256, seed, recycling and
                         sampling steps, grid), global QA (pLDDT, pTM, ipTM), per-residue pLDDT
    {entry}_pae.zip      associated archive holding {entry}_local_pairwise_qa.cif: the PAE of
                         every residue pair (N x N rows of ma_qa_metric_local_pairwise, Å),
                         referenced from the main file (ma_entry_associated_files)

Scales: ModelCIF's pLDDT is 0-100 (Boltz's 0-1 value x 100), pTM and ipTM 0-1, PAE in Å.
python-ihm writes floats with 3 decimals, so values read back agree with the inputs to 5e-4.

Why PAE goes in a separate, compressed file: N² rows (90,000 at 300 residues, 4 million at
2,000) would dwarf the coordinates; ModelArchive and AlphaFold DB keep it apart the same way.
The pairwise rows are produced on the fly by a custom dumper straight from the [N, N] array,
not held as N² metric objects.

A model from foldcp's untrained demo checkpoint says so in its title, its details, a
comment at the top of the file, the protocol step and a software parameter.
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import gemmi
import ihm
import modelcif
import modelcif.associated
import modelcif.data
import modelcif.dumper
import modelcif.model
import modelcif.protocol
import modelcif.qa_metric
import modelcif.reference
import numpy as np

from foldcp.errors import ExportError
from foldcp.export.entities import ChainTokens, ExportEntity
from foldcp.export.uniprot import sequence_crc64
from foldcp.io import atomic_path

UNTRAINED_TITLE = "UNTRAINED DEMO MODEL - NOT A STRUCTURE PREDICTION"
UNTRAINED_DETAILS = (
    "Produced by foldcp's random-weight (untrained) demo Boltz-2 model: the coordinates and "
    "confidence scores carry no information about the real structure. "
)
DEFAULT_AUTHOR = "foldcp"  # when export.authors is empty: never the Boltz authors by default
BOLTZ2_CITATION = {  # as the boltz 2.2.1 package README asks to cite it
    "pmid": None,
    "title": "Boltz-2: Towards Accurate and Efficient Binding Affinity Prediction",
    "journal": "bioRxiv", "volume": None, "page_range": None, "year": 2025,
    "authors": ["Passaro, S.", "Corso, G.", "Wohlwend, J.", "Reveiz, M.", "Thaler, S.",
                "Somnath, V.R.", "Getz, N.", "Portnoi, T.", "Roy, J.", "Stark, H.",
                "Kwabi-Addo, D.", "Beaini, D.", "Jaakkola, T.", "Barzilay, R."],
    "doi": "10.1101/2025.06.14.659707",
}


class GlobalPLDDT(modelcif.qa_metric.Global, modelcif.qa_metric.PLDDT):
    """Predicted lDDT-Ca of the whole complex (Boltz-2 complex_plddt x 100), 0-100"""

    name = "pLDDT"
    software = None


class GlobalPTM(modelcif.qa_metric.Global, modelcif.qa_metric.PTM):
    """Predicted TM-score of the whole complex (Boltz-2), 0-1"""

    name = "pTM"
    software = None


class GlobalIpTM(modelcif.qa_metric.Global, modelcif.qa_metric.IpTM):
    """Interface predicted TM-score (Boltz-2), 0-1"""

    name = "ipTM"
    software = None


class LocalPLDDT(modelcif.qa_metric.Local, modelcif.qa_metric.PLDDT):
    """Predicted lDDT-Ca of the residue (Boltz-2), 0-100"""

    name = "pLDDT"
    software = None


class LocalPairwisePAE(modelcif.qa_metric.LocalPairwise, modelcif.qa_metric.PAE):
    """Predicted aligned error of residue 2 when residue 1 is aligned (Boltz-2), in Angstrom"""

    name = "PAE"
    software = None


@dataclass
class ModelInputs:
    """Everything one ModelCIF entry is made from."""

    entry_id: str
    complex_id: str
    sample: int
    manifest: dict  # done.json of the complex (checkpoint, settings, grid, versions)
    entities: list[ExportEntity]  # in entity order
    chains: list[ChainTokens]  # in token order
    structure_path: Path  # Boltz's mmCIF of this sample (coordinates)
    plddt: np.ndarray  # [N] per-token pLDDT, 0-1
    pae: np.ndarray  # [N, N] PAE in Å; row i = aligned on token i
    iptm: float
    ptm: float
    complex_plddt: float  # 0-1
    untrained: bool
    selection: str  # why this model was exported, for the protocol
    msa_mode: str
    foldcp_version: str
    boltz_version: str
    authors: list[str]  # entry authors ("Last, F."); empty: DEFAULT_AUTHOR


class _PAEModel(modelcif.model.AbInitioModel):
    """An ab initio model that also carries its PAE matrix for `_PAEQAMetricDumper`."""

    pae: np.ndarray | None = None
    pae_residues: list | None = None  # token index -> modelcif Residue
    pae_metric: LocalPairwisePAE | None = None


class _PAEQAMetricDumper(modelcif.dumper._QAMetricDumper):
    """The stock QA dumper, plus pairwise PAE rows generated from each model's [N, N] array
    (same columns and order as the stock dumper writes for LocalPairwise metrics)."""

    def finalize(self, system):
        super().finalize(system)
        seen = {type(m) for m in self._metric_classes_by_id}
        for _, model in system._all_models():
            metric = getattr(model, "pae_metric", None)
            if metric is not None and type(metric) not in seen:
                seen.add(type(metric))
                type(metric)._id = len(self._metric_classes_by_id) + 1
                self._metric_classes_by_id.append(metric)

    def dump_metric_pairwise(self, system, writer):
        ordinal = 1
        with writer.loop(
                "_ma_qa_metric_local_pairwise",
                ["ordinal_id", "model_id", "label_asym_id_1", "label_seq_id_1",
                 "label_comp_id_1", "label_asym_id_2", "label_seq_id_2",
                 "label_comp_id_2", "metric_id", "metric_value"]) as lp:
            for _, model in system._all_models():
                if getattr(model, "pae", None) is None:
                    continue
                keys = [(r.asym._id, r.seq_id, r.asym.entity.sequence[r.seq_id - 1].id)
                        for r in model.pae_residues]
                metric_id = type(model.pae_metric)._id
                for i, (asym1, seq1, comp1) in enumerate(keys):
                    row = model.pae[i]
                    for j, (asym2, seq2, comp2) in enumerate(keys):
                        lp.write(ordinal_id=ordinal, model_id=model._id,
                                 label_asym_id_1=asym1, label_seq_id_1=seq1,
                                 label_comp_id_1=comp1, label_asym_id_2=asym2,
                                 label_seq_id_2=seq2, label_comp_id_2=comp2,
                                 metric_id=metric_id, metric_value=float(row[j]))
                        ordinal += 1


class _Variant(modelcif.dumper.ModelCIFVariant):
    _dumpers = tuple(_PAEQAMetricDumper if d is modelcif.dumper._QAMetricDumper else d
                     for d in modelcif.dumper.ModelCIFVariant._dumpers)


def _protein_name(description: str) -> str:
    """'Hemoglobin subunit alpha OS=Homo sapiens OX=9606 ...' -> 'Hemoglobin subunit alpha'."""
    return re.split(r"\s+[A-Z]{2}=", description, maxsplit=1)[0].strip()


def _organism(description: str) -> tuple[str | None, str | None]:
    """(scientific name, NCBI taxonomy ID) from a UniProt FASTA description, where present."""
    name = re.search(r"\bOS=(.+?)(?:\s+[A-Z]{2}=|$)", description)
    taxon = re.search(r"\bOX=(\d+)", description)
    return (name.group(1) if name else None), (taxon.group(1) if taxon else None)


def _entity(entity: ExportEntity) -> modelcif.Entity:
    """A ModelCIF entity with a UniProt reference when the protein ID is an accession."""
    protein = entity.protein
    name = _protein_name(protein.description) or protein.id
    if entity.is_fragment:
        name += f" (residues {entity.start}-{entity.end})"
    references = []
    accession = entity.accession
    if accession is not None:
        organism, taxon = _organism(protein.description)
        reference = modelcif.reference.UniProt(
            code=protein.entry_name or accession.accession, accession=accession.accession,
            isoform=accession.isoform, ncbi_taxonomy_id=taxon, organism_scientific=organism,
            sequence=protein.sequence, sequence_crc64=sequence_crc64(protein.sequence),
        )
        reference.alignments.append(modelcif.reference.Alignment(
            db_begin=entity.start, db_end=entity.end, entity_begin=1,
            entity_end=len(entity.sequence),
        ))
        references.append(reference)
    sequence = ["UNK" if letter == "X" else letter for letter in entity.sequence]
    return modelcif.Entity(sequence, description=f"{protein.id}: {name}",
                           references=references)


def _label(entities: list[ExportEntity]) -> str:
    """'P69905 + P68871', 'P00441 x2', 'P00648 1-300 + P11540'."""
    parts = []
    for entity in entities:
        text = entity.protein.id + (f" {entity.start}-{entity.end}" if entity.is_fragment else "")
        parts.append(text + (f" x{len(entity.chains)}" if len(entity.chains) > 1 else ""))
    return " + ".join(parts)


def _software(inputs: ModelInputs):
    """(Boltz with this run's parameters, foldcp) as ModelCIF software."""
    manifest = inputs.manifest
    boltz = modelcif.Software(
        name="Boltz", classification="model building",
        description="Boltz-2 biomolecular structure and affinity prediction",
        location="https://github.com/jwohlwend/boltz", type="package",
        version=inputs.boltz_version, citation=ihm.Citation(**BOLTZ2_CITATION),
    )
    foldcp_sw = modelcif.Software(
        name="foldcp", classification="model building",
        description="proteome-scale protein-complex prediction with Boltz-2 "
                    "(planning, context-parallel inference, analysis, export)",
        location=None, type="package",
        version=inputs.foldcp_version,
    )
    settings = manifest.get("settings", {})
    checkpoint = manifest.get("checkpoint", {})
    P = modelcif.SoftwareParameter
    parameters = [
        P("checkpoint", checkpoint.get("kind", "unknown"),
          "released Boltz-2 weights, foldcp demo model, or a checkpoint path"),
        P("checkpoint_sha256", checkpoint.get("sha256") or "unknown",
          "SHA-256 of the checkpoint file the prediction used"),
        P("untrained", bool(inputs.untrained),
          "true: random-weight demo model, the output is not a prediction"),
        P("msa", inputs.msa_mode, "none = single sequence (no multiple sequence alignment)"),
    ]
    for key, description in (
        ("recycling_steps", "trunk recycling passes"),
        ("sampling_steps", "diffusion steps per sample"),
        ("diffusion_samples", "structures sampled per complex"),
        ("seed", "random seed set before featurisation and the forward pass"),
    ):
        if key in settings:
            parameters.append(P(key, int(settings[key]), description))
    parameters += [
        P("sample", int(inputs.sample), "index of this diffusion sample (0-based)"),
        P("precision", str(manifest.get("precision", "unknown")), "numerical precision"),
        P("grid", str(manifest.get("grid", "1x1")),
          "GPU grid (rows x columns) of context-parallel inference; 1x1 = one device"),
    ]
    return modelcif.SoftwareWithParameters(boltz, parameters), foldcp_sw


def _add_atoms(model: modelcif.model.Model, inputs: ModelInputs, asyms: dict) -> None:
    """Atoms of Boltz's mmCIF, B-factor = per-residue pLDDT x 100; sequences must match."""
    structure = gemmi.read_structure(str(inputs.structure_path))
    if len(structure) == 0:
        raise ExportError(f"{inputs.structure_path}: no model in the file")
    by_name = {chain.name: chain for chain in structure[0]}
    for tokens in inputs.chains:
        chain = by_name.get(tokens.name)
        if chain is None or len(chain) != tokens.length:
            raise ExportError(
                f"{inputs.structure_path}: chain {tokens.name} has "
                f"{len(chain) if chain is not None else 0} residues, expected {tokens.length}"
            )
        sequence = tokens.entity.sequence
        for index, residue in enumerate(chain):
            letter = gemmi.find_tabulated_residue(residue.name)
            letter = letter.one_letter_code.upper() if letter else "X"
            if letter != sequence[index] and not (residue.name == "UNK" and sequence[index] == "X"):
                raise ExportError(
                    f"{inputs.structure_path}: chain {tokens.name} residue {index + 1} is "
                    f"{residue.name}, the sequence has {sequence[index]!r}"
                )
            biso = round(float(inputs.plddt[tokens.offset + index]) * 100, 2)
            for atom in residue:
                model.add_atom(modelcif.model.Atom(
                    asym_unit=asyms[tokens.name], seq_id=index + 1, atom_id=atom.name,
                    type_symbol=atom.element.name, x=atom.pos.x, y=atom.pos.y, z=atom.pos.z,
                    het=False, biso=biso, occupancy=1.0,
                ))


def build_system(inputs: ModelInputs, pae_local_path: Path | None) -> modelcif.System:
    """The ModelCIF system of one model; the PAE file goes to `pae_local_path` when given."""
    n = sum(c.length for c in inputs.chains)
    if inputs.plddt.shape != (n,) or inputs.pae.shape != (n, n):
        raise ExportError(
            f"{inputs.complex_id} sample {inputs.sample}: pLDDT {inputs.plddt.shape} / PAE "
            f"{inputs.pae.shape} do not match the {n} residues of its chains"
        )
    label = _label(inputs.entities)
    title = f"Boltz-2 model of {label} (foldcp {inputs.complex_id}, sample {inputs.sample})"
    settings = inputs.manifest.get("settings", {})
    details = (
        f"Predicted with Boltz-2 (boltz {inputs.boltz_version}) through foldcp "
        f"{inputs.foldcp_version}; MSA mode {inputs.msa_mode}; "
        f"{settings.get('recycling_steps', '?')} recycling steps, "
        f"{settings.get('sampling_steps', '?')} sampling steps, diffusion sample "
        f"{inputs.sample} of {settings.get('diffusion_samples', '?')}, seed "
        f"{settings.get('seed', '?')}. {inputs.selection}"
    )
    if inputs.untrained:
        title = f"{UNTRAINED_TITLE}: {title}"
        details = UNTRAINED_DETAILS + details
    system = modelcif.System(title=title, id=inputs.entry_id, model_details=details)
    if inputs.untrained:
        system.comments.append(
            "foldcp: UNTRAINED random-weight demo model - this file is NOT a structure prediction")
    # Without authors, python-modelcif would name the authors of the first citation (Boltz's)
    # as this entry's authors.
    system.authors.extend(inputs.authors or [DEFAULT_AUTHOR])
    boltz, foldcp_sw = _software(inputs)

    entities = [_entity(e) for e in inputs.entities]
    system.entities.extend(entities)
    asyms = {}
    for entity, modelcif_entity in zip(inputs.entities, entities):
        for copy, name in enumerate(entity.chains, start=1):
            asyms[name] = modelcif.AsymUnit(
                modelcif_entity, details=f"{entity.protein.id} copy {copy}", id=name,
                auth_seq_id_map=entity.start - 1,
            )
    ordered = [asyms[c.name] for c in inputs.chains]
    system.asym_units.extend(ordered)
    assembly = modelcif.Assembly(ordered, name=label)

    model = _PAEModel(assembly=assembly, name=f"{inputs.complex_id} sample {inputs.sample}")
    _add_atoms(model, inputs, asyms)
    for metric in (GlobalPLDDT(round(inputs.complex_plddt * 100, 3)),
                   GlobalPTM(inputs.ptm)) + (
                       (GlobalIpTM(inputs.iptm),) if len(inputs.chains) > 1 else ()):
        metric.software = boltz.software
        model.qa_metrics.append(metric)
    residues = [asyms[c.name].residue(i + 1) for c in inputs.chains for i in range(c.length)]
    for residue, value in zip(residues, inputs.plddt):
        metric = LocalPLDDT(residue, round(float(value) * 100, 3))
        metric.software = boltz.software
        model.qa_metrics.append(metric)
    if pae_local_path is not None:
        model.pae = inputs.pae
        model.pae_residues = residues
        model.pae_metric = LocalPairwisePAE(residues[0], residues[0], 0.0)
        model.pae_metric.software = boltz.software
        pae_file = modelcif.associated.LocalPairwiseQAScoresFile(
            pae_name(inputs.entry_id), categories=["_ma_qa_metric_local_pairwise"],
            copy_categories=["_ma_qa_metric"], entry_id=inputs.entry_id,
            entry_details=f"Predicted aligned error of {inputs.entry_id}",
            local_path=str(pae_local_path),
            details="Predicted aligned error (PAE, Angstrom) of every residue pair",
        )
        system.repositories.append(modelcif.associated.Repository("", [
            modelcif.associated.ZipFile(pae_zip_name(inputs.entry_id), files=[pae_file],
                                        details="Predicted aligned error (zip archive)"),
        ]))
    system.model_groups.append(modelcif.model.ModelGroup([model], name=label))

    protocol = modelcif.protocol.Protocol()
    protocol.steps.append(modelcif.protocol.ModelingStep(
        input_data=modelcif.data.DataGroup(entities), output_data=model,
        name="Boltz-2 structure prediction",
        details=(UNTRAINED_DETAILS if inputs.untrained else "") + (
            f"Boltz-2 inference on the target sequences; MSA mode {inputs.msa_mode}."),
        software=modelcif.SoftwareGroup([boltz, foldcp_sw]),
    ))
    protocol.steps.append(modelcif.protocol.ModelSelectionStep(
        input_data=model, output_data=model, name="model selection",
        details=inputs.selection, software=foldcp_sw,
    ))
    system.protocols.append(protocol)
    return system


def pae_name(entry_id: str) -> str:
    return f"{entry_id}_local_pairwise_qa.cif"


def pae_zip_name(entry_id: str) -> str:
    return f"{entry_id}_pae.zip"


def write_modelcif(
    inputs: ModelInputs, directory: str | Path, pae: bool = True
) -> tuple[Path, Path | None]:
    """Write ``{entry}.cif`` (and ``{entry}_pae.zip`` when `pae`) into `directory`, each
    atomically; return their paths. The archive is in place before the file naming it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cif_path = directory / f"{inputs.entry_id}.cif"
    zip_path = directory / pae_zip_name(inputs.entry_id) if pae else None
    with tempfile.TemporaryDirectory(dir=directory, prefix=".export.") as scratch:
        pae_local = Path(scratch) / pae_name(inputs.entry_id) if pae else None
        system = build_system(inputs, pae_local)
        with atomic_path(cif_path) as tmp:
            with open(tmp, "w", encoding="utf-8") as handle:  # closed before the zip is made
                modelcif.dumper.write(handle, [system], variant=_Variant)
            if zip_path is not None:
                with atomic_path(zip_path) as zip_tmp, \
                        zipfile.ZipFile(zip_tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                    archive.write(pae_local, arcname=pae_name(inputs.entry_id))
    return cif_path, zip_path
