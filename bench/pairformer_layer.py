"""One Boltz-2 PairformerLayer at real sizes: time and per-GPU peak memory vs N.

token_s 384, token_z 128, 16 heads, triangle attention 4 heads × 32, bf16 autocast (as Boltz
inference). On one GPU it times the serial Boltz layer (plain PyTorch path, no cuEquivariance
kernels) and foldcp's distributed layer on a 1×1 grid; under torchrun it times foldcp's layer
on the r×c grid. Only each rank's own pair block is ever created.

    python bench/pairformer_layer.py --tokens 1024 2048 --out bench/out.jsonl
    torchrun --nproc-per-node 2 bench/pairformer_layer.py --tokens 1024 2048 --out bench/out.jsonl

--profile adds, per N, one profiled call of foldcp's layer: its wall time, the GPU's busy
time, GPU time per sub-layer (the record_function labels in foldcp/distributed/pairformer.py)
and the top kernels, printed and written as JSON lines (kind "profile") to --out.
--cuda-graph adds, on one GPU, the layer recorded once as a CUDA graph and replayed
(impl "foldcp_graphed"): what Python and kernel launches cost the layer. On a GPU each row
also has host_seconds_per_layer: how long a call takes to return with the GPU idle at its
start — the host's own cost (a fold is host-bound where it exceeds the GPU's time).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.distributed as dist
from boltz.model.layers.pairformer import PairformerLayer

from foldcp.distributed.graphed import on_side_stream
from foldcp.distributed.layout import Layout
from foldcp.distributed.launch import init_from_env
from foldcp.distributed.pairformer import DistPairformerLayer
from foldcp.model.weights import randomize_weights
from rows import append_jsonl, profile_summary  # bench/rows.py (the script's folder is on sys.path)

C_S, C_Z, HEADS = 384, 128, 16


def host_time(fn, repeat: int, device) -> float | None:
    """Seconds per call until it returns, the GPU idle at each start (CUDA only): the host's
    Python and launch cost of a call. A layer whose host time exceeds its GPU time cannot
    keep the GPU busy, however its calls are queued."""
    if device.type != "cuda":
        return None
    spent = 0.0
    for _ in range(repeat):
        torch.cuda.synchronize(device)
        started = time.perf_counter()
        fn()
        spent += time.perf_counter() - started
    torch.cuda.synchronize(device)
    return spent / repeat


def timed(fn, repeat: int, device) -> tuple[float, float]:
    """(seconds per call, peak GiB; 0 on CPU) after one warm-up call."""
    cuda = device.type == "cuda"
    fn()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    if cuda:
        torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else 0.0
    return (time.perf_counter() - started) / repeat, peak


def profile_call(fn, device, top: int = 12) -> dict:
    """One profiled call of fn: its wall ms and rows.profile_summary's (GPU busy ms, ms per
    foldcp.* sub-layer label, top kernels)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        started = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize(device)
        wall = time.perf_counter() - started
    return {"wall_ms": round(wall * 1e3, 2)} | profile_summary(prof, cuda, top)


