# Config validation (errors name the key) and helpers shared by the stages.
import pandas as pd
import yaml

from foldcp.config import validate_config
from foldcp.io import write_text


validate_config(config)
OUT = config["output_dir"]
RESOLVED_CONFIG = f"{OUT}/config.yaml"


def planned():
    """The plan table, available once the plan checkpoint has run."""
    plan_file = checkpoints.plan.get().output.plan
    return pd.read_parquet(plan_file)


def all_batches():
    return sorted(planned()["batch_id"].unique())


def batch_msas(wildcards):
    """MSA files of the proteins in one batch: a batch waits only for its own chains."""
    plan = planned()
    proteins = set()
    for members in plan.loc[plan["batch_id"] == wildcards.batch, "proteins"]:
        proteins.update(members)
    return [f"{OUT}/msa/{protein}.a3m" for protein in sorted(proteins)]


rule resolved_config:
    """The validated config with defaults and --config overrides, read by every foldcp step."""
    output:
        RESOLVED_CONFIG,
    params:
        text=yaml.safe_dump(config, sort_keys=True),
    localrule: True
    run:
        write_text(output[0], params.text)
