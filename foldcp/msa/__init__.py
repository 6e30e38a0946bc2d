"""MSAs: one per protein, computed once and reused by every complex containing it.

Modes (config ``msa.mode``):

- ``none``: single sequence; the MSA is the query alone (Boltz folds with ``msa: empty``).
- ``precomputed``: ``{msa.precomputed.dir}/{ID}.a3m|.a3m.gz|.csv`` (`precomputed`).
- ``mmseqs``: a local MMseqs2 search against ``msa.mmseqs.database`` (`mmseqs`).
- ``server``: a ColabFold-compatible MSA API (`server`).

Each protein gets ``{output_dir}/msa/{ID}.a3m`` (query first, hits with their headers, one
line per sequence) and the record ``{ID}.json`` (`write_msa`). Complexes are assembled from
these by `foldcp.msa.assemble`.

A protein without an MSA (no precomputed file; the server gave none) stops the step with an
error, or with ``msa.missing: single_sequence`` gets the query alone and ``fallback: true``
in its record. A search that runs but finds no homologs is not missing: its MSA is the
query alone (``depth`` 1).
"""

from __future__ import annotations

from pathlib import Path

from foldcp import __version__
from foldcp.errors import FoldcpError
from foldcp.inputs import Protein, read_fasta
from foldcp.io import write_json, write_text
from foldcp.msa.a3m import MsaRow, ProteinMsa, parse_a3m

RECORD_FIELDS = ("protein_id", "mode", "source", "length", "rows", "depth", "keyed_rows",
                 "fallback", "reason", "cached", "foldcp_version")


def query_only(protein: Protein) -> ProteinMsa:
    return ProteinMsa("", [MsaRow(protein.id, protein.sequence, None, 1)])


def _mmseqs(config: dict, protein: Protein, out: Path, database: str | Path | None):
    from foldcp.msa import mmseqs
    from foldcp.msa.cache import MsaCache, cache_key

    settings = config["msa"]["mmseqs"]
    binary = mmseqs.find_binary(settings["binary"])
    source = Path(settings["database"]).expanduser()
    mmseqs.check_database(source)
    database = Path(database) if database else mmseqs.target_database(config)
    if not Path(f"{database}.dbtype").is_file():
        raise mmseqs.MmseqsError(f"MMseqs2 database {database} is missing (for a FASTA "
                                 f"database run `foldcp msa-db` first)")
    stamp = source if mmseqs.is_fasta(source) else Path(f"{source}.index")
    params = {k: v for k, v in settings.items() if k not in ("binary", "threads", "db_load_mode")}
    key = cache_key({"mode": "mmseqs", "sequence": protein.sequence,
                     "database": str(source.resolve()), "size": stamp.stat().st_size,
                     "mtime_ns": stamp.stat().st_mtime_ns, "params": params,
                     "mmseqs": mmseqs.version(binary)})
    cache = MsaCache(config["msa"]["cache_dir"], config["msa"]["cache"])
    text = cache.get("mmseqs", key)
    source_text = f"mmseqs search of {source}"
    if text is not None:
        return parse_a3m(text, cache.path("mmseqs", key)), source_text, True, None
    msa = mmseqs.search(binary, protein.id, protein.sequence, database, settings,
                        out.parent / ".work" / protein.id)
    cache.put("mmseqs", key, msa.to_a3m())
    reason = "no homologs found" if msa.depth == 1 else None
    return msa, source_text, False, reason


def _server(config: dict, protein: Protein):
    from foldcp.msa.cache import MsaCache, cache_key
    from foldcp.msa.server import ColabFoldClient, ServerError, server_mode

    settings = config["msa"]["server"]
    cache = MsaCache(config["msa"]["cache_dir"], config["msa"]["cache"])
    key = cache_key({"mode": "server", "url": settings["url"].rstrip("/"),
                     "server_mode": server_mode(settings), "sequence": protein.sequence})
    source = f"server {settings['url']} ({server_mode(settings)})"
    text = cache.get("server", key)
    if text is not None:
        return parse_a3m(text, cache.path("server", key)), source, True, None
    client = ColabFoldClient(settings, cache.root / "server.lock")
    try:
        text = client.fetch(protein.sequence)
    except ServerError as exc:
        return None, source, False, str(exc)
    msa = parse_a3m(text, f"{settings['url']} result for {protein.id}")
    cache.put("server", key, text)
    return msa, source, False, None


def compute_msa(config: dict, protein: Protein, out: Path,
                mmseqs_database: str | Path | None = None) -> tuple[ProteinMsa, dict]:
    """The MSA of one protein and its record (see RECORD_FIELDS)."""
    settings = config["msa"]
    mode = settings["mode"]
    cached, reason = False, None
    if mode == "none":
        msa, source = query_only(protein), "single sequence (msa.mode none)"
    elif mode == "precomputed":
        from foldcp.msa.precomputed import find_msa_file, read_msa_file

        path = find_msa_file(settings["precomputed"]["dir"], protein.id)
        if path is None:
            msa, source = None, str(settings["precomputed"]["dir"])
            reason = f"no {protein.id}.a3m, .a3m.gz or .csv in {settings['precomputed']['dir']}"
        else:
            msa, source = read_msa_file(path, protein.id), str(path)
    elif mode == "mmseqs":
        msa, source, cached, reason = _mmseqs(config, protein, out, mmseqs_database)
    elif mode == "server":
        msa, source, cached, reason = _server(config, protein)
    else:
        raise ValueError(f"msa.mode {mode!r} is not supported")
    fallback = msa is None
    if fallback:
        if settings["missing"] != "single_sequence":
            raise FoldcpError(f"no MSA for protein {protein.id}: {reason} (msa.missing is "
                              f"error; set it to single_sequence to fold such proteins "
                              f"without an MSA)")
        msa = query_only(protein)
    msa.check_query(protein.sequence, protein.id)
    msa.rows[0].header = protein.id
    distinct = {row.residues for row in msa.rows}
    record = {
        "protein_id": protein.id, "mode": mode, "source": source, "length": len(protein),
        "rows": msa.depth, "depth": len(distinct), "keyed_rows": msa.keyed,
        "fallback": fallback, "reason": reason, "cached": cached,
        "foldcp_version": __version__,
    }
    return msa, record


def write_msa(config: dict, protein_id: str, out: str | Path, record_path: str | Path | None = None,
              mmseqs_database: str | Path | None = None) -> dict:
    """Write ``out`` (A3M) and its record (JSON, default: ``out`` with ``.json``)."""
    proteins = read_fasta(config["proteins"])
    if protein_id not in proteins:
        raise FoldcpError(f"protein {protein_id!r} is not in {config['proteins']}")
    out = Path(out)
    msa, record = compute_msa(config, proteins[protein_id], out, mmseqs_database)
    write_text(out, msa.to_a3m())
    write_json(record_path or out.with_suffix(".json"), record)
    return record
