"""The triangle multiplication's product alone: batched bf16 GEMMs at the pair stack's shapes.

out[d] = a[d] @ b[d]ᵀ (outgoing: "NT") or a[d]ᵀ @ b[d] (incoming: "TN") over d = channels per
chunk, each N × N × N — what DistTriangleMultiplication hands torch.matmul on a grid of one
(channel-first blocks, the transposed operand a free view). Also "NN" (both natural) as the
reference. Prints a table of ms and TFLOP/s and writes JSON lines (--out): is cuBLAS near
the card's bf16 peak at these shapes, or is there room in the product itself?

    python bench/trimul_gemm.py --tokens 2048 2512 --channels 32 --out bench/out.jsonl
"""

from __future__ import annotations

import argparse
import json

import torch
from rows import append_jsonl, commit  # bench/rows.py (the script's folder is on sys.path)


def timed_ms(fn, repeat: int = 10) -> float:
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeat):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, nargs="+", required=True)
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 128],
                        help="batch of the GEMM: channels per chunk (the layer uses 128 / 4)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device("cuda")
    card = torch.cuda.get_device_name(device)
    rows = []
    for n in args.tokens:
        for d in args.channels:
            a = torch.randn(d, n, n, device=device, dtype=torch.bfloat16)
            b = torch.randn(d, n, n, device=device, dtype=torch.bfloat16)
            for layout, fn in (("NN", lambda: torch.matmul(a, b)),
                               ("NT", lambda: torch.matmul(a, b.mT)),
                               ("TN", lambda: torch.matmul(a.mT, b))):
                ms = timed_ms(fn)
                row = {"kind": "trimul_gemm", "card": card, "commit": commit(), "tokens": n,
                       "channels": d, "layout": layout, "ms": round(ms, 3),
                       "tflops": round(2 * d * n**3 / ms / 1e9, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
            del a, b
    print(f"{'N':>6} {'d':>4} {'layout':6} {'ms':>8} {'TFLOP/s':>8}")
    for row in rows:
        print(f"{row['tokens']:6d} {row['channels']:4d} {row['layout']:6} {row['ms']:8.3f} {row['tflops']:8.1f}")
    append_jsonl(args.out, rows)


if __name__ == "__main__":
    main()
