# Analyze: result tables per batch, then merged and ranked, then checked: every complex of
# the plan in exactly one of complexes, failures and skipped.
rule analyze:
    input:
        config=RESOLVED_CONFIG,
        status=f"{OUT}/predictions/batches/{{batch}}.parquet",
    output:
        complexes=f"{OUT}/metrics/{{batch}}.complexes.parquet",
        chain_pairs=f"{OUT}/metrics/{{batch}}.chain_pairs.parquet",
        interface_residues=f"{OUT}/metrics/{{batch}}.interface_residues.parquet",
        failures=f"{OUT}/metrics/{{batch}}.failures.parquet",
    params:
        predictions=lambda wildcards, input: Path(input.status).parent.parent,
        metrics=lambda wildcards, output: Path(output.complexes).parent,
    log:
        f"{OUT}/logs/analyze/{{batch}}.log",
    conda:
        ENV
    shell:
        "foldcp analyze --config {input.config} --batch {wildcards.batch} "
        "--status {input.status} --predictions {params.predictions} "
        "--out {params.metrics} > {log} 2>&1"


rule merge:
    input:
        config=RESOLVED_CONFIG,
        plan=f"{OUT}/plan/plan.parquet",
        known=optional_input(config["known_interactions"]),
        tables=lambda wildcards: expand(
            f"{OUT}/metrics/{{batch}}.complexes.parquet", batch=all_batches()
        ),
    output:
        complexes=f"{OUT}/complexes.parquet",
        chain_pairs=f"{OUT}/chain_pairs.parquet",
        interface_residues=f"{OUT}/interface_residues.parquet",
        failures=f"{OUT}/failures.parquet",
        skipped=f"{OUT}/skipped.parquet",
        ranked=f"{OUT}/ranked.parquet",
        ranked_tsv=f"{OUT}/ranked.tsv",
    params:
        plan_dir=lambda wildcards, input: Path(input.plan).parent,
        metrics=f"{OUT}/metrics",
        # reads only new or changed batch tables (foldcp/analyze/merge.py); safe to delete
        cache=f"{OUT}/metrics/merge_cache",
        results=lambda wildcards, output: Path(output.ranked).parent,
    log:
        f"{OUT}/logs/merge.log",
    localrule: True
    conda:
        ENV
    shell:
        "foldcp merge --config {input.config} --plan-dir {params.plan_dir} "
        "--metrics {params.metrics} --cache {params.cache} --out {params.results} > {log} 2>&1"


rule check_results:
    input:
        config=RESOLVED_CONFIG,
        plan=f"{OUT}/plan/plan.parquet",
        complexes=f"{OUT}/complexes.parquet",
        chain_pairs=f"{OUT}/chain_pairs.parquet",
        interface_residues=f"{OUT}/interface_residues.parquet",
        failures=f"{OUT}/failures.parquet",
        skipped=f"{OUT}/skipped.parquet",
        ranked=f"{OUT}/ranked.parquet",
    output:
        f"{OUT}/check.json",
    params:
        plan_dir=lambda wildcards, input: Path(input.plan).parent,
        results=lambda wildcards, input: Path(input.complexes).parent,
    log:
        f"{OUT}/logs/check_results.log",
    localrule: True
    conda:
        ENV
    shell:
        "foldcp check-results --config {input.config} --plan-dir {params.plan_dir} "
        "--results {params.results} --out {output} > {log} 2>&1"


rule report:
    input:
        config=RESOLVED_CONFIG,
        ranked=f"{OUT}/ranked.parquet",
        complexes=f"{OUT}/complexes.parquet",
        chain_pairs=f"{OUT}/chain_pairs.parquet",
    output:
        f"{OUT}/report.html",
    params:
        results=lambda wildcards, input: Path(input.ranked).parent,
    log:
        f"{OUT}/logs/report.log",
    localrule: True
    conda:
        ENV
    shell:
        "foldcp report --config {input.config} --results {params.results} --out {output} > {log} 2>&1"
