"""Ensemble members trained together (train.ensemble_batched, train/batched.py): each member follows its
one-after-another training to float rounding, keeps its own guard (one member's skipped batch leaves the others bit
for bit as they were), resumes exactly, and falls back to one pass after another where vmap cannot batch the
backbone."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import steadydiff
from steadydiff.config import from_dict
from steadydiff.errors import ConfigError

STEPS = 40


def config(data=None, net=None, **train):
    return from_dict({
        "data": data or {"source": "toy:grid25", "toy_samples": 2000},
        "net": net or {"mlp": {"width": 64, "blocks": 2}},
        "train": {"steps": STEPS, "batch_size": 64, "log_every": 10, "val_every": 10, "checkpoint_every": 10,
                  "sample_every": 0, "sample_metrics_every": 0, "warmup_samples": 640, "val_items": 32, **train},
        "sample": {"steps": 6, "grid_n": 16},
    })


def weights(run_dir, k, step=STEPS):
    d = run_dir / "members" / str(k) / "checkpoints" / f"step-{step}"
    return {name: load_file(str(d / f"{name}.safetensors")) for name in ("model", "ema")}


def largest_relative_difference(a, b):
    return max(float((a[p][k] - b[p][k]).abs().max() / (a[p][k].abs().max() + 1e-12)) for p in a for k in a[p])


def assert_same(a, b):
    for p in a:
        for k in a[p]:
            assert torch.equal(a[p][k], b[p][k]), f"{p}.{k} differs"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("batched")
    for mode in ("off", "on"):
        steadydiff.train(config(ensemble=2, ensemble_batched=mode == "on"), out=root / mode, progress=False)
    return root


def test_batched_members_follow_their_one_by_one_training(runs):
    assert json.loads((runs / "on" / "ensemble.json").read_text())["training"].startswith("members together, their")
    for k in (0, 1):
        assert largest_relative_difference(weights(runs / "off", k), weights(runs / "on", k)) < 1e-4
    # the members are still different runs (own seeds): batching shares the network pass, not the weights
    assert largest_relative_difference(weights(runs / "on", 0), weights(runs / "on", 1)) > 0.1
    for k in (0, 1):  # each member keeps its own run directory and summary
        summary = json.loads((runs / "on" / "members" / str(k) / "summary.json").read_text())
        assert summary["steps"] == STEPS


def test_a_u_net_ensemble_batches_too(tmp_path):
    cfg = dict(data={"source": "digits"}, net={"unet": {"channels": 8, "channel_mult": [1, 2], "groups": 4,
                                                        "dropout": 0.0}},
               steps=12, log_every=6, val_every=6, checkpoint_every=6)
    for mode in ("off", "on"):
        steadydiff.train(config(ensemble=2, ensemble_batched=mode == "on", **cfg), out=tmp_path / mode,
                         progress=False)
    assert "batched" in json.loads((tmp_path / "on" / "ensemble.json").read_text())["training"]
    for k in (0, 1):
        assert largest_relative_difference(weights(tmp_path / "off", k, 12), weights(tmp_path / "on", k, 12)) < 1e-4


def test_one_members_skipped_batch_leaves_the_other_untouched(runs, tmp_path):
    calls = [0]

    def poison_member_1_at_step_15(step, x):
        calls[0] += 1
        # members draw their batches in order each round: call 2·step + 2 is member 1's at `step`
        return x * float("nan") if calls[0] == 2 * 15 + 2 else x

    out = tmp_path / "poisoned"
    steadydiff.train(config(ensemble=2, ensemble_batched=True), out=out, progress=False,
                     batch_transform=poison_member_1_at_step_15)
    assert_same(weights(out, 0), weights(runs / "on", 0))  # member 0 as if member 1 had no bad batch
    member1 = json.loads((out / "members" / "1" / "summary.json").read_text())
    assert member1["stability"]["skipped_steps"] >= 1
    assert all(torch.isfinite(t).all() for part in weights(out, 1).values() for t in part.values())
    assert largest_relative_difference(weights(out, 1), weights(runs / "on", 1)) > 0  # its own skip only


def test_an_interrupted_batched_ensemble_resumes_to_the_same_weights(runs, tmp_path):
    out, calls = tmp_path / "cut", [0]

    def crash_at_step_25(step, x):
        calls[0] += 1
        if calls[0] == 2 * 25 + 1:
            raise KeyboardInterrupt
        return x

    with pytest.raises(KeyboardInterrupt):
        steadydiff.train(config(ensemble=2, ensemble_batched=True), out=out, progress=False,
                         batch_transform=crash_at_step_25)
    assert [m["finished"] for m in json.loads((out / "ensemble.json").read_text())["members"]] == [False, False]
    steadydiff.train(config(ensemble=2, ensemble_batched=True), out=out, progress=False)
    for k in (0, 1):
        assert_same(weights(out, k), weights(runs / "on", k))


class DataDependent(nn.Module):
    """A backbone with Python control flow on tensor values, which vmap cannot batch (its weights from seed 0)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 2)

    def forward(self, x, c_noise, cond=None):
        h = torch.cat([x, c_noise[:, None]], dim=1)
        return self.lin(h) * (2.0 if float(h.abs().max()) > 1e9 else 1.0)


def test_a_backbone_vmap_cannot_batch_trains_one_pass_after_another(tmp_path):
    steadydiff.train(config(ensemble=2, ensemble_batched=False, steps=20), out=tmp_path / "off",
                     backbone=DataDependent(), progress=False)
    steadydiff.train(config(ensemble=2, ensemble_batched=True, steps=20), out=tmp_path / "auto",
                     backbone=DataDependent(), progress=False)
    assert "one network pass after another" in json.loads((tmp_path / "auto" / "ensemble.json").read_text())[
        "training"]
    for k in (0, 1):
        assert_same(weights(tmp_path / "auto", k, 20), weights(tmp_path / "off", k, 20))


def test_options_that_cannot_be_batched_are_named(tmp_path):
    with pytest.raises(ConfigError, match="train.accumulate"):
        steadydiff.train(config(ensemble=2, ensemble_batched=True, accumulate=2), out=tmp_path / "a",
                         progress=False)
    steadydiff.train(config(ensemble=2, steps=10), out=tmp_path / "b", progress=False)  # the default
    assert json.loads((tmp_path / "b" / "ensemble.json").read_text())["training"] == "one member after another"


def test_dropout_draws_its_own_masks_per_member_when_batched(tmp_path):
    net = {"mlp": {"width": 64, "blocks": 2, "dropout": 0.2}}
    steadydiff.train(config(net=net, ensemble=2, ensemble_batched=True, steps=10, checkpoint_every=5), out=tmp_path,
                     progress=False)
    assert "batched" in json.loads((tmp_path / "ensemble.json").read_text())["training"]
    for k in (0, 1):
        w = weights(tmp_path, k, 10)
        assert all(torch.isfinite(t).all() for part in w.values() for t in part.values())
