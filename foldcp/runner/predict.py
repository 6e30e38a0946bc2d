"""`foldcp predict`: fold every complex of one plan batch, loading the model once.

Grid 1: one process. Grid P > 1: P processes started by torchrun or srun (rank, world size,
local rank and rendezvous from the environment); every rank runs the context-parallel model
(foldcp.distributed.model.DistBoltz2) on its part of the grid, rank 0 gathers the outputs and
alone writes files. In a grid run a failure on any rank ends that rank with its error logged;
the launcher then stops the others, and the workflow records the batch as failed
(`foldcp record-failure`), so nothing hangs or goes missing.

Each complex is seeded with the configured seed before its forward pass, so its result does
not depend on which batch it is in or what ran before it. A complex that fails (including
CUDA out-of-memory) is recorded with its error in the batch status table and the batch goes
on; complexes with a complete ``done.json`` (every file present with its recorded size and
SHA-256) are skipped, so reruns resume: a batch killed midway (even by SIGKILL) redoes only
the complexes without one, after removing what their interrupted run left. An output that
cannot be written (disk full, unwritable folder) stops the batch with an OutputError naming
the file: it is not the complex's failure, and the complexes after it would hit it too.

On a GPU a worker process writes each complex's files while the next one folds
(`model.write_behind`, write_behind.py): a complex counts as finished — its status row
written, its done.json in place — only once its files are; a killed job leaves it unfinished.

Out of memory. A batch runs on its plan grid first; the workflow's later attempts run it on
the next allowed grids (foldcp.plan.resources). A complex that runs out of memory on a grid
that is not the last (``final=False``) makes the run ask for a retry (`RETRY_EXIT_CODE`, no
status table written); on the final grid it is recorded as ``out_of_memory``. A retry on a
larger grid folds only the complexes that ran out of memory (or were not reached) before;
those that failed otherwise keep their failure. Each failure is also kept beside the complex
(``failure.json``: status, error, grid) so a later attempt or `record-failure` can carry it.

Status table ``{out}/batches/{batch_id}.parquet``: batch_id, complex_id, status
(ok | already_done | failed | out_of_memory), error, runtime_s, device, untrained.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path

import pandas as pd
import torch

from foldcp import __version__
from foldcp.distributed.launch import rank_from_env, world_size_from_env
from foldcp.errors import OutputError
from foldcp.inputs import make_complex, parse_complex, read_fasta
from foldcp.io import write_parquet, write_text
from foldcp.model.checkpoint import load_model, resolve_checkpoint, sha256_of
from foldcp.model.sampling_precision import sampling_precision
from foldcp.plan.memory import MemoryModel, memory_budget_gib
from foldcp.runner.featurize import featurize, seed_everything
from foldcp.runner.outputs import clear_unfinished, confidence_summary, is_done
from foldcp.runner.write_behind import PendingWrite, WriteBehind, write_complex

STATUS_COLUMNS = ["batch_id", "complex_id", "status", "error", "runtime_s", "device", "untrained"]
# `foldcp predict` / `record-failure` exit with this when a complex ran out of memory on a grid
# that is not the last: the workflow's next attempt runs the batch on the next grid.
RETRY_EXIT_CODE = 75
# Test hook, for the workflow tests only: "COMPLEX_ID:GRID[,…]" makes that complex raise CUDA's
# out-of-memory error on any grid smaller than GRID (on CPU-only test machines).
FAKE_OOM_ENV = "FOLDCP_TEST_FAKE_OOM"


def fake_oom_grid(complex_id: str) -> int:
    """The grid below which the test hook fakes an OOM for `complex_id` (0: never)."""
    for item in filter(None, os.environ.get(FAKE_OOM_ENV, "").split(",")):
        name, _, grid = item.rpartition(":")
        if name == complex_id:
            return int(grid)
    return 0


def write_failure(directory: Path, status: str, error: str, grid: int) -> None:
    """failure.json beside the complex: what the last attempt that ran it saw."""
    write_text(directory / "failure.json",
               json.dumps({"status": status, "error": error, "grid": grid}) + "\n")


def read_failure(directory: Path) -> dict | None:
    try:
        return json.loads((directory / "failure.json").read_text())
    except (OSError, ValueError):
        return None


def pick_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def use_expandable_segments() -> None:
    """Let PyTorch's caching allocator grow segments in place (unless the user configured it):
    at capacity the default allocator left 7 GiB reserved but unusable at 6,000 tokens on one
    H100 and ran out of memory; the planner's memory model was measured with this setting
    (bench/RESULTS.md). Takes effect when CUDA is first used, so call it before that."""
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")


def single_gpu_engine(setting: str, tokens: int, device: torch.device, use_kernels: bool,
                      plan_settings: dict) -> str:
    """Which model folds a complex on one device: `boltz` or `foldcp` (1×1 grid).

    `auto`: on CPU, Boltz's own forward (same numbers, no reason to differ). On a GPU, Boltz
    with its cuEquivariance kernels where they are on and its memory fits the GPU (faster
    there at small sizes, bench/RESULTS.md), else foldcp's bounded-memory kernels, which are
    faster than Boltz's plain PyTorch path and fold larger complexes on one GPU.
    """
    if setting != "auto":
        return setting
    if device.type != "cuda":
        return "boltz"
    model = MemoryModel(**plan_settings["memory_model"])
    return "boltz" if use_kernels and model.boltz_gib(tokens) <= memory_budget_gib(plan_settings) else "foldcp"


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error)


def to_device(features: dict, device: torch.device) -> dict:
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in features.items()}


def check_same_features(features: dict, device) -> None:
    """Every rank featurizes the complex itself; stop with a clear error if they disagree
    (different shapes would make the collectives mismatch)."""
    import torch.distributed as dist

    summary = torch.tensor(
        [features["token_pad_mask"].shape[1], features["atom_pad_mask"].shape[1],
         float(features["ref_pos"].double().sum()), float(features["res_type"].double().sum())],
        dtype=torch.float64, device=device)
    low, high = summary.clone(), summary.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if not torch.equal(low, high):
        raise RuntimeError(f"ranks featurized the complex differently: {low.tolist()} vs {high.tolist()}")


class BatchPredictor:
    """Holds the loaded model and folds complexes one at a time (on one device or a grid)."""

    def __init__(self, config: dict, grid_size: int = 1, msa_dir: str | Path | None = None,
                 complexes: list | None = None, proteins: dict | None = None,
                 featurize_pool=None) -> None:
        """complexes, proteins: the batch's complexes in folding order — their featurizing
        worker (featurize_ahead) starts before the model loads, on the first of them.
        featurize_pool: that worker, started earlier (featurize_ahead.early_worker_pool)."""
        self.settings = config["model"]
        self.msa_settings = config["msa"]
        self.msa_store = None
        if self.msa_settings["mode"] != "none":
            from foldcp.msa.assemble import MsaStore

            self.msa_store = MsaStore(msa_dir or Path(config["output_dir"]) / "msa",
                                      read_fasta(config["proteins"]))
        self.grid = None
        self.plan_settings = config["plan"]
        if grid_size > 1:
            from foldcp.distributed.grid import factor_grid
            from foldcp.distributed.launch import init_from_env

            self.grid, self.device = init_from_env(*factor_grid(grid_size))
            if self.grid.size != grid_size:
                raise RuntimeError(
                    f"this batch needs {grid_size} ranks but {self.grid.size} were started"
                )
        else:
            self.device = pick_device(self.settings["device"])
        self.checkpoint = resolve_checkpoint(self.settings["checkpoint"])
        precision = self.settings["precision"]
        if precision == "auto":
            precision = "bf16-mixed" if self.device.type == "cuda" else "32"
        self.precision = precision
        from boltz.data.mol import load_canonicals

        self.canonicals = load_canonicals(self.checkpoint.mol_dir)
        self.ahead = None  # FeaturizeAhead, where featurize_ahead() started one
        if complexes is not None:
            self.featurize_ahead(config, msa_dir, complexes, proteins, featurize_pool)
        elif featurize_pool is not None:
            featurize_pool.shutdown(wait=False, cancel_futures=True)
        # workers that compile foldcp's GPU kernels while the model loads (compile_kernels_ahead)
        self.kernel_compiler = None
        self.kernel_watch = None  # then, in each fold: the kernels it compiled all the same
        if complexes and self.wants_kernels_ahead():
            from foldcp.distributed.triton_precompile import KernelCompiler, worker_count

            self.kernel_compiler = KernelCompiler(worker_count())
        # files written by a worker behind the next fold (write_behind.py), on the writer rank
        setting = self.settings["write_behind"]
        if setting == "auto":
            setting = self.device.type == "cuda" and complexes is not None and len(complexes) > 1
        self.writer = WriteBehind() if setting and self.is_writer else None
        # the manifests' checkpoint digest, made beside the model load (hashlib leaves the GIL
        # to the loading thread; ~1.3 s for a 2 GB checkpoint on a CPU machine)
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as hashing:
            digest = hashing.submit(sha256_of, self.checkpoint.path)
            try:
                self.model, self.untrained = load_model(self.checkpoint, self.settings, self.device)
            except BaseException:
                self.close()  # the worker started above: no process left behind
                raise
            self.checkpoint_sha256 = digest.result()

    def wants_kernels_ahead(self) -> bool:
        """Compile foldcp's Triton kernels ahead of the first fold (triton_precompile.py): on
        one GPU (screening batches; a grid's fold takes minutes beside the ~11 s of compiling),
        where foldcp's model may fold and Triton has the hook, with cores to compile on.
        FOLDCP_PRECOMPILE=0 turns it off."""
        if os.environ.get("FOLDCP_PRECOMPILE", "1") == "0":
            return False
        if self.grid is not None or self.device.type != "cuda":
            return False
        if self.settings.get("single_gpu", "auto") == "boltz":
            return False
        from foldcp.distributed.triton_precompile import hook_available, worker_count

        return worker_count() > 0 and hook_available()

    def compile_kernels_ahead(self, complex_, proteins, tokens: list[int]) -> dict | None:
        """Compile the kernels the batch's folds will launch, in parallel worker processes,
        before the first fold: a throwaway fold of `complex_` cut to a few residues per chain
        records them (its launches deferred to PyTorch paths; triton_precompile.py). `tokens`:
        the batch's complexes' sizes — nothing is done where none folds on foldcp's model.
        Returns the compile counts and seconds, None where nothing was done. Best effort: a
        failure is logged and the kernels compile at their first launch, as without it."""
        compiler, self.kernel_compiler = self.kernel_compiler, None
        if compiler is None:
            return None
        started = time.time()
        try:
            if all(self.engine_for(n) != "foldcp" for n in tokens):
                return None
            try:
                from foldcp.distributed.layout import token_multiple

                small = small_copy(complex_, proteins, token_multiple(self.device))
                featurized = self.featurize_here(small, proteins)
                with compiler.recording():
                    self._run_model(featurized, "", "foldcp", recycling_steps=0, sampling_steps=2)
            except Exception as error:  # noqa: BLE001 - an optimisation only: the folds go on
                print(f"[foldcp] kernels not compiled ahead ({type(error).__name__}: {error}): "
                      f"each compiles at its first launch", file=sys.stderr, flush=True)
            # what was recorded before a failure is compiled all the same
            counts = compiler.wait(timeout_s=KERNELS_AHEAD_TIMEOUT_S)
            self.kernel_watch = compiler
            return counts | {"seconds": round(time.time() - started, 1)}
        finally:
            compiler.close()

    @property
    def is_writer(self) -> bool:
        return self.grid is None or self.grid.rank == 0

    def engine_for(self, tokens: int) -> str:
        """`boltz` (Boltz2.forward) or `foldcp` (the context-parallel model) for a complex."""
        if self.grid is not None:
            return "foldcp"
        return single_gpu_engine(self.settings.get("single_gpu", "auto"), tokens, self.device,
                                 self.settings.get("use_kernels", False), self.plan_settings)

    def _forward(self, features: dict, complex_id: str = "", engine: str = "boltz",
                 recycling_steps: int | None = None, sampling_steps: int | None = None) -> dict:
        """Boltz2 inference on one device, or the context-parallel model on the grid (a 1×1
        grid on one device). recycling_steps, sampling_steps: the settings' unless given."""
        size = self.grid.size if self.grid else 1
        if size < fake_oom_grid(complex_id) and (self.grid is None or self.grid.rank == size - 1):
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory ({FAKE_OOM_ENV} test hook: {complex_id} on {size} GPUs)")
        if sampling_steps is None:
            sampling_steps = self.settings["sampling_steps"]
        kwargs = dict(
            recycling_steps=(self.settings["recycling_steps"] if recycling_steps is None
                             else recycling_steps),
            diffusion_samples=self.settings["diffusion_samples"],
            max_parallel_samples=self.settings["max_parallel_samples"],
        )
        if engine == "boltz":
            return self.model(features, num_sampling_steps=sampling_steps,
                              run_confidence_sequentially=True, **kwargs)
        from foldcp.distributed.comm import gather_pair
        from foldcp.distributed.grid import Grid
        from foldcp.distributed.layout import Layout, token_multiple
        from foldcp.distributed.model import DistBoltz2

        n = features["token_pad_mask"].shape[1]
        grid = self.grid or Grid(1, 1, 0)
        if self.grid is not None:
            check_same_features(features, self.device)
        layout = Layout.for_tokens(grid, n, token_multiple(self.device))
        out = DistBoltz2(self.model).predict(features, layout, sampling_steps=sampling_steps, **kwargs)
        pae = [gather_pair(out["pae_block"][k : k + 1, ..., None], grid, layout.n_padded)
               for k in range(out["pae_block"].shape[0])]
        out["pae"] = torch.cat([p[..., 0][:, :n, :n] for p in pae]) if self.is_writer else None
        return out

    def featurize_here(self, complex_, proteins) -> "Featurized":
        # Seed before featurizing too: parts of Boltz's pipeline draw from global RNGs.
        seed_everything(self.settings["seed"])
        return featurize(complex_, proteins, self.checkpoint.mol_dir, self.canonicals,
                         self.msa_store, self.msa_settings)

    def featurize_ahead(self, config: dict, msa_dir, complexes: list, proteins,
                        pool=None) -> None:
        """Featurize each of `complexes` (in folding order) while the one before it folds, the
        first while the model loads (`model.featurize_ahead`; auto: on a GPU, for more than
        one complex). pool: the worker, started earlier (else started here)."""
        setting = self.settings["featurize_ahead"]
        if setting == "auto":
            setting = self.device.type == "cuda" and len(complexes) > 1
        if not setting:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            return
        from foldcp.runner.featurize_ahead import FeaturizeAhead

        self.ahead = FeaturizeAhead(
            lambda complex_: self.featurize_here(complex_, proteins), self.checkpoint.mol_dir,
            self.msa_settings, msa_dir or Path(config["output_dir"]) / "msa",
            config["proteins"], self.settings["seed"], pool=pool)
        self.ahead.schedule(complexes, first_now=True)

    def close(self) -> None:
        if getattr(self, "kernel_compiler", None) is not None:
            self.kernel_compiler.close()
            self.kernel_compiler = None
        if self.ahead is not None:
            self.ahead.close()
            self.ahead = None
        if getattr(self, "writer", None) is not None:
            self.writer.close()  # after the write in hand: nothing half-done is dropped
            self.writer = None

    def _run_model(self, featurized: "Featurized", complex_id: str, engine: str | None = None,
                   **steps) -> tuple[dict, str]:
        """The model's outputs for one featurized complex, seeded, and the engine that ran it
        (default: `engine_for` its size); steps: _forward's recycling_steps, sampling_steps."""
        seed_everything(self.settings["seed"])
        autocast = torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16-mixed"
        )
        engine = engine or self.engine_for(int(featurized.features["token_pad_mask"].shape[1]))
        if engine == "boltz":
            features = to_device(featurized.features, self.device)
        else:
            from foldcp.distributed.pair_init import split_features

            features = split_features(featurized.features, self.device)
        with torch.inference_mode(), autocast, sampling_precision(
                self.model.structure_module, self.settings["sampling_precision"]):
            out = self._forward(features, complex_id, engine, **steps)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the model's time, not the writer's wait
        return out, engine

    def fold(self, complex_, proteins, directory: Path) -> dict | PendingWrite | None:
        """Featurize, run Boltz-2 and write all files of one complex; return its manifest,
        or — files written behind the next fold — its PendingWrite, not yet started (its
        result() is the manifest once written); None on ranks other than the writer."""
        started = time.time()
        if self.ahead is not None:
            featurized = self.ahead.take(complex_)
        else:
            featurized = self.featurize_here(complex_, proteins)
        featurized_at = time.time()
        watch = self.kernel_watch
        with watch.watching() if watch is not None else contextlib.nullcontext():
            out, engine = self._run_model(featurized, complex_.id)
        folded_at = time.time()
        for late in watch.take_late() if watch is not None else ():
            # each a compile inside this fold (seconds from cold caches) that the kernels
            # compiled ahead did not cover
            print(f"[foldcp] {complex_.id}: GPU kernel compiled in its fold, not ahead: {late}",
                  flush=True)
        if not self.is_writer:
            return None
        # Boltz's own ranking score (predict_step): 0.8 pLDDT + 0.2 ipTM (pTM if no interface).
        iptm_or_ptm = out["iptm"] if not torch.allclose(out["iptm"], torch.zeros_like(out["iptm"])) else out["ptm"]
        out["confidence_score"] = (4 * out["complex_plddt"] + iptm_or_ptm) / 5
        atom_mask = featurized.features["atom_pad_mask"][0].bool()
        chain_names = [c["chain"] for c in featurized.chains]
        untrained = self.untrained
        # everything the files need, on the host: they are written here or by the worker
        samples = [dict(
            structure=featurized.structure,
            coords=out["sample_atom_coords"][sample][atom_mask.to(self.device)].float().cpu().numpy(),
            plddt=out["plddt"][sample].float().cpu().numpy(),
            pae=out["pae"][sample].float().cpu().numpy(),
            confidence=confidence_summary(out, sample, chain_names, untrained),
            untrained=untrained,
        ) for sample in range(self.settings["diffusion_samples"])]
        manifest = {
            "complex_id": complex_.id,
            "spec": complex_.spec,
            "chains": featurized.chains,
            "tokens": int(featurized.features["token_pad_mask"].sum()),
            "msa": {"mode": self.msa_settings["mode"], "chains": featurized.msa,
                    "rows": int(featurized.features["msa"].shape[1])},
            "samples": self.settings["diffusion_samples"],
            "untrained": untrained,
            "checkpoint": {"kind": self.checkpoint.kind, "path": str(self.checkpoint.path),
                           "sha256": self.checkpoint_sha256},
            "settings": {k: self.settings[k] for k in (
                "recycling_steps", "sampling_steps", "diffusion_samples", "seed")},
            "precision": self.precision,
            "sampling_precision": self.settings["sampling_precision"],
            "engine": engine if self.grid is None else f"foldcp {self.grid.rows}x{self.grid.cols}",
            "device": str(self.device),
            "grid": f"{self.grid.rows}x{self.grid.cols}" if self.grid else "1x1",
            "foldcp_version": __version__,
            "boltz_version": metadata.version("boltz"),
            "runtime_s": None,  # fold start to done.json (write_complex)
            # where runtime_s went: features (made here, or waited for from the worker that
            # makes them ahead), the model (a batch's first fold also compiles kernels), files
            # (write_complex adds "write": written here or, behind the next fold, by a worker)
            "timings_s": {"featurize": round(featurized_at - started, 3),
                          "model": round(folded_at - featurized_at, 3)},
            "files": None,
            "file_checks": None,
        }
        job = dict(directory=directory, samples=samples, manifest=manifest, started=started)
        if self.writer is not None:
            return self.writer.write(job)  # started by run_batch: see write_behind.py
        return write_complex(**job)


