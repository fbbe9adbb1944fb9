"""Ensembles (train.ensemble): members are the single runs of their seeds, resume exactly, and sample as one model —
mixture deterministic per seed and independent of n and batch size, mean and spread behaving as their definitions
say (sampling/ensemble.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import steadydiff
from steadydiff.cli import main
from steadydiff.config import from_dict
from steadydiff.errors import ConfigError, SteadydiffError
from steadydiff.sampling.ensemble import member_of
from steadydiff.sampling.noise import derive_seed, sample_seeds

STEPS = 40


def config(**train):
    return from_dict({
        "data": {"source": "toy:grid25", "toy_samples": 2000},
        "net": {"mlp": {"width": 64, "blocks": 2}},
        # one member after another: bit for bit the single runs (tests/test_ensemble_batched.py: together)
        "train": {"steps": STEPS, "batch_size": 64, "log_every": 10, "val_every": 10, "checkpoint_every": 10,
                  "sample_every": 0, "sample_metrics_every": 0, "warmup_samples": 640, "val_items": 32,
                  "ensemble_batched": False, **train},
        "sample": {"steps": 6, "grid_n": 16},
    })


def weights(run_dir, step=STEPS):
    d = run_dir / "checkpoints" / f"step-{step}"
    return {name: load_file(str(d / f"{name}.safetensors")) for name in ("model", "ema", "optimizer")}


def assert_same_weights(a, b):
    for part in a:
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs"


@pytest.fixture(scope="module")
def ensemble_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ens") / "e2"
    run = steadydiff.train(config(ensemble=2), out=out, progress=False)
    assert run.dir == out and run.summary["ensemble"] == 2 and len(run.summary["member_summaries"]) == 2
    return out


@pytest.fixture(scope="module")
def ensemble(ensemble_dir):
    return steadydiff.load(ensemble_dir)


def test_members_are_the_single_runs_of_their_seeds(ensemble_dir, tmp_path):
    info = json.loads((ensemble_dir / "ensemble.json").read_text())
    assert [m["seed"] for m in info["members"]] == [0, 1] and all(m["finished"] for m in info["members"])
    first, second = (weights(ensemble_dir / "members" / str(k)) for k in (0, 1))
    assert any(not torch.equal(first["model"][k], second["model"][k]) for k in first["model"])  # own init and data
    single = tmp_path / "seed1"
    steadydiff.train(config(seed=1), out=single, progress=False)
    assert_same_weights(weights(single), second)  # member 1 is, bit for bit, the single run of seed 0 + 1
    member_cfg = (ensemble_dir / "members" / "1" / "config.toml").read_text()
    assert "seed = 1" in member_cfg and "ensemble = 1" in member_cfg


def test_an_interrupted_ensemble_resumes_to_the_same_weights(ensemble_dir, tmp_path):
    out, calls = tmp_path / "cut", [0]

    def crash_in_member_1(step, x):
        calls[0] += 1
        if calls[0] == STEPS + 25:  # member 1, step 25: after its step-20 checkpoint
            raise KeyboardInterrupt
        return x

    with pytest.raises(KeyboardInterrupt):
        steadydiff.train(config(ensemble=2), out=out, progress=False, batch_transform=crash_in_member_1)
    info = json.loads((out / "ensemble.json").read_text())
    assert [m["finished"] for m in info["members"]] == [True, False]
    member0_log = (out / "members" / "0" / "metrics.jsonl").read_text()
    assert steadydiff.load(out).step == 20  # loadable meanwhile: member 1's newest checkpoint
    steadydiff.train(config(ensemble=2), out=out, progress=False)
    assert (out / "members" / "0" / "metrics.jsonl").read_text() == member0_log  # the finished member is kept
    for k in (0, 1):
        assert_same_weights(weights(out / "members" / str(k)), weights(ensemble_dir / "members" / str(k)))
    assert all(m["finished"] for m in json.loads((out / "ensemble.json").read_text())["members"])


def test_mixture_draws_each_sample_from_the_member_its_seed_picks(ensemble):
    a = ensemble.sample(30, seed=3)
    np.testing.assert_array_equal(a, ensemble.sample(30, seed=3))  # deterministic
    np.testing.assert_allclose(a[:10], ensemble.sample(10, seed=3, batch_size=4), atol=1e-5)  # not n or batch size
    assert not np.allclose(a, ensemble.sample(30, seed=4), atol=1e-3)
    pick = member_of(sample_seeds(3, 30), 2)
    assert 0 < pick.sum() < 30  # both members are used
    own = [m.sample(30, seed=3) for m in ensemble.members]
    np.testing.assert_allclose(a, np.where(pick[:, None] == 1, own[1], own[0]), atol=1e-5)


def test_mean_of_identical_members_is_that_member_and_spread_is_zero(ensemble):
    one = ensemble.members[0]
    twins = steadydiff.Ensemble.of([one, one])
    plain = one.sample(24, seed=5)
    np.testing.assert_array_equal(twins.sample(24, seed=5, ensemble="mean"), plain)
    np.testing.assert_allclose(twins.sample(24, seed=5, ensemble="mixture"), plain, atol=1e-5)
    for mode in ("mixture", "mean"):
        x, spread = twins.sample(24, seed=5, ensemble=mode, uncertainty=True)
        assert spread.shape == x.shape and float(np.abs(spread).max()) == 0.0
        np.testing.assert_allclose(x, plain, atol=1e-5)


def test_different_members_disagree_and_the_spread_leaves_samples_unchanged(ensemble):
    for mode in ("mixture", "mean"):
        plain = ensemble.sample(24, seed=5, ensemble=mode)
        x, spread = ensemble.sample(24, seed=5, ensemble=mode, uncertainty=True, batch_size=10)
        np.testing.assert_allclose(x, plain, atol=1e-5)
        assert spread.shape == x.shape and float(spread.min()) > 0
    assert not np.allclose(ensemble.sample(24, seed=5, ensemble="mean"), ensemble.sample(24, seed=5), atol=1e-3)


def test_impute_on_an_ensemble_draws_each_completion_from_one_member(ensemble):
    x = ensemble.sample(6, seed=1)
    x[:, 1] = np.nan
    done = ensemble.impute(x, draws=3, seed=2, steps=4, resample=2)
    assert done.shape == (3, 6, 2)
    assert np.array_equal(done[..., 0], np.broadcast_to(x[:, 0], (3, 6)))  # known values bit for bit
    pick = member_of([derive_seed(2, k, i) for k in range(3) for i in range(6)], 2).reshape(3, 6)
    own = [m.impute(x, draws=3, seed=2, steps=4, resample=2) for m in ensemble.members]
    np.testing.assert_allclose(done, np.where(pick[..., None] == 1, own[1], own[0]), atol=1e-5)
    assert ensemble.impute(x, draws=2, seed=2, steps=4, resample=1, ensemble="mean").shape == (2, 6, 2)


def test_clear_errors(ensemble, ensemble_dir, tmp_path):
    with pytest.raises(ConfigError, match="train.ensemble"):
        steadydiff.train(config(ensemble=0), out=tmp_path / "zero", progress=False)
    for call in (lambda: ensemble.sample(4, ensemble="average"), lambda: ensemble.impute(
            np.array([[0.0, np.nan]]), ensemble="vote"), lambda: ensemble.members[0].sample(4, ensemble="x")):
        with pytest.raises(SteadydiffError, match="mixture, mean"):
            call()
    with pytest.raises(SteadydiffError, match="MC dropout on an ensemble"):
        ensemble.sample(4, mc_dropout=2)
    with pytest.raises(SteadydiffError, match="or an ensemble"):
        ensemble.members[0].sample(4, uncertainty=True)
    with pytest.raises(SteadydiffError, match="train.seed=0, now 1"):
        steadydiff.train(config(ensemble=2, seed=1), out=ensemble_dir, progress=False)
    with pytest.raises(SteadydiffError, match="train.ensemble=2"):
        steadydiff.train(config(), out=ensemble_dir, progress=False)
    from steadydiff.evaluate import evaluate

    with pytest.raises(SteadydiffError, match="members/0"):
        evaluate(ensemble_dir)


def test_cli_sample_info_and_refusals(ensemble_dir, tmp_path, capsys):
    out = tmp_path / "s.npy"
    assert main(["sample", str(ensemble_dir), "--n", "12", "--steps", "4", "--ensemble", "mean", "--uncertainty",
                 "--out", str(out), "--quiet"]) == 0
    assert np.load(out).shape == (12, 2) and np.load(tmp_path / "s.spread.npy").shape == (12, 2)
    assert "ensemble of 2" in capsys.readouterr().out
    assert main(["info", str(ensemble_dir)]) == 0
    assert "2 members" in capsys.readouterr().out
    for verb in (["eval", str(ensemble_dir)], ["report", str(ensemble_dir)]):
        assert main(verb) == 2
        assert "members/0" in capsys.readouterr().err
    single = ensemble_dir / "members" / "0"
    assert main(["sample", str(single), "--n", "4", "--ensemble", "mean", "--out", str(out)]) == 2
    assert "not an ensemble" in capsys.readouterr().err


def test_a_larger_ensemble_adds_members_and_a_smaller_one_is_refused(ensemble_dir, tmp_path):
    import shutil

    out = tmp_path / "grow"
    shutil.copytree(ensemble_dir, out)
    kept = (out / "members" / "1" / "metrics.jsonl").read_text()
    run = steadydiff.train(config(ensemble=3), out=out, progress=False)
    assert run.summary["seeds"] == [0, 1, 2] and (out / "members" / "1" / "metrics.jsonl").read_text() == kept
    assert len(steadydiff.load(out).members) == 3
    with pytest.raises(SteadydiffError, match="ensemble of 3 members; resume it with train.ensemble=3"):
        steadydiff.train(config(ensemble=2), out=out, progress=False)
