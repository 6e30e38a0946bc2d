"""Write a complex's files in a worker process while the next complex folds.

Writing one complex's files — an mmCIF per sample (Boltz's pure-Python writer), compressed
PAE and pLDDT arrays, the confidence JSON, each fsynced and renamed, then done.json — took
0.15-1.25 s per complex on an H200 host, 10.9 s of a 220-s batch of 16 screening complexes,
with the GPU idle (bench/RESULTS.md, fourteenth session). Here one worker process (spawned:
no CUDA state, no GIL shared with the process launching GPU kernels) writes complex k while
complex k+1 folds:

    writer = WriteBehind()                  # the worker starts (and imports) in the background
    pending = writer.write(job)             # job: write_complex's arguments, all on the host
    pending.start()                         # once the write before it has succeeded
    ...                                     # the next complex folds
    manifest = pending.result()             # its done.json's manifest, once written
    writer.close()                          # waits for a write in progress: nothing is lost

The files are the ones write_complex writes in this process (the same function runs in the
worker), and done.json is still written last, so a process killed mid-write leaves an
unfinished complex that the next run folds again. A write that fails raises its error from
result(), as writing in this process would; if the worker process dies, the write is done
here instead and so are the rest (nothing is lost, it is only slower).
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import time
from pathlib import Path

from foldcp.runner.outputs import write_done, write_sample

log = logging.getLogger(__name__)


def write_complex(directory: Path, samples: list[dict], manifest: dict, started: float) -> dict:
    """Write each sample's files (`samples[k]`: write_sample's arguments for sample k), then
    done.json with `manifest` completed by the file checks and the write's timing; `started`:
    when the complex's fold began (time.time()). Returns the manifest."""
    writing = time.time()
    files = {}
    for sample, arguments in enumerate(samples):
        files |= write_sample(directory, sample, **arguments)
    manifest = dict(manifest)
    manifest["runtime_s"] = round(time.time() - started, 3)
    manifest["timings_s"] = dict(manifest.get("timings_s", {}), write=round(time.time() - writing, 3))
    manifest["files"] = list(files)
    manifest["file_checks"] = files
    write_done(directory, manifest)
    return manifest


def bound_to_parent(ignore_interrupt: bool = False) -> None:
    """In a worker process: end when the process that started it ends (Linux: the kernel
    sends SIGTERM on the parent's death; a job killed by SIGKILL would otherwise leave its
    workers running, re-parented), and with ignore_interrupt leave Ctrl-C (SIGINT, sent to
    the whole process group) to the parent, which stops the worker after its task in hand."""
    import signal
    import sys

    if ignore_interrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # no glibc: the worker may outlive a killed job
            pass


def _ready() -> None:
    pass


def started_pool(workers: int, initializer, initargs: tuple = ()):
    """A pool of `workers` spawned worker processes (no CUDA state, no GIL shared with this
    process), every one started now: a pool starts its processes as tasks arrive, and their
    imports take seconds that should overlap what the caller does next."""
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
        initializer=initializer, initargs=initargs)
    for _ in range(workers):
        pool.submit(_ready)
    return pool


def _start_worker() -> None:
    bound_to_parent(ignore_interrupt=True)  # a write in hand is finished, never cut short
    # the first write should not wait for these imports (torch's alone takes seconds)
    import boltz.data.write.mmcif  # noqa: F401


class PendingWrite:
    """One complex's write: started in the worker by start(), or (pool lost) done here."""

    def __init__(self, job: dict, owner: "WriteBehind") -> None:
        self.job, self.owner = job, owner
        self.future: concurrent.futures.Future | None = None
        self.started = False

    def start(self) -> None:
        """Hand the write to the worker (once)."""
        if self.started:
            return
        self.started = True
        if self.owner.pool is not None:
            try:
                self.future = self.owner.pool.submit(write_complex, **self.job)
            except RuntimeError as error:  # the pool is broken or shut down
                self.owner.lost(error)

    def result(self) -> dict:
        """The manifest once the files and done.json are written (started here if it was not
        yet); the write's error if it failed."""
        self.start()
        if self.future is not None:
            try:
                return self.future.result()
            except concurrent.futures.process.BrokenProcessPool as error:
                self.owner.lost(error)
        return write_complex(**self.job)


class WriteBehind:
    def __init__(self) -> None:
        self.pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker)

    def write(self, job: dict) -> PendingWrite:
        """`job` (write_complex's arguments), to be started by the caller — after it has seen
        the write before it succeed, so that a batch stopped by a failed write writes nothing
        after it."""
        return PendingWrite(job, self)

    def lost(self, error: BaseException) -> None:
        if self.pool is not None:
            log.warning("the writing worker stopped (%s); writing in this process", error)
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = None

    def close(self) -> None:
        """Stop the worker after the write it has in hand (it is never cut short)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None