# The longest the first fold waits for the kernels compiled ahead (ten took ~2 s in parallel)
KERNELS_AHEAD_TIMEOUT_S = 60.0
# Residues per chain of the throwaway fold that records them (a few dozen tokens: the kernels'
# specialisations do not depend on the size below 4,096 tokens, where every offset they are
# given fits 32 bits)
KERNELS_AHEAD_RESIDUES = 8


def small_copy(complex_, proteins, multiple: int = 16) -> "Complex":
    """complex_ with each chain cut to its first KERNELS_AHEAD_RESIDUES residues (same chains,
    copies and proteins: the same MSAs and model paths, at a few dozen tokens), the first
    chain a little shorter where the tokens would be a multiple of `multiple` (the layout's
    token multiple on GPUs): padded tokens, as 15 of 16 sizes have, so the copy takes their
    masked paths."""
    from dataclasses import replace

    from foldcp.inputs import Complex

    def cut(chain, residues):
        start = chain.start or 1
        end = chain.end or len(proteins[chain.protein_id])
        return replace(chain, start=start, end=min(end, start + residues - 1))

    chains = [cut(chain, KERNELS_AHEAD_RESIDUES) for chain in complex_.chains]
    for residues in range(KERNELS_AHEAD_RESIDUES - 1, 0, -1):
        if multiple <= 1 or sum((c.end - c.start + 1) * c.copies for c in chains) % multiple:
            break
        chains[0] = cut(complex_.chains[0], residues)
    return Complex(tuple(chains), complex_.source)


