"""Full Boltz-2 inference under CP vs serial, at real sizes with random weights (GPU).

Rank 0 first runs the serial Boltz2 forward on its GPU, then every rank runs DistBoltz2 on
the grid with the same seed; rank 0 reports the differences (coordinates, pLDDT, PAE, pTM,
ipTM), per-GPU peak memory and time, prints a table and appends JSON lines (--out).

    torchrun --nproc-per-node 2 bench/cp_model.py --inputs .payload/cp --tokens 1000 \
        --recycling 3 --steps 20 --out bench/out.jsonl
Inputs come from bench/cp_inputs.py (run on the CPU machine).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import sys
import time
import types
from pathlib import Path

import torch
import torch.distributed as dist
from rows import append_jsonl, commit, profile_summary  # bench/rows.py (the script's folder is on sys.path)


def stub_rdkit() -> None:
    """boltz.data.mol imports rdkit.Chem.Mol only as a type; the GPU image has no RDKit."""
    try:
        import rdkit.Chem  # noqa: F401
    except ImportError:
        rdkit = types.ModuleType("rdkit")
        rdkit.__path__ = []
        chem = types.ModuleType("rdkit.Chem")
        chem.Mol = type("Mol", (), {})
        rdkit.Chem = chem
        sys.modules["rdkit"], sys.modules["rdkit.Chem"] = rdkit, chem


def main() -> None:
    if os.environ.get("DUMP_TRACEBACK_AFTER_S"):  # where a run that seems stuck is
        faulthandler.dump_traceback_later(float(os.environ["DUMP_TRACEBACK_AFTER_S"]), repeat=True)
    stub_rdkit()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from boltz.model.models.boltz2 import Boltz2
    from cp_inputs import expand

    from foldcp.distributed import graphed_sampling
    from foldcp.distributed.comm import gather_pair
    from foldcp.distributed.launch import init_from_env
    from foldcp.distributed.layout import Layout, token_multiple
    from foldcp.distributed.model import DistBoltz2
    from foldcp.distributed.pair_init import UNUSED_FEATURES, split_features
    from foldcp.model.sampling_precision import MODES, sampling_precision
    from foldcp.model.weights import randomize_weights

    parser = argparse.ArgumentParser()
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--tokens", type=int, required=True)
    parser.add_argument("--recycling", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--no-serial", action="store_true")
    parser.add_argument("--pairformer-blocks", type=int, default=None,
                        help="keep only the first K of the 64 Pairformer blocks: a capacity "
                             "probe (every block has the same peak memory) that fits the "
                             "device's time limit at large N; the time is then NOT a fold's")
    parser.add_argument("--profile-step", type=int, default=None, metavar="K",
                        help="profile the K-th denoising step: wall vs GPU-busy time and the "
                             "top GPU ops (is the step launch-bound?) go into the row")
    parser.add_argument("--profile-pairformer", type=int, default=None, metavar="K",
                        help="profile the K-th Pairformer pass of the trunk (one per recycle): "
                             "GPU ms per sub-layer label (summed over its layers) and top kernels")
    parser.add_argument("--profile-msa", type=int, default=None, metavar="K",
                        help="profile the K-th MSA stage of the trunk (one per recycle): GPU ms "
                             "per sub-layer label and top kernels")
    parser.add_argument("--profile-sampling", type=int, nargs=2, default=None, metavar=("K", "M"),
                        help="profile denoising steps K … K+M-1 as they run (CUDA graphs "
                             "included) and everything between their networks: the sampling "
                             "loop's own overhead")
    parser.add_argument("--no-cuda-graphs", action="store_true",
                        help="run the denoising steps eagerly (default: CUDA graphs on 1 GPU)")
    parser.add_argument("--sampling-precision", nargs="+", default=["float32"], choices=MODES,
                        help="foldcp's diffusion sampling arithmetic (foldcp/model/sampling_precision.py); "
                             "several: one foldcp run and row each, in order")
    parser.add_argument("--serial-sampling-precision", default="float32", choices=MODES,
                        help="the serial reference's (float32 = stock Boltz-2's): with a different "
                             "mode than foldcp's, the differences measure that mode's effect")
    parser.add_argument("--gpu-memory-gib", type=float, default=None,
                        help="cap PyTorch's allocations per GPU at this many GiB (a smaller "
                             "card's capacity on a larger one: 79.18 = an H100 80GB on an H200)")
    parser.add_argument("--token-multiple", type=int, default=None,
                        help="pad tokens to a multiple of this (default: foldcp's, "
                             "layout.token_multiple: 16 on GPUs)")
    parser.add_argument("--warmup", action="store_true",
                        help="fold once untimed first (0 recycles, 2 steps, same complex), as the "
                             "stock bench warms up: kernels compiled, as in a batch after its first fold")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    grid, device = init_from_env(timeout_s=3 * 3600)  # the others wait while rank 0 runs serial
    cuda = device.type == "cuda"
    if cuda and args.gpu_memory_gib:
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.gpu_memory_gib * 2**30 / total), device)
    hparams = json.loads((Path(args.inputs) / "hparams.json").read_text())
    torch.manual_seed(0)
    model = Boltz2(**hparams).eval()
    if args.pairformer_blocks is not None:
        layers = model.pairformer_module.layers
        model.pairformer_module.layers = torch.nn.ModuleList(list(layers)[: args.pairformer_blocks])
    model = model.to(device)
    randomize_weights(model, seed=0, std=0.02)  # on the GPU: seconds, not minutes
    saved = torch.load(Path(args.inputs) / f"features_{args.tokens}.pt", weights_only=False)
    if args.no_serial:  # maps only training losses read: not expanded (4.6 GB each at 12,000)
        saved = {key: value for key, value in saved.items() if key not in UNUSED_FEATURES}
    feats_cpu = expand(saved, "cpu")
    n = feats_cpu["token_pad_mask"].shape[1]
    run = dict(recycling_steps=args.recycling, diffusion_samples=args.samples,
               max_parallel_samples=args.samples)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    row = {"tokens": n, "grid": f"{grid.rows}x{grid.cols}", "recycling": args.recycling,
           "commit": commit(), "gpu_memory_cap_gib": args.gpu_memory_gib,
           "steps": args.steps, "samples": args.samples, "pairformer_blocks": args.pairformer_blocks,
           "serial_sampling_precision": None if args.no_serial else args.serial_sampling_precision,
           "card": torch.cuda.get_device_name(device) if cuda else "cpu",
           # switches of foldcp's opt-in or opt-out paths (FOLDCP_GRAPHED_SAMPLING …)
           "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("FOLDCP_")}}
    serial = None
    if grid.rank == 0 and not args.no_serial:
        feats = {k: v.to(device) for k, v in feats_cpu.items()}
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        sync(); started = time.perf_counter()
        with torch.inference_mode(), autocast, \
                sampling_precision(model.structure_module, args.serial_sampling_precision):
            torch.manual_seed(1)
            serial = model(feats, num_sampling_steps=args.steps, run_confidence_sequentially=True, **run)
        sync()
        row["serial_s"] = round(time.perf_counter() - started, 2)
        row["serial_peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if cuda else None
        serial = {k: serial[k] for k in ("sample_atom_coords", "plddt", "pae", "ptm", "iptm")}
        del feats
        if cuda:
            torch.cuda.empty_cache()
    if grid.size > 1:
        dist.barrier()
    feats = split_features(feats_cpu, device)
    multiple = args.token_multiple or token_multiple(device)
    layout = Layout.for_tokens(grid, n, multiple)
    row["token_multiple"], row["n_padded"] = multiple, layout.n_padded
    import foldcp.distributed.model as dist_model_module
    unwrapped_sample_structure = dist_model_module.sample_structure
    if args.warmup:
        sync(); started = time.perf_counter()
        with torch.inference_mode(), autocast, \
                sampling_precision(model.structure_module, args.sampling_precision[0]):
            torch.manual_seed(1)
            DistBoltz2(model, cuda_graphs=not args.no_cuda_graphs).predict(
                feats, layout, sampling_steps=2, recycling_steps=0, diffusion_samples=1,
                max_parallel_samples=1)
        sync()
        row["warmup_s"] = round(time.perf_counter() - started, 2)
        if cuda:
            torch.cuda.empty_cache()
    base_row = row
    for mode in args.sampling_precision:  # a row per mode: same model, inputs and serial
        row = dict(base_row, sampling_precision=mode)
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        sync(); started = time.perf_counter()
        phases: dict[str, float] = {}

        def timed_phase(name, fn):  # GPU time per phase: trunk, diffusion sampling, confidence
            def wrapper(*a, **k):
                sync(); t0 = time.perf_counter()
                result = fn(*a, **k)
                sync(); phases[name] = round(phases.get(name, 0.0) + time.perf_counter() - t0, 3)
                if grid.rank == 0:  # progress of runs that may meet the device's time limit
                    print(f"phase {name} {time.perf_counter() - t0:.1f} s, "
                          f"{time.perf_counter() - started:.1f} s since start", flush=True)
                if os.environ.get("CHECK_FINITE"):  # which phase first makes a non-finite value
                    values = vars(result) if hasattr(result, "__dict__") else result
                    tensors = values.items() if isinstance(values, dict) else [(name, values)]
                    print("finite", name, {k: bool(torch.isfinite(v).all()) for k, v in tensors
                                           if torch.is_tensor(v)}, flush=True)
                return result
            return wrapper

        dist_model = DistBoltz2(model, cuda_graphs=not args.no_cuda_graphs)
        row["cuda_graphs"] = not args.no_cuda_graphs
        dist_model.trunk.forward = timed_phase("trunk", dist_model.trunk.forward)
        trunk_parts: dict[str, float] = {}  # the trunk's time by stage, summed over passes
        row["trunk_parts_s"] = trunk_parts
        trunk = dist_model.trunk  # modules: their forward is wrapped; msa_stage is a method
        for part, owner, name in (("input_embedder", model.input_embedder, "forward"),
                                  ("pair_init", trunk.pair_init, "forward"),
                                  ("msa_stage", trunk, "msa_stage"),
                                  ("pairformer", trunk.pairformer, "forward"),
                                  ("distogram", trunk.distogram, "forward")):
            setattr(owner, name, timed_part(trunk_parts, part, getattr(owner, name), sync))
        dist_model.confidence.forward = timed_phase("confidence", dist_model.confidence.forward)
        dist_model_module.sample_structure = timed_phase("diffusion", unwrapped_sample_structure)
        row["phases_s"] = phases
        if args.profile_step and mode == args.sampling_precision[0]:
            profile_kth_call(model.structure_module, "preconditioned_network_forward",
                             args.profile_step, row, "step_profile", sync)
        if args.profile_sampling and mode == args.sampling_precision[0]:
            first, count = args.profile_sampling
            profile_kth_call(model.structure_module, "preconditioned_network_forward", first, row,
                             "sampling_profile", sync, count=count)
        if args.profile_pairformer and mode == args.sampling_precision[0]:
            profile_kth_call(trunk.pairformer, "forward", args.profile_pairformer, row,
                             "pairformer_profile", sync)
        if args.profile_msa and mode == args.sampling_precision[0]:
            profile_kth_call(trunk, "msa_stage", args.profile_msa, row, "msa_profile", sync)
        try:
            with torch.inference_mode(), autocast, \
                    sampling_precision(model.structure_module, mode):
                torch.manual_seed(1)
                graphed_sampling.last_run.clear()  # filled only if this fold uses that loop
                out = dist_model.predict(feats, layout, sampling_steps=args.steps, **run)
            sync()
        except torch.OutOfMemoryError as error:  # a capacity probe: record where it stopped
            row.update(oom=True, cp_s=round(time.perf_counter() - started, 2),
                       cp_peak_gib_per_gpu=round(torch.cuda.max_memory_allocated(device) / 2**30, 2),
                       error=str(error)[:300], where=_innermost_foldcp_frames(error))
            emit(row, args.out)
            raise SystemExit(3)
        stats = torch.tensor([time.perf_counter() - started,
                              torch.cuda.max_memory_allocated(device) / 2**30 if cuda else 0.0], device=device)
        if grid.size > 1:
            dist.all_reduce(stats, op=dist.ReduceOp.MAX)
        pae = gather_pair(out["pae_block"][:1, ..., None].float(), grid, layout.n_padded)
        row["cp_s"], row["cp_peak_gib_per_gpu"] = round(stats[0].item(), 2), round(stats[1].item(), 2)
        if graphed_sampling.last_run:  # its steps replayed as one graph / run eagerly
            row["graphed_sampling_steps"] = dict(graphed_sampling.last_run)
        if grid.rank == 0:
            if serial is not None:
                diff = lambda a, b: float((a.float() - b.float()).abs().max())  # noqa: E731
                row["max_abs_coord_diff_A"] = diff(out["sample_atom_coords"], serial["sample_atom_coords"])
                real = feats_cpu["atom_pad_mask"][0].bool().to(device)  # unaligned: same seed, same frame
                row["coord_rmsd_A"] = float(
                    (out["sample_atom_coords"].float() - serial["sample_atom_coords"].float())[:, real]
                    .square().sum(-1).mean().sqrt())
                row["max_abs_plddt_diff"] = diff(out["plddt"], serial["plddt"])
                row["max_abs_pae_diff_A"] = diff(pae[0, :n, :n, 0], serial["pae"][0])
                row["ptm"], row["ptm_diff"] = float(serial["ptm"][0]), diff(out["ptm"], serial["ptm"])
                row["iptm"], row["iptm_diff"] = float(serial["iptm"][0]), diff(out["iptm"], serial["iptm"])
            emit(row, args.out)
    if dist.is_initialized():
        dist.destroy_process_group()


def profile_kth_call(owner, name: str, k: int, row: dict, key: str, sync, top: int = 25,
                     count: int = 1) -> None:
    """Profile owner.<name>'s calls k … k + count - 1 (a denoising step, a Pairformer pass)
    and all that runs between them (count > 1: a stretch of the sampling loop, the work
    between network calls included): the wall time and rows.profile_summary's (GPU busy
    time, ms per foldcp.* label, top kernels, top host ops) land in row[key]."""
    from torch.profiler import ProfilerActivity, profile

    original = getattr(owner, name)
    calls = [0]
    state = {}

    def profiled(*args, **kwargs):
        calls[0] += 1
        if calls[0] == k:
            sync()
            state["prof"] = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
            state["prof"].start()
            state["started"] = time.perf_counter()
        result = original(*args, **kwargs)
        if calls[0] == k + count - 1:
            sync()
            wall = time.perf_counter() - state["started"]
            state["prof"].stop()
            row[key] = ({"calls": count, "wall_ms": round(wall * 1e3, 2)}
                        | profile_summary(state["prof"], True, top, cpu_top=15))
        return result

    setattr(owner, name, profiled)


def timed_part(totals: dict, name: str, fn, sync):
    """fn, its GPU time added to totals[name] at each call (synchronised before and after)."""
    def wrapper(*args, **kwargs):
        sync(); started = time.perf_counter()
        result = fn(*args, **kwargs)
        sync(); totals[name] = round(totals.get(name, 0.0) + time.perf_counter() - started, 3)
        return result
    return wrapper


def emit(row: dict, out: str | None) -> None:
    """Print the result row and append it to the JSON-lines file `out`."""
    print(json.dumps(row), flush=True)
    append_jsonl(out, [row])


def _innermost_foldcp_frames(error: BaseException) -> list[str]:
    import traceback
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "/foldcp/" in f.filename or "/boltz/" in f.filename]
    return [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in ours[-6:] + frames[-1:]]


if __name__ == "__main__":
    main()
