"""Result rows of the bench scripts: appended to a JSON-lines file (bench/results/ keeps them)."""

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def append_jsonl(path: str | None, rows: list[dict]) -> None:
    """Append each row as one JSON line to `path` (nothing when path is None)."""
    if not path:
        return
    with open(path, "a") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def commit() -> str:
    """The code's short commit: $BENCH_COMMIT (session scripts set it from `.git-commit`, which
    they write before a device call: the device's copy of the tree may carry a stale .git),
    else git's, else `.git-commit`, else "unknown"."""
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                              capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        marker = REPO / ".git-commit"
        return marker.read_text().strip() if marker.exists() else "unknown"


def profile_summary(prof, on_gpu: bool, top: int, cpu_top: int = 0) -> dict:
    """A finished torch profile in milliseconds:
    labels_ms   per foldcp.* record_function label, summed over its calls (on a GPU the span
                from the label's first kernel to its last, idle gaps included)
    busy_ms     the GPU kernels' (and copies') own time, summed; with the caller's wall time
                it says whether the span was launch-bound (busy well below wall)
    kernels     how many GPU kernels and copies ran
    top_ms      the `top` GPU kernels (CPU ops off a GPU) by own time, with their counts
    cpu_top_ms  (cpu_top > 0) the `cpu_top` host ops and runtime calls by own CPU time: where
                the host waits (cudaStreamSynchronize, .item()) or launches"""
    from torch.autograd import DeviceType

    def own_ms(event) -> float:
        total = (getattr(event, "self_device_time_total", None) if on_gpu
                 else event.self_cpu_time_total)
        return (total or 0.0) / 1e3

    def span_ms(event) -> float:
        return (getattr(event, "device_time_total", 0.0) if on_gpu else event.cpu_time_total) / 1e3

    events = prof.key_averages()
    labels = {e.key: round(span_ms(e), 2) for e in events if e.key.startswith("foldcp.")}
    host = [e for e in events if not e.key.startswith("foldcp.")
            and getattr(e, "device_type", None) != DeviceType.CUDA]
    # on a GPU the labels' device-side ranges are CUDA events too: not kernels
    work = ([e for e in events if getattr(e, "device_type", None) == DeviceType.CUDA
             and not e.key.startswith("foldcp.")] if on_gpu else host)
    work.sort(key=own_ms, reverse=True)
    summary = {"labels_ms": labels,
               "busy_ms": round(sum(own_ms(e) for e in work), 2),
               "kernels": sum(e.count for e in work),
               "top_ms": {f"{e.key[:90]} x{e.count}": round(own_ms(e), 2) for e in work[:top]}}
    if cpu_top:
        host.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
        summary["cpu_top_ms"] = {f"{e.key[:90]} x{e.count}": round(e.self_cpu_time_total / 1e3, 2)
                                 for e in host[:cpu_top]}
    return summary
