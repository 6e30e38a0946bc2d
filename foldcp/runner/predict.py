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

Status table ``{out}/batches/{batch_id}.parquet``: batch_id, complex_id, status
(ok | already_done | failed | out_of_memory), error, runtime_s, device, untrained.
"""

from __future__ import annotations

import random
import time
import traceback
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from foldcp import __version__
from foldcp.distributed.launch import rank_from_env, world_size_from_env
from foldcp.errors import OutputError
from foldcp.inputs import make_complex, parse_complex, read_fasta
from foldcp.io import write_parquet, write_text
from foldcp.model.checkpoint import load_model, resolve_checkpoint, sha256_of
from foldcp.runner.featurize import featurize
from foldcp.runner.outputs import (
    clear_unfinished,
    confidence_summary,
    is_done,
    write_done,
    write_sample,
)

STATUS_COLUMNS = ["batch_id", "complex_id", "status", "error", "runtime_s", "device", "untrained"]


def pick_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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

    def __init__(self, config: dict, grid_size: int = 1) -> None:
        self.settings = config["model"]
        self.grid = None
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
        self.model, self.untrained = load_model(self.checkpoint, self.settings, self.device)
        from boltz.data.mol import load_canonicals

        self.canonicals = load_canonicals(self.checkpoint.mol_dir)
        self.checkpoint_sha256 = sha256_of(self.checkpoint.path)

    @property
    def is_writer(self) -> bool:
        return self.grid is None or self.grid.rank == 0

    def _forward(self, features: dict) -> dict:
        """Boltz2 inference on one device, or the context-parallel model on the grid."""
        kwargs = dict(
            recycling_steps=self.settings["recycling_steps"],
            diffusion_samples=self.settings["diffusion_samples"],
            max_parallel_samples=self.settings["max_parallel_samples"],
        )
        if self.grid is None:
            return self.model(features, num_sampling_steps=self.settings["sampling_steps"],
                              run_confidence_sequentially=True, **kwargs)
        from foldcp.distributed.comm import gather_pair
        from foldcp.distributed.layout import Layout
        from foldcp.distributed.model import DistBoltz2

        n = features["token_pad_mask"].shape[1]
        check_same_features(features, self.device)
        layout = Layout.for_tokens(self.grid, n)
        out = DistBoltz2(self.model).predict(
            features, layout, sampling_steps=self.settings["sampling_steps"], **kwargs)
        pae = [gather_pair(out["pae_block"][k : k + 1, ..., None], self.grid, layout.n_padded)
               for k in range(out["pae_block"].shape[0])]
        out["pae"] = torch.cat([p[..., 0][:, :n, :n] for p in pae]) if self.is_writer else None
        return out

    def fold(self, complex_, proteins, directory: Path) -> dict | None:
        """Featurize, run Boltz-2 and write all files of one complex; return its manifest
        (None on ranks other than the writer)."""
        started = time.time()
        # Seed before featurizing too: parts of Boltz's pipeline draw from global RNGs.
        seed_everything(self.settings["seed"])
        featurized = featurize(complex_, proteins, self.checkpoint.mol_dir, self.canonicals)
        seed_everything(self.settings["seed"])
        autocast = torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16-mixed"
        )
        if self.grid is None:
            features = to_device(featurized.features, self.device)
        else:
            from foldcp.distributed.pair_init import split_features

            features = split_features(featurized.features, self.device)
        with torch.inference_mode(), autocast:
            out = self._forward(features)
        if not self.is_writer:
            return None
        # Boltz's own ranking score (predict_step): 0.8 pLDDT + 0.2 ipTM (pTM if no interface).
        iptm_or_ptm = out["iptm"] if not torch.allclose(out["iptm"], torch.zeros_like(out["iptm"])) else out["ptm"]
        out["confidence_score"] = (4 * out["complex_plddt"] + iptm_or_ptm) / 5
        atom_mask = featurized.features["atom_pad_mask"][0].bool()
        chain_names = [c["chain"] for c in featurized.chains]
        untrained = self.untrained
        files = {}
        for sample in range(self.settings["diffusion_samples"]):
            coords = out["sample_atom_coords"][sample][atom_mask.to(self.device)].float().cpu().numpy()
            files |= write_sample(
                directory, sample, featurized.structure, coords,
                out["plddt"][sample].float().cpu().numpy(),
                out["pae"][sample].float().cpu().numpy(),
                confidence_summary(out, sample, chain_names, untrained), untrained,
            )
        manifest = {
            "complex_id": complex_.id,
            "spec": complex_.spec,
            "chains": featurized.chains,
            "tokens": int(featurized.features["token_pad_mask"].sum()),
            "samples": self.settings["diffusion_samples"],
            "untrained": untrained,
            "checkpoint": {"kind": self.checkpoint.kind, "path": str(self.checkpoint.path),
                           "sha256": self.checkpoint_sha256},
            "settings": {k: self.settings[k] for k in (
                "recycling_steps", "sampling_steps", "diffusion_samples", "seed")},
            "precision": self.precision,
            "device": str(self.device),
            "grid": f"{self.grid.rows}x{self.grid.cols}" if self.grid else "1x1",
            "foldcp_version": __version__,
            "boltz_version": metadata.version("boltz"),
            "runtime_s": round(time.time() - started, 3),
            "files": list(files),
            "file_checks": files,
        }
        write_done(directory, manifest)
        return manifest


def run_batch(config: dict, plan_path: str | Path, batch_id: str, out_dir: str | Path) -> pd.DataFrame:
    """Fold the complexes of `batch_id`; write and return the batch status table."""
    out_dir = Path(out_dir)
    plan = pd.read_parquet(plan_path)
    batch = plan[plan["batch_id"] == batch_id]
    if batch.empty:
        raise ValueError(f"batch {batch_id!r} is not in the plan {plan_path}")
    proteins = read_fasta(config["proteins"])
    grid_size = int(batch["grid"].max())
    distributed = grid_size > 1 and world_size_from_env() > 1
    predictor = None
    rows = []
    for row in batch.itertuples():
        complex_ = make_complex(parse_complex(row.chains))
        directory = out_dir / complex_.id
        if is_done(directory):
            rows.append(dict(complex_id=complex_.id, status="already_done", error="", runtime_s=0.0))
            continue
        started = time.time()
        try:
            if not distributed or rank_from_env() == 0:
                clear_unfinished(directory)
            if predictor is None:
                predictor = BatchPredictor(config, grid_size if distributed else 1)
            predictor.fold(complex_, proteins, directory)
            rows.append(dict(complex_id=complex_.id, status="ok", error="",
                             runtime_s=round(time.time() - started, 3)))
        except OutputError as error:
            done = sum(r["status"] in ("ok", "already_done") for r in rows)
            raise OutputError(
                f"{error}\nbatch {batch_id} stopped at {complex_.id} ({done} of {len(batch)} "
                f"complexes finished and kept with their done.json; this one and the rest run "
                f"when the batch runs again)") from error
        except Exception as error:  # noqa: BLE001 - one complex must not sink the batch
            if predictor is None:
                if distributed:  # leave the reason where record-failure will find it
                    write_text(directory / f"error.rank{rank_from_env()}.log", traceback.format_exc())
                raise  # the model could not be loaded: nothing in this batch can run
            if predictor.grid is not None:
                # The other ranks may be waiting in a collective for this one: log and end this
                # process; the launcher stops the rest and the workflow records the failure.
                rank = predictor.grid.rank
                write_text(directory / f"error.rank{rank}.log", traceback.format_exc())
                raise
            status = "out_of_memory" if is_out_of_memory(error) else "failed"
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            write_text(directory / "error.log", traceback.format_exc())
            rows.append(dict(complex_id=complex_.id, status=status,
                             error=f"{type(error).__name__}: {error}"[:2000],
                             runtime_s=round(time.time() - started, 3)))
            print(f"[foldcp] {complex_.id}: {status}: {error}", flush=True)
    if predictor is not None and not predictor.is_writer:
        return pd.DataFrame(columns=STATUS_COLUMNS)
    table = pd.DataFrame(rows)
    table.insert(0, "batch_id", batch_id)
    table["device"] = str(predictor.device) if predictor else ""
    table["untrained"] = bool(predictor.untrained) if predictor else False
    table = table[STATUS_COLUMNS]
    write_parquet(out_dir / "batches" / f"{batch_id}.parquet", table)
    return table


def record_failure(plan_path: str | Path, batch_id: str, out_dir: str | Path, error: str) -> pd.DataFrame:
    """Status table of a batch whose launcher failed: finished complexes keep their result,
    the others are recorded as failed with `error` (and any per-rank error logs)."""
    out_dir = Path(out_dir)
    plan = pd.read_parquet(plan_path)
    rows = []
    for row in plan[plan["batch_id"] == batch_id].itertuples():
        complex_ = make_complex(parse_complex(row.chains))
        directory = out_dir / complex_.id
        if is_done(directory):
            rows.append(dict(complex_id=complex_.id, status="already_done", error=""))
            continue
        logs = sorted(directory.glob("error.rank*.log")) if directory.exists() else []
        detail = "; ".join(log.read_text().strip().splitlines()[-1] for log in logs if log.read_text().strip())
        rows.append(dict(complex_id=complex_.id, status="failed",
                         error=(f"{error}: {detail}" if detail else error)[:2000]))
    table = pd.DataFrame(rows)
    table.insert(0, "batch_id", batch_id)
    table["runtime_s"], table["device"], table["untrained"] = 0.0, "", False
    table = table[STATUS_COLUMNS]
    write_parquet(out_dir / "batches" / f"{batch_id}.parquet", table)
    return table
