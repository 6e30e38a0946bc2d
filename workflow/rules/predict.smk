# Predict: fold one batch of the plan (model loaded once per batch). Batches of grid P > 1
# run as P processes (torchrun here; srun under Slurm) that fold one complex together by
# context parallelism. If such a run fails, the failure is recorded in the batch's status
# table instead of leaving the batch missing.
# The plan runs after every MSA (plan.smk), so a batch finds its MSAs. A re-plan rewrites
# plan.parquet but keeps existing batches (foldcp/plan/plan.py): the plan is `ancient` here,
# and `members` re-runs only a batch whose complexes changed.
rule predict:
    input:
        config=RESOLVED_CONFIG,
        plan=ancient(f"{OUT}/plan/plan.parquet"),
    output:
        status=f"{OUT}/predictions/batches/{{batch}}.parquet",
    params:
        members=batch_members,
        predictions=lambda wildcards, output: Path(output.status).parent.parent,
        grid=batch_grid,
    log:
        f"{OUT}/logs/predict/{{batch}}.log",
    threads: lambda wildcards: batch_grid(wildcards)
    conda:
        ENV
    shell:
        "args='--config {input.config} --plan {input.plan} --batch {wildcards.batch} "
        "--out {params.predictions}'; "
        "if [ {params.grid} -gt 1 ]; then "
        "python -m torch.distributed.run --standalone --nproc-per-node {params.grid} "
        "-m foldcp.cli predict $args > {log} 2>&1 "
        "|| foldcp record-failure --config {input.config} --plan {input.plan} "
        "--batch {wildcards.batch} --out {params.predictions} "
        "--error 'grid run of {params.grid} ranks failed (see {log})' >> {log} 2>&1; "
        "else OMP_NUM_THREADS={threads} foldcp predict $args > {log} 2>&1; fi"
