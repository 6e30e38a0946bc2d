import pytest

from foldcp.errors import InputError
from foldcp.inputs import read_fasta


def test_uniprot_and_plain_headers(write):
    path = write("p.fasta", ">sp|P00648|RNBR_BACAM Barnase OS=Bacillus\nMAQV\nIN\n>my_prot desc\nacdX\n")
    proteins = read_fasta(path)
    assert list(proteins) == ["P00648", "my_prot"]
    assert proteins["P00648"].sequence == "MAQVIN"
    assert proteins["P00648"].accession == "P00648"
    assert proteins["P00648"].entry_name == "RNBR_BACAM"
    assert proteins["my_prot"].sequence == "ACDX"
    assert proteins["my_prot"].accession is None


def test_demo_fasta_reads():
    proteins = read_fasta("config/example/proteins.fasta")
    assert len(proteins) >= 6
    assert all(p.accession == p.id for p in proteins.values())


@pytest.mark.parametrize(
    "text, line, words",
    [
        (">a\nMKV\n>a\nMKV\n", 3, "duplicate protein ID 'a' (first defined on line 1)"),
        (">a\nMKV\n>b\n>c\nMK\n", 3, "protein 'b' has an empty sequence"),
        (">a\nMKV\nMKBV\n", 3, "residue 'B' at sequence position 6"),
        (">a\nMK1V\n", 2, "residue '1' at sequence position 3"),
        ("MKV\n>a\nMKV\n", 1, "sequence before the first '>' header"),
        (">\nMKV\n", 1, "empty FASTA header"),
        (">a/b\nMKV\n", 1, "protein ID 'a/b' has characters"),
    ],
)
def test_bad_fasta_names_line_and_problem(write, text, line, words):
    path = write("bad.fasta", text)
    with pytest.raises(InputError) as info:
        read_fasta(path)
    assert info.value.line == line
    assert words in str(info.value)
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_empty_and_missing_files(write, tmp_path):
    with pytest.raises(InputError, match="no sequences found"):
        read_fasta(write("empty.fasta", "\n"))
    with pytest.raises(InputError, match="cannot read FASTA file"):
        read_fasta(tmp_path / "nope.fasta")
