"""Run a function on a real r × c grid of processes (gloo on CPU) and collect failures.

Children are forked from the test process (torch and boltz already imported, so a grid starts
in about a second), use one thread each, and time out collectives; the parent kills every
child if any fails or the whole run exceeds `timeout`, so a broken rank fails the test
instead of hanging it.
"""

from __future__ import annotations

import contextlib
import datetime
import multiprocessing
import socket
import time
import traceback


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(rank, world, port, rows, cols, fn, args, queue, collective_timeout):
    import torch
    import torch.distributed as dist

    from foldcp.distributed.grid import make_grid

    torch.set_num_threads(1)
    try:
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
            timeout=datetime.timedelta(seconds=collective_timeout),
        )
        grid = make_grid(rows, cols)
        result = fn(grid, *args)
        queue.put((rank, "ok", result))
    except BaseException:  # noqa: BLE001 - report everything to the parent
        queue.put((rank, "error", traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_on_grid(rows: int, cols: int, fn, *args, timeout: float = 240.0,
                collective_timeout: float = 60.0) -> list:
    """fn(grid, *args) on every rank; returns the results in rank order or raises."""
    world = rows * cols
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    port = _free_port()
    procs = [
        context.Process(target=_child, args=(rank, world, port, rows, cols, fn, args, queue,
                                             collective_timeout), daemon=True)
        for rank in range(world)
    ]
    for proc in procs:
        proc.start()
    results, errors = {}, []
    deadline = time.monotonic() + timeout
    try:
        while len(results) + len(errors) < world:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"grid {rows}x{cols}: ranks did not finish in {timeout} s")
            try:
                rank, status, payload = queue.get(timeout=min(remaining, 5.0))
            except Exception:  # noqa: BLE001 - queue.Empty: check for dead children
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"grid {rows}x{cols}: a rank died (exit {dead[0].exitcode})")
                continue
            if status == "ok":
                results[rank] = payload
            else:
                errors.append(f"rank {rank}:\n{payload}")
                break  # one failure is enough; the others may be stuck waiting for it
    finally:
        for proc in procs:
            proc.join(timeout=1.0 if errors or len(results) < world else 10.0)
            if proc.is_alive():
                proc.kill()
                proc.join()
    if errors:
        raise AssertionError(f"grid {rows}x{cols} failed:\n" + "\n".join(errors))
    return [results[rank] for rank in range(world)]


@contextlib.contextmanager
def keep_float64(dtype):
    """Boltz casts to float32 with .float() in places (e.g. the triangle product, one-hot
    encodings). For the float64 comparison, .float() yields float64 in both the serial and
    the distributed run."""
    import torch

    if dtype != torch.float64:
        yield
        return
    original = torch.Tensor.float

    def float_keeping_64(self, *args, **kwargs):
        # float64 stays float64, and integer/bool tensors (one-hots, masks) become float64
        if self.dtype == torch.float64:
            return self
        if not self.is_floating_point():
            return self.double()
        return original(self, *args, **kwargs)

    from unittest import mock

    with mock.patch.object(torch.Tensor, "float", float_keeping_64):
        yield


