"""Species pairing, a complex's assembled MSA input, and what Boltz's featurizer makes of it."""

import json

import pytest
import torch

from foldcp.config import validate_config
from foldcp.inputs import make_complex, parse_complex, read_fasta
from foldcp.msa.assemble import MsaStore, assemble
from foldcp.msa.boltz_csv import read_csv
from foldcp.msa.pairing import pair_rows, taxonomy_of

MOUSE, RAT, FISH, YEAST = 10090, 10116, 7955, 559292


def test_taxonomy_from_headers():
    assert taxonomy_of("UniRef100_A0A1 n=2 Tax=Mus musculus TaxID=10090 RepID=X") == MOUSE
    assert taxonomy_of("tr|Q1|Q1_RAT desc OS=Rattus norvegicus OX=10116 GN=x PE=1") == RAT
    assert taxonomy_of("pepA_row3 foldcp_key=7") == 7
    assert taxonomy_of("UniRef100_A0A1 n=1 Tax=unknown TaxID=N/A") is None
    assert taxonomy_of("plain header BOX=12 XOX=3") is None
    assert taxonomy_of("P69905\t291\t1.00\t4.2E-95") is None


def test_pair_rows_best_hit_per_species():
    a = [None, MOUSE, RAT, MOUSE, FISH, None]
    b = [None, RAT, YEAST, MOUSE]
    # mouse: A row 1 (not 3), B row 3; rat: A 2, B 1. Fish and yeast are in one chain only.
    assert pair_rows([a, b]) == [[2, 1], [1, 3]]  # rat first: better mean rank (1.5 < 2)
    assert pair_rows([a, b], max_paired=1) == [[2, 1]]
    assert pair_rows([a, b], max_paired=0) == []
    assert pair_rows([a]) == []  # one chain: nothing to pair
    # the query's own species is the query row: its other hits are not paired
    assert pair_rows([a, b], query_keys=[MOUSE, None]) == [[2, 1]]
    # three chains: species in all three come first, then those in two
    c = [None, MOUSE, FISH]
    assert pair_rows([a, b, c]) == [[1, 3, 1], [2, 1, None], [4, None, 2]]


FASTA = """>pepA
MKVLAGWDE
>pepB
GSHMQRTY
>pepM something OS=Mus musculus OX=10090
MKVLAGWDE
"""
MSA_A = """>pepA
MKVLAGWDE
>hitA_mouse OX=10090
MKVLSGWDE
>hitA_rat TaxID=10116
MRVLAGWDE
>hitA_fish TaxID=7955
MKIlkLAGWDE
>hitA_self
MKVLAGWDE
>hitA_nokey
MKVLAGFDE
>hitA_mouse2 OX=10090
MKVLAGWEE
"""
MSA_B = """>pepB
GSHMQRTY
>hitB_rat OX=10116
GSHMERTY
>hitB_mouse OX=10090
GTHMQRTY
>hitB_yeast OX=559292
GSHLQRTY
"""


@pytest.fixture
def store(tmp_path):
    (tmp_path / "p.fasta").write_text(FASTA)
    msa_dir = tmp_path / "msa"
    msa_dir.mkdir()
    (msa_dir / "pepA.a3m").write_text(MSA_A)
    (msa_dir / "pepB.a3m").write_text(MSA_B)
    (msa_dir / "pepM.a3m").write_text(MSA_A.replace(">pepA", ">pepM", 1))
    for name in ("pepA", "pepB", "pepM"):
        (msa_dir / f"{name}.json").write_text('{"mode": "precomputed", "fallback": false}')
    proteins = read_fasta(tmp_path / "p.fasta")
    return proteins, MsaStore(msa_dir, proteins)


def settings(**changes):
    config = validate_config({"proteins": "p.fasta", "candidates": {"mode": "all_vs_all"},
                              "msa": {"mode": "precomputed", "precomputed": {"dir": "x"}, **changes}})
    return config["msa"]


