# MSAs: one per unique protein, reused by every complex that contains it. Each job writes
# msa/{protein}.a3m and its record msa/{protein}.json; reruns redo only missing proteins,
# and the MSA cache (msa.cache_dir) spares searches already done by other screens. Editing
# the FASTA (e.g. adding proteins) re-runs only the MSAs of proteins whose sequence changed
# (`sequence`). Under Slurm, small MSA jobs are grouped (group-components in profiles/slurm).
rule msa:
    input:
        config=RESOLVED_CONFIG,
        proteins=ancient(config["proteins"]),
        extra=msa_inputs,
    output:
        a3m=f"{OUT}/msa/{{protein}}.a3m",
        record=f"{OUT}/msa/{{protein}}.json",
    params:
        sequence=protein_digest,
        database=f"--mmseqs-db {MMSEQS_DB}" if config["msa"]["mode"] == "mmseqs" else "",
    log:
        f"{OUT}/logs/msa/{{protein}}.log",
    threads: config["msa"]["mmseqs"]["threads"] if config["msa"]["mode"] == "mmseqs" else 1
    wildcard_constraints:
        protein=r"[A-Za-z0-9_.-]+",
    group:
        "msa"
    conda:
        ENV
    shell:
        "foldcp msa --config {input.config} --protein {wildcards.protein} "
        "--out {output.a3m} --record {output.record} --threads {threads} {params.database} "
        "> {log} 2>&1"


if config["msa"]["mode"] == "mmseqs" and MMSEQS_BUILDS_DB:

    # A FASTA database becomes an MMseqs2 database once per screen.
    rule msa_db:
        input:
            config=RESOLVED_CONFIG,
            fasta=config["msa"]["mmseqs"]["database"],
        output:
            f"{MMSEQS_DB}.dbtype",
        params:
            prefix=lambda wildcards, output: output[0].removesuffix(".dbtype"),
        log:
            f"{OUT}/logs/msa_db.log",
        conda:
            ENV
        shell:
            "foldcp msa-db --config {input.config} --out {params.prefix} > {log} 2>&1"


if config["msa"]["mode"] == "server":

    # Cluster nodes often have no internet access, and one machine keeps the requests to
    # the server polite (msa.server.min_interval_s): server jobs run where snakemake runs.
    localrules:
        msa,


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

        # protein, its MSA, its record (candidate_msas lists them in pairs)
        write_text(output[0], "".join(f"{Path(a3m).stem}\t{a3m}\t{record}\n"
                                      for a3m, record in zip(input[::2], input[1::2])))
