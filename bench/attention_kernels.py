"""Triangle-attention kernels at real sizes (GPU): which one should a key block run on?

One triangle attention over N×N (4 heads × 32, bf16, as Boltz-2's pair stack), run the way
foldcp runs it — rows in chunks of N/8, one bias [H, J, K] shared by every row of a chunk:

- efficient: PyTorch's memory-efficient kernel with the bias expanded over rows (stride 0),
  q, k, v made contiguous per chunk (what foldcp/distributed/fused_attention.py does);
- efficient_views: the same kernel handed the projections' head-split views, no copies;
- triton: foldcp's own flash kernel with the shared bias (foldcp/distributed/
  triton_attention.py), handed the head-split views — what foldcp runs now;
- cueq: cuEquivariance's triangle_attention (bias [1, 1, H, J, K] float32 shared by rows,
  log-sum-exp returned), where the package is importable;
- flash_no_bias: PyTorch's flash kernel without any bias — a lower bound, not a candidate.

Also reports whether torch.compile works on this machine (Triton + a C compiler). Prints a
table and appends JSON lines (--out).

    python bench/attention_kernels.py --tokens 1024 2048 --out bench/out.jsonl

--single-track times instead the diffusion token transformer's attention core (16 heads × 48,
float32 with TF32 matmuls as the `tf32` sampling mode runs it, one sample, the bf16 pair bias
shared, a per-key mask bias): Boltz's element-wise float32 core (attention_pair_bias.
_plain_core, what ran before the fused kernel) against the Triton kernel at its float32
tiles (CONFIG_FLOAT32) and, with --sweep, others. --float32 runs it in full float32 (the
default sampling mode: no TF32), each kernel config with its float32 dots on CUDA cores
("_ieee" rows) and as three TF32 products ("_tf32x3": CONFIG_FLOAT32's choice); each row has
its error against float64.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

from foldcp.distributed.triton_attention import shared_bias_attention
from rows import append_jsonl  # bench/rows.py (the script's folder is on sys.path)

HEADS, WIDTH = 4, 32


def timed(fn, repeat: int = 3) -> float:
    fn()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeat


# (BLOCK_M, BLOCK_N, warps, stages)
SWEEP = [(64, 64, 4, 2), (128, 64, 8, 2), (128, 64, 8, 3), (64, 32, 4, 3), (128, 128, 8, 2),
         (64, 128, 4, 2), (128, 64, 4, 3), (128, 64, 8, 4), (128, 32, 8, 3), (256, 64, 8, 2),
         (128, 32, 4, 4), (64, 64, 4, 3), (256, 32, 8, 3)]


def sweep_configs(sweep) -> dict[str, dict]:
    """name → Triton config for each entry of a sweep list."""
    configs = {}
    for m, n, warps, stages in sweep:
        configs[f"triton_{m}x{n}_w{warps}_s{stages}"] = {"BLOCK_M": m, "BLOCK_N": n,
                                                         "num_warps": warps, "num_stages": stages}
    return configs


def configured(fn, config: dict | None, name: str = "CONFIG"):
    """fn run with triton_attention.<name> (CONFIG, or CONFIG_FLOAT32 for float32 inputs)
    temporarily replaced by config (None: as it is); returns fn's result."""
    from foldcp.distributed import triton_attention

    def run():
        saved = getattr(triton_attention, name)
        setattr(triton_attention, name, config or saved)
        try:
            return fn()
        finally:
            setattr(triton_attention, name, saved)
    return run


def compile_works() -> str:
    try:
        fn = torch.compile(lambda x: torch.sigmoid(x) * x + 1.0)
        x = torch.randn(1024, device="cuda")
        torch.testing.assert_close(fn(x), torch.sigmoid(x) * x + 1.0)
        return "ok"
    except Exception as error:  # report, don't fail the benchmark
        return f"{type(error).__name__}: {str(error)[:200]}"


# float32 tiles for --single-track --sweep (BLOCK_M, BLOCK_N, warps, stages)
SWEEP_FLOAT32 = [(128, 64, 8, 2), (64, 32, 4, 3), (128, 32, 4, 2), (128, 32, 8, 3), (64, 128, 4, 2),
                 (32, 64, 4, 3), (128, 64, 4, 2)]


