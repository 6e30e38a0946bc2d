# Plan: tokens per complex, GPU grid from the memory model, batches.
# A checkpoint: the set of batches is known only once it has run.
checkpoint plan:
    input:
        config=RESOLVED_CONFIG,
        proteins=config["proteins"],
        candidates=candidate_inputs(),
    output:
        plan=f"{OUT}/plan/plan.parquet",
        skipped=f"{OUT}/plan/skipped.parquet",
    params:
        plan_dir=lambda wildcards, output: Path(output.plan).parent,
    log:
        f"{OUT}/logs/plan.log",
    localrule: True
    conda:
        ENV
    shell:
        "foldcp plan --config {input.config} --out {params.plan_dir} > {log} 2>&1"
