"""Shared fixtures: an isolated foldcp cache and small input files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def foldcp_cache(tmp_path_factory) -> Path:
    """One demo checkpoint + residue library for the whole test session."""
    cache = Path(os.environ.get("FOLDCP_TEST_CACHE") or tmp_path_factory.mktemp("foldcp-cache"))
    os.environ["FOLDCP_CACHE"] = str(cache)
    return cache


@pytest.fixture
def write(tmp_path):
    """write('name', 'text') -> path of a new file under tmp_path."""
    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path
    return _write