def _plan_batch(plan_path: str | Path, batch_id: str) -> pd.DataFrame:
    plan = pd.read_parquet(plan_path)
    batch = plan[plan["batch_id"] == batch_id]
    if batch.empty:
        raise ValueError(f"batch {batch_id!r} is not in the plan {plan_path}")
    return batch


def _status_table(rows: list[dict], batch_id: str, device: str = "", untrained: bool = False) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=["complex_id", "status", "error", "runtime_s"])
    table["runtime_s"] = table["runtime_s"].fillna(0.0).astype(float)
    table.insert(0, "batch_id", batch_id)
    table["device"], table["untrained"] = device, untrained
    return table[STATUS_COLUMNS]


def wants_retry(table: pd.DataFrame, final: bool) -> bool:
    """A complex ran out of memory and a larger grid is still to be tried."""
    return not final and bool((table["status"] == "out_of_memory").any())


def folding_order(tokens: list[int]) -> list[int]:
    """The order a batch's complexes to fold — `tokens` in plan order, largest first — fold
    in, as positions into `tokens`: the smallest first, then the rest in plan order.

    The first fold waits for its features (the featurizing worker is still starting when the
    model is ready: featurize_ahead.py) and compiles the GPU kernels: both cost least on the
    smallest complex, whose features also come soonest. The others follow largest first, so
    the fold after the small first one is long enough for the worker to featurize the next,
    and the last fold, whose files nothing hides, is a small one."""
    if len(tokens) < 3:
        return list(range(len(tokens)))
    smallest = min(range(len(tokens)), key=lambda i: (tokens[i], i))
    return [smallest] + [i for i in range(len(tokens)) if i != smallest]


