"""train.window_level: a mask-conditioned series run learns each window relative to the level of its known values
(RevIN, Kim et al. 2022), so it continues a series at levels no training window reached."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import steadydiff
from steadydiff.config import from_dict, validate
from steadydiff.data.masks import window_level
from steadydiff.errors import ConfigError

LENGTH, HORIZON, PERIOD = 24, 6, 8


def seasonal(level: np.ndarray, phase: np.ndarray, steps: int) -> np.ndarray:
    """(N, 1, steps) windows: a constant level plus a sine of period PERIOD and amplitude 1."""
    t = np.arange(steps)
    return (level[:, None] + np.sin(2 * np.pi * (t[None] + phase[:, None]) / PERIOD))[:, None].astype(np.float32)


def low_windows(n: int = 512) -> np.ndarray:
    """Training windows whose levels all lie in [0, 10]."""
    rng = np.random.default_rng(0)
    return seasonal(rng.uniform(0, 10, n), rng.uniform(0, PERIOD, n), LENGTH)


def config(steps: int, **train) -> dict:
    return {"data": {"kind": "series", "holdout": 0},
            "net": {"unet": {"channels": 16, "groups": 4}},
            "train": {"steps": steps, "batch_size": 64, "lr": 4e-3, "warmup_samples": 640, "log_every": 10,
                      "val_every": 50, "val_items": 32, "checkpoint_every": 1000, "sample_every": 0,
                      "sample_metrics_every": 0, "phema_every": 0, "ema_halflife_samples": 2000,
                      "masks": "suffix", "mask_none": 0.1, **train},
            "sample": {"steps": 10, "grid_n": 4}}


def load_weights(run_dir, step):
    d = run_dir / "checkpoints" / f"step-{step}"
    return {name: load_file(str(d / f"{name}.safetensors")) for name in ("model", "ema", "optimizer")}


def test_the_level_is_the_mean_of_the_known_values_per_item_and_channel():
    x = torch.tensor([[[1.0, 3.0, 100.0], [2.0, float("nan"), 7.0]],
                      [[5.0, 5.0, 5.0], [1.0, 1.0, 1.0]]])
    known = torch.tensor([[[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
                          [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    level = window_level(x, known)
    assert level.shape == (2, 2, 1)
    # unknown entries (100, NaN) never count; a channel with nothing known keeps its level at 0
    assert level.flatten().tolist() == [2.0, 2.0, 0.0, 0.0]


def test_window_level_is_refused_without_masks_or_series(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.window_level=true .*needs mask-conditioned training: set "
                                          r"train\.masks"):
        steadydiff.train(config(5, masks="", window_level=True), data=low_windows(64), out=tmp_path / "no-masks",
                         progress=False)
    with pytest.raises(ConfigError, match=r"train\.window_level"):
        validate(from_dict(config(5, masks="", window_level=True)))  # what --dry-run and the CLI check first
    vectors = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32)
    cfg = config(5, masks="scattered", window_level=True)
    del cfg["data"]["kind"]
    with pytest.raises(ConfigError, match=r"train\.window_level=true .*this data holds vector items"):
        steadydiff.train(cfg, data=vectors, out=tmp_path / "vectors", progress=False)
    assert not (tmp_path / "vectors" / "checkpoints").exists()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("level")
    data = low_windows()
    return {on: steadydiff.train(config(100, window_level=on), data=data, out=root / f"level-{on}", progress=False)
            for on in (True, False)}


def test_a_forecast_continues_a_series_above_every_training_level(runs):
    """Training windows lie at levels 0–10; the history lies at 50. With train.window_level the forecast continues
    the sine at 50; without it the network is asked about values 15 std above anything it saw, and its forecast
    lands far from the history."""
    history = seasonal(np.array([50.0]), np.array([1.0]), LENGTH + HORIZON)[0, 0]
    past, truth = history[:LENGTH], history[LENGTH:]
    errors = {}
    for on, run in runs.items():
        model = steadydiff.load(run.dir)
        assert model.config.train.window_level is on  # stored in the run's config.toml, so `load` uses it
        paths = model.forecast(past, HORIZON, draws=32, seed=0)[:, 0]
        assert paths.shape == (32, HORIZON) and np.isfinite(paths).all()
        errors[on] = float(np.abs(np.median(paths, 0) - truth).mean())
        # the known values come back bit for bit, whatever the level
        x = np.full((1, LENGTH), np.nan, dtype=np.float32)
        x[0, :LENGTH - HORIZON] = past[-(LENGTH - HORIZON):]
        done = model.impute(x, draws=2, seed=0)
        assert np.array_equal(done[:, 0, :LENGTH - HORIZON], np.broadcast_to(x[0, :LENGTH - HORIZON], (2, 18)))
    assert errors[True] < 0.5, errors  # the sine's amplitude is 1
    assert errors[False] > 5, errors
    # in-range histories still forecast well with the level on
    low = seasonal(np.array([4.0]), np.array([3.0]), LENGTH + HORIZON)[0, 0]
    paths = steadydiff.load(runs[True].dir).forecast(low[:LENGTH], HORIZON, draws=32, seed=0)[:, 0]
    assert np.abs(np.median(paths, 0) - low[LENGTH:]).mean() < 0.5


def test_the_replacement_path_shifts_alike(runs):
    model = steadydiff.load(runs[True].dir)
    history = seasonal(np.array([50.0]), np.array([1.0]), LENGTH)[0, 0]
    x = np.full((1, LENGTH), np.nan, dtype=np.float32)
    x[0, :LENGTH - HORIZON] = history[:LENGTH - HORIZON]
    done = model.impute(x, draws=16, seed=0, method="replace", resample=1)[:, 0]
    assert np.array_equal(done[:, :LENGTH - HORIZON], np.broadcast_to(x[0, :LENGTH - HORIZON], (16, 18)))
    assert abs(float(np.median(done[:, LENGTH - HORIZON:])) - 50) < 3  # at the history's level, not 0–10


def test_with_nothing_known_the_level_changes_nothing_and_resume_stays_exact(tmp_path):
    """With every mask empty (mask_none = 1) every level is 0: the run is the run without the option, bit for bit
    (the option draws no random numbers of its own). A run with the option resumes exactly."""
    data = low_windows(256)
    small = dict(steps=20, checkpoint_every=10, log_every=5, val_every=10)
    for on in (False, True):
        cfg = config(**small, mask_none=1.0, window_level=on)
        steadydiff.train(cfg, data=data, out=tmp_path / f"empty-{on}", progress=False)
    a, b = load_weights(tmp_path / "empty-False", 20), load_weights(tmp_path / "empty-True", 20)
    for part in a:
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs"
    # an older run's config.toml, written before the option existed, loads with it off
    toml = tmp_path / "empty-False" / "config.toml"
    toml.write_text("\n".join(ln for ln in toml.read_text().splitlines() if not ln.startswith("window_level")))
    assert steadydiff.load(tmp_path / "empty-False").config.train.window_level is False

    run = tmp_path / "resumed"
    cfg = config(**small, window_level=True)
    steadydiff.train(cfg, data=data, out=run, progress=False)
    straight, log = load_weights(run, 20), (run / "metrics.jsonl").read_text()
    shutil.rmtree(run / "checkpoints" / "step-20")  # as if the process died just before step 20's checkpoint
    steadydiff.train(cfg, data=data, out=run, progress=False)
    resumed = load_weights(run, 20)
    for part in straight:
        for k in straight[part]:
            assert torch.equal(straight[part][k], resumed[part][k]), f"{part}.{k} differs after resume"
    volatile = ("samples_per_s", "wall_s", "memory_mb")
    strip = [{k: v for k, v in json.loads(ln).items() if k not in volatile} for ln in log.splitlines()]
    again = [{k: v for k, v in json.loads(ln).items() if k not in volatile}
             for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert again == strip
