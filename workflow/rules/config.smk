# The validated config (defaults filled, --config overrides applied), read by every step.
import yaml


rule resolved_config:
    output:
        RESOLVED_CONFIG,
    params:
        text=yaml.safe_dump(config, sort_keys=True),
    log:
        f"{OUT}/logs/resolved_config.log",
    localrule: True
    run:
        from foldcp.io import write_text

        write_text(output[0], params.text)
