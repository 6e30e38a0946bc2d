# MSAs: one per unique protein, reused by every complex that contains it. Editing the FASTA
# (e.g. adding proteins) re-runs only the MSAs of proteins whose sequence changed (`sequence`).
rule msa:
    input:
        config=RESOLVED_CONFIG,
        proteins=ancient(config["proteins"]),
    output:
        f"{OUT}/msa/{{protein}}.a3m",
    params:
        sequence=protein_digest,
    log:
        f"{OUT}/logs/msa/{{protein}}.log",
    group:
        "msa"
    conda:
        ENV
    shell:
        "foldcp msa --config {input.config} --protein {wildcards.protein} "
        "--out {output} > {log} 2>&1"


# One index of the candidates' MSAs, an input of the plan checkpoint (plan.smk says why).
rule msa_index:
    input:
        candidate_msas,
    output:
        f"{OUT}/msa/index.tsv",
    log:
        f"{OUT}/logs/msa/index.log",
    localrule: True
    run:
        from foldcp.io import write_text

        write_text(output[0], "".join(f"{Path(path).stem}\t{path}\n" for path in input))
