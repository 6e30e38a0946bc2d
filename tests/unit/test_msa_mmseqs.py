"""msa.mode mmseqs with the real mmseqs binary, on the example proteome plus decoys of known
species (tests/unit/conftest.py): searches, the cache, and species pairing of a heteromer
down to the model's MSA features."""

import json
from pathlib import Path

import pytest
import yaml

from foldcp.cli import main
from foldcp.config import load_config
from foldcp.inputs import make_complex, parse_complex, read_fasta
from foldcp.msa import write_msa
from foldcp.msa.a3m import read_a3m
from foldcp.msa.assemble import MsaStore, assemble
from foldcp.msa.boltz_csv import read_csv
from foldcp.msa.mmseqs import MmseqsError, find_binary

from msa_testdata import MOUSE, PROTEOME, RAT, ZEBRAFISH

H3, H4 = "P68431", "P62805"
# fast settings for a tiny database; the E-value keeps H3 and H4 (both histone folds, weakly
# similar) out of each other's MSA so the expected pairing is exact
FAST = {"sensitivity": 7.5, "num_iterations": 1, "evalue": 1e-5, "threads": 2}


def make_config(root: Path, database, **mmseqs) -> Path:
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump({
        "proteins": str(PROTEOME), "candidates": {"mode": "all_vs_all"},
        "output_dir": str(root / "out"),
        "msa": {"mode": "mmseqs", "cache_dir": str(root / "cache"),
                "mmseqs": {"database": str(database), **FAST, **mmseqs}},
    }))
    return path


@pytest.fixture(scope="module")
def screen(tmp_path_factory, msa_database, mmseqs_binary):
    """The database built with `foldcp msa-db`, then the MSAs of H3 and H4."""
    root = tmp_path_factory.mktemp("mmseqs")
    config_path = make_config(root, msa_database)
    assert main(["msa-db", "--config", str(config_path)]) == 0
    assert (root / "out" / "msa" / "db" / "target.dbtype").is_file()
    config = load_config(config_path)
    records = {p: write_msa(config, p, root / "out" / "msa" / f"{p}.a3m") for p in (H3, H4)}
    return root, config, records


def names(msa):
    return [row.header.split()[0].split("|")[1] if "|" in row.header.split()[0]
            else row.header.split()[0].removeprefix("UniRef100_") for row in msa.rows]


def test_search_finds_the_decoys_with_their_species(screen):
    root, config, records = screen
    h3 = read_a3m(root / "out" / "msa" / f"{H3}.a3m")
    assert names(h3) == [H3, H3, "H3_MOUSE", "H3_RAT", "H3_DANRE", "H3_NOTAX", "H3V_MOUSE"]
    assert [row.key for row in h3.rows] == [None, 9606, MOUSE, RAT, ZEBRAFISH, None, MOUSE]
    h4 = read_a3m(root / "out" / "msa" / f"{H4}.a3m")
    assert names(h4) == [H4, H4, "H4_MOUSE", "H4_RAT", "H4_YEAST"]
    assert records[H3] == {
        "protein_id": H3, "mode": "mmseqs",
        "source": f"mmseqs search of {config['msa']['mmseqs']['database']}",
        "length": 136, "rows": 7, "depth": 6, "keyed_rows": 5, "fallback": False,
        "reason": None, "cached": False, "foldcp_version": records[H3]["foldcp_version"],
    }
    assert json.loads((root / "out" / "msa" / f"{H3}.json").read_text()) == records[H3]


def test_second_search_comes_from_the_cache(screen, tmp_path):
    root, config, records = screen
    record = write_msa(config, H4, tmp_path / f"{H4}.a3m")
    assert record["cached"] is True and record["depth"] == records[H4]["depth"]
    assert (tmp_path / f"{H4}.a3m").read_text() == (root / "out" / "msa" / f"{H4}.a3m").read_text()


def test_an_mmseqs_database_works_as_the_database(screen, tmp_path):
    root, _, _ = screen
    config = load_config(make_config(tmp_path, root / "out" / "msa" / "db" / "target"))
    record = write_msa(config, H4, tmp_path / f"{H4}.a3m")
    assert record["cached"] is False
    assert names(read_a3m(tmp_path / f"{H4}.a3m")) == [H4, H4, "H4_MOUSE", "H4_RAT", "H4_YEAST"]


def test_heteromer_is_paired_on_the_shared_species(screen, decoys, boltz_residues):
    """H3 + H4: mouse and rat are in both MSAs; zebrafish (H3) and yeast (H4) in one each;
    the second mouse H3 is not the best mouse hit; human is the queries' own species."""
    root, config, _ = screen
    proteins = read_fasta(PROTEOME)
    store = MsaStore(root / "out" / "msa", proteins)
    complex_ = make_complex(parse_complex(f"{H3};{H4}"))
    chains = assemble(complex_, proteins, store, config["msa"], root / "in")
    by_protein = {c.protein_id: read_csv(c.path) for c in chains}
    def decoy(aligned):  # local alignments may leave out a mutated end residue
        residues = aligned.replace("-", "").upper()
        found = [name for name, (_, seq) in decoys.items() if residues in seq]
        assert len(found) == 1 and len(residues) >= 0.95 * len(decoys[found[0]][1])
        return found[0]

    paired = {pid: {row.key: decoy(row.sequence) for row in msa.rows if row.key is not None}
              for pid, msa in by_protein.items()}
    assert paired == {H4: {1: "H4_MOUSE", 2: "H4_RAT"}, H3: {1: "H3_MOUSE", 2: "H3_RAT"}}
    assert [c.paired for c in chains] == [2, 2]
    unpaired_h3 = [decoy(row.sequence) for row in by_protein[H3].rows[1:] if row.key is None]
    assert unpaired_h3 == ["H3_DANRE", "H3_NOTAX", "H3V_MOUSE"]
    unpaired_h4 = [decoy(row.sequence) for row in by_protein[H4].rows[1:] if row.key is None]
    assert unpaired_h4 == ["H4_YEAST"]

    # the model's MSA: queries, then the mouse and rat rows side by side, flagged paired
    from boltz.data import const

    from foldcp.runner.featurize import featurize

    featurized = featurize(complex_, proteins, *boltz_residues, store, config["msa"])
    features = featurized.features
    msa, asym = features["msa"][0], features["asym_id"][0]
    assert msa.shape[0] > 1

    def text(row, chain):
        tokens = msa[row][asym == chain].tolist()
        return decoy("".join(const.prot_token_to_letter[const.tokens[t]] for t in tokens))

    # chain A is H4 (P62805 sorts first), chain B is H3
    assert [text(1, 0), text(1, 1)] == ["H4_MOUSE", "H3_MOUSE"]
    assert [text(2, 0), text(2, 1)] == ["H4_RAT", "H3_RAT"]
    assert features["msa_paired"][0][:3].bool().all()
    assert not features["msa_paired"][0][3:].bool().any()
    assert [(m["protein_id"], m["paired_rows"], m["mode"]) for m in featurized.msa] == [
        (H4, 2, "mmseqs"), (H3, 2, "mmseqs")]


def test_missing_binary_is_a_clear_error():
    with pytest.raises(MmseqsError, match="apt-get install mmseqs2"):
        find_binary("no-such-mmseqs-binary")
