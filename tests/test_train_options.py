"""Training's stability options: σ curriculum, L1/L2 penalties, adaptive gradient clipping, LR back-off on plateau."""

import json
import math

import numpy as np
import pytest
import torch

import steadydiff
from steadydiff.config import from_dict
from steadydiff.errors import ConfigError
from steadydiff.train.config import TrainConfig
from steadydiff.train.optim import clip_gradients, curriculum_share, weight_penalty


def tiny(steps: int, train: dict | None = None, guard: dict | None = None):
    return from_dict({
        "data": {"source": "toy:ring8", "toy_samples": 2000},
        "net": {"mlp": {"width": 64, "blocks": 2}},
        "train": {"steps": steps, "batch_size": 64, "log_every": 5, "val_every": 10, "checkpoint_every": 100,
                  "sample_every": 0, "warmup_samples": 640, "val_items": 32, **(train or {})},
        "guard": guard or {},
        "sample": {"steps": 6, "grid_n": 32},
    })


def metrics(run) -> list[dict]:
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]


def test_curriculum_starts_at_high_noise_and_widens_to_all_levels(tmp_path):
    cfg = TrainConfig(sigma_curriculum_samples=1000, sigma_curriculum_start=0.25)
    assert [curriculum_share(s, cfg) for s in (0, 500, 1000, 5000)] == [0.25, 0.625, 1.0, 1.0]
    assert curriculum_share(0, TrainConfig()) == 1.0
    steadydiff.train(tiny(40, {"sigma_curriculum_samples": 64 * 20}), out=tmp_path / "run", progress=False)
    lines = metrics(tmp_path / "run")
    # 8 equal-probability σ bins, low σ first. Over the first 5 steps the share grows from 25 % to 40 % of the
    # distribution (its top quantiles): bins 0-3 (the lower half) see no sample yet, bins 6 and 7 do.
    first, last = lines[0]["loss_bins"], lines[-1]["loss_bins"]
    assert all(v == 0 for v in first[:4]) and all(v > 0 for v in first[6:])
    assert all(v > 0 for v in last)


def test_l2_penalty_shrinks_the_weights(tmp_path):
    steadydiff.train(tiny(60), out=tmp_path / "plain", progress=False)
    steadydiff.train(tiny(60, {"l2": 0.1}), out=tmp_path / "l2", progress=False)
    norms = {}
    for name in ("plain", "l2"):
        params = list(steadydiff.load(tmp_path / name, ema=False).denoiser.parameters())
        norms[name] = float(weight_penalty(params, 0.0, 1.0).detach())
    assert norms["l2"] < 0.9 * norms["plain"]
    params = [torch.nn.Parameter(torch.full((2, 3), -2.0)), torch.nn.Parameter(torch.ones(3))]
    assert float(weight_penalty(params, 1.0, 0.0).detach()) == pytest.approx(12.0)  # the bias is not penalised
    assert float(weight_penalty(params, 0.0, 1.0).detach()) == pytest.approx(24.0)


def test_adaptive_clipping_follows_recent_gradient_norms():
    p = torch.nn.Parameter(torch.zeros(4))
    history = torch.full((200, 1), math.nan)
    history[:20] = 1.0  # recent accepted norms: median 1
    p.grad = torch.tensor([6.0, 8.0, 0.0, 0.0])  # norm 10
    total = clip_gradients([p], 0.0, 2.0, history)
    assert float(total) == pytest.approx(10.0) and float(p.grad.norm()) == pytest.approx(2.0, rel=1e-4)
    p.grad = torch.tensor([6.0, 8.0, 0.0, 0.0])
    clip_gradients([p], 5.0, 2.0, torch.full((200, 1), math.nan))  # no history yet: the fixed limit alone
    assert float(p.grad.norm()) == pytest.approx(5.0, rel=1e-4)


def test_adaptive_clipping_trains_with_and_without_the_guard(tmp_path):
    for guard in (True, False):
        steadydiff.train(tiny(30, {"grad_clip_adaptive": 2.0}, {"enabled": guard}), out=tmp_path / str(guard),
                         progress=False)
        assert all(math.isfinite(r["loss"]) for r in metrics(tmp_path / str(guard)))


def test_plateau_lowers_the_lr(tmp_path):
    run = tmp_path / "run"
    steadydiff.train(tiny(120, {"lr_schedule": "constant", "lr": 1e-5}, {"plateau_patience": 2}), out=run,
                     progress=False)
    events = [json.loads(ln) for ln in (run / "incidents.jsonl").read_text().splitlines()]
    assert events and all(e["guard"] == "plateau" for e in events)
    assert metrics(run)[-1]["lr"] < 1e-5


@pytest.mark.parametrize("key,value", [("train.l1", -1), ("train.sigma_curriculum_start", 0),
                                       ("train.grad_clip_adaptive", -0.5), ("guard.lr_backoff", 1.5),
                                       ("guard.min_history", 500), ("guard.damage_ratio", 1.0),
                                       ("guard.confirm_ratio", 0.5), ("guard.confirm_z", 0)])
