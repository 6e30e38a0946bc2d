# Plan: tokens per complex, GPU grid from the memory model, batches.
# A checkpoint: the set of batches is known only once it has run.
checkpoint plan:
    input:
        config=RESOLVED_CONFIG,
        proteins=config["proteins"],
        candidates=[
            config["candidates"][key]
            for key in ("pairs", "ids", "baits", "library")
            if config["candidates"].get(key)
        ],
    output:
        plan=f"{OUT}/plan/plan.parquet",
        skipped=f"{OUT}/plan/skipped.parquet",
    log:
        f"{OUT}/logs/plan.log",
    localrule: True
    shell:
        "foldcp plan --config {input.config} --out {OUT}/plan > {log} 2>&1"