def seconds_since_process_start() -> float | None:
    """How long this process has run (Linux: /proc), None where that cannot be read."""
    try:
        started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])  # both since boot
        return uptime - started / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def run_batch(config: dict, plan_path: str | Path, batch_id: str, out_dir: str | Path,
              msa_dir: str | Path | None = None, grid: int | None = None,
              final: bool = True, featurize_pool=None) -> pd.DataFrame:
    """Fold the complexes of `batch_id` on `grid` GPUs (default: the plan's grid); write and
    return the batch status table. MSAs are read from `msa_dir` (default
    ``{output_dir}/msa``) unless msa.mode is none. featurize_pool: the featurizing worker,
    started before the caller's imports (featurize_ahead.early_worker_pool); shut down here.

    On a grid larger than the plan's (a retry after running out of memory) only complexes
    that ran out of memory before, or have no recorded failure, are folded. If a complex runs
    out of memory and `final` is false, the table is returned but not written: the caller
    asks for a retry on the next grid (see `wants_retry`).
    """
    out_dir = Path(out_dir)
    batch = _plan_batch(plan_path, batch_id)
    proteins = read_fasta(config["proteins"])
    plan_grid = int(batch["grid"].max())
    grid_size = int(grid or plan_grid)
    distributed = grid_size > 1 and world_size_from_env() > 1
    retry = grid_size > plan_grid
    predictor = None
    rows = []
    work = []  # (complex, its folder, its row if it is not folded now)
    for row in batch.itertuples():
        complex_ = make_complex(parse_complex(row.chains))
        directory = out_dir / complex_.id
        skipped = None
        if is_done(directory):  # reads and checks every file: once per complex
            skipped = dict(complex_id=complex_.id, status="already_done", error="", runtime_s=0.0)
        elif retry and (earlier := read_failure(directory)) and earlier["status"] != "out_of_memory":
            # failed for another reason on a smaller grid: more GPUs will not help
            skipped = dict(complex_id=complex_.id, status=earlier["status"],
                           error=earlier["error"], runtime_s=0.0)
        work.append((complex_, directory, skipped))
    # the finished and skipped complexes' rows first, then the folds in folding order
    folds = [i for i, (_, _, skipped) in enumerate(work) if skipped is None]
    order = folding_order([int(batch["tokens"].iloc[i]) for i in folds])
    work = [item for item in work if item[2] is not None] + [work[folds[k]] for k in order]
    to_fold = [complex_ for complex_, _, skipped in work if skipped is None]

    def timeline(event: str) -> None:
        """Where a batch's time outside its folds goes (start-up): in the job's log."""
        if not distributed or rank_from_env() == 0:
            age = seconds_since_process_start()
            when = "" if age is None else f" {age:.1f} s after the process started"
            print(f"[foldcp] batch {batch_id}: {event}{when}", flush=True)

    timeline(f"{len(to_fold)} of {len(work)} complexes to fold (imports and the plan read)")
    pending = None  # (complex, folder, start, its PendingWrite): written while the next folds

    def stopped(complex_, error: OutputError) -> OutputError:
        done = sum(r["status"] in ("ok", "already_done") for r in rows)
        return OutputError(
            f"{error}\nbatch {batch_id} stopped at {complex_.id} ({done} of {len(batch)} "
            f"complexes finished and kept with their done.json; this one and the rest run "
            f"when the batch runs again)")

    def failed(complex_, directory, started, error: Exception) -> None:
        """A complex's own failure: recorded beside it and in the table; the batch goes on."""
        status = "out_of_memory" if is_out_of_memory(error) else "failed"
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        message = f"{type(error).__name__}: {error}"[:2000]
        if status == "out_of_memory":
            message = f"on {grid_size} GPU(s): {message}"
        write_text(directory / "error.log", "".join(traceback.format_exception(error)))
        write_failure(directory, status, message, grid_size)
        rows.append(dict(complex_id=complex_.id, status=status, error=message,
                         runtime_s=round(time.time() - started, 3)))
        print(f"[foldcp] {complex_.id}: {status}: {error}", flush=True)

    def settle() -> None:
        """The complex whose files were being written: its row once they are."""
        nonlocal pending
        if pending is None:
            return
        complex_, directory, started, write = pending
        pending = None
        try:
            manifest = write.result()
        except OutputError as error:
            raise stopped(complex_, error) from error
        except Exception as error:  # noqa: BLE001 - as a failure of the fold itself
            failed(complex_, directory, started, error)
        else:
            rows.append(dict(complex_id=complex_.id, status="ok", error="",
                             runtime_s=manifest["runtime_s"]))

    try:
        for complex_, directory, skipped in work:
            if skipped is not None:
                settle()
                rows.append(skipped)
                continue
            started = time.time()
            try:
                if not distributed or rank_from_env() == 0:
                    clear_unfinished(directory)
                if predictor is None:
                    predictor = BatchPredictor(config, grid_size if distributed else 1, msa_dir,
                                               complexes=to_fold, proteins=proteins,
                                               featurize_pool=featurize_pool)
                    featurize_pool = None  # the predictor's now
                    timeline(f"model ready ({time.time() - started:.1f} s to load)")
                    ahead = predictor.compile_kernels_ahead(
                        complex_, proteins, [int(n) for n in batch["tokens"]])
                    if ahead is not None:
                        timeline(f"GPU kernels compiled ahead: {ahead}")
                result = predictor.fold(complex_, proteins, directory)
            except OutputError as error:
                settle()
                raise stopped(complex_, error) from error
            except Exception as error:  # noqa: BLE001 - one complex must not sink the batch
                if predictor is None or predictor.grid is not None:
                    # The model could not be loaded (nothing in this batch can run), or a grid
                    # rank failed: the other ranks may be waiting in a collective for this one.
                    # Log where record-failure will find it and end this process; the launcher
                    # stops the rest and the workflow records the failure.
                    rank = rank_from_env() if predictor is None else predictor.grid.rank
                    try:
                        write_text(directory / f"error.rank{rank}.log", traceback.format_exc())
                    except OutputError as lost:  # the error itself is what must reach the log
                        print(f"[foldcp] rank {rank}: {lost}", file=sys.stderr, flush=True)
                    settle()
                    raise
                settle()
                failed(complex_, directory, started, error)
            else:
                # (outside the try: a failed write of the complex before stops the batch at
                # that complex, not at this one)
                settle()  # the one before: written while this one folded
                if isinstance(result, PendingWrite):
                    result.start()  # after the write before it succeeded
                    pending = (complex_, directory, started, result)
                else:
                    rows.append(dict(complex_id=complex_.id, status="ok", error="",
                                     runtime_s=round(time.time() - started, 3)))
        settle()
        timeline(f"all {len(to_fold)} complexes run")
    finally:
        if predictor is not None:
            predictor.close()  # the featurizing and writing workers, where they run
        if featurize_pool is not None:  # nothing was folded
            featurize_pool.shutdown(wait=False, cancel_futures=True)
    if predictor is not None and not predictor.is_writer:
        return pd.DataFrame(columns=STATUS_COLUMNS)
    table = _status_table(rows, batch_id, str(predictor.device) if predictor else "",
                          bool(predictor.untrained) if predictor else False)
    if not wants_retry(table, final):
        write_parquet(out_dir / "batches" / f"{batch_id}.parquet", table)
    return table


