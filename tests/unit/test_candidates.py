import pytest

from foldcp.errors import InputError
from foldcp.inputs import all_vs_all, bait_vs_library, load_candidates, read_fasta, read_pairs

FASTA = ">P1\nMKVLA\n>P2\nACDEFGH\n>P3\nMMM\n"


@pytest.fixture
def proteins(write):
    return read_fasta(write("p.fasta", FASTA))


def test_pairs_table(write, proteins):
    path = write("pairs.tsv", "chains\textra\n# comment\nP1;P2\tx\nP2;P1\nP3:2\nP1:1-3+P2+P3\n")
    complexes = read_pairs(path, proteins)
    assert [c.id for c in complexes] == ["P1__P2", "P3x2", "P1_1-3__P2__P3"]
    assert complexes[0].source.endswith("pairs.tsv:3")


@pytest.mark.parametrize(
    "body, line, words",
    [
        ("P1;P9\n", 1, "unknown protein ID 'P9'"),
        ("chains\nP1;P2\nP1:1-9;P2\n", 3, "range 1-9 of 'P1' is beyond its 5 residues"),
        ("P1:3-1;P2\n", 1, "must be START-END"),
        ("P1;P2\n;\n", 2, "zero chains"),
        ("P1:abc\n", 1, "cannot read 'abc'"),
    ],
)
def test_bad_pairs(write, proteins, body, line, words):
    path = write("pairs.tsv", body)
    with pytest.raises(InputError) as info:
        read_pairs(path, proteins)
    assert info.value.line == line
    assert words in str(info.value)


def test_all_vs_all_and_bait_vs_library():
    ids = ["P1", "P2", "P3"]
    assert [c.id for c in all_vs_all(ids)] == ["P1__P2", "P1__P3", "P2__P3"]
    assert len(all_vs_all(ids, homodimers=True)) == 6
    assert [c.id for c in bait_vs_library(["P1", "P2"], ids)] == ["P1__P2", "P1__P3", "P2__P3"]
    assert "P1x2" in [c.id for c in bait_vs_library(["P1"], ids, homodimers=True)]


def test_load_candidates_modes(write, proteins, tmp_path):
    write("ids.txt", "P1\nP3\n")
    got = load_candidates({"mode": "all_vs_all", "ids": "ids.txt"}, proteins, tmp_path)
    assert [c.id for c in got] == ["P1__P3"]
    got = load_candidates({"mode": "all_vs_all"}, proteins, tmp_path)
    assert len(got) == 3
    write("baits.txt", "P2\n")
    got = load_candidates({"mode": "bait_vs_library", "baits": "baits.txt"}, proteins, tmp_path)
    assert [c.id for c in got] == ["P1__P2", "P2__P3"]
    write("bad_ids.txt", "P1\nPX\n")
    with pytest.raises(InputError, match=r"bad_ids.txt:2: unknown protein ID 'PX'"):
        load_candidates({"mode": "all_vs_all", "ids": "bad_ids.txt"}, proteins, tmp_path)
