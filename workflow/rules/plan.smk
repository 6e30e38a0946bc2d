# Plan: tokens per complex, GPU grid from the memory model, batches.
# A checkpoint: the set of batches is known only once it has run. It runs after the MSAs of
# every candidate protein (their index), so predict jobs need no MSA inputs of their own: an
# all-vs-all batch would have ~100 (169,000 DAG edges for 2,000 batches, minutes of DAG
# building), and a batch needs a large share of the proteome's MSAs anyway.
checkpoint plan:
    input:
        config=RESOLVED_CONFIG,
        proteins=config["proteins"],
        candidates=candidate_inputs(),
        msas=f"{OUT}/msa/index.tsv",
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