def rows_of(path):
    return [(row.key if row.key is not None else -1, row.sequence) for row in read_csv(path).rows]


def test_heteromer_csvs_carry_pairing_keys(store, tmp_path):
    proteins, msas = store
    complex_ = make_complex(parse_complex("pepB;pepA"))
    chains = assemble(complex_, proteins, msas, settings(), tmp_path / "in")
    assert [c.protein_id for c in chains] == ["pepA", "pepB"]
    # the hit identical to the query (hitA_self) is dropped; mouse pairs with A's best mouse hit
    assert rows_of(chains[0].path) == [(-1, "MKVLAGWDE"), (1, "MKVLSGWDE"), (2, "MRVLAGWDE"),
                                       (-1, "MKIlkLAGWDE"), (-1, "MKVLAGFDE"), (-1, "MKVLAGWEE")]
    assert rows_of(chains[1].path) == [(-1, "GSHMQRTY"), (1, "GTHMQRTY"), (2, "GSHMERTY"),
                                       (-1, "GSHLQRTY")]
    assert [(c.rows, c.paired, c.source_depth) for c in chains] == [(6, 2, 7), (4, 2, 4)]
    # depth caps
    capped = assemble(complex_, proteins, msas, settings(max_paired=1, max_seqs=3), tmp_path / "c")
    assert rows_of(capped[0].path) == [(-1, "MKVLAGWDE"), (1, "MKVLSGWDE"), (-1, "MRVLAGWDE")]
    assert [c.paired for c in capped] == [1, 1]
    unpaired = assemble(complex_, proteins, msas, settings(pairing="none"), tmp_path / "u")
    assert all(key == -1 for key, _ in rows_of(unpaired[0].path))


def test_query_species_is_not_paired_again(store, tmp_path):
    proteins, msas = store
    # pepM is a mouse protein (OX=10090 in its FASTA header): its mouse hits stay unpaired
    chains = assemble(make_complex(parse_complex("pepM;pepB")), proteins, msas, settings(),
                      tmp_path / "m")
    assert [c.protein_id for c in chains] == ["pepB", "pepM"]
    assert rows_of(chains[1].path)[:3] == [(-1, "MKVLAGWDE"), (1, "MRVLAGWDE"), (-1, "MKVLSGWDE")]
    assert [key for key, _ in rows_of(chains[0].path)] == [-1, 1, -1, -1]  # rat only
    # no species in the FASTA header, but a hit identical to the query names it
    (msas.msa_dir / "pepA.a3m").write_text(MSA_A.replace(">hitA_self", ">hitA_self OX=10090"))
    fresh = MsaStore(msas.msa_dir, proteins)
    chains = assemble(make_complex(parse_complex("pepA;pepB")), proteins, fresh, settings(),
                      tmp_path / "a")
    assert [key for key, _ in rows_of(chains[1].path)] == [-1, 1, -1, -1]


def test_homomer_and_ranges(store, tmp_path):
    proteins, msas = store
    chains = assemble(make_complex(parse_complex("pepA:2")), proteins, msas, settings(),
                      tmp_path / "homo")
    assert len(chains) == 1 and chains[0].rows == 6
    assert all(key == -1 for key, _ in rows_of(chains[0].path))
    # cut to columns 6-9 (GWDE): rows that become identical are dropped; the mouse row left
    # (hitA_mouse2, GWEE) pairs with B's mouse hit
    chains = assemble(make_complex(parse_complex("pepA:6-9;pepB")), proteins, msas, settings(),
                      tmp_path / "range")
    assert rows_of(chains[0].path) == [(-1, "GWDE"), (1, "GWEE"), (-1, "GFDE")]
    assert rows_of(chains[1].path)[1] == (1, "GTHMQRTY")


# -- what Boltz's featurizer makes of the assembled input ---------------------------------

