# foldcp: proteome-scale protein-complex prediction with Boltz-2.
# Stages live in workflow/rules/ (one per file); this file only includes them.
# The demo config is the default; `--configfile my.yaml` replaces it (schema defaults fill
# what my.yaml leaves out) instead of being merged into the demo's values.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/config.smk"
include: "workflow/rules/plan.smk"
include: "workflow/rules/msa.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/analyze.smk"
include: "workflow/rules/export.smk"


rule all:
    input:
        f"{OUT}/ranked.tsv",
        f"{OUT}/check.json",
        f"{OUT}/report.html",
        export_targets(),
    default_target: True
