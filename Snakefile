# foldcp: proteome-scale protein-complex prediction with Boltz-2.
# Stages live in workflow/rules/ (one per file); this file only includes them.
configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/plan.smk"
include: "workflow/rules/msa.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/analyze.smk"


rule all:
    input:
        f"{OUT}/ranked.tsv",
    default_target: True