def graphed(fn, device):
    """fn recorded once as a CUDA graph (after an eager call: compiles, cuBLAS and allocator
    warm-up) and replayed: fn's time without Python or kernel-launch overhead. The returned
    callable replays the same kernels on the same input tensors."""
    on_side_stream(fn)
    torch.cuda.synchronize(device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, nargs="+", required=True)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--grid", default=None, help="RxC (default: factor the world size)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=12, help="kernels listed per profile")
    parser.add_argument("--foldcp-only", action="store_true",
                        help="skip the serial Boltz layer on one GPU")
    parser.add_argument("--token-multiple", type=int, default=1,
                        help="pad N to a multiple of this as GPU folds do (layout.token_multiple),"
                             " the padded tokens masked: the layer as it runs inside a fold")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="also time foldcp's layer recorded as one CUDA graph and replayed "
                             "(one GPU): the layer without Python and launch overhead")
    parser.add_argument("--label", default=None, help="recorded in each row (e.g. the code's commit)")
    args = parser.parse_args()
    rows = cols = None
    if args.grid:
        rows, cols = map(int, args.grid.lower().split("x"))
    grid, device = init_from_env(rows, cols)
    torch.manual_seed(0)
    layer = PairformerLayer(C_S, C_Z, HEADS, dropout=0.0, pairwise_head_width=32,
                            pairwise_num_heads=4, v2=True).eval()
    randomize_weights(layer, seed=0, std=0.02)
    layer = layer.to(device)
    dist_layer = DistPairformerLayer(layer)
    results = []
    for n in args.tokens:
        layout = Layout.for_tokens(grid, n, args.token_multiple)
        rows_n = layout.rows.stop - layout.rows.start
        cols_n = layout.cols.stop - layout.cols.start
        gen = torch.Generator(device=device).manual_seed(grid.rank)
        z = torch.randn(1, rows_n, cols_n, C_Z, device=device, generator=gen)
        s = torch.randn(1, layout.n_padded, C_S, device=device, generator=gen)
        mask = (torch.arange(layout.n_padded, device=device) < n).float()[None]  # padding: 0
        pair_mask = mask[:, layout.rows, None] * mask[:, None, layout.cols]
        foldcp_layer = lambda: dist_layer(s, z, mask, pair_mask, layout)  # noqa: E731
        runs = [("foldcp", foldcp_layer)]
        if args.cuda_graph and device.type == "cuda" and grid.size == 1:
            runs.append(("foldcp_graphed", None))  # recorded below, under autocast
        if grid.size == 1 and not args.foldcp_only:
            chunk = 128 if n > 1536 else 512  # what Boltz's PairformerModule passes
            runs.insert(0, ("boltz_serial", lambda: layer(s, z, mask, pair_mask, chunk)))
        for name, fn in runs:
            row = {"impl": name, "tokens": n, "n_padded": layout.n_padded,
                   "grid": f"{grid.rows}x{grid.cols}",
                   "gpus": grid.size, "label": args.label,
                   "card": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
            try:
                with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16,
                                                             enabled=device.type == "cuda"):
                    if name == "foldcp_graphed":
                        fn = graphed(foldcp_layer, device)
                    seconds, peak = timed(fn, args.repeat, device)
                    host = host_time(fn, args.repeat, device)
                stats = torch.tensor([seconds, peak], device=device)
                if grid.size > 1:
                    dist.all_reduce(stats, op=dist.ReduceOp.MAX)
                row.update(seconds_per_layer=round(stats[0].item(), 4),
                           peak_gib_per_gpu=round(stats[1].item(), 3),
                           host_seconds_per_layer=None if host is None else round(host, 4))
            except torch.cuda.OutOfMemoryError:
                row.update(seconds_per_layer=None, peak_gib_per_gpu=None, oom=True)
                torch.cuda.empty_cache()
            except RuntimeError as error:  # not recordable (a host sync inside the layer …)
                if name != "foldcp_graphed":
                    raise
                row.update(seconds_per_layer=None, peak_gib_per_gpu=None,
                           error=str(error).splitlines()[0][:300])
            results.append(row)
            if grid.rank == 0:
                print(json.dumps(row), flush=True)
            if args.profile and name == "foldcp" and not row.get("oom"):
                with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16,
                                                             enabled=device.type == "cuda"):
                    prof = profile_call(fn, device, args.top)
                prof_row = {"kind": "profile", "impl": name, "tokens": n, "label": args.label,
                            "grid": row["grid"], "card": row["card"]} | prof
                results.append(prof_row)
                if grid.rank == 0:
                    print(json.dumps(prof_row), flush=True)
        del z, s, mask, pair_mask
        torch.cuda.empty_cache()
    if grid.rank == 0:
        print(f"{'impl':14} {'grid':5} {'N':>6} {'s/layer':>9} {'GiB/GPU':>8} {'host s':>8}")
        for row in results:
            if row.get("kind") == "profile":
                continue
            print(f"{row['impl']:14} {row['grid']:5} {row['tokens']:6d} "
                  f"{row['seconds_per_layer'] or float('nan'):9.4f} {row['peak_gib_per_gpu'] or float('nan'):8.3f} "
                  f"{row.get('host_seconds_per_layer') or float('nan'):8.4f}")
        append_jsonl(args.out, results)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
