"""A3M and Boltz-CSV MSAs: reading, errors that name the file and line, slicing, and the
precomputed mode (including a protein without an MSA)."""

import gzip
import json

import pytest

from foldcp.config import validate_config
from foldcp.errors import FoldcpError, InputError
from foldcp.msa import write_msa
from foldcp.msa.a3m import parse_a3m, read_a3m, slice_row
from foldcp.msa.boltz_csv import read_csv
from foldcp.msa.precomputed import check_folder, find_msa_file

QUERY = "MKVLAGWDE"
A3M = """# 9 1
>query
MKVL
AGWDE
>UniRef100_A0A1 n=1 Tax=Mus musculus TaxID=10090 RepID=A0A1
MKVLpqAG-DE
>tr|Q1|Q1_RAT something OS=Rattus norvegicus OX=10116 GN=x
-KILAGWD.E\x00
>no_species
MRVLSGWDE
"""


def test_a3m_rows_species_and_insertions(write):
    msa = read_a3m(write("m.a3m", A3M))
    assert msa.depth == 4 and msa.query == QUERY
    assert [row.key for row in msa.rows] == [None, 10090, 10116, None]
    assert [row.line for row in msa.rows] == [2, 5, 7, 9]
    assert msa.rows[1].sequence == "MKVLpqAG-DE" and msa.rows[1].match_columns == 9
    assert msa.rows[2].sequence == "-KILAGWDE"  # '.' and NUL dropped
    assert msa.keyed == 2
    msa.check_query(QUERY, "pepA")
    # written one line per sequence, read back the same
    again = parse_a3m(msa.to_a3m(), "again")
    assert [r.sequence for r in again.rows] == [r.sequence for r in msa.rows]


def test_gzipped_a3m(tmp_path):
    path = tmp_path / "m.a3m.gz"
    path.write_bytes(gzip.compress(A3M.encode()))
    assert read_a3m(path).depth == 4


@pytest.mark.parametrize("text, line, problem", [
    ("", 0, "empty MSA"),
    ("# only a comment\n\n", 0, "empty MSA"),
    ("MKVLAGWDE\n>q\nMKVLAGWDE\n", 1, "sequence before the first '>' header"),
    (">q\nMKVLAGWDE\n>hit\n>hit2\nMKVLAGWDE\n", 3, "has no sequence"),
    (">q\nMKVLAGWDE\n>hit\nMKVL*GWDE\n", 4, "character '*' at position 5"),
    (">q\nMKVLAGWDE\n>hit\nMKVL1GWDE\n", 4, "character '1'"),
    (">q\nMKVLAGWDE\n\n>hit\nMKVLAGW\n", 4,
     "row has 7 match columns (upper-case letters and '-'), the query has 9"),
    (">q\nMKVL-GWDE\n", 1, "the query) must have no gaps"),
])
def test_malformed_a3m_names_file_and_line(write, text, line, problem):
    path = write("bad.a3m", text)
    with pytest.raises(InputError) as info:
        read_a3m(path)
    assert info.value.path == str(path) and info.value.line == line
    assert problem in str(info.value)
    assert str(info.value).startswith(f"{path}:{line}: " if line else f"{path}: ")


def test_query_must_be_the_proteins_sequence(write):
    msa = read_a3m(write("m.a3m", "\n>q\nMKVLAGWDE\n"))
    with pytest.raises(InputError) as info:
        msa.check_query("MKVLAGWDQ", "pepA")
    assert info.value.line == 2 and "first difference at position 9" in str(info.value)


CSV = """key,sequence
,MKVLAGWDE
10090,MKVLpqAG-DE
-1,MRVLSGWDE
7,-KILAGWDE
"""


def test_boltz_csv(write):
    msa = read_csv(write("m.csv", CSV), name="pepA_row")
    assert msa.depth == 4 and msa.query == QUERY
    assert [row.key for row in msa.rows] == [None, 10090, None, 7]
    assert [row.line for row in msa.rows] == [2, 3, 4, 5]
    assert msa.rows[1].header == "pepA_row1 foldcp_key=10090"
    # the key survives the canonical A3M (foldcp_key=) and is read back
    assert [r.key for r in parse_a3m(msa.to_a3m(), "x").rows] == [None, 10090, None, 7]
    # Boltz's own order of columns is accepted too
    assert read_csv(write("n.csv", "sequence,key\nMKVLAGWDE,-1\nMRVLSGWDE,3\n")).rows[1].key == 3


@pytest.mark.parametrize("text, line, problem", [
    ("", 0, "empty MSA"),
    ("key,sequence\n", 0, "a header line but no rows"),
    ("id,seq\nx,MKVLAGWDE\n", 1, "exactly the columns 'key' and 'sequence'"),
    ("key,sequence\n-1,MKVLAGWDE\nhuman,MKVLAGWDE\n", 3, "key 'human' is not an integer"),
    ("key,sequence\n-1,MKVLAGWDE\n1.5,MRVLAGWDE\n", 3, "key '1.5' is not an integer"),
    ("key,sequence\n-1,MKVLAGWDE\n3,\n", 3, "empty sequence"),
    ("key,sequence\n-1,MKVLAGWDE\n3,MKVLAGWDE,x\n", 3, "3 fields"),
    ("key,sequence\n-1,MKVLAGWDE\n\n3,MKV#AGWDE\n", 4, "character '#'"),
    ("key,sequence\n-1,MKVLAGWDE\n3,MKVLAG\n", 3, "row has 6 match columns"),
])
def test_malformed_csv_names_file_and_line(write, text, line, problem):
    path = write("bad.csv", text)
    with pytest.raises(InputError) as info:
        read_csv(path)
    assert info.value.line == line and problem in str(info.value)
    assert str(path) in str(info.value)


