import pytest

from foldcp.config import load_config, validate_config
from foldcp.errors import ConfigError


def base():
    return {"proteins": "p.fasta", "candidates": {"mode": "pairs", "pairs": "x.tsv"}}


def test_defaults_filled():
    config = validate_config(base())
    assert config["plan"]["grids"] == [1, 2, 4, 8, 16]
    assert config["plan"]["memory_model"]["pair_gib_per_ktoken2"] == pytest.approx(1.425)
    assert config["plan"]["gpu_kind"] == "h100-80gb" and config["plan"]["gpu_memory_gib"] is None
    assert config["plan"]["memory_model"]["boltz_pair_gib_per_ktoken2"] == pytest.approx(8.6)
    assert config["model"]["single_gpu"] == "auto"
    assert config["model"]["checkpoint"] == "auto"
    assert config["export"] == {"enabled": True, "samples": "best", "top_n": None,
                                "confident_only": False, "pae": True, "foldseek": True,
                                "authors": []}
    assert config["launcher"] == "auto" and config["plan"]["retry_out_of_memory"] is True
    assert config["slurm"] == {"gpus_per_node": 4, "cpus_per_gpu": 8, "mem_mb_per_gpu": 64000,
                               "runtime_minutes": {"base": 30, "per_1000_tokens_squared": 20,
                                                   "max": 2880}}


@pytest.mark.parametrize(
    "change, key",
    [
        ({"plan": {"grids": [1, -2]}}, "plan.grids[1]"),
        ({"model": {"sampling_steps": 1}}, "model.sampling_steps"),
        ({"model": {"device": "gpu0"}}, "model.device"),
        ({"candidates": {"mode": "everything"}}, "candidates.mode"),
        ({"plan": {"grids": [2, 1]}}, "plan.grids"),
        ({"candidates": {"mode": "pairs"}}, "candidates.pairs"),
        ({"bogus": 1}, "(top level)"),
        ({"export": {"top_n": 0}}, "export.top_n"),
        ({"export": {"samples": "top"}}, "export.samples"),
        ({"export": {"authors": "Doe, J."}}, "export.authors"),
        ({"launcher": "mpirun"}, "launcher"),
        ({"slurm": {"gpus_per_node": 0}}, "slurm.gpus_per_node"),
        ({"slurm": {"runtime_minutes": {"max": 0}}}, "slurm.runtime_minutes.max"),
        ({"slurm": {"partition": "gpu"}}, "slurm"),
    ],
)
def test_errors_name_the_key(change, key):
    config = base()
    config.update(change)
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    assert f"config key {key}" in str(info.value)


def test_demo_config_is_valid():
    config = load_config("config/config.yaml")
    assert config["model"]["checkpoint"] == "demo"
