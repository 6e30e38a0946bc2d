"""Atomic file writes: a temp file in the destination folder, fsync, then rename.

A reader (or a rerun after a crash) therefore sees either the old file or the whole new
one, never half of it. A write that fails for want of space or permission (disk full, quota,
read-only or unwritable folder, a file where a folder should be) raises OutputError naming
the file, after removing its temp file; a temp file left by a killed process is named
``.{name}.*.tmp`` and is never read as a result.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from foldcp.errors import OutputError


_UMASK = os.umask(0o022)  # read the process umask (os.umask can only be read by setting it)
os.umask(_UMASK)


#: errno values that say the output cannot be written, whatever the code writing it
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
TEMP_GLOB = ".*.tmp"


def output_error(path: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc)
    code = f" [errno {exc.errno}]" if exc.errno else ""
    return OutputError(
        f"cannot write {path}: {reason}{code}. Nothing was written under that name (an "
        f"earlier version, if any, is unchanged); make room or make the folder writable, "
        f"then rerun")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` if the block succeeds.

    OSErrors of the write itself (creating the folder or temp file, no space, read-only,
    fsync, rename) become OutputError; the temp file is removed either way."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
    except OSError as exc:
        raise output_error(path, exc) from exc
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
        except OSError as exc:
            # the block's own write failed (not, say, reading one of its inputs)
            if exc.errno in _OUTPUT_ERRNOS or exc.filename in (tmp, str(tmp_path)):
                raise output_error(path, exc) from exc
            raise
        try:
            with open(tmp_path, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp_path, path)
        except OSError as exc:
            raise output_error(path, exc) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes(path, buffer.getvalue())


def write_parquet(path: str | Path, frame) -> None:
    """Write a pandas DataFrame as Parquet (pyarrow), atomically."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, engine="pyarrow", index=False)


def write_tsv(path: str | Path, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False)
