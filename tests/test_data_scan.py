"""The pre-training data scan: each finding fires on a planted problem and stays silent on clean sets."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.datasets import load_digits

from steadydiff.data import DataConfig, Normaliser, load_data
from steadydiff.data.scan import Finding, _duplicate_of, _row_hashes, format_findings, scan


def run(x: np.ndarray, kind: str, columns=None) -> list[Finding]:
    """Scan `x` normalised the way the package does it (a Normaliser fitted on the same items)."""
    x = np.asarray(x, dtype=np.float32)
    return scan(x, Normaliser.fit(x, kind, columns).forward(x), kind, columns)


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return load_digits().images.reshape(-1, 1, 8, 8).astype(np.float32)


def gauss(n=2000, d=4, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Silent on clean data.


def test_silent_on_digits(digits):
    # Digits have always-black border pixels: constant pixels are normal in images and are not flagged.
    assert (digits.min(axis=0) == digits.max(axis=0)).any()
    assert run(digits, "image") == []
    ds = load_data(DataConfig(source="digits"))
    assert scan(ds.train, Normaliser.fit(ds.train, "image").forward(ds.train), "image") == []


@pytest.mark.parametrize("source", ["toy:grid25", "toy:ring8", "iris", "wine"])
def test_silent_on_builtin_vectors(source):
    ds = load_data(DataConfig(source=source))
    norm = Normaliser.fit(ds.train, ds.kind, ds.columns).forward(ds.train)
    assert scan(ds.train, norm, ds.kind, ds.columns) == []


def test_silent_on_gaussian_vectors():
    assert run(gauss(20_000, 8), "vector") == []


# --------------------------------------------------------------------------------------------------
# Each finding on a planted problem.


def test_constant_features_named():
    x = gauss()
    x[:, 1] = 3.5
    x[:, 3] = 0.0
    (f,) = run(x, "vector", columns=["a", "b", "c", "d"])
    assert f.code == "constant_features" and f.level == "warning"
    assert f.detail["features"] == [1, 3] and f.detail["values"] == [3.5, 0.0]
    assert "'b', 'd'" in f.message and "3.5" in f.message and "drop" in f.message
    (f,) = run(x, "vector")
    assert "feature 1, feature 3" in f.message


def test_constant_channel(digits):
    rgb = np.repeat(digits, 3, axis=1)
    rgb[:, 1] = 16 - rgb[:, 1]
    rgb[:, 2] = 0.0  # an empty blue plane
    (f,) = run(rgb, "image")
    assert f.code == "constant_channel" and f.detail["channels"] == [2] and f.detail["values"] == [0.0]
    assert "channel 2" in f.message and "data.channels=grey" in f.message


def test_scale_of_mostly_dark_images():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 20, size=(500, 1, 16, 16)).astype(np.float32)
    x[rng.random(x.shape) < 1e-3] = 4000.0  # a few hot pixels stretch the range
    found = {f.code: f for f in run(x, "image")}
    assert found["scale"].detail["std"] < 0.2
    assert "std" in found["scale"].message and "Clip" in found["scale"].message
    assert found["outliers"].detail["items"] > 0


def test_scale_of_unnormalised_vectors():
    x = gauss() * 50 + 3
    (f,) = scan(x, x, "vector")  # the raw data passed as if normalised
    assert f.code == "scale" and f.detail["std"] == pytest.approx(50, rel=0.05)
    assert "does not look normalised" in f.message


def test_outliers_counted_and_located():
    x = gauss(5000, 3)
    x[1234, 2] = 1e4  # a typo in one column
    x[2000, 2] = 5e3
    x[3000, 0] = 1e3
    (f,) = run(x, "vector", columns=["age", "height", "income"])
    assert f.code == "outliers"
    assert f.detail["count"] == 3 and f.detail["items"] == 3 and f.detail["first_item"] == 1234
    assert f.detail["features"] == ["'income'", "'age'"]
    # Each feature is measured in its own std, which its outliers inflate: the lone 'age' outlier is the
    # most extreme (about √5000 ≈ 71 std), the larger 'income' ones about 63 std.
    assert f.detail["max_item"] == 3000 and f.detail["max_std"] == pytest.approx(70.7, rel=0.01)
    assert "item 1234" in f.message and "'income'" in f.message and "np.log1p" in f.message
    assert run(gauss(5000, 3), "vector") == []  # Gaussian tails stay far below 20 std


def test_duplicates_above_one_percent(digits):
    x = np.concatenate([digits, digits[:30], digits[:30], digits[100:110]])  # 70 copies in 40 groups
    (f,) = run(x, "image")
    assert f.code == "duplicates"
    assert f.detail["copies"] == 70 and f.detail["groups"] == 40 and f.detail["largest_group"] == 3
    assert f.detail["share"] == pytest.approx(70 / len(x))
    assert f.detail["example"] == [0, len(digits)]
    assert "3.7%" in f.message and "memorise" in f.message
    assert run(np.concatenate([digits, digits[:17]]), "image") == []  # 0.9 %: below the threshold


def test_duplicates_ignore_the_sign_of_zero():
    x = gauss(100, 3)
    x[:, 0] = 0.0
    x = np.concatenate([x, x[:5] * np.float32([-1, 1, 1])])  # -0.0 in column 0 of the copies
    assert np.signbit(x[-1, 0])
    dup = {f.code: f for f in scan(x, x, "vector")}["duplicates"]
    assert dup.detail["copies"] == 5


def test_duplicates_exact_under_hash_collisions():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 3, size=(300, 2)).astype(np.float32)  # many genuine duplicates
    truth = np.array([np.flatnonzero((base == row).all(axis=1))[0] for row in base])
    np.testing.assert_array_equal(_duplicate_of(base, _row_hashes(base)), truth)
    # Every item sharing one hash forces the exact path.
    np.testing.assert_array_equal(_duplicate_of(base, np.zeros(300, dtype=np.uint64)), truth)
    np.testing.assert_array_equal(_duplicate_of(base, np.arange(300, dtype=np.uint64) % 7), truth)


def test_non_finite_reported_defensively():
    x = gauss(50, 3)
    norm = Normaliser.fit(x, "vector").forward(x)
    norm[7, 1] = np.nan
    norm[9, 0] = np.inf
    (f,) = scan(x, norm, "vector")
    assert f.code == "non_finite" and f.detail == {"count": 2, "first_item": 7,
                                                   "where": "normalised training items"}
    assert "item 7" in f.message


# --------------------------------------------------------------------------------------------------
# Interface.


def test_format_findings():
    x = gauss()
    x[:, 0] = 1.0
    lines = format_findings(run(x, "vector"))
    assert len(lines) == 1 and lines[0].startswith("warning: constant_features: 1 of 4 features is constant")


def test_bad_arguments():
    x = gauss(10, 2)
    with pytest.raises(ValueError, match="kind"):
        scan(x, x, "table")
    with pytest.raises(ValueError, match="shape"):
        scan(x, x[:5], "vector")
    with pytest.raises(ValueError, match="dimensions"):
        scan(x, x, "image")
    with pytest.raises(ValueError, match="columns"):
        scan(x, x, "vector", ["only one"])


def test_scans_mnist_sized_data_in_linear_time():
    """70,000 × 784 values scan in about 0.3 s on one idle core (3.4 s with four jobs on two cores). The bound
    only catches a scan that stopped being linear (pairwise duplicate checks would take minutes), not speed."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(70_000, 784), dtype=np.uint8).astype(np.float32)
    norm = (x - np.float32(127.5)) / np.float32(73.9)  # what the normaliser gives, without its float64 pass
    start = time.perf_counter()
    assert scan(x, norm, "vector") == []
    assert time.perf_counter() - start < 60.0