def test_bad_option_values_are_refused(key, value):
    section, name = key.split(".")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        steadydiff.config.validate(from_dict({section: {name: value}}))


def test_accumulated_micro_batches_train_like_one_batch(tmp_path):
    """train.accumulate=4: the batch in four parts whose gradients add up to the whole batch's — the same weights
    as one part, up to float rounding (a part scaled wrongly, or a gradient dropped, is off by ≳1e-2)."""
    from safetensors.torch import load_file

    from steadydiff.config import from_dict
    from steadydiff.train.loop import train

    def run(out, accumulate):
        cfg = from_dict({"data": {"source": "toy:grid25", "toy_samples": 1000},
                         "net": {"mlp": {"width": 32, "blocks": 1}},
                         "train": {"steps": 40, "batch_size": 64, "accumulate": accumulate, "l2": 1e-4,
                                   "sample_metrics_every": 0, "sample_every": 0, "val_items": 16},
                         "sample": {"steps": 4, "grid_n": 16}})
        train(cfg, tmp_path / out, progress=False)
        return load_file(str(tmp_path / out / "checkpoints" / "step-40" / "model.safetensors"))

    one, four = run("one", 1), run("four", 4)
    diff = sum(float(((one[k] - four[k]).double() ** 2).sum()) for k in one) ** 0.5
    assert diff / sum(float((one[k].double() ** 2).sum()) for k in one) ** 0.5 < 1e-5
    with pytest.raises(ConfigError, match="not divisible by 3"):
        run("three", 3)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's compiler stack imports deprecated modules
def test_compile_failure_falls_back_to_the_eager_model(caplog):
    from torch import nn

    from steadydiff.train.loop import compile_model

    net = nn.Linear(3, 3)

    def trial(model):
        raise RuntimeError("inductor: no C++ compiler found\nmore detail")

    with caplog.at_level("WARNING", logger="steadydiff"):
        assert compile_model(net, trial) is net
    assert "torch.compile failed (RuntimeError: inductor: no C++ compiler found); training without it" in caplog.text


@pytest.mark.slow  # torch.compile of a small MLP takes about a minute on this CPU
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's compiler stack imports deprecated modules
def test_compiled_training_matches_eager(tmp_path, caplog):
    from safetensors.torch import load_file

    from steadydiff.config import from_dict
    from steadydiff.train.loop import train

    def run(out, compile):
        cfg = from_dict({"data": {"source": "toy:grid25", "toy_samples": 1000},
                         "net": {"mlp": {"width": 32, "blocks": 1}},
                         "train": {"steps": 30, "batch_size": 64, "compile": compile, "sample_metrics_every": 0,
                                   "sample_every": 0, "val_items": 16},
                         "sample": {"steps": 4, "grid_n": 16}})
        train(cfg, tmp_path / out, progress=False)
        return load_file(str(tmp_path / out / "checkpoints" / "step-30" / "model.safetensors"))

    eager = run("eager", False)
    with caplog.at_level("INFO", logger="steadydiff"):
        compiled = run("compiled", True)
    assert "train.compile: the model is compiled" in caplog.text
    diff = sum(float(((eager[k] - compiled[k]).double() ** 2).sum()) for k in eager) ** 0.5
    assert diff / sum(float((eager[k].double() ** 2).sum()) for k in eager) ** 0.5 < 1e-4


def test_mmd_term_is_zero_for_identical_batches_and_its_gradient_reaches_only_the_estimates():
    from steadydiff.diffusion.loss import mmd_term

    g = torch.Generator().manual_seed(0)
    clean = torch.randn(64, 2, generator=g)
    sigma = torch.full((64,), 0.5)
    assert float(mmd_term(clean.clone(), clean, sigma, 1.0)) == pytest.approx(0.0, abs=1e-6)
    # estimates that collapse onto half the data are penalised, and only they receive a gradient
    collapsed = clean.clone()
    collapsed[:, 0] = collapsed[:, 0].abs()
    estimate = collapsed.clone().requires_grad_(True)
    target = clean.clone().requires_grad_(True)
    value = mmd_term(estimate, target, sigma, 1.0)
    assert float(value.detach()) > 0.01
    value.backward()
    assert estimate.grad is not None and float(estimate.grad.abs().sum()) > 0 and target.grad is None
    # outside the moderate σ range (here all items at σ = 5 σ_data) the term is off
    assert float(mmd_term(collapsed, clean, torch.full((64,), 5.0), 1.0)) == 0.0


def test_imbalanced_grid_draws_its_weights():
    from steadydiff.data import DataConfig, load_data
    from steadydiff.data.sources import grid25_imbalanced_weights

    w = grid25_imbalanced_weights()
    assert w.sum() == pytest.approx(1.0) and w.max() / w.min() == pytest.approx(50.0)
    ds = load_data(DataConfig(source="toy:grid25-imbalanced", toy_samples=50_000))
    share = np.bincount(np.concatenate([ds.train_labels, ds.holdout_labels]), minlength=25) / 50_000
    assert np.abs(share - w).max() < 0.005 and ds.mode_weights is not None
