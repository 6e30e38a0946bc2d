"""``msa.mode: mmseqs``: a local MMseqs2 search of one protein against the user's database.

The database (``msa.mmseqs.database``) is a FASTA file (plain or .gz; turned into an MMseqs2
database once per screen, `create_database`) or an existing MMseqs2 database (the prefix
given to ``mmseqs createdb``, i.e. the path with ``.dbtype`` appended exists). Keep the
full headers in it: a hit's species for pairing is read from ``TaxID=`` (UniRef) or
``OX=`` (UniProt) in its header.

Per protein (`search`), in a scratch folder::

    mmseqs createdb query.fasta qdb
    mmseqs search qdb target res tmp -a 1 -s S -e E --max-seqs M --num-iterations N
    mmseqs result2msa qdb target res msa --msa-format-mode 5 [filter options]
    mmseqs convertalis qdb target res hits.tsv --format-output target,theader

The A3M from result2msa has the query first and the hits best first, named by their IDs;
convertalis gives each hit's full header, which replaces the ID so the species is kept.

Defaults follow ColabFold's ``colabfold_search`` (its UniRef step): sensitivity 8, E-value
0.1, 10,000 sequences past the prefilter, 3 profile iterations, and the result2msa filter
``--filter-msa 1 --filter-min-enable 1000 --diff 3000 --qid 0.0,0.2,0.4,0.6,0.8,1.0 --qsc 0
--max-seq-id 0.95`` (the filter only acts on MSAs of more than ``filter_min_enable``
sequences). ColabFold additionally expands hits through cluster members of UniRef30 and
searches environmental databases; a plain FASTA database has neither.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

from foldcp.errors import FoldcpError
from foldcp.msa.a3m import ProteinMsa, parse_a3m

FASTA_SUFFIXES = (".fa", ".fasta", ".faa", ".fas", ".fa.gz", ".fasta.gz", ".faa.gz", ".fas.gz")


class MmseqsError(FoldcpError):
    """The mmseqs binary is missing or one of its steps failed."""


def is_fasta(path: str | Path) -> bool:
    return str(path).lower().endswith(FASTA_SUFFIXES)


def built_database(output_dir: str | Path) -> Path:
    """Where a screen keeps the MMseqs2 database it builds from a FASTA database."""
    return Path(output_dir) / "msa" / "db" / "target"


def target_database(config: dict) -> Path:
    """The MMseqs2 database prefix a search uses (the built one for a FASTA database)."""
    database = config["msa"]["mmseqs"]["database"]
    if is_fasta(database):
        return built_database(config["output_dir"])
    return Path(database)


def check_database(database: str | Path) -> None:
    path = Path(database)
    if is_fasta(path):
        if not path.is_file():
            raise MmseqsError(f"msa.mmseqs.database {path}: no such FASTA file")
    elif not Path(f"{path}.dbtype").is_file():
        raise MmseqsError(
            f"msa.mmseqs.database {path}: neither a FASTA file (.fa, .fasta, .faa, .fas, "
            f"optionally .gz) nor an MMseqs2 database ({path}.dbtype does not exist)"
        )


def find_binary(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise MmseqsError(
            f"the mmseqs binary {name!r} was not found (msa.mmseqs.binary); install MMseqs2, "
            f"e.g. `apt-get install mmseqs2` on Debian/Ubuntu, or give its path"
        )
    return found


def run(binary: str, *args: str | Path) -> str:
    command = [binary, *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise MmseqsError(f"`{' '.join(command)}` failed (exit {result.returncode}):\n{tail}")
    return result.stdout


def version(binary: str) -> str:
    return run(binary, "version").strip()


def create_database(binary: str, fasta: str | Path, prefix: str | Path) -> Path:
    """``mmseqs createdb`` into a scratch folder, then move the files beside `prefix`
    (the ``.dbtype`` file last, so a half-built database never looks complete)."""
    prefix = Path(prefix)
    scratch = prefix.parent / f".build-{prefix.name}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        run(binary, "createdb", fasta, scratch / prefix.name, "-v", "1")
        files = sorted(scratch.iterdir(), key=lambda p: p.name == f"{prefix.name}.dbtype")
        for file in files:
            file.replace(prefix.parent / file.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return prefix


def search_args(params: dict) -> list[str]:
    return [
        "-a", "1", "-s", str(params["sensitivity"]), "-e", str(params["evalue"]),
        "--max-seqs", str(params["max_seqs"]), "--num-iterations", str(params["num_iterations"]),
    ]


def filter_args(params: dict) -> list[str]:
    if not params["filter"]:
        return ["--filter-msa", "0"]
    return [
        "--filter-msa", "1", "--filter-min-enable", str(params["filter_min_enable"]),
        "--diff", str(params["diff"]), "--qid", str(params["qid"]), "--qsc", str(params["qsc"]),
        "--max-seq-id", str(params["max_seq_id"]), "--cov", str(params["coverage"]),
    ]


def _read_db_text(prefix: Path) -> str:
    """The entries of a one-query MMseqs2 result database, as text."""
    parts = [prefix] if prefix.is_file() else sorted(prefix.parent.glob(f"{prefix.name}.[0-9]*"))
    return "".join(p.read_bytes().decode() for p in parts).replace("\x00", "")


def search(
    binary: str, protein_id: str, sequence: str, database: str | Path, params: dict,
    workdir: str | Path,
) -> ProteinMsa:
    """Search one protein; return its MSA (query first, hits with their full headers)."""
    work = Path(workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        common = ["--threads", str(params["threads"]), "-v", "1"]
        load = ["--db-load-mode", str(params["db_load_mode"])]
        (work / "query.fasta").write_text(f">{protein_id}\n{sequence}\n")
        run(binary, "createdb", work / "query.fasta", work / "qdb", "-v", "1")
        run(binary, "search", work / "qdb", database, work / "res", work / "tmp",
            *search_args(params), *load, *common)
        run(binary, "result2msa", work / "qdb", database, work / "res", work / "msa",
            "--msa-format-mode", "5", *filter_args(params), *load, *common)
        run(binary, "convertalis", work / "qdb", database, work / "res", work / "hits.tsv",
            "--format-output", "target,theader", *load, *common)
        headers = {}
        for line in (work / "hits.tsv").read_text().splitlines():
            target, _, header = line.partition("\t")
            headers.setdefault(target, header.strip() or target)
        msa = parse_a3m(_read_db_text(work / "msa"), work / "msa")
        for row in msa.rows[1:]:
            full = headers.get(row.header.split()[0]) if row.header else None
            if full:
                row.header = full
        # re-read so every row's species comes from its full header
        return parse_a3m(msa.to_a3m(), f"mmseqs search of {protein_id}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(OSError):
            work.parent.rmdir()  # the scratch parent, once no other search uses it
