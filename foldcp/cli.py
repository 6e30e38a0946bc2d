"""The ``foldcp`` command: the steps the Snakemake workflow runs, usable on their own."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from foldcp.errors import FoldcpError


def _config(path: str) -> dict:
    from foldcp.config import load_config

    return load_config(path)


def cmd_check(args) -> None:
    from foldcp.inputs import load_candidates, read_fasta

    config = _config(args.config)
    proteins = read_fasta(config["proteins"])
    complexes = load_candidates(config["candidates"], proteins, Path.cwd())
    print(f"{len(proteins)} proteins, {len(complexes)} candidate complexes: inputs are valid")


def cmd_plan(args) -> None:
    from foldcp.plan import plan_screen

    config = _config(args.config)
    plan = plan_screen(config, args.out)
    print(f"planned {len(plan)} complexes in {plan['batch_id'].nunique()} batches -> {args.out}")


def cmd_msa(args) -> None:
    from foldcp.msa import write_msa

    config = _config(args.config)
    if args.threads:
        config["msa"]["mmseqs"]["threads"] = args.threads
    record = write_msa(config, args.protein, args.out, args.record, args.mmseqs_db)
    print(f"{args.protein}: {record['depth']} sequences ({record['mode']}"
          f"{', single-sequence fallback: ' + record['reason'] if record['fallback'] else ''}"
          f"{', cached' if record['cached'] else ''}) -> {args.out}")


def cmd_msa_db(args) -> None:
    from foldcp.msa import mmseqs

    config = _config(args.config)
    settings = config["msa"]["mmseqs"]
    if not settings["database"] or not mmseqs.is_fasta(settings["database"]):
        raise mmseqs.MmseqsError("msa.mmseqs.database is not a FASTA file: nothing to build")
    mmseqs.check_database(settings["database"])
    out = args.out or mmseqs.target_database(config)
    mmseqs.create_database(mmseqs.find_binary(settings["binary"]), settings["database"], out)
    print(f"MMseqs2 database of {settings['database']} -> {out}")


def _retry_exit(table, args) -> int:
    """RETRY_EXIT_CODE when a complex ran out of memory on a grid that is not the last."""
    from foldcp.runner.predict import RETRY_EXIT_CODE, wants_retry

    if wants_retry(table, args.final):
        oom = sorted(table.loc[table["status"] == "out_of_memory", "complex_id"])
        print(f"batch {args.batch}: out of memory on this grid ({', '.join(oom)}): "
              f"retry on the next grid (exit {RETRY_EXIT_CODE})", flush=True)
        return RETRY_EXIT_CODE
    return 0


def cmd_predict(args) -> int:
    from foldcp.runner.featurize_ahead import early_worker_pool

    # SIGTERM (Slurm's time limit or scancel, torchrun stopping the ranks after one failed)
    # ends the run through its cleanup: the write in hand finishes, the workers stop
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    config = _config(args.config)
    if args.checkpoint:
        config["model"]["checkpoint"] = args.checkpoint
    # the featurizing worker starts before this process imports the model's libraries: the
    # seconds those take it spends on the batch's first complexes
    pool = early_worker_pool(config, args.msa_dir)
    try:
        from foldcp.runner.predict import run_batch, use_expandable_segments

        use_expandable_segments()
    except BaseException:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        raise
    table = run_batch(config, args.plan, args.batch, args.out, args.msa_dir, grid=args.grid,
                      final=args.final, featurize_pool=pool)
    if table.empty:  # a grid rank other than the writer
        return 0
    counts = table["status"].value_counts().to_dict()
    print(f"batch {args.batch}: {counts}")
    return _retry_exit(table, args)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def cmd_record_failure(args) -> int:
    from foldcp.runner.predict import record_failure

    table = record_failure(args.plan, args.batch, args.out, args.error, since=args.since,
                           grid=args.grid, final=args.final)
    print(f"batch {args.batch}: {table['status'].value_counts().to_dict()}")
    return _retry_exit(table, args)


def cmd_analyze(args) -> None:
    from foldcp.analyze.merge import write_batch_tables
    from foldcp.analyze.tables import batch_tables

    config = _config(args.config)
    tables = batch_tables(args.status, args.predictions, config["analysis"])
    write_batch_tables(tables, args.out, args.batch)


def cmd_merge(args) -> None:
    import pandas as pd

    from foldcp.analyze.merge import merge_tables

    config = _config(args.config)
    batches = sorted(pd.read_parquet(Path(args.plan_dir) / "plan.parquet",
                                     columns=["batch_id"])["batch_id"].unique())
    cache = None if args.no_cache else (args.cache or Path(args.metrics) / "merge_cache")
    tables = merge_tables(args.metrics, batches, args.plan_dir, args.out, config["analysis"],
                          config.get("known_interactions"), cache_dir=cache)
    stats = tables["stats"]
    print(f"{len(tables['ranked'])} complexes ranked, {len(tables['failures'])} failed, "
          f"{tables['chain_pairs_rows']} chain-pair rows, "
          f"{len(tables['skipped'])} skipped -> {args.out}")
    print(f"batch tables: {stats.read} of {stats.batches} batches read, {stats.reused} from the "
          f"merge cache" + (f" {cache}" if cache else " (no cache)"))


def cmd_check_results(args) -> None:
    import json

    from foldcp.analyze.check import check_results
    from foldcp.io import write_json

    results = Path(args.results)
    out = Path(args.out) if args.out else results / "check.json"
    out.unlink(missing_ok=True)  # a failed check leaves no pass behind
    counts = check_results(args.plan_dir, results)
    write_json(out, counts | {"ok": True})
    print(f"results check passed: {json.dumps(counts)}")


def cmd_score(args) -> None:
    from foldcp.io import write_parquet, write_tsv
    from foldcp.metrics.score import ScoreSettings, score_prediction

    settings = ScoreSettings(pae_cutoff=args.pae_cutoff, contact_cutoff=args.contact_cutoff,
                             heavy_contact_cutoff=args.heavy_atom_contact_cutoff,
                             clash_cutoff=args.clash_cutoff)
    report = score_prediction(args.structure, args.pae, args.plddt, settings=settings)
    for frame, path in ((report.pairs, args.out), (report.residues, args.residues)):
        if path:
            (write_parquet if path.endswith(".parquet") else write_tsv)(path, frame)
    if not args.out:
        print(report.pairs.to_csv(sep="\t", index=False, float_format="%.4f"), end="")


def cmd_report(args) -> None:
    from foldcp.report import write_report

    config = _config(args.config)
    path = write_report(args.results, args.out, top_n=args.top or config["report"]["top_n"],
                        title=config["report"]["title"])
    print(f"report -> {path}")


def cmd_export(args) -> None:
    from foldcp.export.exporter import export_models

    config = _config(args.config)
    results = Path(args.results or config["output_dir"])
    out = Path(args.out) if args.out else results / "export"
    index = export_models(config, results, out)
    print(f"exported {len(index)} models -> {out}")


def cmd_demo_checkpoint(args) -> None:
    from foldcp.model.checkpoint import resolve_checkpoint

    print(resolve_checkpoint("demo").path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="foldcp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, func, help_text):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", default="config/config.yaml", help="screen config (YAML)")
        p.set_defaults(func=func)
        return p

    add("check", cmd_check, "validate the config, FASTA and candidates")
    p = add("plan", cmd_plan, "write plan.parquet and skipped.parquet")
    p.add_argument("--out", required=True, help="plan folder")
    p = add("msa", cmd_msa, "write the MSA of one protein")
    p.add_argument("--protein", required=True)
    p.add_argument("--out", required=True, help="MSA file to write (.a3m)")
    p.add_argument("--record", help="its record (JSON); default: --out with .json")
    p.add_argument("--mmseqs-db", help="MMseqs2 database to search (default: from the config)")
    p.add_argument("--threads", type=int, help="override msa.mmseqs.threads")
    p = add("msa-db", cmd_msa_db, "build the MMseqs2 database of a FASTA msa.mmseqs.database")
    p.add_argument("--out", help="database prefix (default: {output_dir}/msa/db/target)")
    p = add("predict", cmd_predict, "fold one plan batch")
    p.add_argument("--plan", required=True, help="plan.parquet")
    p.add_argument("--batch", required=True, help="batch_id")
    p.add_argument("--out", required=True, help="predictions folder")
    p.add_argument("--checkpoint", help="override model.checkpoint (auto | demo | PATH)")
    p.add_argument("--msa-dir", help="per-protein MSAs (default: {output_dir}/msa)")

    def attempt_args(p):
        p.add_argument("--grid", type=int, help="GPUs (ranks) of this run (default: the plan's)")
        p.add_argument("--retry-on-oom", dest="final", action="store_false",
                       help="a larger grid is left: if a complex runs out of memory, write no "
                            "status table and exit 75 so the workflow retries on it")

    attempt_args(p)
    p = add("record-failure", cmd_record_failure,
            "status table for a batch whose (multi-rank) run failed")
    p.add_argument("--plan", required=True)
    p.add_argument("--batch", required=True)
    p.add_argument("--out", required=True, help="predictions folder")
    p.add_argument("--error", required=True, help="what failed")
    p.add_argument("--since", type=float,
                   help="start of the failed run (epoch seconds): older error logs are ignored")
    attempt_args(p)
    p = add("analyze", cmd_analyze, "result tables of one batch")
    p.add_argument("--batch", required=True)
    p.add_argument("--status", required=True, help="the batch's status table")
    p.add_argument("--predictions", required=True, help="predictions folder")
    p.add_argument("--out", required=True, help="metrics folder")
    p = add("merge", cmd_merge, "merge batch tables, rank (reads only new or changed batch "
                                "tables when a merge cache is there)")
    p.add_argument("--plan-dir", required=True)
    p.add_argument("--metrics", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--cache", help="merge cache folder (default: METRICS/merge_cache)")
    p.add_argument("--no-cache", action="store_true", help="read every batch table, keep no cache")
    p = add("check-results", cmd_check_results,
            "check that every planned complex is in exactly one of complexes, failures, skipped")
    p.add_argument("--plan-dir", required=True)
    p.add_argument("--results", required=True, help="folder with the merged tables")
    p.add_argument("--out", help="summary to write when the check passes (default: RESULTS/check.json)")
    p = add("report", cmd_report, "HTML report of a finished screen")
    p.add_argument("--results", required=True, help="folder with the merged tables")
    p.add_argument("--out", required=True, help="HTML file to write")
    p.add_argument("--top", type=int, help="hits shown in detail (default: report.top_n)")
    p = add("export", cmd_export,
            "selected models as ModelCIF (+ PAE), index.parquet, Foldseek DB if available")
    p.add_argument("--results", help="results folder with ranked/complexes.parquet "
                                     "(default: the config's output_dir)")
    p.add_argument("--out", help="export folder (default: RESULTS/export)")
    add("demo-checkpoint", cmd_demo_checkpoint, "build (once) and print the demo checkpoint path")
    p = sub.add_parser("score", help="interface metrics of any AlphaFold-style prediction")
    p.set_defaults(func=cmd_score)
    p.add_argument("structure", help="mmCIF or PDB file")
    p.add_argument("--pae", required=True,
                   help="token x token PAE: .npz ('pae'), .npy or AlphaFold JSON")
    p.add_argument("--plddt", help="per-token pLDDT: .npz ('plddt'), .npy or JSON "
                                   "(default: the B-factors of the Cb atoms)")
    p.add_argument("--pae-cutoff", type=float, default=10.0, help="ipSAE PAE cutoff (Å)")
    p.add_argument("--contact-cutoff", type=float, default=8.0, help="Cb-Cb contact distance (Å)")
    p.add_argument("--heavy-atom-contact-cutoff", type=float, default=5.0)
    p.add_argument("--clash-cutoff", type=float, default=1.0)
    p.add_argument("--out", help="chain-pair table (.tsv or .parquet; default: print TSV)")
    p.add_argument("--residues", help="interface-residue table (.tsv or .parquet)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except FoldcpError as error:
        print(f"foldcp {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
