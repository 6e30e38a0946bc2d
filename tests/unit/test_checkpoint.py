import urllib.request

import pytest
import torch

from foldcp.errors import CheckpointError
from foldcp.model import checkpoint as ckpt

SETTINGS = dict(recycling_steps=0, sampling_steps=2, diffusion_samples=1, max_parallel_samples=1)


def test_demo_checkpoint_builds_once_and_loads_through_lightning(foldcp_cache):
    resolved = ckpt.resolve_checkpoint("demo")
    assert resolved.untrained and resolved.kind == "demo"
    assert sorted(p.stem for p in resolved.mol_dir.glob("*.pkl"))[:3] == ["ALA", "ARG", "ASN"]
    mtime = resolved.path.stat().st_mtime_ns
    assert ckpt.resolve_checkpoint("demo").path.stat().st_mtime_ns == mtime  # not rebuilt
    model, untrained = ckpt.load_model(resolved, SETTINGS, torch.device("cpu"))
    assert untrained
    stored = torch.load(resolved.path, map_location="cpu", weights_only=False)["state_dict"]
    loaded = model.state_dict()
    assert stored.keys() == loaded.keys()
    assert all(torch.equal(stored[k], loaded[k]) for k in stored)
    assert model.predict_args["sampling_steps"] == 2


def test_checkpoint_in_the_legacy_format_loads(foldcp_cache, tmp_path):
    """load_model reads the checkpoint memory-mapped, which needs torch.save's zip format; a
    file in the legacy format is read whole instead, to the same weights."""
    resolved = ckpt.resolve_checkpoint("demo")
    stored = torch.load(resolved.path, map_location="cpu", weights_only=False)
    legacy = tmp_path / "legacy.ckpt"
    torch.save(stored, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(RuntimeError):
        torch.load(legacy, map_location="cpu", weights_only=False, mmap=True)
    model, untrained = ckpt.load_model(ckpt.ResolvedCheckpoint(legacy, resolved.mol_dir, False, "path"),
                                       SETTINGS, torch.device("cpu"))
    assert untrained  # the file's own mark, read without mmap
    loaded = model.state_dict()
    assert all(torch.equal(stored["state_dict"][k], loaded[k]) for k in stored["state_dict"])


def test_no_initial_draws_skips_them_only_inside(monkeypatch):
    """Inside the context Boltz's truncated-normal draws and nn.Linear's Kaiming draws do not
    run (load_model's strict load sets every weight); outside, and after an error inside,
    both draw again."""
    import boltz.model.layers.initialize as boltz_init
    from boltz.model.layers.transition import Transition

    from foldcp.model.no_initial_draws import no_initial_draws

    drawn = []
    monkeypatch.setattr("scipy.stats.truncnorm.rvs", lambda *a, size, **k: drawn.append(size) or torch.zeros(size).numpy())
    original = boltz_init.trunc_normal_init_, torch.nn.Linear.reset_parameters
    with no_initial_draws():
        before = torch.get_rng_state()
        torch.nn.Linear(4, 4)
        assert torch.equal(before, torch.get_rng_state())  # nothing drawn
        Transition(8, 16)  # lecun / he normal layers
    assert drawn == []
    with pytest.raises(RuntimeError):
        with no_initial_draws():
            raise RuntimeError("construction failed")
    assert (boltz_init.trunc_normal_init_, torch.nn.Linear.reset_parameters) == original
    before = torch.get_rng_state()
    torch.nn.Linear(4, 4)
    assert not torch.equal(before, torch.get_rng_state())  # Kaiming draws again
    Transition(8, 16)
    assert drawn  # Boltz's truncated normal draws again


def test_demo_weights_are_deterministic_and_not_zero_initialised(tmp_path):
    a = torch.load(ckpt.build_demo_checkpoint(tmp_path / "a.ckpt"), weights_only=False)["state_dict"]
    b = torch.load(ckpt.build_demo_checkpoint(tmp_path / "b.ckpt"), weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Boltz zero-initialises gates / output projections; the demo must not keep them at zero.
    zero = [k for k, v in a.items() if v.is_floating_point() and v.numel() > 1 and not v.any()]
    assert zero == []


def test_auto_without_network_says_how_to_get_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("BOLTZ_CACHE", str(tmp_path / "boltz"))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlretrieve", offline)
    with pytest.raises(CheckpointError) as info:
        ckpt.resolve_checkpoint("auto")
    message = str(info.value)
    assert "boltz2_conf.ckpt" in message and "could not be downloaded" in message
    assert "model.checkpoint: demo" in message
    assert not (tmp_path / "boltz" / "boltz2_conf.ckpt").exists()  # nothing half-written


def test_auto_uses_the_boltz_cache(tmp_path, monkeypatch, foldcp_cache):
    cache = tmp_path / "boltz"
    cache.mkdir()
    demo = ckpt.resolve_checkpoint("demo").path
    (cache / "boltz2_conf.ckpt").write_bytes(demo.read_bytes())
    monkeypatch.setenv("BOLTZ_CACHE", str(cache))
    monkeypatch.setattr(urllib.request, "urlretrieve", lambda *a, **k: (_ for _ in ()).throw(OSError()))
    resolved = ckpt.resolve_checkpoint("auto")
    assert resolved.path == cache / "boltz2_conf.ckpt" and resolved.kind == "released"
    assert (cache / "mols" / "ALA.pkl").exists()
    # a copied demo checkpoint is still recognised as untrained when loaded
    assert ckpt.load_model(resolved, SETTINGS, torch.device("cpu"))[1] is True


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="is not a file; use auto, demo or a checkpoint path"):
        ckpt.resolve_checkpoint(str(tmp_path / "missing.ckpt"))
