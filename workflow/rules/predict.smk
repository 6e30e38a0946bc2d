# Predict: fold one batch of the plan (model loaded once per batch).
rule predict:
    input:
        config=RESOLVED_CONFIG,
        plan=f"{OUT}/plan/plan.parquet",
        msas=batch_msas,
    output:
        status=f"{OUT}/predictions/batches/{{batch}}.parquet",
    params:
        predictions=lambda wildcards, output: Path(output.status).parent.parent,
    log:
        f"{OUT}/logs/predict/{{batch}}.log",
    threads: 1
    conda:
        ENV
    shell:
        "OMP_NUM_THREADS={threads} foldcp predict --config {input.config} --plan {input.plan} "
        "--batch {wildcards.batch} --out {params.predictions} > {log} 2>&1"
