"""Grid tests run with the small-chunk budget off (FOLDCP_SMALL_CHUNK_MIB=0): at their sizes
(tens of tokens) a whole block's transients are a few KiB, so the budget would make every
sub-layer one chunk of all rows and the guard against N²·C-sized tensors (guard.py) would see
the gathered whole pair tensor. With it off they run the row-chunked path that real sizes run;
the budget's own tests set it (forked ranks inherit the environment)."""

import pytest


@pytest.fixture(autouse=True)
def real_size_chunks(monkeypatch):
    monkeypatch.setenv("FOLDCP_SMALL_CHUNK_MIB", "0")
