"""foldcp's Triton kernels compiled ahead of a batch's first fold, in parallel worker processes.

Why: from cold Triton caches a process compiles each kernel specialisation the first time it
launches it, one after another inside its first fold. On an H200 a 349-token fold took 15.8 s
of model time against 4.6 s with warm caches: ten specialisations, ~1-3.5 s each
(bench/RESULTS.md, sixteenth session).

How:

    compiler = KernelCompiler(workers)      # spawned processes import Triton and the kernels
    ...                                     # (while the model loads)
    with compiler.recording():              # Triton's jit_cache_hook, this process only
        a small throwaway fold              # each launch of a kernel this process has not
                                            # compiled is recorded and sent to a worker; the
                                            # launch raises KernelDeferred and its caller runs
                                            # its PyTorch path for that call
    compiler.wait(timeout_s)                # the workers compiled them (JITFunction.preload)
    compiler.close()                        # into Triton's on-disk cache
    with compiler.watching():               # each real fold: a specialisation the throwaway
        a fold                              # fold missed compiles here as ever, and is named
    compiler.take_late()                    # in the job's log

The next launch of each kernel finds it compiled in the cache and only loads it. A record is
Triton's own serialised specialisation (the `specialization_data` its jit_cache_hook is given,
the format JITFunction.preload reads: argument types, alignments, constants and compile
options), so a worker compiles exactly what the launch would have: the same cache key.

Best effort throughout: a worker that fails or is late costs only the compile the launch then
does itself; a Triton without the hook records nothing. The folds' results do not depend on
it: the throwaway fold is discarded, every real fold runs the compiled kernels.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib
import logging
import os
import time

log = logging.getLogger(__name__)

# The modules holding foldcp's Triton kernels (made with triton_attention.lazy_kernel): what a
# worker imports before its first task, so that compiling starts without waiting for it.
KERNEL_MODULES = (
    "foldcp.distributed.triton_attention",
    "foldcp.distributed.triton_gated_output",
    "foldcp.distributed.triton_gated_projection",
    "foldcp.distributed.triton_layer_norm",
    "foldcp.distributed.triton_product_output",
    "foldcp.distributed.triton_transition",
)


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(cpus: int | None = None, most: int = 8) -> int:
    """Workers to compile with: one core left to the process that folds and one to its
    featurizing worker; 0 where fewer than two would be left (compiling in parallel could not
    win back the throwaway fold)."""
    workers = min(most, (available_cpus() if cpus is None else cpus) - 2)
    return workers if workers >= 2 else 0


def hook_available() -> bool:
    """The installed Triton calls knobs.runtime.jit_cache_hook with a specialisation record."""
    try:
        from triton import knobs
        from triton.runtime.jit import JITFunction
    except ImportError:
        return False
    return hasattr(knobs, "runtime") and hasattr(JITFunction, "preload")


def _start_worker() -> None:
    from foldcp.runner.write_behind import bound_to_parent

    bound_to_parent(ignore_interrupt=True)
    for name in KERNEL_MODULES:
        importlib.import_module(name)


def compile_recorded(module_name: str, kernel_name: str, specialization_data: str) -> float:
    """In a worker: compile one recorded specialisation into Triton's cache; its seconds."""
    started = time.perf_counter()
    module = importlib.import_module(module_name)
    for value in vars(module).values():
        if getattr(value, "lazy_triton_kernel", False):
            kernel = value()
            if kernel.fn.__qualname__ == kernel_name:
                kernel.preload(specialization_data)
                return time.perf_counter() - started
    raise LookupError(f"no Triton kernel {kernel_name} in {module_name}")


class KernelCompiler:
    """Worker processes that compile the kernel specialisations recorded in this process."""

    def __init__(self, workers: int) -> None:
        self.records: dict[str, tuple[str, str]] = {}  # specialisation -> (module, kernel)
        self.late: list[str] = []  # specialisations compiled in a real fold (watching())
        self.futures: dict[str, concurrent.futures.Future] = {}
        from foldcp.runner.write_behind import started_pool

        self.pool = started_pool(workers, _start_worker)  # importing while the model loads

    def _hook(self, *, fn, compile, **_) -> bool:
        """knobs.runtime.jit_cache_hook: called before this process would compile a kernel."""
        data = compile.get("specialization_data")
        module_name, kernel_name = str(fn.module), fn.name
        if data is None or not module_name.startswith("foldcp."):
            return False  # not one of ours (or no record to replay): compile it here, as ever
        if data not in self.records:
            self.records[data] = (module_name, kernel_name)
            try:
                self.futures[data] = self.pool.submit(compile_recorded, module_name, kernel_name, data)
            except RuntimeError as error:  # the pool broke: the launches will compile
                log.debug("kernel compile worker unavailable: %s", error)
        from foldcp.distributed.triton_attention import KernelDeferred

        raise KernelDeferred(f"{kernel_name} deferred: compiled by a worker meanwhile")

    @contextlib.contextmanager
    def recording(self):
        """Inside: launches of kernels this process has not compiled are recorded, sent to
        the workers and deferred (their callers run their PyTorch paths)."""
        with self._hook_set(self._hook):
            yield self

    @staticmethod
    @contextlib.contextmanager
    def _hook_set(hook):
        """Triton's jit_cache_hook is `hook` inside (nothing where this Triton has none)."""
        if not hook_available():
            yield
            return
        from triton import knobs

        saved = knobs.runtime.jit_cache_hook
        knobs.runtime.jit_cache_hook = hook
        try:
            yield
        finally:
            knobs.runtime.jit_cache_hook = saved

    def _watch_hook(self, *, fn, compile, repr=None, key=None, **_) -> bool:
        """knobs.runtime.jit_cache_hook while watching(): notes a foldcp specialisation the
        throwaway fold did not record; never defers (a real fold's results must not depend
        on which of its launches found a compiled kernel)."""
        data = compile.get("specialization_data")
        if str(fn.module).startswith("foldcp.") and data not in self.records:
            self.records[data] = (str(fn.module), fn.name)  # named once, as it is compiled once
            self.late.append(f"{repr or fn.name} (cache key {key})")
        return False

    @contextlib.contextmanager
    def watching(self):
        """Inside (a real fold, after the kernels compiled ahead): foldcp kernel
        specialisations the throwaway fold missed are noted in `late` — each one is a
        compile in that fold, and a lead for what the throwaway copy leaves out."""
        with self._hook_set(self._watch_hook):
            yield self

    def take_late(self) -> list[str]:
        """The specialisations noted since the last call."""
        late, self.late = self.late, []
        return late

    def wait(self, timeout_s: float) -> dict:
        """Wait for the recorded compiles, at most timeout_s in all. Returns how many there
        were, compiled, failed (logged) and still running when it gave up."""
        done, running = concurrent.futures.wait(self.futures.values(), timeout=timeout_s)
        failed = 0
        for future in done:
            if future.exception() is not None:
                failed += 1
                log.warning("a Triton kernel could not be compiled ahead (%s): its first launch "
                            "compiles it", future.exception())
        return {"recorded": len(self.records), "compiled": len(done) - failed,
                "failed": failed, "running": len(running)}

    def close(self) -> None:
        """Stop the workers (a compile still running is left to finish in its process)."""
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
