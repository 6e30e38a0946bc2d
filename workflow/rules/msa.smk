# MSAs: one per unique protein, reused by every complex that contains it.
rule msa:
    input:
        config=RESOLVED_CONFIG,
        proteins=config["proteins"],
    output:
        f"{OUT}/msa/{{protein}}.a3m",
    log:
        f"{OUT}/logs/msa/{{protein}}.log",
    group:
        "msa"
    conda:
        ENV
    shell:
        "foldcp msa --config {input.config} --protein {wildcards.protein} "
        "--out {output} > {log} 2>&1"
