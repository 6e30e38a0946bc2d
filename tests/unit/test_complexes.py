import pytest

from foldcp.inputs import Chain, chain_letters, make_complex, parse_complex
from foldcp.inputs.complexes import ChainSyntaxError, complex_id, parse_chain
from foldcp.inputs.fasta import Protein

PROTEINS = {"A1": Protein("A1", "M" * 400), "B2": Protein("B2", "K" * 50)}


def test_chain_grammar():
    assert parse_chain("A1") == Chain("A1")
    assert parse_chain("A1:2") == Chain("A1", copies=2)
    assert parse_chain("A1:1-300") == Chain("A1", 1, 300)
    assert parse_chain("A1:1-300:2") == Chain("A1", 1, 300, 2)
    assert parse_chain("A1:2:1-300") == Chain("A1", 1, 300, 2)


@pytest.mark.parametrize("text", ["A1:0-3", "A1:5-3", "A1:0", "A1:x", "A1:1-3:2:4", ":3"])
def test_malformed_chains(text):
    with pytest.raises(ChainSyntaxError):
        parse_chain(text)


def test_zero_chains():
    with pytest.raises(ChainSyntaxError, match="zero chains"):
        parse_complex(" ; + ")


def test_order_and_repeats_do_not_matter():
    ab = make_complex(parse_complex("A1;B2"))
    ba = make_complex(parse_complex("B2+A1"))
    assert ab.id == ba.id == "A1__B2"
    assert make_complex(parse_complex("A1;A1")).id == make_complex(parse_complex("A1:2")).id == "A1x2"


def test_tokens_count_copies_and_ranges():
    c = make_complex(parse_complex("A1:1-300:2;B2"))
    assert c.tokens(PROTEINS) == 2 * 300 + 50
    assert c.id == "A1_1-300x2__B2"
    assert c.num_chains == 3
    assert [name for name, _ in c.chain_instances()] == ["A", "B", "C"]


def test_ids_are_filesystem_safe_and_distinct():
    weird = complex_id((Chain("a/b"), Chain("c")))
    other = complex_id((Chain("a_b"), Chain("c")))
    assert "/" not in weird and weird != other
    long = complex_id(tuple(Chain(f"PROTEIN{i:03d}") for i in range(30)))
    assert len(long) <= 120


def test_chain_letters_beyond_26():
    names = chain_letters(28)
    assert names[:3] == ["A", "B", "C"] and names[25] == "Z" and names[26:] == ["AA", "AB"]
