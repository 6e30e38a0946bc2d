"""A content-addressed cache of computed MSAs, shared by screens (``msa.cache_dir``).

An entry's key is the SHA-256 of everything that determines the result (the mode, the
sequence, the database or server and the search parameters), so a protein searched once
is not searched again by another screen with the same settings. Entries are A3M text,
written atomically: ``{cache_dir}/{kind}/{key[:2]}/{key}.a3m``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from foldcp.io import write_text


def default_cache_dir() -> Path:
    from foldcp.model.checkpoint import foldcp_cache

    return foldcp_cache() / "msa"


def cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class MsaCache:
    def __init__(self, root: str | Path | None, enabled: bool = True) -> None:
        self.root = Path(root).expanduser() if root else default_cache_dir()
        self.enabled = enabled

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.a3m"

    def get(self, kind: str, key: str) -> str | None:
        if not self.enabled:
            return None
        path = self.path(kind, key)
        return path.read_text() if path.is_file() else None

    def put(self, kind: str, key: str, text: str) -> None:
        if self.enabled:
            write_text(self.path(kind, key), text)
