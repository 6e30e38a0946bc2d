# Predict: fold one batch of the plan (model loaded once per batch). A grid of P > 1 runs as
# P processes (one rank per GPU) that fold one complex at a time together by context
# parallelism: started by torchrun (local executor) or by `srun` from the job's own shell
# command (Slurm executor, `mpi` resource), per config `launcher`.
#
# Out of memory: attempt k runs on the k-th grid from the plan's grid up (plan.grids;
# resources.grid, and the Slurm resources follow it). A run in which a complex ran out of
# memory on a grid below the last exits 75 without a status table, and Snakemake retries the
# job on the next grid; on the last grid the complex is recorded as out_of_memory. If the run
# fails in any other way, `foldcp record-failure` writes the status table with the error, so
# no complex goes missing from the failures table. (Only resources change between attempts:
# the shell reads the grid from them, not from params.)
#
# The plan runs after every MSA (plan.smk), so a batch finds its MSAs in msa_dir. A re-plan
# rewrites plan.parquet but keeps existing batches (foldcp/plan/plan.py): the plan is
# `ancient` here, and `members` re-runs only a batch whose complexes changed.
rule predict:
    input:
        config=RESOLVED_CONFIG,
        plan=ancient(f"{OUT}/plan/plan.parquet"),
    output:
        status=f"{OUT}/predictions/batches/{{batch}}.parquet",
    params:
        members=batch_members,
        predictions=lambda wildcards, output: Path(output.status).parent.parent,
        plan_grid=batch_grid,
        last_grid=last_grid,
        grid_launch=grid_launch,
        single_launch=single_launch,
        attempt_log=lambda wildcards: f"{OUT}/logs/predict/{wildcards.batch}.grid",
        msa_dir=f"{OUT}/msa",
    log:
        f"{OUT}/logs/predict/{{batch}}.log",
    threads: lambda wildcards: batch_grid(wildcards)
    # retried by the submitting Snakemake (a new job with the next grid's resources), never
    # inside a Slurm job
    retries: PREDICT_RETRIES if workflow.is_main_process else 0
    resources:
        grid=attempt_grid,
        gpu=predict_resource("gpu"),
        tasks=predict_resource("tasks"),
        tasks_per_gpu=predict_resource("tasks_per_gpu"),
        nodes=predict_resource("nodes"),
        cpus_per_gpu=predict_resource("cpus_per_gpu"),
        mem_mb=predict_resource("mem_mb"),
        runtime=predict_resource("runtime"),
        mpi=predict_mpi,
    conda:
        ENV
    shell:
        "grid={resources.grid}; "
        "args=\"--config {input.config} --plan {input.plan} --batch {wildcards.batch} "
        "--out {params.predictions} --grid $grid\"; "
        "if [ $grid -lt {params.last_grid} ]; then args=\"$args --retry-on-oom\"; fi; "
        "if [ $grid -gt 1 ]; then launch=\"{params.grid_launch}\"; "
        "else launch=\"{params.single_launch}\"; fi; "
        # each attempt also keeps its own log, {batch}.grid{P}.log
        "alog={params.attempt_log}$grid.log; "
        "echo \"[foldcp] $(date): run on $grid GPU(s) (plan: {params.plan_grid})\" > $alog; "
        "start=$(date +%s); rc=0; "
        "$launch predict $args --msa-dir {params.msa_dir} >> $alog 2>&1 || rc=$?; "
        "if [ $rc -ne 0 ] && [ $rc -ne 75 ]; then code=$rc; rc=0; "
        "foldcp record-failure $args --since $start "
        "--error \"run on $grid GPU(s) failed (exit $code, see $alog)\" >> $alog 2>&1 "
        "|| rc=$?; fi; cat $alog > {log}; exit $rc"
