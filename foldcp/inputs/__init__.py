"""Inputs: protein FASTA and candidate complexes, validated with located errors."""

from foldcp.inputs.candidates import (
    all_vs_all,
    bait_vs_library,
    check_candidates,
    load_candidates,
    read_id_list,
    read_pairs,
)
from foldcp.inputs.complexes import Chain, Complex, chain_letters, complex_id, make_complex, parse_complex
from foldcp.inputs.fasta import Protein, read_fasta

__all__ = [
    "Chain", "Complex", "Protein", "all_vs_all", "bait_vs_library", "chain_letters", "check_candidates",
    "complex_id",
    "load_candidates", "make_complex", "parse_complex", "read_fasta", "read_id_list", "read_pairs",
]
