"""Screening throughput (issue 8): complexes per GPU-hour, foldcp vs stock `boltz predict`.

Target: ~50 complexes of 300-1,500 tokens, foldcp >= 3x stock `boltz predict` given the same
inputs as a directory (same settings, same card). Both sides fold the same random protein
complexes, single sequence (no MSA: neither needs MMseqs2 or a server), with the same
random-weight checkpoint: outputs are UNTRAINED (random weights), only the time means anything.

Device-call recipe (2 GPUs of one host: stock on GPU 0 and foldcp on GPU 1, side by side, each
stopped at the call's remaining time; one 10-minute call). Here, on the CPU machine, once per
session (/.payload/ is git-ignored, so the wheels travel only when carried):

    SITE_TARBALL=.payload/tp-site.tar.xz bash bench/throughput_payload.sh .payload/tp_whl
    bash ../shared/bench/make_cueq_payload.sh .anchor/.whl_cueq   # stock's kernels (28 MiB)

then one `run` with kind nvidia-h100-x2 (or nvidia-h200-x2), carry
[".payload/tp-site.tar.xz", ".anchor/.whl_cueq"], timeout_s 600 (the seventh session's calls,
bench/RESULTS.md, ran this with --count 16; foldcp with --single-gpu foldcp
--sampling-precision tf32):

    set -u; t0=$(date +%s); site=/tmp/tp-site; w=/tmp/tp; tp="python3 bench/throughput.py"
    mkdir -p $site && tar -xJf .payload/tp-site.tar.xz -C $site &&
    tar -xJf .anchor/.whl_cueq/cueq-*.tar.xz -C $site && python3 -m pip install -q --no-index \
        --no-deps --no-compile --target $site --upgrade .anchor/.whl_cueq/*.whl || exit
    export PYTHONPATH=$PWD:$site PYTHONUNBUFFERED=1; nvidia-smi -L
    $tp make --out $w/in --count 12 --min-tokens 300 --max-tokens 1500 --seed 0
    $tp checkpoint --out $w/full.ckpt --size full --cache $w/cache
    left=$(( 565 - ($(date +%s) - t0) )); echo "setup $(( $(date +%s) - t0 )) s, limit $left s"
    CUDA_VISIBLE_DEVICES=0 $tp stock --inputs $w/in --checkpoint $w/full.ckpt --cache $w/cache \
        --work $w/stock --out $OUT/stock.jsonl --time-limit $left > $OUT/stock.txt 2>&1 &
    CUDA_VISIBLE_DEVICES=1 $tp foldcp --inputs $w/in --checkpoint $w/full.ckpt --cache $w/cache \
        --work $w/foldcp --out $OUT/foldcp.jsonl --time-limit $left > $OUT/foldcp.txt 2>&1 &
    wait; cat $OUT/stock.jsonl $OUT/foldcp.jsonl > $OUT/throughput.jsonl
    tail -n 5 $w/stock/stock.log $w/foldcp/foldcp.log; $tp table --out $OUT/throughput.jsonl

Report complexes_per_gpu_hour of both rows (same card, same inputs_sha256: `table` prints the
foldcp / stock ratio) with the card and commit of the rows. A row with timed_out true counts
the complexes finished within its limit (tokens_with_outputs says how much work that was; the
two sides fold in different orders: foldcp's plan largest first, stock by file). Setup
(wheels, inputs, the full 506.7M-parameter checkpoint drawn on the GPU, 1.9 GiB) should take
65-90 s; 16 complexes (15,333 tokens) took 446-460 s on an H200 at the default settings (200
steps, 3 recycles, 1 sample). The issue's ~50 complexes take 3-4 such calls (seeds 0-3, or
--count 50 with a longer limit where calls allow). The GPU image has no cuEquivariance:
without its payload carried both sides run without its kernels (settings.kernels false),
which is not stock's strongest setting.

Subcommands:
  make        random complexes as foldcp inputs (FASTA + pairs table) and Boltz YAMLs
  checkpoint  random-weight Boltz2 checkpoint both sides load, and a Boltz cache for stock
  stock       time `boltz predict INPUTS/boltz_yaml` (one process over the directory)
  foldcp      time foldcp's plan + `foldcp predict` of every batch (what the workflow runs)
  table       print the rows of a results file, with foldcp / stock ratios
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as `python bench/throughput.py` without installing foldcp
    sys.path.insert(0, str(REPO))

from rows import append_jsonl, commit  # bench/rows.py (the script's folder is on sys.path)

from foldcp.io import atomic_path, write_bytes, write_json, write_text

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
MANIFEST = "complexes.json"
FASTA = "proteins.fasta"
PAIRS = "pairs.tsv"
YAML_DIR = "boltz_yaml"
# the std of the GPU benchmarks' random weights (bench/cp_model.py); Boltz's own
# initialisation zeroes gates and output projections, so its layers would add nothing
INIT_STD = 0.02
# `boltz predict` downloads whatever of these its cache lacks (boltz/main.py download_boltz2),
# even when --checkpoint names the model to load: the benchmark's cache holds placeholders
PLACEHOLDER_TEXT = (
    "PLACEHOLDER, not a checkpoint: written by bench/throughput.py so that `boltz predict` "
    "(boltz/main.py download_boltz2 checks that {name} exists even when --checkpoint is given) "
    "does not try to download it. The benchmark always passes --checkpoint; {why}. Loading "
    "this file fails loudly instead of predicting with weights nobody chose.\n"
)
PLACEHOLDERS = {
    "boltz2_conf.ckpt": "this file is never loaded",
    "boltz2_aff.ckpt": "Boltz loads it only for inputs with an affinity property, which the "
                       "benchmark's inputs never have",
}


# ---------------------------------------------------------------------------------------------
# make: the inputs
# ---------------------------------------------------------------------------------------------

def chain_lengths(total: int, chains: int, rng: random.Random) -> list[int]:
    """Split `total` tokens into `chains` lengths of comparable size (each 1/3 to 3x another)."""
    weights = [rng.uniform(1.0, 3.0) for _ in range(chains)]
    lengths = [max(1, int(total * w / sum(weights))) for w in weights]
    lengths[-1] += total - sum(lengths)  # rounding goes to the last chain
    if min(lengths) < 1:  # a few tokens over many chains: split evenly instead
        lengths = [total // chains + (k < total % chains) for k in range(chains)]
    return lengths


def random_complexes(count: int, min_tokens: int, max_tokens: int, seed: int, chains: int):
    """[(protein ids, sequences)] per complex; the same arguments give the same complexes."""
    rng = random.Random(seed)
    made = []
    for index in range(count):
        total = rng.randint(min_tokens, max_tokens)
        ids = [f"TP{index:04d}{chr(ord('A') + k)}" for k in range(chains)]
        sequences = ["".join(rng.choice(AMINO_ACIDS) for _ in range(n))
                     for n in chain_lengths(total, chains, rng)]
        made.append((ids, sequences))
    return made


def fasta_text(proteins: list[tuple[str, str]]) -> str:
    lines = []
    for identifier, sequence in proteins:
        lines.append(f">{identifier} random sequence (bench/throughput.py)")
        lines += [sequence[i:i + 60] for i in range(0, len(sequence), 60)]
    return "\n".join(lines) + "\n"


def boltz_yaml(complex_, proteins) -> str:
    """The Boltz YAML of a complex: foldcp's own schema of it (foldcp.runner.featurize), so
    both sides get the same chains, names, order and `msa: empty`."""
    import yaml

    from foldcp.runner.featurize import boltz_schema

    schema, _ = boltz_schema(complex_, proteins)
    for entity in schema["sequences"]:
        ids = entity["protein"]["id"]
        if len(ids) == 1:
            entity["protein"]["id"] = ids[0]  # `id: A`, as users write it
    return yaml.safe_dump(schema, sort_keys=False)


def cmd_make(args) -> None:
    from foldcp.inputs import Chain, make_complex, read_fasta

    if args.chains < 1 or args.count < 1 or not 1 <= args.min_tokens <= args.max_tokens:
        raise SystemExit("make: need --count >= 1, --chains >= 1, 1 <= --min-tokens <= --max-tokens")
    if args.min_tokens < args.chains:
        raise SystemExit(f"make: --min-tokens {args.min_tokens} is below one residue per chain")
    out = Path(args.out)
    if (out / YAML_DIR).exists() and any((out / YAML_DIR).iterdir()):
        # `boltz predict` reads every file of the folder: leftovers would join the benchmark
        raise SystemExit(f"make: {out / YAML_DIR} is not empty; choose a new --out")
    made = random_complexes(args.count, args.min_tokens, args.max_tokens, args.seed, args.chains)
    write_text(out / FASTA, fasta_text([p for ids, seqs in made for p in zip(ids, seqs)]))
    # read back through foldcp's own reader: the FASTA is what foldcp will see
    proteins = read_fasta(out / FASTA)
    rows, table = [], ["chains"]
    for ids, sequences in made:
        complex_ = make_complex(tuple(Chain(i) for i in ids))
        table.append(complex_.spec)
        write_text(out / YAML_DIR / f"{complex_.id}.yaml", boltz_yaml(complex_, proteins))
        rows.append({"complex_id": complex_.id, "chains": complex_.spec,
                     "tokens": complex_.tokens(proteins),
                     "chain_lengths": [len(s) for s in sequences]})
    write_text(out / PAIRS, "\n".join(table) + "\n")
    manifest = {
        "made_by": "bench/throughput.py make", "seed": args.seed, "count": args.count,
        "min_tokens": args.min_tokens, "max_tokens": args.max_tokens, "chains": args.chains,
        "msa": "none (single sequence)", "complexes": rows,
    }
    write_json(out / MANIFEST, manifest)  # written last: a folder with it is complete
    tokens = [r["tokens"] for r in rows]
    print(f"{len(rows)} complexes of {min(tokens)}-{max(tokens)} tokens ({sum(tokens)} in all, "
          f"{args.chains} chains each) -> {out}/{FASTA}, {PAIRS}, {YAML_DIR}/*.yaml, {MANIFEST}")


def load_inputs(directory: str | Path) -> dict:
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except OSError as exc:
        raise SystemExit(f"no benchmark inputs at {directory}: cannot read {path} "
                         f"({exc.strerror}); run `bench/throughput.py make --out {directory}` first")
    manifest["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return manifest


# ---------------------------------------------------------------------------------------------
# checkpoint: random weights both sides load, and a Boltz cache for stock
# ---------------------------------------------------------------------------------------------

def checkpoint_hparams(size: str) -> dict:
    """Boltz2 hyper-parameters that `boltz predict` can load with strict=True.

    `boltz predict` replaces the stored pairformer_args and msa_args with its own dataclass
    defaults (64 blocks, 16 heads; msa_s 64, 4 blocks), so both must have those values. `full`
    is the released model (foldcp.model.hparams.RELEASED, the sizes of bench/cp_model.py);
    `demo` is foldcp's small demo model with the trunk's block counts stock imposes, small
    widths elsewhere: seconds per tiny complex on a CPU.
    """
    from boltz.main import MSAModuleArgs, PairformerArgsV2

    from foldcp.model.hparams import RELEASED, demo_hparams

    hparams = copy.deepcopy(RELEASED) if size == "full" else demo_hparams()
    hparams["pairformer_args"] = asdict(PairformerArgsV2())
    hparams["msa_args"] = asdict(MSAModuleArgs(use_paired_feature=True))  # predict's values
    return hparams


def build_checkpoint(path: Path, size: str, seed: int) -> int:
    """Build, randomise and save (atomically) the model; return its parameter count."""
    import pytorch_lightning
    import torch
    from boltz.model.models.boltz2 import Boltz2
    from pytorch_lightning.utilities.parsing import AttributeDict

    from foldcp.model.weights import randomize_weights

    hparams = checkpoint_hparams(size)
    # Boltz2.on_load_checkpoint reads training_args by attribute (.max_lr) and writes it by
    # key: Lightning's AttributeDict does both, as the DictConfig of foldcp's demo checkpoint
    # does, and unpickles with pytorch_lightning alone (no omegaconf on the GPU image)
    hparams["training_args"] = AttributeDict(
        max_lr=0.0, weight_decay=0.0, diffusion_multiplicity=1, recycling_steps=0)
    torch.manual_seed(seed)
    model = Boltz2(**hparams)
    if torch.cuda.is_available():
        model = model.cuda()  # drawn on the GPU: the full model's draws take minutes on a CPU
    randomize_weights(model, seed, INIT_STD)
    state = {name: tensor.cpu() for name, tensor in model.state_dict().items()}
    checkpoint = {
        "state_dict": state,
        "hyper_parameters": hparams,
        "pytorch-lightning_version": pytorch_lightning.__version__,
        # foldcp labels everything it writes from a checkpoint carrying this mark as untrained
        "foldcp": {"untrained": True, "seed": seed, "init_std": INIT_STD,
                   "made_by": f"bench/throughput.py checkpoint --size {size}"},
    }
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return sum(p.numel() for p in model.parameters())


def prepare_boltz_cache(cache: Path) -> None:
    """What `boltz predict --cache CACHE` looks for, so that it downloads nothing:

    mols/ (the 21 canonical residues, built by foldcp.model.mols with RDKit: the same files
    foldcp reads when BOLTZ_CACHE points here), mols.tar (a tar of that folder: Boltz only
    extracts it when mols/ is missing), and placeholders for the checkpoints it checks for.
    """
    from foldcp.model.mols import ensure_canonical_mols

    mol_dir = ensure_canonical_mols(cache / "mols")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(mol_dir.glob("*.pkl")):
            tar.add(path, arcname=f"mols/{path.name}")
    write_bytes(cache / "mols.tar", buffer.getvalue())
    for name, why in PLACEHOLDERS.items():
        target = cache / name
        if target.exists() and not target.read_bytes().startswith(b"PLACEHOLDER"):
            raise SystemExit(f"checkpoint: {target} is a real file; use a cache folder of "
                             f"the benchmark's own (it writes placeholders there)")
        write_text(target, PLACEHOLDER_TEXT.format(name=name, why=why))


def cmd_checkpoint(args) -> None:
    out = Path(args.out)
    started = time.perf_counter()
    params = build_checkpoint(out, args.size, args.seed)
    print(f"{args.size} Boltz2, {params / 1e6:.1f}M parameters, RANDOM WEIGHTS (untrained) -> "
          f"{out} ({out.stat().st_size / 2**20:.0f} MiB, {time.perf_counter() - started:.0f} s)")
    if args.cache:
        prepare_boltz_cache(Path(args.cache))
        print(f"Boltz cache for stock (mols/ built with RDKit, placeholders) -> {args.cache}")


# ---------------------------------------------------------------------------------------------
# timing: shared pieces
# ---------------------------------------------------------------------------------------------

def use_kernels(requested_off: bool) -> bool:
    """cuEquivariance kernels where they can run (a CUDA GPU and the package), unless
    --no-kernels. Both modes decide the same way, so both get the same setting; stock
    would crash without the package (its forward imports it)."""
    if requested_off:
        return False
    import importlib.util

    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("cuequivariance_torch") is not None


def fresh_work_dir(requested: str | None, mode: str) -> Path:
    """An empty folder: leftovers would be skipped by both sides (stock keeps existing
    predictions, foldcp keeps finished complexes) and inflate the count."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    work = Path(requested) if requested else Path(f"/tmp/tp-work-{mode}-{stamp}-{os.getpid()}")
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"{mode}: work folder {work} is not empty; give a new --work")
    work.mkdir(parents=True, exist_ok=True)
    return work


