"""Fixtures of the unit tests: the MSA test database (see msa_testdata.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from msa_testdata import PROTEOME, decoy_sequences


@pytest.fixture(scope="session")
def decoys() -> dict[str, tuple[str, str]]:
    return decoy_sequences()


@pytest.fixture(scope="session")
def msa_database(tmp_path_factory, decoys) -> Path:
    """The database as FASTA: the example proteome, then the decoys."""
    path = tmp_path_factory.mktemp("msa-db") / "db.fasta"
    text = PROTEOME.read_text().rstrip("\n") + "\n"
    text += "".join(f">{h}\n{s}\n" for h, s in decoys.values())
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def mmseqs_binary() -> str:
    found = shutil.which("mmseqs")
    if not found:
        pytest.skip("the mmseqs binary (MMseqs2) is not installed: apt-get install mmseqs2")
    return found


@pytest.fixture(scope="session")
def boltz_residues(foldcp_cache):
    """Boltz's residue library (mol_dir, canonicals) for featurizing, loaded once."""
    from boltz.data.mol import load_canonicals

    from foldcp.model.mols import ensure_canonical_mols

    mol_dir = ensure_canonical_mols(foldcp_cache / "mols")
    return mol_dir, load_canonicals(mol_dir)