def msa_rows(featurized):
    """The model's MSA as strings, one '|'-joined row per MSA row (chains in order)."""
    from boltz.data import const

    features = featurized.features
    msa, asym = features["msa"][0], features["asym_id"][0]
    rows = []
    for row in msa:
        parts = []
        for chain in torch.unique(asym):
            tokens = row[asym == chain].tolist()
            parts.append("".join(const.prot_token_to_letter[const.tokens[t]] for t in tokens))
        rows.append("|".join(parts))
    return rows


def test_featurized_msa_holds_the_paired_rows(store, boltz_residues):
    from foldcp.runner.featurize import featurize

    proteins, msas = store
    mol_dir, canonicals = boltz_residues
    featurized = featurize(make_complex(parse_complex("pepA;pepB")), proteins, mol_dir,
                           canonicals, msas, settings())
    assert msa_rows(featurized) == [
        "MKVLAGWDE|GSHMQRTY",  # the queries
        "MKVLSGWDE|GTHMQRTY",  # paired: mouse
        "MRVLAGWDE|GSHMERTY",  # paired: rat
        # Boltz 2.2.1 then lists every row of each file again, in order, paired ones
        # included (its set of already-paired rows never matches), so they repeat here
        "MKVLSGWDE|GTHMQRTY",
        "MRVLAGWDE|GSHMERTY",
        "MKILAGWDE|GSHLQRTY",  # fish, yeast: not paired, side by side by position only
        "MKVLAGFDE|--------",
        "MKVLAGWEE|--------",
    ]
    features = featurized.features
    assert features["msa_paired"][0][:, 0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert [(m["chain"], m["rows"], m["paired_rows"], m["mode"]) for m in featurized.msa] == [
        ("A", 6, 2, "precomputed"), ("B", 4, 2, "precomputed")]
    # single sequence (msa.mode none): one row
    single = featurize(make_complex(parse_complex("pepA;pepB")), proteins, mol_dir, canonicals)
    assert single.features["msa"].shape[1] == 1 and single.msa == []


def test_featurized_homomer_rows_line_up(store, boltz_residues):
    from foldcp.runner.featurize import featurize

    proteins, msas = store
    mol_dir, canonicals = boltz_residues
    featurized = featurize(make_complex(parse_complex("pepA:2")), proteins, mol_dir, canonicals,
                           msas, settings())
    rows = msa_rows(featurized)
    assert len(rows) == 6 and all(r.split("|")[0] == r.split("|")[1] for r in rows)


def test_predict_folds_with_the_msas(store, tmp_path, foldcp_cache, monkeypatch):
    """foldcp predict (demo model) reads the per-protein MSAs and records what it used."""
    from foldcp.plan import plan_screen
    from foldcp.runner.predict import run_batch

    proteins, msas = store
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pairs.tsv").write_text("pepA;pepB\n")
    config = validate_config({
        "proteins": "p.fasta", "candidates": {"mode": "pairs", "pairs": "pairs.tsv"},
        "msa": {"mode": "precomputed", "precomputed": {"dir": "unused"}},
        "model": {"checkpoint": "demo", "device": "cpu", "recycling_steps": 0,
                  "sampling_steps": 2, "diffusion_samples": 1},
    })
    plan = plan_screen(config, tmp_path / "plan")
    table = run_batch(config, tmp_path / "plan" / "plan.parquet", plan["batch_id"].iloc[0],
                      tmp_path / "pred", msa_dir=msas.msa_dir)
    assert list(table["status"]) == ["ok"], table["error"].tolist()
    manifest = json.loads((tmp_path / "pred" / "pepA__pepB" / "done.json").read_text())
    assert manifest["msa"]["mode"] == "precomputed" and manifest["msa"]["rows"] == 8
    chains = [(c["chain"], c["protein_id"], c["rows"], c["paired_rows"])
              for c in manifest["msa"]["chains"]]
    assert chains == [("A", "pepA", 6, 2), ("B", "pepB", 4, 2)]
