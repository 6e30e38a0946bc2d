"""Featurize the next complex of a batch while the current one folds.

Boltz's featurizer is CPU work of seconds per complex (6-8 s at 1,200 tokens on a 2-core
machine: atom features and collation, bench/RESULTS.md). Folding one complex after another,
the GPU waits for it between folds; `boltz predict` hides it in DataLoader workers. Here one
worker process (spawned: no CUDA state, no GIL shared with the process launching GPU kernels)
featurizes complex k+1 while complex k folds:

    ahead = FeaturizeAhead(featurize_here, mol_dir, msa_settings, msa_dir, fasta, seed)
    ahead.schedule([c1, c2, c3], first_now=True)         # the order they will be folded
    ...                   # load the model: the worker starts and featurizes c1, then c2, meanwhile
    featurized = ahead.take(c1)  # c1 from the worker if it is ready, else made here
    featurized = ahead.take(c2)  # c2 from the worker (waits if not ready), c3 submitted
    ahead.close()

Without first_now, c1 is made in this process (the worker is starting).

Results equal in-process featurization: the worker seeds the global RNGs with the run's seed
right before each complex, as the in-process path does (parts of Boltz's pipeline draw from
them), and featurizes with the same code and residue library. A complex whose featurization
fails raises its error from `take`, as in-process featurization would; if the worker process
dies, the rest are featurized in this process (nothing is lost, it is only slower).
"""

from __future__ import annotations

import concurrent.futures
import logging
from pathlib import Path

log = logging.getLogger(__name__)

_WORKER: dict = {}  # the worker process's residue library, MSA store and settings


def _start_worker(mol_dir: str | None, msa_settings: dict, msa_dir: str | None,
                  proteins_path: str, seed: int, checkpoint: str | None = None) -> None:
    """mol_dir: the residue library; None: that of model.checkpoint = `checkpoint`."""
    import os

    import torch
    from boltz.data.mol import load_canonicals

    from foldcp.inputs import read_fasta
    from foldcp.runner.write_behind import bound_to_parent

    bound_to_parent()  # not left running by a killed job
    if mol_dir is None:
        from foldcp.model.checkpoint import mol_dir_of

        mol_dir = str(mol_dir_of(checkpoint))

    # leave a core to the process that launches the GPU's kernels (a Slurm job may have 2)
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) - 1))
    proteins = read_fasta(proteins_path)
    store = None
    if msa_settings["mode"] != "none":
        from foldcp.msa.assemble import MsaStore

        store = MsaStore(msa_dir, proteins)
    _WORKER.update(mol_dir=Path(mol_dir), canonicals=load_canonicals(Path(mol_dir)),
                   msa_settings=msa_settings, store=store, proteins=proteins, seed=seed)


def _featurize_in_worker(complex_):
    # (not foldcp.runner.predict: the model's imports — Lightning, boltz.main — would add
    # seconds to the worker's start, which the batch's second fold can wait for)
    from foldcp.runner.featurize import featurize, seed_everything

    seed_everything(_WORKER["seed"])
    return featurize(complex_, _WORKER["proteins"], _WORKER["mol_dir"], _WORKER["canonicals"],
                     _WORKER["store"], _WORKER["msa_settings"])


def worker_pool(msa_settings: dict, msa_dir: str | Path | None, proteins_path: str | Path,
                seed: int, mol_dir: Path | None = None, checkpoint: str | None = None):
    """The featurizing worker (a one-process pool), started now: its imports take seconds.
    mol_dir: the residue library, or None for that of model.checkpoint = `checkpoint`."""
    from foldcp.runner.write_behind import started_pool

    return started_pool(1, _start_worker, (
        None if mol_dir is None else str(mol_dir), msa_settings,
        None if msa_dir is None else str(msa_dir), str(proteins_path), seed, checkpoint))


def early_worker_pool(config: dict, msa_dir: str | Path | None = None):
    """The featurizing worker of a `foldcp predict` run, started before the run's own imports
    (~12-17 s on a GPU host) where the run will featurize ahead on a GPU (`model.featurize_ahead`
    true, or auto and model.device not cpu on a machine with an NVIDIA driver); else None.
    A batch that then does not featurize ahead (one complex to fold) shuts it down."""
    import os

    model = config["model"]
    setting = model["featurize_ahead"]
    if setting is False or (setting == "auto" and (
            model["device"] == "cpu" or not os.path.exists("/dev/nvidiactl"))):
        return None
    return worker_pool(config["msa"], msa_dir or Path(config["output_dir"]) / "msa",
                       config["proteins"], model["seed"], checkpoint=model["checkpoint"])


class FeaturizeAhead:
    def __init__(self, featurize_here, mol_dir: Path, msa_settings: dict,
                 msa_dir: str | Path | None, proteins_path: str | Path, seed: int,
                 pool=None) -> None:
        """featurize_here(complex_): the in-process featurization (seeded as the worker's).
        pool: a worker_pool started earlier with these settings (else one is started here)."""
        self.featurize_here = featurize_here
        self.pending: dict[str, concurrent.futures.Future] = {}
        self.following: dict = {}  # complex id -> the complex folded after it
        self.raced = None  # the first complex's id while the worker may still be starting
        self.pool = pool or worker_pool(msa_settings, msa_dir, proteins_path, seed, mol_dir)

    def schedule(self, complexes: list, first_now: bool = False) -> None:
        """The complexes to be folded, in folding order. first_now: the worker starts on the
        first at once — while the caller loads its model — and take() uses that result if it
        is ready by then (else it featurizes here, as without first_now: never later); the
        second is queued behind it, so the worker goes on to it without waiting for take()."""
        self.following = {a.id: b for a, b in zip(complexes, complexes[1:])}
        self.raced = None
        if first_now and complexes:
            for complex_ in complexes[:2]:
                self._submit(complex_)
            self.raced = complexes[0].id

    def _submit(self, complex_) -> None:
        if complex_.id in self.pending or self.pool is None:
            return
        try:
            self.pending[complex_.id] = self.pool.submit(_featurize_in_worker, complex_)
        except RuntimeError as error:  # the pool is broken or shut down
            self._lost(error)

    def take(self, complex_):
        """The Featurized of `complex_`; submits the next scheduled complex to the worker."""
        following = self.following.get(complex_.id)
        future = self.pending.pop(complex_.id, None)
        if following is not None:
            self._submit(following)
        if future is not None and complex_.id == self.raced and not future.done():
            future = None  # the worker is still starting: sooner here (its result is dropped)
        self.raced = None
        if future is None:
            return self.featurize_here(complex_)
        try:
            return future.result()
        except concurrent.futures.process.BrokenProcessPool as error:
            self._lost(error)
            return self.featurize_here(complex_)

    def _lost(self, error: BaseException) -> None:
        log.warning("the featurizing worker stopped (%s); featurizing in this process", error)
        self.pending.clear()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
