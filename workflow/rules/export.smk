# Export: the selected models as ModelCIF files (+ zipped PAE), index.parquet, and a Foldseek
# database when foldseek is on PATH. index.parquet is written last (the rule's output).
rule export:
    input:
        config=RESOLVED_CONFIG,
        ranked=f"{OUT}/ranked.parquet",
        complexes=f"{OUT}/complexes.parquet",
    output:
        index=f"{OUT}/export/index.parquet",
    params:
        results=lambda wildcards, input: Path(input.ranked).parent,
        export=lambda wildcards, output: Path(output.index).parent,
    log:
        f"{OUT}/logs/export.log",
    conda:
        ENV
    shell:
        "foldcp export --config {input.config} --results {params.results} "
        "--out {params.export} > {log} 2>&1"
