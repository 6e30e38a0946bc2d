"""The pair transition at real sizes (GPU): fused kernel against the unfused path.

One Boltz-2 pair transition (128 channels, hidden 512, bf16 compute, float32 pair track) over an
N×N block, z += transition(z) as foldcp's Pairformer runs it (layout.add_transition):

- unfused: LayerNorm kernel → gated fc1/fc2 kernel → fc3 GEMM → residual add, in row chunks
  (FOLDCP_FUSED_TRANSITION=0, what ran before);
- fused: foldcp/distributed/triton_transition.py, one kernel (the CONFIG default and, with
  --sweep, other tiles).

Each row: ms per call, TFLOP/s of the three matrix products, peak memory beyond z, and the
largest |difference| from the unfused result relative to the update's size. Prints a table
and appends JSON lines (--out).

    python bench/transition_kernel.py --tokens 2512 1008 --sweep --out bench/out.jsonl
"""

from __future__ import annotations

import argparse
import json
import os

import torch

from boltz.model.layers.transition import Transition
from foldcp.distributed import triton_transition
from foldcp.distributed.layout import add_transition
from foldcp.model.weights import randomize_weights
from attention_kernels import timed  # (the script's folder is on sys.path)
from rows import append_jsonl, commit  # bench/rows.py

CHANNELS, HIDDEN = 128, 512
# (BLOCK_P, BLOCK_H, warps, stages)
SWEEP = [(64, 64, 4, 2), (64, 64, 4, 3), (128, 64, 8, 2), (128, 64, 8, 3), (64, 128, 4, 2),
         (128, 128, 8, 2), (128, 32, 4, 3), (64, 32, 4, 3), (32, 64, 4, 2), (128, 64, 4, 2)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[2512, 1008])
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    card = torch.cuda.get_device_name()
    transition = Transition(CHANNELS, HIDDEN).cuda().eval()
    randomize_weights(transition, seed=1, std=0.05)
    configs = [("CONFIG", dict(triton_transition.CONFIG))]
    if args.sweep:
        configs += [(f"{p}x{h}_w{w}_s{s}", dict(BLOCK_P=p, BLOCK_H=h, num_warps=w, num_stages=s))
                    for p, h, w, s in SWEEP]
    rows = []
    for n in args.tokens:
        torch.manual_seed(0)
        z0 = torch.randn(1, n, n, CHANNELS, device="cuda")
        flops = 2 * n * n * CHANNELS * HIDDEN * 3
        z = z0.clone()

        def unfused():
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                add_transition(transition, z)

        def run():  # the kernel itself: a tile that cannot build raises here, no fallback
            with torch.inference_mode():
                triton_transition.add_transition_(z, transition, torch.bfloat16)

        os.environ["FOLDCP_FUSED_TRANSITION"] = "0"
        z.copy_(z0)
        unfused()
        reference = z - z0
        results = {}
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        results["unfused"] = (timed(unfused, repeat=5), torch.cuda.max_memory_allocated() - base, 0.0)
        del os.environ["FOLDCP_FUSED_TRANSITION"]
        default = dict(triton_transition.CONFIG)
        for name, config in configs:
            triton_transition.CONFIG.clear()
            triton_transition.CONFIG.update(config)
            try:
                z.copy_(z0)
                run()
                error = ((z - z0 - reference).abs().max() / reference.abs().max()).item()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                results["fused_" + name] = (timed(run, repeat=5), torch.cuda.max_memory_allocated() - base, error)
            except Exception as failure:  # noqa: BLE001 — a tile this GPU cannot build
                print(f"{name}: {type(failure).__name__}: {str(failure)[:120]}", flush=True)
            finally:
                triton_transition.CONFIG.clear()
                triton_transition.CONFIG.update(default)
        for name, (seconds, extra, error) in results.items():
            row = {"bench": "transition_kernel", "tokens": n, "card": card, "commit": commit(),
                   "variant": name, "ms": round(seconds * 1e3, 3),
                   "tflops": round(flops / seconds / 1e12, 1),
                   "extra_gib": round(extra / 2**30, 3), "rel_error": float(f"{error:.3g}")}
            rows.append(row)
            print(json.dumps(row), flush=True)
        del z0, z, reference
        torch.cuda.empty_cache()
    print(f"\n{'N':>6} {'variant':<26} {'ms':>9} {'TFLOP/s':>8} {'extra GiB':>9} {'rel err':>9}")
    for row in rows:
        print(f"{row['tokens']:>6} {row['variant']:<26} {row['ms']:>9.3f} {row['tflops']:>8.1f} "
              f"{row['extra_gib']:>9.3f} {row['rel_error']:>9.2g}")
    append_jsonl(args.out, rows)


if __name__ == "__main__":
    main()
