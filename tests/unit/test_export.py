"""foldcp export: model selection, ModelCIF files (read back with gemmi and python-modelcif),
the zipped PAE associated file, the index table, and the optional Foldseek database.

The prediction folder is built directly (no model run): coordinates from PDB 2OOB (Cbl-b UBA
domain + ubiquitin, tests/data/2oob.pdb) renumbered as Boltz writes them, and seeded random
pLDDT / PAE arrays, so every value the export writes can be checked against its source.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import zipfile
from pathlib import Path

import gemmi
import modelcif.reader
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from foldcp.cli import main
from foldcp.config import validate_config
from foldcp.errors import ExportError
from foldcp.export.exporter import export_models
from foldcp.export.foldseek import build_foldseek_db
from foldcp.export.index import INDEX_COLUMNS
from foldcp.export.select import select_models
from foldcp.export.uniprot import parse_accession, sequence_crc64
from foldcp.inputs import make_complex, parse_complex

DATA = Path(__file__).resolve().parents[1] / "data"
# SEQRES of 2OOB chain B (DBREF: UNP P62990 UBIQ_BOVIN 1-76); residues 1-72 have coordinates
UBIQUITIN = "MQIFVKTLTGKTITLEVEPSDTIENVKAKIQDKEGIPPDQQRLIFAGKQLEDGRTLSDYNIQKESTLHLVLRLRGG"
METRIC_TOLERANCE = 5e-4  # python-ihm writes floats with 3 decimals


def _pdb_chains() -> dict[str, gemmi.Chain]:
    """Polymer residues of 2OOB chains A (UBA, 44 residues) and B (ubiquitin 1-72)."""
    structure = gemmi.read_structure(str(DATA / "2oob.pdb"))
    structure.remove_ligands_and_waters()
    structure.remove_hydrogens()
    return {chain.name: chain for chain in structure[0]}


def _sequence(chain: gemmi.Chain) -> str:
    return gemmi.one_letter_code([r.name for r in chain])


def _write_model(path: Path, chains: list[tuple[str, gemmi.Chain, tuple[float, float, float]]]) -> None:
    """An mmCIF as Boltz writes one: chains A, B, ... numbered 1..n, polymer atoms only."""
    structure = gemmi.Structure()
    model = gemmi.Model("1")
    for name, source, shift in chains:
        chain = gemmi.Chain(name)
        for index, residue in enumerate(source, start=1):
            copy = gemmi.Residue()
            copy.name, copy.seqid, copy.label_seq = residue.name, gemmi.SeqId(index, " "), index
            copy.entity_type, copy.het_flag = gemmi.EntityType.Polymer, "A"
            for atom in residue:
                atom = atom.clone()
                atom.pos = gemmi.Position(atom.pos.x + shift[0], atom.pos.y + shift[1], atom.pos.z + shift[2])
                copy.add_atom(atom)
            chain.add_residue(copy)
        model.add_chain(chain)
    structure.add_model(model)
    structure.setup_entities()
    structure.make_mmcif_document().write_file(str(path))


def _manifest(complex_, chains: list[dict], tokens: int, untrained: bool) -> dict:
    return {
        "complex_id": complex_.id, "spec": complex_.spec, "chains": chains, "tokens": tokens,
        "samples": 2, "untrained": untrained,
        "checkpoint": {"kind": "demo" if untrained else "released", "path": "/ckpt",
                       "sha256": ("d" if untrained else "a") * 64},
        "settings": {"recycling_steps": 3, "sampling_steps": 200, "diffusion_samples": 2,
                     "seed": 7},
        "precision": "bf16-mixed", "device": "cuda:0", "grid": "2x2", "foldcp_version": "0.1.0",
        "boltz_version": "2.2.1", "runtime_s": 1.0, "files": [],
    }


@pytest.fixture
def screen(tmp_path, monkeypatch):
    """A results folder with two finished complexes x 2 samples and its merged tables."""
    monkeypatch.chdir(tmp_path)
    pdb = _pdb_chains()
    uba = _sequence(pdb["A"])
    (tmp_path / "proteins.fasta").write_text(
        f">sp|P62990|UBIQ_BOVIN Ubiquitin OS=Bos taurus OX=9913\n{UBIQUITIN}\n"
        f">cblb_uba Cbl-b UBA domain (2OOB chain A)\n{uba}\n"
    )
    (tmp_path / "pairs.tsv").write_text("chains\nP62990:1-72;cblb_uba\ncblb_uba:2\n")
    rng = np.random.default_rng(0)
    results = tmp_path / "results"
    hetero = make_complex(parse_complex("P62990:1-72;cblb_uba"))
    homo = make_complex(parse_complex("cblb_uba:2"))
    layouts = {
        hetero: ([("A", pdb["B"], (0, 0, 0)), ("B", pdb["A"], (0, 0, 0))],
                 [{"chain": "A", "protein_id": "P62990", "start": 1, "end": 72, "entity": 0},
                  {"chain": "B", "protein_id": "cblb_uba", "start": 1, "end": len(uba), "entity": 1}],
                 False),
        homo: ([("A", pdb["A"], (0, 0, 0)), ("B", pdb["A"], (30.0, 0, 0))],
               [{"chain": "A", "protein_id": "cblb_uba", "start": 1, "end": len(uba), "entity": 0},
                {"chain": "B", "protein_id": "cblb_uba", "start": 1, "end": len(uba), "entity": 0}],
               True),
    }
    rows = []
    scores = {(hetero.id, 0): 0.55, (hetero.id, 1): 0.81234, (homo.id, 0): 0.41, (homo.id, 1): 0.3}
    for complex_, (chains, records, untrained) in layouts.items():
        directory = results / "predictions" / complex_.id
        directory.mkdir(parents=True)
        tokens = sum(len(c) for _, c, _ in chains)
        (directory / "done.json").write_text(json.dumps(_manifest(complex_, records, tokens, untrained)))
        for sample in (0, 1):
            _write_model(directory / f"model_{sample}.cif", chains)
            np.savez_compressed(directory / f"plddt_model_{sample}.npz",
                                plddt=rng.uniform(0, 1, tokens).astype(np.float32))
            np.savez_compressed(directory / f"pae_model_{sample}.npz",
                                pae=rng.uniform(0, 31.75, (tokens, tokens)).astype(np.float32))
            iptm = scores[(complex_.id, sample)]
            rows.append({
                "complex_id": complex_.id, "chains": complex_.spec, "sample": sample,
                "iptm": iptm, "ptm": round(iptm - 0.0123456, 7),
                "complex_plddt": 0.6 + 0.01 * sample + 0.0004321, "ranking_score": iptm,
                "ipsae": 0.5,  # a column another engineer may add: must be ignored
                "untrained": untrained,
                "model_path": str(Path("results/predictions") / complex_.id / f"model_{sample}.cif"),
                "pae_path": str(Path("results/predictions") / complex_.id / f"pae_model_{sample}.npz"),
                "plddt_path": str(Path("results/predictions") / complex_.id / f"plddt_model_{sample}.npz"),
            })
    complexes = pd.DataFrame(rows)
    complexes["best_sample"] = complexes["iptm"] == complexes.groupby("complex_id")["iptm"].transform("max")
    ranked = complexes[complexes["best_sample"]].sort_values("iptm", ascending=False).assign(
        rank=[1, 2], confident=lambda t: t["iptm"] >= 0.6)
    complexes.to_parquet(results / "complexes.parquet")
    ranked.drop(columns=["sample"]).to_parquet(results / "ranked.parquet")
    config = validate_config({
        "proteins": "proteins.fasta", "candidates": {"mode": "pairs", "pairs": "pairs.tsv"},
        "model": {"checkpoint": "demo"},
        "export": {"authors": ["Doe, J."]},
    })
    return {"config": config, "root": tmp_path, "results": results, "complexes": complexes,
            "ids": {"hetero": hetero.id, "homo": homo.id}, "uba": uba}


def export(screen, **settings) -> pd.DataFrame:
    config = screen["config"]
    config["export"].update(settings)
    return export_models(config, screen["results"], screen["results"] / "export")


def table_row(screen, complex_id: str, sample: int):
    table = screen["complexes"]
    return table[(table["complex_id"] == complex_id) & (table["sample"] == sample)].iloc[0]


# --- selection, accessions, checksums ------------------------------------------------------


def test_select_models_follows_the_export_settings():
    ranked = pd.DataFrame({"complex_id": ["c", "a", "b"], "rank": [3, 1, 2],
                           "confident": [True, True, False], "ipsae": [0.1, 0.2, 0.3]})
    complexes = pd.DataFrame([
        {"complex_id": cid, "sample": s, "best_sample": s == best, "iptm": 0.5, "ptm": 0.5,
         "complex_plddt": 0.5, "untrained": False, "model_path": f"{cid}/model_{s}.cif",
         "pae_path": "", "plddt_path": "", "new_column": 1}
        for cid, best in (("a", 1), ("b", 0), ("c", 0)) for s in (0, 1)
    ])
    settings = {"samples": "best", "top_n": None, "confident_only": False}
    best = select_models(ranked, complexes, settings)
    assert list(zip(best["complex_id"], best["sample"], best["rank"])) == [("a", 1, 1), ("b", 0, 2), ("c", 0, 3)]
    top = select_models(ranked, complexes, {**settings, "top_n": 2, "samples": "all"})
    assert list(zip(top["complex_id"], top["sample"])) == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    confident = select_models(ranked, complexes, {**settings, "confident_only": True, "top_n": 2})
    assert list(confident["complex_id"]) == ["a", "c"]
    assert "ipsae" not in best.columns and "new_column" not in best.columns
    with pytest.raises(ValueError, match="best_sample"):
        select_models(ranked, complexes.drop(columns=["best_sample"]), settings)


def test_uniprot_accessions_and_crc64():
    assert parse_accession("P69905").accession == "P69905"
    assert parse_accession("P69905").isoform is None
    assert parse_accession("P69905-2").isoform == "P69905-2"
    assert parse_accession("A0A023GPI8").accession == "A0A023GPI8"  # 10-character form
    assert parse_accession("Q9TES1") is not None
    for not_accession in ("pepA", "my_protein", "P6990", "p69905", "P69905_1", "HBA_HUMAN"):
        assert parse_accession(not_accession) is None, not_accession
    # the example in Biopython's crc64 docstring
    assert sequence_crc64("ACGTACGTACGT") == "C4FBB762C4A87EBD"
    assert sequence_crc64("acgtacgtacgt") == "C4FBB762C4A87EBD"  # sequences are upper-cased


# --- ModelCIF --------------------------------------------------------------------------------


def test_modelcif_reads_back_with_gemmi(screen):
    index = export(screen).set_index("complex_id")
    export_dir = screen["results"] / "export"
    for complex_id, row in index.iterrows():
        source = table_row(screen, complex_id, row["sample"])
        block = gemmi.cif.read(str(export_dir / row["model_path"])).sole_block()
        assert block.name == row["entry_id"]
        metrics = dict(zip(block.find_loop("_ma_qa_metric.id"), block.find_loop("_ma_qa_metric.name")))
        values = {metrics[m]: float(v) for m, v in zip(block.find_loop("_ma_qa_metric_global.metric_id"),
                                                       block.find_loop("_ma_qa_metric_global.metric_value"))}
        assert values["pTM"] == pytest.approx(source["ptm"], abs=METRIC_TOLERANCE)
        assert values["ipTM"] == pytest.approx(source["iptm"], abs=METRIC_TOLERANCE)
        assert values["pLDDT"] == pytest.approx(source["complex_plddt"] * 100, abs=METRIC_TOLERANCE)
        plddt = np.load(source["plddt_path"])["plddt"]
        local = np.array(block.find_loop("_ma_qa_metric_local.metric_value"), dtype=float)
        np.testing.assert_allclose(local, plddt * 100, atol=METRIC_TOLERANCE)
        structure = gemmi.read_structure(str(export_dir / row["model_path"]))
        assert [ch.name for ch in structure[0]] == ["A", "B"]
        bfactors = [r[0].b_iso for ch in structure[0] for r in ch]
        np.testing.assert_allclose(bfactors, plddt * 100, atol=0.006)
        original = gemmi.read_structure(source["model_path"])
        np.testing.assert_allclose(
            [a.pos.tolist() for ch in structure[0] for r in ch for a in r],
            [a.pos.tolist() for ch in original[0] for r in ch for a in r], atol=1e-3)
    hetero = gemmi.read_structure(str(export_dir / index.loc[screen["ids"]["hetero"], "model_path"]))
    assert gemmi.one_letter_code([r.name for r in hetero[0]["A"]]) == UBIQUITIN[:72]
    assert hetero[0]["A"][0].seqid.num == 1  # author numbering = UniProt positions


def test_modelcif_reads_back_with_python_modelcif(screen):
    index = export(screen).set_index("complex_id")
    export_dir = screen["results"] / "export"
    systems = {}
    for complex_id, row in index.iterrows():
        with open(export_dir / row["model_path"]) as handle:
            systems[complex_id], = modelcif.reader.read(handle)
    hetero, homo = systems[screen["ids"]["hetero"]], systems[screen["ids"]["homo"]]

    # entities: sequences, and a UniProt reference only where the ID is an accession
    ubiquitin, uba = hetero.entities
    assert "".join(c.code_canonical for c in ubiquitin.sequence) == UBIQUITIN[:72]
    assert "".join(c.code_canonical for c in uba.sequence) == screen["uba"]
    reference, = ubiquitin.references
    assert (reference.db_name, reference.accession, reference.db_code) == ("UNP", "P62990", "UBIQ_BOVIN")
    assert reference.sequence_crc64 == sequence_crc64(UBIQUITIN)
    assert reference.ncbi_taxonomy_id == "9913" and reference.organism_scientific == "Bos taurus"
    alignment, = reference.alignments
    assert (alignment.db_begin, alignment.db_end, alignment.entity_begin, alignment.entity_end) == (1, 72, 1, 72)
    assert uba.references == []
    assert len(homo.entities) == 1 and [a.entity for a in homo.asym_units] == homo.entities * 2

    # global and per-residue QA equal the tables and the pLDDT file
    for complex_id, system in systems.items():
        row = index.loc[complex_id]
        source = table_row(screen, complex_id, row["sample"])
        model = system.model_groups[0][0]
        globals_ = {m.name: m.value for m in model.qa_metrics if isinstance(m, modelcif.qa_metric.Global)}
        assert globals_ == pytest.approx({"pLDDT": source["complex_plddt"] * 100, "pTM": source["ptm"],
                                          "ipTM": source["iptm"]}, abs=METRIC_TOLERANCE)
        local = [m for m in model.qa_metrics if isinstance(m, modelcif.qa_metric.Local)]
        plddt = np.load(source["plddt_path"])["plddt"]
        assert [(m.residue.asym.id, m.residue.seq_id) for m in local][:2] == [("A", 1), ("A", 2)]
        np.testing.assert_allclose([m.value for m in local], plddt * 100, atol=METRIC_TOLERANCE)
        assert system.authors == ["Doe, J."]

    # software and protocol record the run
    boltz = next(s for s in hetero.software if s.name == "Boltz")
    assert boltz.version == "2.2.1" and boltz.citation.doi == "10.1101/2025.06.14.659707"
    modeling = hetero.protocols[0].steps[0]
    parameters = {p.name: p.value for s in modeling.software if hasattr(s, "parameters")
                  for p in s.parameters}
    assert parameters["checkpoint_sha256"] == "a" * 64
    assert (parameters["seed"], parameters["recycling_steps"], parameters["sampling_steps"]) == (7, 3, 200)
    assert parameters["grid"] == "2x2" and parameters["untrained"] is False
    assert "ranks 1 of 2" in hetero.protocols[0].steps[1].details

    # the demo model's output says so; a real model's does not
    assert "UNTRAINED" in homo.title and "untrained" in homo.model_details
    assert "UNTRAINED" not in hetero.title and "untrained" not in hetero.model_details
    text = (export_dir / index.loc[screen["ids"]["homo"], "model_path"]).read_text()
    assert "# foldcp: UNTRAINED random-weight demo model" in text


def test_pae_associated_file_round_trips(screen):
    index = export(screen).set_index("complex_id")
    export_dir = screen["results"] / "export"
    for complex_id, row in index.iterrows():
        source = table_row(screen, complex_id, row["sample"])
        pae = np.load(source["pae_path"])["pae"]
        with open(export_dir / row["model_path"]) as handle:
            system, = modelcif.reader.read(handle)
        archive, = system.repositories[0].files
        assert archive.path == Path(row["pae_path"]).name  # relative to the main file
        inner, = archive.files
        assert inner.file_content == "local pairwise QA scores"
        with zipfile.ZipFile(export_dir / row["pae_path"]) as zipped:
            assert zipped.namelist() == [inner.path]
            text = zipped.read(inner.path).decode()
        # python-modelcif reads the associated file into the system it belongs to
        scratch = export_dir / "scratch.cif"
        scratch.write_text(text)
        with open(scratch) as handle:
            modelcif.reader.read(handle, add_to_system=system)
        model = system.model_groups[0][0]
        pairs = [m for m in model.qa_metrics if isinstance(m, modelcif.qa_metric.LocalPairwise)]
        assert len(pairs) == pae.size and pairs[0].name == "PAE"
        offsets = {"A": 0, "B": len(system.asym_units[0].entity.sequence)}
        matrix = np.full(pae.shape, np.nan)
        for m in pairs:
            matrix[offsets[m.residue1.asym.id] + m.residue1.seq_id - 1,
                   offsets[m.residue2.asym.id] + m.residue2.seq_id - 1] = m.value
        np.testing.assert_allclose(matrix, pae, atol=METRIC_TOLERANCE)
        # and gemmi reads the same numbers
        block = gemmi.cif.read_string(text).sole_block()
        values = np.array(block.find_loop("_ma_qa_metric_local_pairwise.metric_value"), dtype=float)
        np.testing.assert_allclose(values.reshape(pae.shape), pae, atol=METRIC_TOLERANCE)


def test_pae_can_be_left_out(screen):
    index = export(screen, pae=False)
    assert index["pae_path"].isna().all()
    assert not list((screen["results"] / "export" / "models").glob("*.zip"))
    block = gemmi.cif.read(str(screen["results"] / "export" / index["model_path"][0])).sole_block()
    assert not block.find_loop("_ma_entry_associated_files.id")


def test_a_structure_that_does_not_match_its_sequence_is_refused(screen):
    model = screen["results"] / "predictions" / screen["ids"]["hetero"] / "model_1.cif"
    model.write_text(model.read_text().replace(" MET ", " ALA "))
    with pytest.raises(ExportError, match="chain A residue 1 is ALA"):
        export(screen)


# --- index, selection on disk, CLI -------------------------------------------------------------


def test_index_table(screen):
    index = export(screen)
    path = screen["results"] / "export" / "index.parquet"
    assert pq.read_schema(path).metadata[b"foldcp_export_schema_version"] == b"1"
    stored = pd.read_parquet(path)
    assert list(stored.columns) == INDEX_COLUMNS
    assert list(stored["entry_id"]) == [f"{screen['ids']['hetero']}_model_1", f"{screen['ids']['homo']}_model_0"]
    hetero, homo = stored.iloc[0], stored.iloc[1]
    assert list(hetero["proteins"]) == ["P62990", "cblb_uba"]
    assert list(hetero["accessions"]) == ["P62990", None]
    assert list(hetero["copies"]) == [1, 1] and list(homo["copies"]) == [2]
    assert list(hetero["sequence_crc64"]) == [sequence_crc64(UBIQUITIN[:72]), sequence_crc64(screen["uba"])]
    assert (hetero["rank"], hetero["confident"], hetero["untrained"]) == (1, True, False)
    assert (homo["rank"], homo["confident"], homo["untrained"]) == (2, False, True)
    assert hetero["iptm"] == table_row(screen, screen["ids"]["hetero"], 1)["iptm"]  # exact, from the table
    assert hetero["checkpoint_sha256"] == "a" * 64 and homo["checkpoint_sha256"] == "d" * 64
    assert hetero["residues"] == 72 + len(screen["uba"]) and hetero["num_chains"] == 2
    assert str(stored["created"].dt.tz) == "UTC"
    for column in ("model_path", "pae_path"):
        for relative in stored[column]:
            assert not Path(relative).is_absolute()
            assert (screen["results"] / "export" / relative).is_file()
    assert len(index) == 2


def test_reexport_with_another_selection_removes_what_is_no_longer_selected(screen):
    every = export(screen, samples="all")
    assert len(every) == 4
    models = screen["results"] / "export" / "models"
    stranger = models / "notes.txt"
    stranger.write_text("not ours")
    top = export(screen, samples="best", top_n=1, confident_only=True)
    assert list(top["entry_id"]) == [f"{screen['ids']['hetero']}_model_1"]
    assert sorted(p.name for p in models.iterdir()) == sorted(
        [Path(top["model_path"][0]).name, Path(top["pae_path"][0]).name, "notes.txt"])
    assert not [p for p in models.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_cli_export(screen, capsys):
    config = screen["root"] / "config.yaml"
    config.write_text(yaml.safe_dump({**screen["config"], "output_dir": "results"}))
    assert main(["export", "--config", str(config)]) == 0
    assert "exported 2 models -> results/export" in capsys.readouterr().out
    assert (screen["results"] / "export" / "index.parquet").is_file()
    assert main(["export", "--config", str(config), "--results", "missing"]) == 2
    assert "no merged result tables in missing" in capsys.readouterr().err


# --- Foldseek --------------------------------------------------------------------------------


def test_foldseek_is_skipped_with_a_message_when_missing(screen, monkeypatch, tmp_path, capsys):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    stale = screen["results"] / "export" / "foldseek"
    stale.mkdir(parents=True)
    (stale / "models.dbtype").write_text("old")
    index = export(screen)
    assert len(index) == 2
    out = capsys.readouterr().out
    assert "Foldseek database skipped: 'foldseek' is not on PATH" in out
    assert not stale.exists()  # a database that no longer matches the index is removed
    export(screen, foldseek=False)
    assert "Foldseek database not requested" in capsys.readouterr().out


def test_foldseek_createdb_is_called_with_the_model_list(screen, monkeypatch, tmp_path):
    """A stand-in foldseek that records its arguments and writes a DB type file."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    fake = bin_dir / "foldseek"
    fake.write_text('#!/bin/sh\necho "$@" > "$3.args"\ncp "$2" "$3.inputs"\necho 0 > "$3.dbtype"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    index = export(screen)
    db = screen["results"] / "export" / "foldseek"
    args = (db / "models.args").read_text().split()
    assert args[0] == "createdb" and args[1].endswith("models.tsv")
    listed = (db / "models.inputs").read_text().splitlines()
    expected = [str((screen["results"] / "export" / p).resolve()) for p in index["model_path"]]
    assert listed == expected
    assert (db / "models.tsv").read_text().splitlines() == expected
    assert (db / "createdb.log").is_file()
    # a rebuild replaces the database as a whole; with no models there is none
    export(screen, top_n=1)
    assert len((db / "models.tsv").read_text().splitlines()) == 1
    assert not list(db.glob("*.args.*")) and not list(db.parent.glob(".foldseek.*"))
    assert "no models were exported" in build_foldseek_db([], db)
    assert not db.exists()


@pytest.mark.skipif(shutil.which("foldseek") is None, reason="foldseek is not installed")
def test_real_foldseek_database(screen):
    export(screen)
    db = screen["results"] / "export" / "foldseek"
    assert (db / "models.dbtype").is_file() and (db / "models_ss.dbtype").is_file()
    headers = (db / "models_h").read_bytes()
    assert b"model_" in headers