def single_track(n: int, card: str, sweep: bool, device: str = "cuda",
                 tf32: bool = True) -> list[dict]:
    """The diffusion transformer's attention core at n tokens (see the module docstring);
    tf32=False: full float32 (the default sampling mode), with the kernel's float32 dots on
    CUDA cores ("ieee") and as three TF32 products ("tf32x3")."""
    from foldcp.distributed import triton_attention
    from foldcp.distributed.attention_pair_bias import _plain_core
    from foldcp.distributed.grid import Grid
    from foldcp.distributed.layout import Layout

    heads, width, samples = 16, 48, 1
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(0)
    q, k, v = (torch.randn(samples, n, heads, width, device=device, generator=gen) for _ in range(3))
    bias = torch.randn(1, heads, n, n, device=device, generator=gen).to(torch.bfloat16)
    mask = torch.ones(samples, n, device=device)
    layout = Layout.for_tokens(Grid(1, 1, 0), n)
    key_bias = torch.zeros(samples, n, device=device)

    def kernel():
        return triton_attention.shared_bias_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), bias[0], key_bias=key_bias,
            scale=width**-0.5)[0]

    candidates = {"plain": lambda: _plain_core(q, k, v, bias, mask, layout, 1e6, samples),
                  "triton": kernel}
    if sweep:
        for name, config in sweep_configs(SWEEP_FLOAT32).items():
            candidates[name] = configured(kernel, config, "CONFIG_FLOAT32")
    if not tf32:  # each config's dots both ways, whatever CONFIG_FLOAT32 picks
        for name, config in [("triton", triton_attention.CONFIG_FLOAT32)] + (
                list(sweep_configs(SWEEP_FLOAT32).items()) if sweep else []):
            for precision in ("ieee", "tf32x3"):
                candidates[f"{name}_{precision}"] = configured(
                    kernel, {**config, "FLOAT32_PRECISION": precision}, "CONFIG_FLOAT32")
    tf32_before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    rows = []
    try:
        want = torch.softmax(torch.einsum("bihd,bjhd->bhij", q.double(), k.double()) * width**-0.5
                             + bias.double(), dim=-1)
        want = torch.einsum("bhij,bjhd->bihd", want, v.double())
        for name, fn in candidates.items():
            row = {"kind": "single_track_attention", "impl": name, "tokens": n, "card": card,
                   "heads": heads, "width": width, "samples": samples,
                   "dtype": "float32 (tf32)" if tf32 else "float32"}
            try:
                seconds = timed(fn, repeat=10)
                row.update(ms=round(seconds * 1e3, 3),
                           tflops=round(4 * n * n * heads * width * samples / seconds / 1e12, 1))
                got = fn()
                got = got.transpose(1, 2) if name.startswith("triton") else got
                row["max_abs_diff_vs_float64"] = float((got.double() - want).abs().max())
            except Exception as error:
                row["error"] = f"{type(error).__name__}: {str(error)[:200]}"
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32_before
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, nargs="+", required=True)
    parser.add_argument("--sweep", action="store_true",
                        help="also time the Triton kernel at other tile sizes / warps / stages")
    parser.add_argument("--single-track", action="store_true",
                        help="the diffusion transformer's attention core instead (module docstring)")
    parser.add_argument("--float32", action="store_true",
                        help="with --single-track: full float32 (the default sampling mode) "
                             "instead of TF32, adding the kernel's tf32x3 variants")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.single_track:
        card = torch.cuda.get_device_name()
        rows = [row for n in args.tokens
                for row in single_track(n, card, args.sweep, tf32=not args.float32)]
        print(f"{'impl':26} {'N':>6} {'ms':>8} {'TFLOP/s':>8} {'max|Δ| vs f64':>14}")
        for row in rows:
            print(f"{row['impl']:26} {row['tokens']:6d} {row.get('ms', float('nan')):8.3f} "
                  f"{row.get('tflops', float('nan')):8.1f} {row.get('max_abs_diff_vs_float64', float('nan')):14.2e}")
        append_jsonl(args.out, rows)
        return
    device = torch.device("cuda")
    card = torch.cuda.get_device_name(device)
    try:
        import cuequivariance_torch as cuet
    except Exception as error:
        cuet = None
        print("cuequivariance_torch not importable:", error)
    rows_out = [{"kind": "environment", "card": card, "torch": torch.__version__,
                 "torch_compile": compile_works(), "cueq": cuet is not None}]
    print(json.dumps(rows_out[0]), flush=True)
    for n in args.tokens:
        gen = torch.Generator(device=device).manual_seed(0)
        chunk = -(-n // 8)

        def rand(*shape, dtype=torch.bfloat16):
            return torch.randn(*shape, device=device, generator=gen, dtype=dtype)

        # projections as they leave the linear layers: [G, J, H·d]
        q_lin, k_lin, v_lin = (rand(chunk, n, HEADS * WIDTH) for _ in range(3))
        bias = rand(1, HEADS, n, n, dtype=torch.float32)

        def heads(t):  # [G, J, H·d] -> [G, H, J, d] view
            return t.view(chunk, n, HEADS, WIDTH).transpose(1, 2)

        def efficient(views: bool):
            q, k, v = heads(q_lin) / math.sqrt(WIDTH), heads(k_lin), heads(v_lin)
            if not views:
                q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
            b = bias.to(torch.bfloat16).expand(chunk, -1, -1, -1)
            for _ in range(8):
                torch.ops.aten._scaled_dot_product_efficient_attention(
                    q, k, v, b, True, 0.0, False, scale=1.0)

        def cueq():
            q, k, v = (heads(t)[None] for t in (q_lin, k_lin, v_lin))
            for _ in range(8):
                cuet.triangle_attention(q, k, v, bias[None], scale=1 / math.sqrt(WIDTH),
                                        return_aux=True)

        def triton_kernel():
            q, k, v = heads(q_lin) / math.sqrt(WIDTH), heads(k_lin), heads(v_lin)
            b = bias[0].to(torch.bfloat16)
            for _ in range(8):
                shared_bias_attention(q, k, v, b)

        def flash_no_bias():
            q, k, v = heads(q_lin), heads(k_lin), heads(v_lin)
            for _ in range(8):
                F.scaled_dot_product_attention(q, k, v)

        candidates = {"efficient": lambda: efficient(False),
                      "efficient_views": lambda: efficient(True),
                      "triton": triton_kernel,
                      "flash_no_bias": flash_no_bias}
        if cuet is not None:
            candidates["cueq"] = cueq
        if args.sweep:
            for name, config in sweep_configs(SWEEP).items():
                candidates[name] = configured(triton_kernel, config)
        # agreement with the efficient kernel on the first chunk (output and log-sum-exp)
        q, k, v = (heads(t).contiguous() for t in (q_lin, k_lin, v_lin))
        ref_out, ref_lse = torch.ops.aten._scaled_dot_product_efficient_attention(
            q / math.sqrt(WIDTH), k, v, bias.to(torch.bfloat16).expand(chunk, -1, -1, -1),
            True, 0.0, False, scale=1.0)[:2]
        for name, fn in candidates.items():
            row = {"kind": "triangle_attention", "impl": name, "tokens": n, "card": card,
                   "heads": HEADS, "width": WIDTH, "dtype": "bfloat16"}
            try:
                seconds = timed(fn)
                flops = 4 * n**3 * HEADS * WIDTH
                row.update(ms=round(seconds * 1e3, 2), tflops=round(flops / seconds / 1e12, 1))
                if name == "triton":
                    out, lse = shared_bias_attention(q / math.sqrt(WIDTH), k, v, bias[0].to(torch.bfloat16))
                    row["max_abs_diff_out"] = (out.float() - ref_out.float()).abs().max().item()
                    row["max_abs_diff_lse"] = (lse - ref_lse[..., :n]).abs().max().item()
                if name == "cueq":
                    out, lse, _ = cuet.triangle_attention(q[None], k[None], v[None], bias[None],
                                                          scale=1 / math.sqrt(WIDTH), return_aux=True)
                    row["max_abs_diff_out"] = (out[0].float() - ref_out.float()).abs().max().item()
                    row["max_abs_diff_lse"] = (lse[0].float().squeeze(-1) - ref_lse[..., :n]).abs().max().item()
            except Exception as error:
                row["error"] = f"{type(error).__name__}: {str(error)[:200]}"
            rows_out.append(row)
            print(json.dumps(row), flush=True)
    print(f"{'impl':26} {'N':>6} {'ms':>8} {'TFLOP/s':>8}")
    for row in rows_out[1:]:
        print(f"{row['impl']:26} {row['tokens']:6d} {row.get('ms', float('nan')):8.2f} "
              f"{row.get('tflops', float('nan')):8.1f}")
    append_jsonl(args.out, rows_out)


if __name__ == "__main__":
    main()
