"""Distributed-vs-serial equivalence of the Pairformer layers on GPUs (NCCL).

Runs the same checks as tests/distributed/test_pairformer.py, with NCCL and CUDA tensors:
    torchrun --nproc-per-node 2 bench/cp_equivalence_gpu.py --grid 1x2
    python bench/cp_equivalence_gpu.py --grid 1x1      (one GPU: the fused kernels vs serial)
Prints one line per check and writes JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.distributed as dist

from foldcp.distributed.launch import init_from_env
from tests.distributed.test_pairformer import compare_on_grid


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", required=True, help="RxC")
    parser.add_argument("--tokens", type=int, default=37)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows, cols = map(int, args.grid.lower().split("x"))
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    grid, device = init_from_env(rows, cols)
    results = []
    kinds = ["tri_mul_out", "tri_mul_in", "tri_att_start", "tri_att_end", "attention", "layer", "module"]
    for dtype in (torch.float64, torch.float32):
        for kind in kinds:
            started = time.time()
            status = "ok"
            try:
                compare_on_grid(grid, kind, args.tokens, dtype, 11, device)
            except AssertionError as error:
                status = f"MISMATCH: {str(error)[:300]}"
            flags = torch.tensor([status == "ok"], device=device, dtype=torch.int32)
            if dist.is_initialized():  # a grid of one runs without a process group
                dist.all_reduce(flags, op=dist.ReduceOp.MIN)
            results.append({"grid": args.grid, "kind": kind, "dtype": str(dtype), "tokens": args.tokens,
                            "all_ranks_ok": bool(flags.item()), "rank0_status": status,
                            "seconds": round(time.time() - started, 3)})
            if grid.rank == 0:
                print(json.dumps(results[-1]), flush=True)
    if grid.rank == 0 and args.out:
        with open(args.out, "a") as handle:
            for row in results:
                handle.write(json.dumps(row) + "\n")
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
