# Predict: fold one batch of the plan (model loaded once per batch).
rule predict:
    input:
        config=RESOLVED_CONFIG,
        plan=f"{OUT}/plan/plan.parquet",
        msas=batch_msas,
    output:
        status=f"{OUT}/predictions/batches/{{batch}}.parquet",
    log:
        f"{OUT}/logs/predict/{{batch}}.log",
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} foldcp predict --config {input.config} --plan {input.plan} "
        "--batch {wildcards.batch} --out {OUT}/predictions > {log} 2>&1"
