"""Optional Foldseek database of the exported models (``foldseek createdb``).

Foldseek is a separate program (not a Python package): when ``foldseek`` is on PATH the
export runs ``foldseek createdb models.tsv DB``, where models.tsv names the exported
ModelCIF files one per line (createdb reads a file whose name ends in ``.tsv`` as such a
list; the models folder also holds the PAE archives, which are not structures). The
database is built in a scratch folder and then replaces ``{export}/foldseek/`` whole, so a
reader never sees half a database. Without foldseek the step is skipped with a message,
and a database from an earlier export is removed (it would no longer match the index).

{export}/foldseek/
    models, models.index, models.dbtype, models_ss*, models_h*, models_ca*, ...  the DB
    models.tsv       the structure files it was built from, one path per line
    createdb.log     foldseek's output
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

DB_NAME = "models"


def build_foldseek_db(structures: list[Path], db_dir: str | Path, executable: str = "foldseek") -> str:
    """Create (or replace) the Foldseek DB of `structures` in `db_dir`; return what happened."""
    db_dir = Path(db_dir)
    found = shutil.which(executable)
    if found is None:
        reason = f"Foldseek database skipped: {executable!r} is not on PATH"
    elif not structures:
        reason = "Foldseek database skipped: no models were exported"
    else:
        reason = None
    if reason is not None:
        if db_dir.exists():
            shutil.rmtree(db_dir)
            reason += f" (removed the database of an earlier export in {db_dir})"
        return reason
    db_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=db_dir.parent, prefix=".foldseek.") as scratch:
        build = Path(scratch) / "db"
        build.mkdir()
        listing = build / "models.tsv"
        listing.write_text("".join(f"{Path(p).resolve()}\n" for p in structures))
        command = [found, "createdb", str(listing), str(build / DB_NAME)]
        result = subprocess.run(command, cwd=scratch, capture_output=True, text=True, check=False)
        (build / "createdb.log").write_text(
            f"$ {' '.join(command)}\n{result.stdout}{result.stderr}")
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
            raise RuntimeError(
                f"foldseek createdb failed (exit {result.returncode}): " + " | ".join(tail))
        if not (build / f"{DB_NAME}.dbtype").is_file():
            raise RuntimeError(f"foldseek createdb wrote no {DB_NAME}.dbtype in {build}")
        old = Path(scratch) / "old"
        if db_dir.exists():
            os.replace(db_dir, old)
        os.replace(build, db_dir)
    return f"Foldseek database of {len(structures)} models: {db_dir / DB_NAME}"
