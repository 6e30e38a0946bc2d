"""Model checkpoints: resolve ``model.checkpoint`` (auto | demo | PATH) and load Boltz-2.

- ``auto``: the Boltz cache (``$BOLTZ_CACHE`` or ``~/.boltz``)/boltz2_conf.ckpt, downloaded
  with Boltz's own URLs (and its ``mols`` residue library) when missing and the network allows.
- ``demo``: a small random-weight Boltz2 (same class, every module, tiny sizes) built once
  with a fixed seed, saved as a Lightning checkpoint and loaded by the same code as a real
  one. Its outputs are UNTRAINED: the runner labels everything it writes from it.
- any other value: a path to a Boltz-2 checkpoint file.

Every load goes through `load_model`, i.e. ``Boltz2.load_from_checkpoint`` with the
runtime overrides `boltz predict` applies, so the demo exercises the real loading path. It is
strict (every weight comes from the file), so the model is built without drawing initial
weights first (no_initial_draws.py).
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from foldcp.errors import CheckpointError
from foldcp.io import atomic_path
from foldcp.model.hparams import demo_hparams, runtime_overrides
from foldcp.model.mols import ensure_canonical_mols
from foldcp.model.no_initial_draws import no_initial_draws
from foldcp.model.weights import randomize_weights

DEMO_SEED = 20261127
DEMO_INIT_STD = 0.05
CHECKPOINT_NAME = "boltz2_conf.ckpt"


@dataclass(frozen=True)
class ResolvedCheckpoint:
    path: Path
    mol_dir: Path
    untrained: bool  # known before loading (demo); load_model also reads the file's mark
    kind: str  # "released" | "demo" | "path"


def boltz_cache() -> Path:
    env = os.environ.get("BOLTZ_CACHE")
    return Path(env).expanduser().resolve() if env else Path("~/.boltz").expanduser()


def foldcp_cache() -> Path:
    env = os.environ.get("FOLDCP_CACHE")
    return Path(env).expanduser().resolve() if env else Path("~/.cache/foldcp").expanduser()


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_demo_checkpoint(path: str | Path) -> Path:
    """Build the demo model with fixed seeds and save it as a Lightning checkpoint."""
    import pytorch_lightning
    from boltz.model.models.boltz2 import Boltz2
    from omegaconf import OmegaConf

    hparams = demo_hparams()
    # Boltz2.on_load_checkpoint reads these attributes, so store them as a DictConfig.
    hparams["training_args"] = OmegaConf.create(
        dict(max_lr=0.0, weight_decay=0.0, diffusion_multiplicity=1, recycling_steps=0)
    )
    torch.manual_seed(DEMO_SEED)
    model = Boltz2(**hparams)
    randomize_weights(model, DEMO_SEED, DEMO_INIT_STD)
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": hparams,
        "pytorch-lightning_version": pytorch_lightning.__version__,
        "foldcp": {"untrained": True, "seed": DEMO_SEED, "init_std": DEMO_INIT_STD},
    }
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return Path(path)


def _download(urls: list[str], target: Path) -> None:
    errors = []
    for url in urls:
        try:
            with atomic_path(target) as tmp:
                urllib.request.urlretrieve(url, str(tmp))  # noqa: S310
            return
        except Exception as exc:  # noqa: BLE001 - every failure is reported below
            errors.append(f"{url}: {exc}")
    raise CheckpointError("; ".join(errors))


def _ensure_boltz_mols(cache: Path) -> Path:
    """Boltz's residue library from its mols.tar where reachable, else built with RDKit."""
    from boltz.main import MOL_URL

    mol_dir = cache / "mols"
    if not (mol_dir / "ALA.pkl").exists():
        try:
            import tarfile

            tar_path = cache / "mols.tar"
            if not tar_path.exists():
                _download([MOL_URL], tar_path)
            with tarfile.open(tar_path) as tar:
                tar.extractall(cache)  # noqa: S202 - Boltz's own archive
        except (CheckpointError, OSError):
            pass
    return ensure_canonical_mols(mol_dir)


def mol_dir_of(spec: str) -> Path:
    """The residue library folder that ``model.checkpoint`` = spec uses (made if missing),
    without resolving or building the checkpoint itself."""
    if spec == "demo":
        return ensure_canonical_mols(foldcp_cache() / "mols")
    return _ensure_boltz_mols(boltz_cache())


def resolve_checkpoint(spec: str, download: bool = True) -> ResolvedCheckpoint:
    """Turn ``model.checkpoint`` into a checkpoint file and a residue library folder."""
    if spec == "demo":
        cache = foldcp_cache()
        path = cache / f"demo-boltz2-{DEMO_SEED}.ckpt"
        if not path.exists():
            build_demo_checkpoint(path)
        return ResolvedCheckpoint(path, mol_dir_of(spec), True, "demo")
    if spec == "auto":
        cache = boltz_cache()
        path = cache / CHECKPOINT_NAME
        if not path.exists():
            if not download:
                raise CheckpointError(f"no Boltz-2 checkpoint at {path} and downloading is off")
            from boltz.main import BOLTZ2_URL_WITH_FALLBACK

            cache.mkdir(parents=True, exist_ok=True)
            try:
                _download(list(BOLTZ2_URL_WITH_FALLBACK), path)
            except CheckpointError as exc:
                raise CheckpointError(
                    f"the Boltz-2 checkpoint is not at {path} and could not be downloaded "
                    f"({exc}). Get it on a machine with internet access, e.g. "
                    f"`boltz predict` once or `wget {BOLTZ2_URL_WITH_FALLBACK[-1]}`, and put it "
                    f"there (or set BOLTZ_CACHE, or model.checkpoint: /path/to/{CHECKPOINT_NAME}); "
                    f"or use model.checkpoint: demo for an untrained random-weight model"
                ) from None
        return ResolvedCheckpoint(path, mol_dir_of(spec), False, "released")
    path = Path(spec).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"model.checkpoint {spec!r} is not a file; use auto, demo or a checkpoint path"
        )
    return ResolvedCheckpoint(path, mol_dir_of(spec), False, "path")


def load_model(checkpoint: ResolvedCheckpoint, settings: dict, device: torch.device):
    """Load Boltz2 from a checkpoint with the run's settings, in eval mode on `device`.

    Returns (model, untrained): untrained is true for the demo checkpoint wherever it was
    copied to, since foldcp marks the checkpoints it builds.
    """
    from boltz.model.models.boltz2 import Boltz2

    try:
        try:  # memory-mapped: only the hyper-parameters and the untrained mark are read here
            stored = torch.load(checkpoint.path, map_location="cpu", weights_only=False, mmap=True)
        except RuntimeError:  # not in torch.save's zip format, which mmap needs: read it whole
            stored = torch.load(checkpoint.path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"cannot read checkpoint {checkpoint.path}: {exc}") from exc
    overrides = runtime_overrides(stored.get("hyper_parameters", {}), settings)
    with no_initial_draws():  # strict: the checkpoint sets every weight
        model = Boltz2.load_from_checkpoint(
            checkpoint.path, strict=True, map_location="cpu", weights_only=False, **overrides
        )
    untrained = checkpoint.untrained or bool(stored.get("foldcp", {}).get("untrained", False))
    return model.eval().to(device), untrained
