# Analyze: result tables per batch, then merged and ranked.
rule analyze:
    input:
        config=RESOLVED_CONFIG,
        status=f"{OUT}/predictions/batches/{{batch}}.parquet",
    output:
        complexes=f"{OUT}/metrics/{{batch}}.complexes.parquet",
        chain_pairs=f"{OUT}/metrics/{{batch}}.chain_pairs.parquet",
        failures=f"{OUT}/metrics/{{batch}}.failures.parquet",
    log:
        f"{OUT}/logs/analyze/{{batch}}.log",
    shell:
        "foldcp analyze --config {input.config} --batch {wildcards.batch} "
        "--status {input.status} --predictions {OUT}/predictions --out {OUT}/metrics > {log} 2>&1"


rule merge:
    input:
        config=RESOLVED_CONFIG,
        plan=f"{OUT}/plan/plan.parquet",
        tables=lambda wildcards: expand(
            f"{OUT}/metrics/{{batch}}.complexes.parquet", batch=all_batches()
        ),
    output:
        complexes=f"{OUT}/complexes.parquet",
        chain_pairs=f"{OUT}/chain_pairs.parquet",
        failures=f"{OUT}/failures.parquet",
        skipped=f"{OUT}/skipped.parquet",
        ranked=f"{OUT}/ranked.parquet",
        ranked_tsv=f"{OUT}/ranked.tsv",
    log:
        f"{OUT}/logs/merge.log",
    localrule: True
    shell:
        "foldcp merge --config {input.config} --plan-dir {OUT}/plan --metrics {OUT}/metrics "
        "--out {OUT} > {log} 2>&1"
