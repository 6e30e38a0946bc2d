"""bench/join_inputs.py: chains featurized apart and joined == the chains featurized together
(the 12,000-token GPU capacity runs use joined inputs, so a wrong join would fold a different
complex than the one reported)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from cp_inputs import compact, expand  # noqa: E402
from join_inputs import join, join_saved  # noqa: E402

from foldcp.inputs import make_complex, parse_complex  # noqa: E402
from foldcp.inputs.fasta import Protein  # noqa: E402
from foldcp.runner.featurize import featurize  # noqa: E402

PROTEINS = {"A": Protein("A", "MKTAYIAKQRQISFVKSHFSRQ"), "B": Protein("B", "GSHMLEDPVRKWCHPL"),
            "C": Protein("C", "MNIFEMLRIDEGLRLKIYKDTEGYYTIGIGHLLTKSPSLNAAKSEL")}


def features(spec, boltz_residues):
    mol_dir, canonicals = boltz_residues
    names = spec.split(";")
    out = featurize(make_complex(parse_complex(spec)), {n: PROTEINS[n] for n in names},
                    mol_dir, canonicals).features
    return expand(compact(out), "cpu")  # the saved form bench/cp_model.py loads


@pytest.mark.parametrize("first, second", [("A", "B"), ("A;B", "C")])
def test_join_equals_featurizing_together(first, second, boltz_residues):
    together = features(f"{first};{second}", boltz_residues)
    joined = join(features(first, boltz_residues), features(second, boltz_residues))
    assert joined.keys() == together.keys()
    for key, value in together.items():
        assert joined[key].dtype == value.dtype, key
        if key != "ref_pos":
            assert torch.equal(joined[key], value), key
    # reference conformers are randomly rotated per residue (the featurizer's own draws):
    # compare each residue's shape, its atoms' distances
    residues, real = together["ref_space_uid"][0], together["atom_pad_mask"][0].bool()
    for uid in residues[real].unique():
        atoms = (residues == uid) & real
        shape = lambda f: torch.cdist(f["ref_pos"][0, atoms], f["ref_pos"][0, atoms])  # noqa: E731
        torch.testing.assert_close(shape(joined), shape(together), atol=1e-4, rtol=0)


def test_join_of_saved_files_equals_dense_join(boltz_residues):
    """The file path (atom maps joined as index vectors) gives the dense join's features."""
    a, b = features("A;B", boltz_residues), features("C", boltz_residues)
    got = expand(join_saved(compact(a), compact(b)), "cpu")
    want = join(a, b)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key


def test_unknown_feature_is_refused():
    with pytest.raises(ValueError, match="mystery"):
        part = {"token_pad_mask": torch.ones(1, 2), "atom_pad_mask": torch.ones(1, 3),
                "mystery": torch.ones(1, 5)}
        join(part, part)