def test_slice_row_keeps_inner_insertions_only():
    row = "abMKVlLA-GWdDE"  # match columns: M K V L A - G W D E (10)
    assert slice_row(row, 1, 10) == "MKVlLA-GWdDE"
    assert slice_row(row, 3, 6) == "VlLA-"
    assert slice_row(row, 4, 4) == "L"  # the insertion before column 4 is dropped
    assert slice_row(row, 9, 10) == "DE"


# -- precomputed mode ----------------------------------------------------------------------

FASTA = f">pepA\n{QUERY}\n>pepB\nGSHMQRTY\n>pepC\nACDEFGHIK\n"


def precomputed_config(tmp_path, **msa):
    (tmp_path / "p.fasta").write_text(FASTA)
    (tmp_path / "msas").mkdir(exist_ok=True)
    return validate_config({
        "proteins": str(tmp_path / "p.fasta"), "candidates": {"mode": "all_vs_all"},
        "output_dir": str(tmp_path / "out"),
        "msa": {"mode": "precomputed", "precomputed": {"dir": str(tmp_path / "msas")}, **msa},
    })


def test_precomputed_a3m_and_csv(tmp_path):
    config = precomputed_config(tmp_path)
    (tmp_path / "msas" / "pepA.a3m").write_text(A3M)
    (tmp_path / "msas" / "pepB.csv").write_text("key,sequence\n-1,GSHMQRTY\n9606,GSHMQRSY\n")
    record = write_msa(config, "pepA", tmp_path / "out" / "msa" / "pepA.a3m")
    assert record["mode"] == "precomputed" and record["source"].endswith("pepA.a3m")
    assert (record["rows"], record["depth"], record["keyed_rows"], record["fallback"]) == (4, 4, 2, False)
    assert json.loads((tmp_path / "out" / "msa" / "pepA.json").read_text()) == record
    written = read_a3m(tmp_path / "out" / "msa" / "pepA.a3m")
    assert written.rows[0].header == "pepA" and written.depth == 4
    record = write_msa(config, "pepB", tmp_path / "out" / "msa" / "pepB.a3m")
    assert record["keyed_rows"] == 1
    assert read_a3m(tmp_path / "out" / "msa" / "pepB.a3m").rows[1].key == 9606


def test_precomputed_bad_file_is_an_error_naming_file_and_line(tmp_path):
    config = precomputed_config(tmp_path, missing="single_sequence")
    (tmp_path / "msas" / "pepA.a3m").write_text(">q\nMKVLAGWDE\n>h\nMKVLAGWD\n")
    with pytest.raises(InputError, match=r"pepA\.a3m:3: row has 8 match columns"):
        write_msa(config, "pepA", tmp_path / "out" / "msa" / "pepA.a3m")
    # a file whose query is another protein's sequence
    (tmp_path / "msas" / "pepA.a3m").write_text(">q\nGSHMQRTY\n")
    with pytest.raises(InputError, match=r"pepA\.a3m:1: the first row \(the query\) is not "
                                         r"the sequence of pepA"):
        write_msa(config, "pepA", tmp_path / "out" / "msa" / "pepA.a3m")
    (tmp_path / "msas" / "pepA.csv").write_text("key,sequence\n-1,MKVLAGWDE\n")
    with pytest.raises(InputError, match="more than one MSA file for pepA"):
        find_msa_file(tmp_path / "msas", "pepA")


def test_protein_without_msa_errors_or_falls_back_per_config(tmp_path):
    config = precomputed_config(tmp_path)
    with pytest.raises(FoldcpError, match="no MSA for protein pepC: no pepC.a3m, .a3m.gz or .csv"):
        write_msa(config, "pepC", tmp_path / "out" / "msa" / "pepC.a3m")
    with pytest.raises(FoldcpError, match=r"has no MSA .* for 1 protein\(s\) of the screen: pepC"):
        check_folder(config["msa"], ["pepC"])
    config = precomputed_config(tmp_path, missing="single_sequence")
    check_folder(config["msa"], ["pepC"])
    record = write_msa(config, "pepC", tmp_path / "out" / "msa" / "pepC.a3m")
    assert record["fallback"] is True and record["depth"] == 1 and "no pepC.a3m" in record["reason"]
    assert (tmp_path / "out" / "msa" / "pepC.a3m").read_text() == ">pepC\nACDEFGHIK\n"


def test_msa_config_keys():
    base = {"proteins": "p.fasta", "candidates": {"mode": "all_vs_all"}}
    config = validate_config(dict(base))
    assert config["msa"]["mode"] == "none" and config["msa"]["max_seqs"] == 8192
    assert config["msa"]["mmseqs"]["sensitivity"] == 8.0
    assert config["msa"]["server"]["url"] == "https://api.colabfold.com"
    for msa, key in [({"mode": "precomputed"}, "msa.precomputed.dir"),
                     ({"mode": "mmseqs"}, "msa.mmseqs.database"),
                     ({"mode": "mmseqs", "mmseqs": {"database": "x", "sensitivity": 9}},
                      "msa.mmseqs.sensitivity"),
                     ({"max_seqs": 20000}, "msa.max_seqs"),
                     ({"server": {"url": "ftp://x"}}, "msa.server.url")]:
        with pytest.raises(FoldcpError, match=f"config key {key}"):
            validate_config({**base, "msa": msa})