def _is_oom_text(text: str) -> bool:
    return "OutOfMemoryError" in text or "out of memory" in text


def record_failure(plan_path: str | Path, batch_id: str, out_dir: str | Path, error: str,
                   since: float | None = None, grid: int | None = None,
                   final: bool = True) -> pd.DataFrame:
    """Status table of a batch whose run failed (a rank, the launcher, or the process died):
    finished complexes keep their result, the others are recorded with what failed.

    What this attempt saw (files newer than `since`, default: any): per-rank error logs
    (``out_of_memory`` if any rank ran out of memory, else ``failed``, with the ranks' last
    error lines) or a ``failure.json``. A complex with neither was not reached; an earlier
    non-memory failure is carried over. If a complex ran out of memory and `final` is false,
    the table is not written (the caller asks for a retry on the next grid).
    """
    out_dir = Path(out_dir)
    batch = _plan_batch(plan_path, batch_id)
    plan_grid = int(batch["grid"].max())
    grid = int(grid or plan_grid)
    since = float(since or 0)

    def recent(path: Path) -> bool:
        return path.stat().st_mtime >= since

    rows = []
    for row in batch.itertuples():
        complex_ = make_complex(parse_complex(row.chains))
        directory = out_dir / complex_.id
        if is_done(directory):
            rows.append(dict(complex_id=complex_.id, status="already_done", error=""))
            continue
        logs = [log for log in sorted(directory.glob("error.rank*.log")) if recent(log)] \
            if directory.exists() else []
        texts = [log.read_text() for log in logs]
        earlier = read_failure(directory)
        failure_file = directory / "failure.json"
        if texts:
            status = "out_of_memory" if any(_is_oom_text(t) for t in texts) else "failed"
            detail = "; ".join(t.strip().splitlines()[-1] for t in texts if t.strip())
            message = (f"{error}: {detail}" if detail else error)[:2000]
            write_failure(directory, status, message, grid)
        elif earlier and recent(failure_file):
            status, message = earlier["status"], earlier["error"]
        elif earlier and grid > plan_grid and earlier["status"] != "out_of_memory":
            # a retry skips what failed on a smaller grid for another reason
            status, message = earlier["status"], earlier["error"]
        else:
            status, message = None, ""  # not reached: the run stopped at an earlier complex
        rows.append(dict(complex_id=complex_.id, status=status, error=message))
    # Not reached: tried on the next grid if this attempt is retried for a complex that ran
    # out of memory (its failure.json says so), else failed.
    retry = not final and any(r["status"] == "out_of_memory" for r in rows)
    for r in rows:
        if r["status"] is None:
            if retry:
                r["status"] = "out_of_memory"
                r["error"] = f"not run on {grid} GPU(s): the run stopped before this complex"
                directory = out_dir / r["complex_id"]
                if not read_failure(directory):
                    write_failure(directory, r["status"], r["error"], grid)
            else:
                r["status"] = "failed"
                r["error"] = f"{error}: not run (the run stopped before this complex)"[:2000]
    table = _status_table(rows, batch_id)
    if not wants_retry(table, final):
        write_parquet(out_dir / "batches" / f"{batch_id}.parquet", table)
    return table
