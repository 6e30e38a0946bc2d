"""Grid per attempt and Slurm resources of predict jobs (foldcp/plan/resources.py)."""

from foldcp.plan import resources

GRIDS = [1, 2, 4, 8, 16]
SLURM = {"gpus_per_node": 4, "cpus_per_gpu": 8, "mem_mb_per_gpu": 64000,
         "runtime_minutes": {"base": 30, "per_1000_tokens_squared": 20, "max": 2880}}


def test_attempts_climb_the_allowed_grids_then_stay_on_the_last():
    assert [resources.attempt_grid(1, GRIDS, a) for a in range(1, 7)] == [1, 2, 4, 8, 16, 16]
    assert [resources.attempt_grid(4, GRIDS, a) for a in range(1, 5)] == [4, 8, 16, 16]
    assert [resources.attempt_grid(2, [1, 2, 6], a) for a in (1, 2, 3)] == [2, 6, 6]
    assert resources.retries(GRIDS) == 4  # enough to go from 1 GPU to 16


def test_only_the_last_grid_is_final():
    assert [resources.is_final(g, GRIDS) for g in GRIDS] == [False] * 4 + [True]
    # without OOM retries every run records its out-of-memory complexes
    assert resources.is_final(1, GRIDS, retry_out_of_memory=False)
    assert resources.attempt_grid(1, GRIDS, 3, retry_out_of_memory=False) == 1
    assert resources.retries(GRIDS, retry_out_of_memory=False) == 0


def test_slurm_resources_of_a_grid():
    one = resources.slurm_resources(1, [1000, 500], SLURM)
    assert one == {"gpu": 1, "tasks": 1, "tasks_per_gpu": 1, "nodes": 1, "cpus_per_gpu": 8,
                   "mem_mb": 64000, "runtime": 30 + 25}  # 20 x (1 + 0.25)
    four = resources.slurm_resources(4, [4000], SLURM)
    assert (four["gpu"], four["tasks"], four["nodes"], four["mem_mb"]) == (4, 4, 1, 4 * 64000)
    assert four["runtime"] == 30 + 80  # 20 x 16 / 4
    # over two nodes: --mem is per node
    eight = resources.slurm_resources(8, [6000], SLURM)
    assert (eight["nodes"], eight["tasks"], eight["mem_mb"]) == (2, 8, 4 * 64000)
    six = resources.slurm_resources(6, [100], SLURM)
    assert six["nodes"] == 2


def test_runtime_rounds_up_is_capped_and_keeps_the_plan_grid_on_retries():
    assert resources.runtime_minutes([1], 1, SLURM["runtime_minutes"]) == 31
    assert resources.runtime_minutes([100_000], 1, SLURM["runtime_minutes"]) == 2880
    retry = resources.slurm_resources(2, [2000], SLURM, plan_grid=1)
    assert retry["gpu"] == 2 and retry["runtime"] == 30 + 80
