"""FeaturizeAhead: the next complex is featurized in a worker process; a lost worker costs
only time (the rest are featurized in this process); a failing complex raises its error."""

import os
import signal

import pytest
import torch

from foldcp.inputs import make_complex, parse_complex, read_fasta
from foldcp.model.checkpoint import resolve_checkpoint
from foldcp.runner.featurize import featurize, seed_everything
from foldcp.runner.featurize_ahead import FeaturizeAhead, _featurize_in_worker

FASTA = ">pepA\nMKVLAGWDE\n>pepB\nGSHMQRTY\n>pepC\nPEKRTYLLA\n"


@pytest.fixture
def setting(tmp_path, foldcp_cache):
    (tmp_path / "p.fasta").write_text(FASTA)
    proteins = read_fasta(tmp_path / "p.fasta")
    mol_dir = resolve_checkpoint("demo").mol_dir
    from boltz.data.mol import load_canonicals

    canonicals = load_canonicals(mol_dir)
    here = []

    def featurize_here(complex_):
        here.append(complex_.id)
        seed_everything(5)
        return featurize(complex_, proteins, mol_dir, canonicals)

    ahead = FeaturizeAhead(featurize_here, mol_dir, {"mode": "none"}, None,
                           tmp_path / "p.fasta", seed=5)
    complexes = [make_complex(parse_complex(spec)) for spec in ("pepA;pepB", "pepC:2", "pepB;pepC")]
    yield ahead, complexes, featurize_here, here
    ahead.close()


def same(a, b):
    keys = [k for k, v in a.features.items() if torch.is_tensor(v)]
    assert keys and keys == [k for k, v in b.features.items() if torch.is_tensor(v)]
    for key in keys:
        assert torch.equal(a.features[key], b.features[key]), key
    assert a.chains == b.chains


def test_worker_features_equal_in_process_ones(setting):
    ahead, complexes, featurize_here, here = setting
    ahead.schedule(complexes)
    got = [ahead.take(c) for c in complexes]
    assert here == [complexes[0].id]  # only the first, while the worker started
    here.clear()
    for complex_, featurized in zip(complexes, got):
        same(featurized, featurize_here(complex_))


def test_first_complex_from_the_worker_when_it_is_ready(setting):
    """first_now: the worker starts on the first complex at once (while the caller loads its
    model); take() uses its result once ready — none made here — and the rest follow."""
    ahead, complexes, featurize_here, here = setting
    ahead.schedule(complexes, first_now=True)
    ahead.pending[complexes[0].id].result(timeout=120)  # the model took longer than this
    # the second was queued behind the first: the worker goes on to it before any take()
    ahead.pending[complexes[1].id].result(timeout=120)
    assert complexes[2].id not in ahead.pending
    got = [ahead.take(c) for c in complexes]
    assert here == []
    for complex_, featurized in zip(complexes, got):
        same(featurized, featurize_here(complex_))


def test_first_complex_made_here_while_the_worker_starts(setting):
    """first_now, but take() comes before the worker is done: the first is made here (no
    waiting), the worker's copy is dropped, the second still comes from the worker."""
    ahead, complexes, featurize_here, here = setting
    ahead.schedule(complexes, first_now=True)
    first = ahead.take(complexes[0])  # at once: the spawned worker is still importing torch
    assert here == [complexes[0].id]
    second = ahead.take(complexes[1])
    assert here == [complexes[0].id]
    same(first, featurize_here(complexes[0]))
    same(second, featurize_here(complexes[1]))


def test_a_lost_worker_costs_only_time(setting):
    ahead, complexes, featurize_here, here = setting
    ahead.schedule(complexes)
    ahead.take(complexes[0])
    ahead.take(complexes[1])  # from the worker; complexes[2] is now being featurized there
    for pid in list(ahead.pool._processes):
        os.kill(pid, signal.SIGKILL)
    third = ahead.take(complexes[2])
    assert here == [complexes[0].id, complexes[2].id] and ahead.pool is None
    same(third, featurize_here(complexes[2]))


def test_a_failing_complex_raises_its_error(setting):
    ahead, complexes, _, _ = setting
    bad = make_complex(parse_complex("pepA;pepZ"))  # pepZ is not in the FASTA
    ahead.schedule([complexes[0], bad, complexes[1]])
    ahead.take(complexes[0])
    with pytest.raises(KeyError, match="pepZ"):
        ahead.take(bad)
    same(ahead.take(complexes[1]), setting[2](complexes[1]))  # the worker carries on


def test_the_worker_starts_without_the_model_stack(setting):
    """The worker imports what featurizing needs (Boltz's data pipeline, whose collate module
    brings Lightning) and not the model's stack (boltz.main, foldcp's runner and its CP
    model: seconds of imports at a job's start, which the batch's second fold can wait for)."""
    ahead, complexes, featurize_here, here = setting
    ahead.schedule(complexes)
    ahead.take(complexes[0])
    same(ahead.take(complexes[1]), featurize_here(complexes[1]))  # made in the worker
    loaded = ahead.pool.submit(eval, "sorted(set(__import__('sys').modules) & "
                                     "{'boltz.main', 'foldcp.runner.predict', 'foldcp.distributed.model', "
                                     "'boltz.data.feature.featurizerv2'})").result(timeout=120)
    assert loaded == ["boltz.data.feature.featurizerv2"]


def test_an_early_worker_reads_the_config_and_gives_the_same_features(setting, tmp_path,
                                                                        monkeypatch):
    """`foldcp predict` starts the worker before its own imports, from the config alone (the
    residue library of model.checkpoint): where the run featurizes ahead on a GPU, or
    featurize_ahead is true. Its features equal in-process ones."""
    from foldcp.config import validate_config
    from foldcp.runner.featurize_ahead import early_worker_pool

    _, complexes, featurize_here, _ = setting
    config = validate_config({"proteins": str(tmp_path / "p.fasta"),
                              "candidates": {"mode": "all_vs_all"},
                              "model": {"checkpoint": "demo", "device": "cpu", "seed": 5}})
    assert early_worker_pool(config) is None  # auto: not on a CPU run
    config["model"]["device"] = "auto"
    monkeypatch.setattr(os.path, "exists", lambda path: path != "/dev/nvidiactl")
    assert early_worker_pool(config) is None  # auto: no NVIDIA driver here
    config["model"]["featurize_ahead"] = False
    assert early_worker_pool(config) is None
    monkeypatch.undo()
    config["model"]["featurize_ahead"] = True
    pool = early_worker_pool(config)
    assert pool is not None
    ahead = FeaturizeAhead(featurize_here, None, config["msa"], None, config["proteins"], 5,
                           pool=pool)
    try:
        assert ahead.pool is pool
        ahead.schedule(complexes, first_now=True)
        for complex_ in complexes:
            same(pool.submit(_featurize_in_worker, complex_).result(timeout=300),
                 featurize_here(complex_))
            ahead.take(complex_)
    finally:
        ahead.close()
