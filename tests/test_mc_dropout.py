"""Monte Carlo dropout at sampling: zero spread without dropout, a real spread with it, deterministic per seed."""

from __future__ import annotations

import numpy as np
import pytest

import steadydiff
from steadydiff.config import from_dict
from steadydiff.errors import SteadydiffError


def trained(tmp_path, dropout: float):
    cfg = from_dict({"data": {"source": "toy:ring8", "toy_samples": 1000},
                     "net": {"mlp": {"width": 64, "blocks": 2, "dropout": dropout}},
                     "train": {"steps": 150, "batch_size": 64, "sample_metrics_every": 0, "sample_every": 0,
                               "val_items": 32},
                     "sample": {"steps": 6, "grid_n": 16}})
    steadydiff.train(cfg, out=tmp_path / f"d{dropout}", progress=False)
    return steadydiff.load(tmp_path / f"d{dropout}")


def test_no_dropout_gives_zero_spread(tmp_path):
    model = trained(tmp_path, 0.0)
    x, spread = model.sample(40, seed=1, steps=6, mc_dropout=3, uncertainty=True)
    assert spread.shape == x.shape and float(np.abs(spread).max()) == 0.0
    np.testing.assert_allclose(x, model.sample(40, seed=1, steps=6), rtol=1e-5, atol=1e-5)  # the plain samples


def test_dropout_spread_is_real_and_deterministic(tmp_path):
    model = trained(tmp_path, 0.2)
    x, spread = model.sample(40, seed=1, steps=6, mc_dropout=4, uncertainty=True)
    again, spread_again = model.sample(40, seed=1, steps=6, mc_dropout=4, uncertainty=True)
    np.testing.assert_array_equal(x, again)
    np.testing.assert_array_equal(spread, spread_again)
    assert float(spread.min()) > 0  # every value carries the passes' disagreement
    assert not np.allclose(x, model.sample(40, seed=1, steps=6), atol=1e-4)  # dropout changes the estimate
    assert not model.denoiser.training  # sampling left the network in evaluation mode
    with pytest.raises(SteadydiffError, match="mc_dropout ≥ 2"):
        model.sample(4, uncertainty=True)
    with pytest.raises(SteadydiffError, match="mc_dropout must be ≥ 0"):
        model.sample(4, mc_dropout=-1)


def test_imputation_with_dropout_on_widens_the_draws_and_keeps_known_values(tmp_path):
    model = trained(tmp_path, 0.2)
    points = model.sample(30, seed=3)
    given = points.copy()
    given[:, 1] = np.nan  # one coordinate hidden, the other known
    plain = model.impute(given, draws=8, seed=0, steps=6, resample=1)
    dropped = model.impute(given, draws=8, seed=0, steps=6, resample=1, mc_dropout=1)
    np.testing.assert_array_equal(dropped, model.impute(given, draws=8, seed=0, steps=6, resample=1, mc_dropout=1))
    np.testing.assert_array_equal(dropped[:, :, 0], np.broadcast_to(given[:, 0], (8, 30)))  # known values, exactly
    # 240 draws in batches of 100, the last one smaller: every batch drawn with dropout on
    batched = model.impute(given, draws=8, seed=0, steps=6, resample=1, mc_dropout=1, batch_size=100)
    assert batched.shape == dropped.shape and np.isfinite(batched).all()
    assert not np.allclose(dropped, plain, atol=1e-4)
    assert not model.denoiser.training
    no_dropout = trained(tmp_path, 0.0)  # dropout 0: the passes agree, the plain draws come back
    np.testing.assert_allclose(no_dropout.impute(given, draws=2, seed=0, steps=6, resample=1, mc_dropout=1),
                               no_dropout.impute(given, draws=2, seed=0, steps=6, resample=1), rtol=1e-5, atol=1e-5)
    with pytest.raises(SteadydiffError, match="mc_dropout must be ≥ 0"):
        model.impute(given, mc_dropout=-1)