def run_limited(command: list[str], log: Path, env: dict, deadline: float | None) -> dict:
    """Run `command` (output appended to `log`); stop its whole process group at `deadline`
    (perf_counter seconds). Returns returncode, seconds, timed_out."""
    started = time.perf_counter()
    with open(log, "a") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        child = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                 cwd=REPO, start_new_session=True)
        timed_out = False
        try:
            child.wait(timeout=None if deadline is None else max(0.0, deadline - started))
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(child.pid, signal.SIGTERM)  # its own session: DataLoader workers too
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
    return {"returncode": child.returncode, "seconds": round(time.perf_counter() - started, 3),
            "timed_out": timed_out}


def card_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


# the settings both modes share: rows compare only where these are equal
COMPARED_SETTINGS = ("recycling_steps", "sampling_steps", "diffusion_samples",
                     "max_parallel_samples", "seed", "kernels", "msa", "write_full_pae")


def settings_of(args, kernels: bool) -> dict:
    return {"recycling_steps": args.recycling, "sampling_steps": args.steps,
            "diffusion_samples": args.samples, "max_parallel_samples": args.max_parallel_samples,
            "seed": args.seed, "kernels": kernels, "msa": "none (single sequence)",
            "write_full_pae": True, "checkpoint": str(Path(args.checkpoint).resolve())}


