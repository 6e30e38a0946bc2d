"""The ``foldcp`` command: the steps the Snakemake workflow runs, usable on their own."""

from __future__ import annotations

import argparse
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


def cmd_predict(args) -> None:
    from foldcp.runner.predict import run_batch

    config = _config(args.config)
    if args.checkpoint:
        config["model"]["checkpoint"] = args.checkpoint
    table = run_batch(config, args.plan, args.batch, args.out, args.msa_dir)
    counts = table["status"].value_counts().to_dict()
    print(f"batch {args.batch}: {counts}")


def cmd_record_failure(args) -> None:
    from foldcp.runner.predict import record_failure

    table = record_failure(args.plan, args.batch, args.out, args.error)
    print(f"batch {args.batch}: {table['status'].value_counts().to_dict()}")


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
    batches = sorted(pd.read_parquet(Path(args.plan_dir) / "plan.parquet")["batch_id"].unique())
    tables = merge_tables(args.metrics, batches, args.plan_dir, args.out, config["analysis"],
                          config.get("known_interactions"))
    print(f"{len(tables['ranked'])} complexes ranked, {len(tables['failures'])} failed, "
          f"{len(tables['skipped'])} skipped -> {args.out}")


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
    p = add("record-failure", cmd_record_failure,
            "status table for a batch whose (multi-rank) run failed")
    p.add_argument("--plan", required=True)
    p.add_argument("--batch", required=True)
    p.add_argument("--out", required=True, help="predictions folder")
    p.add_argument("--error", required=True, help="what failed")
    p = add("analyze", cmd_analyze, "result tables of one batch")
    p.add_argument("--batch", required=True)
    p.add_argument("--status", required=True, help="the batch's status table")
    p.add_argument("--predictions", required=True, help="predictions folder")
    p.add_argument("--out", required=True, help="metrics folder")
    p = add("merge", cmd_merge, "merge batch tables, rank")
    p.add_argument("--plan-dir", required=True)
    p.add_argument("--metrics", required=True)
    p.add_argument("--out", required=True)
    add("demo-checkpoint", cmd_demo_checkpoint, "build (once) and print the demo checkpoint path")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except FoldcpError as error:
        print(f"foldcp {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
