"""The digit feature net: accuracy on held-out digits, a Fréchet distance that separates real from noise,
and a save/load round trip that reproduces the features exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from steadydiff.data import DataConfig, load_data
from steadydiff.metrics.features import (
    DigitsFeatureNet,
    accuracy,
    class_balance,
    class_shares,
    extract_features,
    frechet_feature_distance,
    load_feature_net,
    predict,
    save_feature_net,
    train_feature_net,
)


@pytest.fixture(scope="module")
def digits():
    ds = load_data(DataConfig(source="digits", holdout=297))
    # Pixels 0..16 → [-1, 1], the range the net expects.
    return ds.train / 8 - 1, ds.train_labels, ds.holdout / 8 - 1, ds.holdout_labels


@pytest.fixture(scope="module")
def net(digits):
    x, y, _, _ = digits
    return train_feature_net(x, y, seed=0)


def test_accuracy_on_held_out_digits(net, digits):
    _, _, xh, yh = digits
    assert accuracy(net, xh, yh) >= 0.93


def test_predicted_class_balance(net, digits):
    _, _, xh, yh = digits
    pred = predict(net, xh)
    assert pred.shape == (len(xh),) and np.mean(pred == yh) == accuracy(net, xh, yh)
    # Total variation ½ Σ|p − q|: two of four equally common classes, each twice as often, are 0.5 away.
    assert class_balance(np.array([0, 0, 1, 1]), [0.25] * 4) == {"shares": [0.5, 0.5, 0.0, 0.0], "tv_distance": 0.5,
                                                                 "smallest_share": 0.0}
    assert class_balance(pred, class_shares(pred, 10))["tv_distance"] == 0
    with pytest.raises(ValueError, match=r"integers in \[0, 3\).*values 0\.\.3"):
        class_shares(np.array([0, 3]), 3)


def test_frechet_distance_separates_real_from_noise(net, digits):
    x, _, xh, _ = digits
    real = frechet_feature_distance(net, x, xh)
    noise = np.random.default_rng(0).uniform(-1, 1, size=x.shape).astype(np.float32)
    fake = frechet_feature_distance(net, noise, xh)
    assert 0 <= real and real * 10 < fake, (real, fake)
    # A set against itself is at distance ~0 (up to the eigen-solver's rounding).
    assert abs(frechet_feature_distance(net, xh, xh)) < 1e-6 * fake


def test_features_shape_and_flattened_input(net, digits):
    _, _, xh, _ = digits
    f = extract_features(net, xh[:10])
    assert f.shape == (10, 128) and np.isfinite(f).all()
    np.testing.assert_allclose(extract_features(net, xh[:10].reshape(10, -1)), f)
    with pytest.raises(ValueError, match="expected images"):
        net.features(torch.zeros(2, 3, 8, 8))


def test_save_load_round_trip(net, digits, tmp_path):
    _, _, xh, _ = digits
    path = save_feature_net(net, tmp_path / "digits-features.safetensors", info={"seed": 0})
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["config"]["image_size"] == 8 and meta["info"] == {"seed": 0}
    again = load_feature_net(path)
    assert np.array_equal(extract_features(again, xh), extract_features(net, xh))


def test_training_is_deterministic(digits):
    x, y, _, _ = digits
    a = train_feature_net(x[:256], y[:256], seed=3, epochs=2)
    b = train_feature_net(x[:256], y[:256], seed=3, epochs=2)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


def test_mnist_sized_input():
    net = DigitsFeatureNet(image_size=28)
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert net.features(torch.zeros(3, 784)).shape == (3, 128)
