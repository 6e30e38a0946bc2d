"""Which Triton kernel specialisations does foldcp's model launch at N tokens? On a CPU machine.

Triton compiles one binary per specialisation of a kernel: its arguments' dtypes, pointers
16-byte aligned or not, integers equal to 1, divisible by 16 or neither, 32- or 64-bit, and
its constexprs. A batch compiles ahead the specialisations a small throwaway fold launches
(foldcp/distributed/triton_precompile.py); a real fold that launches another compiles it
inside the fold. This script runs the released-size model (random weights, 1×1 layout padded
to 16 tokens as on GPUs, bf16 autocast, FOLDCP_COMPILE=0) on one of bench/cp_inputs.py's
complexes with every foldcp kernel launch intercepted: its specialisation, as Triton would key
it, is recorded, then the launch is deferred to the caller's PyTorch path as in the throwaway
fold (default) or run in Triton's interpreter (--run: slow, minutes at 16 tokens). Prints the
specialisations as JSON lines (kernel module, argument keys, constexprs, launches).

    python bench/cp_inputs.py --tokens 15 349 --chains 2 --out /tmp/spec
    python bench/kernel_specs.py --inputs /tmp/spec --tokens 15 > /tmp/spec_15.jsonl
    python bench/kernel_specs.py --inputs /tmp/spec --tokens 349 --recycling 1 > /tmp/spec_349.jsonl

Off GPUs the paths that need CUDA (fused attention, CUDA graphs) are not taken: a
specialisation that differs only there is not seen here (eighteenth session: 16 and 352
tokens gave the same 8; bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "1"  # foldcp's kernels are launched on CPU tensors
os.environ.setdefault("FOLDCP_COMPILE", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch


def argument_key(value) -> str:
    """One argument's part of the specialisation, in the spirit of Triton's own keys."""
    if torch.is_tensor(value):
        return f"*{str(value.dtype).removeprefix('torch.')}{'A' if value.data_ptr() % 16 == 0 else ''}"
    if isinstance(value, bool):
        return f"b{value}"
    if isinstance(value, int):
        if value == 1:
            return "1"
        return ("i32" if -2**31 <= value < 2**31 else "i64") + ("D" if value % 16 == 0 else "")
    if isinstance(value, float):
        return "fp"
    return repr(value)


class Intercepted:
    """Stands for a lazy kernel: kernel()[grid](*args, **constexprs) records, then defers or runs."""

    def __init__(self, module: str, lazy, seen: dict, run: bool) -> None:
        self.module, self.lazy, self.seen, self.run = module, lazy, seen, run

    def __getitem__(self, grid):
        from foldcp.distributed.triton_attention import KernelDeferred

        def launch(*args, **constexprs):
            key = (self.module, tuple(argument_key(a) for a in args),
                   tuple(sorted((k, repr(v)) for k, v in constexprs.items())))
            self.seen[key] = self.seen.get(key, 0) + 1
            if self.run:
                return self.lazy()[grid](*args, **constexprs)
            raise KernelDeferred("recorded by bench/kernel_specs.py")
        return launch


def intercept_kernels(seen: dict, run: bool) -> None:
    from foldcp.distributed.triton_precompile import KERNEL_MODULES

    for name in KERNEL_MODULES:
        module = importlib.import_module(name)
        for attr, value in list(vars(module).items()):
            if getattr(value, "lazy_triton_kernel", False):
                stand_in = Intercepted(name.rsplit(".", 1)[1], value, seen, run)
                accessor = lambda stand_in=stand_in: stand_in  # noqa: E731
                accessor.lazy_triton_kernel = True
                setattr(module, attr, accessor)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", required=True, help="a bench/cp_inputs.py folder")
    parser.add_argument("--tokens", type=int, required=True)
    parser.add_argument("--recycling", type=int, default=0)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--run", action="store_true", help="run each launch interpreted")
    args = parser.parse_args(argv)
    from cp_inputs import expand
    from cp_model import stub_rdkit

    stub_rdkit()
    from boltz.model.models.boltz2 import Boltz2

    from foldcp.distributed.grid import Grid
    from foldcp.distributed.layout import GPU_TOKEN_MULTIPLE, Layout
    from foldcp.distributed.model import DistBoltz2
    from foldcp.distributed.pair_init import UNUSED_FEATURES, split_features
    from foldcp.model.weights import randomize_weights

    seen: dict = {}
    intercept_kernels(seen, args.run)
    hparams = json.loads((Path(args.inputs) / "hparams.json").read_text())
    torch.manual_seed(0)
    model = Boltz2(**hparams).eval()
    randomize_weights(model, seed=0, std=0.02)
    saved = torch.load(Path(args.inputs) / f"features_{args.tokens}.pt", weights_only=False)
    saved = {k: v for k, v in saved.items() if k not in UNUSED_FEATURES}
    features = split_features(expand(saved, "cpu"), torch.device("cpu"))
    n = features["token_pad_mask"].shape[1]
    layout = Layout.for_tokens(Grid(1, 1, 0), n, GPU_TOKEN_MULTIPLE)
    started = time.time()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(1)
        DistBoltz2(model, cuda_graphs=False).predict(
            features, layout, sampling_steps=args.steps, recycling_steps=args.recycling,
            diffusion_samples=1, max_parallel_samples=1)
    print(f"{n} tokens, padded to {layout.n_padded}: {len(seen)} specialisations, "
          f"{time.time() - started:.0f} s", file=sys.stderr)
    for (module, arguments, constexprs), launches in seen.items():
        print(json.dumps({"kernel": module, "arguments": list(arguments),
                          "constexprs": dict(constexprs), "launches": launches}))


if __name__ == "__main__":
    main()
