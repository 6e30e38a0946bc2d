"""Prepare inputs for bench/cp_model.py on the CPU machine (the GPU machine has no RDKit).

Featurizes a synthetic protein complex of about N tokens with Boltz's own pipeline and saves
the features compactly (one-hot matrices as indices), plus the released Boltz-2
hyper-parameters as JSON:

    python bench/cp_inputs.py --tokens 1000 --chains 3 --out .payload/cp
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

ONE_HOT_ATOM_TOKEN = ("atom_to_token", "token_to_rep_atom", "r_set_to_rep_atom", "token_to_center_atom")
DROP = ("disto_target", "disto_coords_ensemble", "record")


def compact(features: dict) -> dict:
    out = {}
    for key, value in features.items():
        if key in DROP or not torch.is_tensor(value):
            continue
        if value.numel() > 1 and bool((value == value.flatten()[0]).all()):  # e.g. no bonds
            out[key] = {"fill": value.flatten()[0].item(), "shape": list(value.shape),
                        "dtype": str(value.dtype)}
        elif key in ONE_HOT_ATOM_TOKEN:  # [1, a, b] one-hot rows (or all-zero rows)
            index = value.argmax(dim=-1)
            index[value.sum(dim=-1) == 0] = -1
            out[key] = {"onehot_index": index.int(), "width": value.shape[-1], "dtype": str(value.dtype)}
        elif key == "contact_conditioning":  # [1, N, N, classes] one-hot, usually one class
            index = value.argmax(dim=-1).to(torch.int8)
            if bool((index == index.flatten()[0]).all()):
                index = {"fill": index.flatten()[0].item(), "shape": list(index.shape)}
            out[key] = {"onehot_index": index, "width": value.shape[-1], "dtype": str(value.dtype)}
        elif value.dim() > 2 and value.shape[-1] > 1 and bool(((value == 0) | (value == 1)).all()) \
                and bool((value.sum(dim=-1) <= 1).all()):  # one-hot rows (ref_element, names)
            index = value.argmax(dim=-1)
            index[value.sum(dim=-1) == 0] = -1
            out[key] = {"onehot_index": index.to(torch.int16), "width": value.shape[-1],
                        "dtype": str(value.dtype)}
        elif value.is_floating_point() and bool(((value == 0) | (value == 1)).all()):
            out[key] = {"binary": value.bool(), "dtype": str(value.dtype)}
        elif not value.is_floating_point() and value.dtype != torch.bool and value.numel() and \
                -128 <= int(value.min()) and int(value.max()) < 128:
            out[key] = {"binary": value.to(torch.int8), "dtype": str(value.dtype)}
        else:
            out[key] = value
    return out


def expand(saved: dict, device) -> dict:
    """Inverse of `compact`, onto `device`."""
    out = {}
    for key, value in saved.items():
        if isinstance(value, dict) and "fill" in value:
            dtype = getattr(torch, value["dtype"].split(".")[-1])
            out[key] = torch.full(value["shape"], value["fill"], dtype=dtype, device=device)
        elif isinstance(value, dict) and "binary" in value:
            out[key] = value["binary"].to(getattr(torch, value["dtype"].split(".")[-1])).to(device)
        elif isinstance(value, dict):
            index = value["onehot_index"]
            index = (torch.full(index["shape"], index["fill"], dtype=torch.long)
                     if isinstance(index, dict) else index.long())
            dense = torch.nn.functional.one_hot(index.clamp(min=0), value["width"])
            dense = dense * (index >= 0).unsqueeze(-1)
            out[key] = dense.to(getattr(torch, value["dtype"].split(".")[-1])).to(device)
        else:
            out[key] = value.to(device)
    return out


def main() -> None:
    from foldcp.inputs import make_complex, parse_complex
    from foldcp.inputs.fasta import Protein
    from foldcp.model.checkpoint import resolve_checkpoint
    from foldcp.model.hparams import RELEASED, demo_hparams
    from foldcp.runner.featurize import featurize
    from boltz.data.mol import load_canonicals

    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, nargs="+", required=True)
    parser.add_argument("--chains", type=int, default=3)
    parser.add_argument("--out", required=True)
    parser.add_argument("--size", choices=["released", "demo"], default="released",
                        help="model sizes written to hparams.json (demo: a CPU smoke test)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hparams = dict(RELEASED) if args.size == "released" else demo_hparams()
    (out / "hparams.json").write_text(json.dumps(hparams, indent=1))
    mol_dir = resolve_checkpoint("demo").mol_dir
    canonicals = load_canonicals(mol_dir)
    rng = np.random.default_rng(0)
    letters = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    for n in args.tokens:
        lengths = [n // args.chains + (i < n % args.chains) for i in range(args.chains)]
        proteins = {f"P{i}": Protein(f"P{i}", "".join(rng.choice(letters, size=length)))
                    for i, length in enumerate(lengths)}
        complex_ = make_complex(parse_complex(";".join(proteins)))
        features = featurize(complex_, proteins, mol_dir, canonicals).features
        saved = compact(features)
        restored = expand(saved, "cpu")
        for key, value in restored.items():  # the GPU run must see exactly these features
            assert value.dtype == features[key].dtype and torch.equal(value, features[key]), key
        torch.save(saved, out / f"features_{n}.pt")
        print(n, "tokens,", int(features["atom_pad_mask"].sum()), "atoms ->", out / f"features_{n}.pt")


if __name__ == "__main__":
    main()