def result_row(mode: str, inputs: dict, done: list[str], wall_s: float, settings: dict,
               extra: dict) -> dict:
    tokens = {c["complex_id"]: c["tokens"] for c in inputs["complexes"]}
    return {
        "bench": "throughput", "mode": mode,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "complexes_requested": len(tokens), "complexes_with_outputs": len(done),
        "wall_s": round(wall_s, 2),
        "complexes_per_gpu_hour": round(len(done) * 3600 / wall_s, 2) if wall_s > 0 else None,
        "tokens_requested": sum(tokens.values()),
        "tokens_with_outputs": sum(tokens[c] for c in done),
        "missing": sorted(set(tokens) - set(done)),
        "card": card_name(), "gpus": 1, "commit": commit(),
        "inputs_sha256": inputs["sha256"], "settings": settings,
        "untrained": True,  # random weights: the structures mean nothing, the time does
    } | extra


def emit(row: dict, out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    append_jsonl(out, [row])
    print(json.dumps(row))
    print_table(read_rows(out))


def read_rows(path: str | Path) -> list[dict]:
    rows = []
    for line in Path(path).read_text().splitlines():
        row = json.loads(line) if line.strip() else None
        if row and row.get("bench") == "throughput":
            rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    """Rows as a table; each foldcp row with its ratio to the latest stock row of the same
    inputs, settings (but the checkpoint path) and card."""
    def key(row):
        settings = {k: row["settings"].get(k) for k in COMPARED_SETTINGS}
        return row["inputs_sha256"], json.dumps(settings, sort_keys=True), row["card"]

    stock = {key(r): r for r in rows if r["mode"] == "stock"}
    print(f"{'mode':7} {'done/asked':>10} {'wall s':>9} {'per GPU-h':>10} {'vs stock':>8}  "
          f"{'timed out':9} {'sampling':8} card")
    for row in rows:
        base = stock.get(key(row))
        ratio = ""
        if row["mode"] == "foldcp" and base and base["complexes_per_gpu_hour"]:
            ratio = f"{row['complexes_per_gpu_hour'] / base['complexes_per_gpu_hour']:.2f}x"
        print(f"{row['mode']:7} {row['complexes_with_outputs']:>4}/{row['complexes_requested']:<5} "
              f"{row['wall_s']:>9.1f} {row['complexes_per_gpu_hour'] or 0:>10.1f} {ratio:>8}  "
              f"{row['timed_out']!s:9} {row['settings'].get('sampling_precision', 'float32'):8} "
              f"{row['card']}")


# ---------------------------------------------------------------------------------------------
# stock: `boltz predict DIR`
# ---------------------------------------------------------------------------------------------

def stock_outputs_ok(directory: Path, complex_id: str, samples: int) -> bool:
    """Every sample's structure, confidence, pLDDT and PAE are there and readable. Stock
    prints an out-of-memory error and goes on without writing (the run "succeeds"), and a
    stopped run may leave a file half-written: only complete outputs count."""
    import numpy as np

    try:
        for k in range(samples):
            stem = f"{complex_id}_model_{k}"
            if (directory / f"{stem}.cif").stat().st_size == 0:
                return False
            json.loads((directory / f"confidence_{stem}.json").read_text())
            for kind in ("plddt", "pae"):
                with np.load(directory / f"{kind}_{stem}.npz") as data:
                    data[kind].shape  # noqa: B018 - reads the array: a truncated file fails
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return False
    return True


def stock_done(work: Path, inputs: dict, samples: int) -> list[str]:
    predictions = work / f"boltz_results_{YAML_DIR}" / "predictions"
    return [c["complex_id"] for c in inputs["complexes"]
            if stock_outputs_ok(predictions / c["complex_id"], c["complex_id"], samples)]


def cmd_stock(args) -> None:
    inputs = load_inputs(args.inputs)
    work = fresh_work_dir(args.work, "stock")
    kernels = use_kernels(args.no_kernels)
    import torch

    accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    command = [
        sys.executable, "-c", "from boltz.main import cli; cli()",  # the `boltz` entry point
        "predict", str(Path(args.inputs).resolve() / YAML_DIR),
        "--out_dir", str(work), "--cache", str(Path(args.cache).resolve()),
        "--checkpoint", str(Path(args.checkpoint).resolve()),
        "--accelerator", accelerator, "--devices", "1",
        "--recycling_steps", str(args.recycling), "--sampling_steps", str(args.steps),
        "--diffusion_samples", str(args.samples),
        "--max_parallel_samples", str(args.max_parallel_samples), "--seed", str(args.seed),
        # foldcp always writes each sample's full PAE (the interface scores need it)
        "--write_full_pae", "--output_format", "mmcif",
    ] + ([] if kernels else ["--no_kernels"])
    for name in PLACEHOLDERS:
        if not (Path(args.cache) / name).exists():
            raise SystemExit(f"stock: {args.cache} lacks {name}; prepare it with "
                             f"`bench/throughput.py checkpoint --out CKPT --cache {args.cache}` "
                             f"(else `boltz predict` tries to download the released weights)")
    write_text(work / "UNTRAINED.txt", "Predictions here come from a RANDOM-WEIGHT checkpoint "
               "(bench/throughput.py): only their timing means anything.\n")
    log = work / "stock.log"
    started = time.perf_counter()
    deadline = started + args.time_limit if args.time_limit else None
    # `boltz predict` loads the checkpoint through Lightning with torch.load's default, which
    # is weights_only=True from torch 2.6: it refuses the training_args object this script
    # stores (AttributeDict). The file is the benchmark's own: allow the full unpickler.
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    run = run_limited(command, log, env, deadline)
    wall = time.perf_counter() - started
    done = stock_done(work, inputs, args.samples)
    if run["returncode"] != 0 and not run["timed_out"]:
        print(f"stock: boltz predict exited {run['returncode']}; its log: {log}", file=sys.stderr)
        print("\n".join(log.read_text().splitlines()[-25:]), file=sys.stderr)
    emit(result_row("stock", inputs, done, wall, settings_of(args, kernels), {
        "returncode": run["returncode"], "timed_out": run["timed_out"],
        "time_limit_s": args.time_limit, "work": str(work), "log": str(log),
        "command": " ".join(command[3:]),
        # boltz predict runs Boltz-2 under Lightning's bf16-mixed on any accelerator
        "engines": ["boltz predict"], "precision": ["bf16-mixed"],
    }), args.out)


# ---------------------------------------------------------------------------------------------
# foldcp: plan + one `foldcp predict` per batch, as the workflow's rules run them
# ---------------------------------------------------------------------------------------------

def foldcp_config(inputs_dir: Path, work: Path, args, kernels: bool) -> dict:
    """The screen config of the benchmark, validated (schema defaults filled in)."""
    from foldcp.config import validate_config

    config = {
        "proteins": str(inputs_dir / FASTA),
        "candidates": {"mode": "pairs", "pairs": str(inputs_dir / PAIRS)},
        "output_dir": str(work),
        "msa": {"mode": "none"},
        # one GPU: every complex on grid 1 (a 1,500-token complex needs a few GiB)
        "plan": {"grids": [1], "batch": {}},
        "model": {"checkpoint": str(Path(args.checkpoint).resolve()), "device": "auto",
                  "precision": "auto", "recycling_steps": args.recycling,
                  "sampling_steps": args.steps, "diffusion_samples": args.samples,
                  "max_parallel_samples": args.max_parallel_samples, "seed": args.seed,
                  "use_kernels": kernels, "single_gpu": args.single_gpu,
                  "sampling_precision": args.sampling_precision},
    }
    if args.batch_complexes:
        config["plan"]["batch"]["max_complexes"] = args.batch_complexes
    if args.batch_tokens:
        config["plan"]["batch"]["max_tokens"] = args.batch_tokens
    return validate_config(config)


def foldcp_done(work: Path, inputs: dict) -> list[str]:
    """Complexes whose done.json lists files that are all there, intact (foldcp's own check)."""
    from foldcp.runner.outputs import is_done

    return [c["complex_id"] for c in inputs["complexes"]
            if is_done(work / "predictions" / c["complex_id"])]


def foldcp_run_facts(work: Path, done: list[str]) -> dict:
    """What the finished complexes' done.json say about how they were folded: the engine
    (Boltz's forward or foldcp's model on one GPU), the precision `auto` chose, and each
    complex's time (in done order) split into featurize / model / write (timings_s)."""
    manifests = [json.loads((work / "predictions" / c / "done.json").read_text()) for c in done]
    return {"engines": sorted({m["engine"] for m in manifests}),
            "precision": sorted({m["precision"] for m in manifests}),
            "per_complex": [{"complex_id": m["complex_id"], "tokens": m["tokens"],
                             "runtime_s": m["runtime_s"], "timings_s": m.get("timings_s")}
                            for m in manifests]}


def cmd_foldcp(args) -> None:
    import yaml

    inputs = load_inputs(args.inputs)
    inputs_dir = Path(args.inputs).resolve()
    work = fresh_work_dir(args.work, "foldcp")
    kernels = use_kernels(args.no_kernels)
    config = foldcp_config(inputs_dir, work, args, kernels)
    config_path = work / "config.yaml"  # what the workflow's resolved_config rule writes
    write_text(config_path, yaml.safe_dump(config, sort_keys=True))
    env = dict(os.environ)
    if args.cache:  # the residue library stock reads: the same featurized inputs
        env["BOLTZ_CACHE"] = str(Path(args.cache).resolve())
    # predict.smk starts a grid-1 batch as `env OMP_NUM_THREADS={threads} foldcp` with threads
    # = its grid under the local profile: one
    batch_env = env | {"OMP_NUM_THREADS": "1"}
    foldcp = [sys.executable, "-m", "foldcp.cli"]  # the `foldcp` entry point
    log = work / "foldcp.log"
    started = time.perf_counter()
    deadline = started + args.time_limit if args.time_limit else None
    steps = [run_limited([*foldcp, "plan", "--config", str(config_path), "--out",
                          str(work / "plan")], log, env, deadline) | {"step": "plan"}]
    if steps[0]["returncode"] == 0:
        import pandas as pd

        batches = sorted(pd.read_parquet(work / "plan" / "plan.parquet")["batch_id"].unique())
        for batch in batches:
            step = run_limited([*foldcp, "predict", "--config", str(config_path), "--plan",
                                str(work / "plan" / "plan.parquet"), "--batch", batch, "--out",
                                str(work / "predictions"), "--grid", "1", "--msa-dir",
                                str(work / "msa")], log, batch_env, deadline)
            steps.append(step | {"step": batch})
            if step["timed_out"]:
                break
    wall = time.perf_counter() - started
    done = foldcp_done(work, inputs)
    failed = [s for s in steps if s["returncode"] != 0 and not s["timed_out"]]
    if failed:
        print(f"foldcp: {', '.join(s['step'] for s in failed)} exited non-zero; log: {log}",
              file=sys.stderr)
        print("\n".join(log.read_text().splitlines()[-25:]), file=sys.stderr)
    settings = settings_of(args, kernels) | {
        "plan_batch": config["plan"]["batch"], "single_gpu": config["model"]["single_gpu"],
        "sampling_precision": config["model"]["sampling_precision"],
        # switches and compile-cache folders the run was given (a cold or warm start)
        "env": {k: v for k, v in sorted(os.environ.items())
                if k.startswith("FOLDCP_") or k in ("TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR")}}
    emit(result_row("foldcp", inputs, done, wall, settings, {
        "returncode": max((s["returncode"] or 0 for s in steps), key=abs),
        "timed_out": any(s["timed_out"] for s in steps), "time_limit_s": args.time_limit,
        "steps": steps, "work": str(work), "log": str(log),
    } | foldcp_run_facts(work, done)), args.out)


def cmd_table(args) -> None:
    print_table(read_rows(args.out))


# ---------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make", help="random complexes: foldcp inputs and Boltz YAMLs")
    p.add_argument("--out", required=True, help="inputs folder to write")
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--min-tokens", type=int, default=300)
    p.add_argument("--max-tokens", type=int, default=1500)
    p.add_argument("--chains", type=int, default=2, help="chains per complex (distinct proteins)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_make)

    p = sub.add_parser("checkpoint", help="random-weight Boltz2 checkpoint (+ Boltz cache)")
    p.add_argument("--out", required=True, help="checkpoint file to write")
    p.add_argument("--size", choices=["demo", "full"], default="demo",
                   help="full: the released Boltz-2 sizes; demo: small widths (CPU tests)")
    p.add_argument("--cache", help="also prepare this folder as `boltz predict --cache`")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_checkpoint)

    for mode, func in (("stock", cmd_stock), ("foldcp", cmd_foldcp)):
        p = sub.add_parser(mode, help=f"time the {mode} path over the inputs")
        p.add_argument("--inputs", required=True, help="folder written by `make`")
        p.add_argument("--checkpoint", required=True)
        p.add_argument("--cache", required=mode == "stock",
                       help="Boltz cache prepared by `checkpoint --cache`"
                            + ("" if mode == "stock" else " (its mols/ are used: BOLTZ_CACHE)"))
        p.add_argument("--out", required=True, help="results file (.jsonl) to append the row to")
        p.add_argument("--work", help="empty folder for predictions and logs (default: new in /tmp)")
        p.add_argument("--steps", type=int, default=200, help="diffusion sampling steps (>= 2)")
        p.add_argument("--recycling", type=int, default=3)
        p.add_argument("--samples", type=int, default=1)
        p.add_argument("--max-parallel-samples", type=int, default=5)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--no-kernels", action="store_true",
                       help="without cuEquivariance kernels (default: with them where they run)")
        p.add_argument("--time-limit", type=float, default=None,
                       help="stop the run after this many seconds and count what is finished")
        if mode == "foldcp":
            p.add_argument("--batch-complexes", type=int, help="plan.batch.max_complexes")
            p.add_argument("--batch-tokens", type=int, help="plan.batch.max_tokens")
            p.add_argument("--single-gpu", choices=["auto", "boltz", "foldcp"], default="auto",
                           help="model.single_gpu: what folds a one-GPU complex")
            p.add_argument("--sampling-precision", choices=["float32", "tf32", "bf16"],
                           default="float32",
                           help="model.sampling_precision (stock is always float32: a row "
                                "with another mode says so in its settings)")
        p.set_defaults(func=func)

    p = sub.add_parser("table", help="print a results file")
    p.add_argument("--out", required=True, help="results file (.jsonl)")
    p.set_defaults(func=cmd_table)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if getattr(args, "steps", 2) < 2:
        raise SystemExit("--steps must be >= 2 (at 1 step Boltz returns NaN)")
    args.func(args)


if __name__ == "__main__":
    main()
