"""Load and validate a screen configuration against workflow/schemas/config.schema.yaml.

The same validation runs when Snakemake loads the workflow and when a foldcp command reads a
config, so a bad value is reported once, by key path, before anything runs.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

from foldcp.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


def _with_defaults(validator_class):
    """A validator that fills in schema defaults (objects first, then their properties)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft7Validator)


def key_path(error: jsonschema.ValidationError) -> str:
    """'plan.grids[2]' style path of a validation error."""
    text = ""
    for part in error.absolute_path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def validate_config(config: dict) -> dict:
    """Validate in place, filling defaults; raise ConfigError naming the offending key."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"config key {key_path(e)}: {e.message}" for e in errors]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    # A second pass validates the filled-in defaults too (they must obey the schema).
    for error in _Validator(schema).iter_errors(config):
        raise ConfigError(f"config key {key_path(error)}: {error.message}")
    candidates = config["candidates"]
    needs = {"pairs": ["pairs"], "bait_vs_library": ["baits"], "all_vs_all": []}[candidates["mode"]]
    for key in needs:
        if not candidates.get(key):
            raise ConfigError(
                f"config key candidates.{key}: required when candidates.mode is {candidates['mode']}"
            )
    msa = config["msa"]
    for mode, section, key in (("precomputed", "precomputed", "dir"), ("mmseqs", "mmseqs", "database")):
        if msa["mode"] == mode and not msa[section].get(key):
            raise ConfigError(f"config key msa.{section}.{key}: required when msa.mode is {mode}")
    grids = config["plan"]["grids"]
    if sorted(set(grids)) != grids:
        raise ConfigError("config key plan.grids: must be strictly increasing GPU counts")
    return config


def load_config(path: str | Path) -> dict:
    """Read a YAML config file and validate it."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"config {path} must be a mapping of keys to values")
    return validate_config(config)
