"""Sample-based metrics (Fréchet terms, MMD, sliced Wasserstein, PRDC) against closed forms and their defining
properties, plus determinism, chunk invariance and input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from steadydiff.metrics import frechet_distance, frechet_terms, kid, median_distance, mmd, prdc, sliced_wasserstein


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def gaussian_kernel_mean(mu1: float, s1: float, mu2: float, s2: float, h: float) -> float:
    """E exp(−(X − Y)²/(2h²)) for independent X ~ N(μ1, s1²), Y ~ N(μ2, s2²).

    Z = X − Y ~ N(δ, v) with δ = μ1 − μ2, v = s1² + s2². Completing the square in the Gaussian integral,
    E exp(−Z²/(2h²)) = ∫ N(z; δ, v) exp(−z²/(2h²)) dz = h/√(h² + v) · exp(−δ²/(2(h² + v))).
    """
    v = h * h + s1 * s1 + s2 * s2
    return h / math.sqrt(v) * math.exp(-(mu1 - mu2) ** 2 / (2 * v))


def circle_mixture(r: np.random.Generator, n: int, modes: np.ndarray) -> np.ndarray:
    """n points from equal-weight Gaussians (std 0.3) centred on `modes` of 8 points on a circle of radius 5."""
    angle = 2 * np.pi * np.arange(8) / 8
    centres = 5 * np.stack([np.cos(angle), np.sin(angle)], 1)
    return centres[r.choice(modes, n)] + 0.3 * r.standard_normal((n, 2))


# --- Fréchet distance terms -------------------------------------------------------------------------------


def test_frechet_terms_sum_to_the_distance_and_split_a_shift_from_a_change_of_spread():
    r = rng(0)
    a, b = r.standard_normal((4000, 3)), r.standard_normal((4000, 3))
    mean0, cov0 = frechet_terms(a, b)
    assert mean0 + cov0 == pytest.approx(frechet_distance(a, b), rel=1e-12)
    # Shifting one set by v moves only the mean term, to ||d + v||² with d the sets' mean difference.
    v = np.array([1.0, -2.0, 0.5])
    d = a.mean(0) - b.mean(0)
    mean1, cov1 = frechet_terms(a + v, b)
    assert mean0 == pytest.approx(float(d @ d), rel=1e-12)
    assert mean1 == pytest.approx(float((d + v) @ (d + v)), rel=1e-12)
    assert cov1 == pytest.approx(cov0, rel=1e-9)
    # Scaling one set about its own mean by 2 leaves the mean term and gives the covariance term of
    # N(0, 4I) against N(0, I): 3 · (4 + 1 − 2·2) = 3, up to sampling error.
    mean2, cov2 = frechet_terms(2 * (a - a.mean(0)) + a.mean(0), b)
    assert mean2 == pytest.approx(mean0, rel=1e-9)
    assert cov2 == pytest.approx(3.0, abs=0.15)


# --- MMD ---------------------------------------------------------------------------------------------------

def test_mmd_of_identical_sets():
    x = rng(0).standard_normal((500, 3))
    assert mmd(x, x, estimator="biased") == pytest.approx(0.0, abs=1e-12)
    # Unbiased with y = x: (2/N)·(mean off-diagonal k − k(a, a)), and k(a, a) = 3 for three widths.
    unbiased = mmd(x, x)
    assert -2 * 3 / len(x) <= unbiased <= 0.0


@pytest.mark.parametrize("bandwidths", [1.0, (0.5, 2.0)])
def test_mmd_matches_closed_form_for_1d_gaussians(bandwidths):
    mu1, s1, mu2, s2 = 0.0, 1.0, 1.0, 1.5
    # MMD² = E k(x, x′) + E k(y, y′) − 2 E k(x, y), each a sum over the widths of the closed form.
    exact = sum(gaussian_kernel_mean(mu1, s1, mu1, s1, h) + gaussian_kernel_mean(mu2, s2, mu2, s2, h)
                - 2 * gaussian_kernel_mean(mu1, s1, mu2, s2, h) for h in np.atleast_1d(bandwidths))
    r = rng(1)
    x, y = r.normal(mu1, s1, 3000), r.normal(mu2, s2, 3000)
    # Monte-Carlo std of the estimate at N = 3000 is about 0.007 per unit width (measured over seeds).
    tol = 0.03 * np.size(bandwidths)
    assert mmd(x, y, bandwidths=bandwidths) == pytest.approx(exact, abs=tol)
    assert mmd(x, y, bandwidths=bandwidths, estimator="biased") == pytest.approx(exact, abs=tol)


def test_mmd_grows_with_mean_shift():
    r = rng(2)
    x = r.standard_normal((600, 4))
    y = r.standard_normal((600, 4))
    values = [mmd(x, y + shift) for shift in (0.0, 0.25, 0.5, 1.0, 2.0)]
    assert abs(values[0]) < 0.01
    assert all(a < b for a, b in zip(values, values[1:], strict=False))


def test_mmd_is_deterministic_chunk_invariant_and_flattens_images():
    r = rng(3)
    x, y = r.standard_normal((700, 2, 3, 3)), r.standard_normal((650, 2, 3, 3)) + 0.3  # 1350 > median subsample
    value = mmd(x, y)
    assert mmd(x, y) == value
    assert mmd(x, y, chunk=37) == pytest.approx(value, rel=1e-10)
    assert mmd(x.reshape(700, -1), y.reshape(650, -1)) == pytest.approx(value, rel=1e-12)


def test_median_distance():
    r = rng(4)
    # Up to MEDIAN_ITEMS pooled items: the exact median over all distinct pairs.
    x, y = r.standard_normal((300, 2)), r.standard_normal((200, 2)) + 1.0
    pooled = np.concatenate([x, y])
    d = np.sqrt(((pooled[:, None] - pooled[None]) ** 2).sum(-1))[np.triu_indices(len(pooled), 1)]
    assert median_distance(x, y) == pytest.approx(np.median(d), rel=1e-12)
    # Beyond that, a fixed-seed subsample of 1000 items (measured scatter over seeds: about 2 %).
    # |X − X′| with X, X′ ~ N(0, 1) is √2·|Z|, whose median is √2 · 0.6745.
    assert median_distance(r.standard_normal(2000), r.standard_normal(2000)) == pytest.approx(
        math.sqrt(2) * 0.67449, rel=0.1)
    assert median_distance(np.ones((5, 3)), np.ones((4, 3))) == 1.0  # all one point: any width will do


def test_mmd_rejects_bad_options():
    x = rng(5).standard_normal((20, 2))
    with pytest.raises(ValueError, match="estimator"):
        mmd(x, x, estimator="v-statistic")
    for bad in (0.0, -1.0, (1.0, float("nan")), ()):
        with pytest.raises(ValueError, match="bandwidths"):
            mmd(x, x, bandwidths=bad)
    with pytest.raises(ValueError, match="at least 2 items"):
        mmd(x[:1], x)


# --- sliced Wasserstein ------------------------------------------------------------------------------------

def test_kid_is_the_unbiased_polynomial_kernel_mmd_whatever_the_chunk():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((50, 6)), rng.standard_normal((50, 6)) + 0.5
    n = 50
    k = lambda a, b: (a @ b.T / 6 + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    off = lambda m: (m.sum() - np.trace(m)) / (n * (n - 1))  # noqa: E731
    expected = off(kxx) + off(kyy) - 2 * off(kxy)  # Gretton et al. 2012, Lemma 6: pairs i ≠ j only
    for chunk in (7, 512):
        got = kid(x, y, chunk=chunk)
        assert got["kid_items"] == n
        assert got["kid"] == pytest.approx(expected, rel=1e-10)
    assert kid(x, y)["kid_se"] == pytest.approx(kid(x, y, chunk=7)["kid_se"], rel=1e-10)
    # a larger set is cut to a seeded random subset of min(N, M) items: the same every time
    longer = np.concatenate([y, rng.standard_normal((40, 6)) + 0.5])
    assert kid(x, longer)["kid_items"] == 50 and kid(x, longer) == kid(x, longer)
    assert kid(x, longer, max_items=20)["kid_items"] == 20


@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_kid_standard_error_matches_the_spread_of_the_estimate_over_repeated_draws(shift):
    # The error is calibrated both when the sets agree (its ζ₂ term) and when they differ (its ζ₁ term): over
    # 150 repeats of 80 items, the mean reported error is within 20 % of the estimates' standard deviation
    # (the standard deviation of 150 draws is itself uncertain by ±6 %).
    rng = np.random.default_rng(1)
    draws = [kid(rng.standard_normal((80, 8)), rng.standard_normal((80, 8)) + shift) for _ in range(150)]
    values, errors = np.array([d["kid"] for d in draws]), np.array([d["kid_se"] for d in draws])
    assert np.mean(errors) == pytest.approx(np.std(values, ddof=1), rel=0.2)
    if shift == 0:
        assert abs(values.mean()) < 3 * np.std(values) / math.sqrt(len(values))  # unbiased: centred on 0


def test_kid_of_two_halves_of_one_set_is_zero_within_its_error_and_a_shift_is_far_outside_it():
    rng = np.random.default_rng(2)
    data = rng.standard_normal((2000, 16)) * np.linspace(0.5, 2, 16)
    same = kid(data[:1000], data[1000:])
    assert abs(same["kid"]) < 3 * same["kid_se"]
    moved = kid(data[:1000], data[1000:] + 0.25)
    assert moved["kid"] > 5 * moved["kid_se"]
    with pytest.raises(ValueError, match="at least 4 items"):
        kid(data[:3], data[:10])
    with pytest.raises(ValueError, match="same number of features"):
        kid(data[:10], data[:10, :5])


def test_sliced_wasserstein_of_identical_sets_is_zero():
    x = rng(6).standard_normal((300, 5))
    assert sliced_wasserstein(x, x) == 0.0


def test_sliced_wasserstein_1d_equals_w2():
    # In 1-D every projection is ±1, so SW₂ = W₂; for a shifted copy W₂ is exactly the shift, and for
    # N(μ1, s²) against N(μ2, s²) it is |μ1 − μ2| up to sampling noise.
    r = rng(7)
    x = r.standard_normal(5000)
    assert sliced_wasserstein(x, x + 1.5) == pytest.approx(1.5, abs=1e-12)
    assert sliced_wasserstein(x, r.normal(2.0, 1.0, 5000)) == pytest.approx(2.0, abs=0.06)


def test_sliced_wasserstein_matches_closed_form_for_shifted_gaussians():
    # N(0, I) vs N(m, I): each direction θ sees a 1-D shift by θ·m, so SW₂² = E(θ·m)² = ||m||²/D
    # (E θθᵀ = I/D for θ uniform on the sphere).
    dim = 8
    m = rng(8).standard_normal(dim)
    m *= 2.0 / np.linalg.norm(m)
    r = rng(9)
    x, y = r.standard_normal((3000, dim)), r.standard_normal((3000, dim)) + m
    exact = 2.0 / math.sqrt(dim)
    assert sliced_wasserstein(x, y, n_projections=1000) == pytest.approx(exact, rel=0.06)


def test_sliced_wasserstein_unequal_sizes_matches_replicated_samples():
    # Repeating each of N items M times (and each of M items N times) leaves both empirical distributions
    # unchanged and makes the sizes equal, where W₂ pairs sorted values one to one.
    r = rng(10)
    x, y = r.standard_normal((40, 3)), r.standard_normal((60, 3)) + 0.5
    direct = sliced_wasserstein(x, y, n_projections=32, seed=3)
    replicated = sliced_wasserstein(np.repeat(x, 3, axis=0), np.repeat(y, 2, axis=0), n_projections=32, seed=3)
    assert direct == pytest.approx(replicated, rel=1e-12)
    assert sliced_wasserstein(r.standard_normal((2000, 3)), r.standard_normal((1500, 3))) < 0.1


def test_sliced_wasserstein_is_deterministic_for_a_seed():
    r = rng(11)
    x, y = r.standard_normal((200, 6)), r.standard_normal((250, 6)) * 1.5
    assert sliced_wasserstein(x, y, seed=4) == sliced_wasserstein(x, y, seed=4)
    assert sliced_wasserstein(x, y, seed=4) != sliced_wasserstein(x, y, seed=5)
    assert sliced_wasserstein(x, y, seed=4, chunk=7) == pytest.approx(sliced_wasserstein(x, y, seed=4), rel=1e-12)
    with pytest.raises(ValueError, match="n_projections"):
        sliced_wasserstein(x, y, n_projections=0)


# --- precision, recall, density, coverage ------------------------------------------------------------------

def test_prdc_of_a_copy():
    x = rng(12).standard_normal((1000, 4))
    out = prdc(x, x.copy(), k=5)
    assert out["precision"] == out["recall"] == out["coverage"] == 1.0
    assert out["density"] == pytest.approx(6 / 5, abs=1e-3)  # each ball holds its centre and k neighbours


def test_prdc_of_two_samples_of_one_distribution():
    r = rng(13)
    n, k = 2000, 5
    real, fake = r.standard_normal((n, 2)), r.standard_normal((n, 2))
    out = prdc(real, fake, k=k)
    assert out["precision"] > 0.97 and out["recall"] > 0.97
    assert out["density"] == pytest.approx(1.0, abs=0.05)  # E density = 1 (Naeem et al. 2020, Lemma 1)
    expected_coverage = 1 - math.prod((n - i) / (2 * n - i) for i in range(1, k + 1))  # ibid., Lemma 2
    assert out["coverage"] == pytest.approx(expected_coverage, abs=0.015)


def test_prdc_half_the_modes():
    r = rng(14)
    real = circle_mixture(r, 2000, np.arange(8))
    fake = circle_mixture(r, 2000, np.arange(4))
    out = prdc(real, fake)
    assert out["precision"] > 0.97  # every fake is realistic ...
    assert out["recall"] == pytest.approx(0.5, abs=0.05)  # ... but half the real support is missed
    assert out["coverage"] == pytest.approx(0.5, abs=0.05)
    assert out["density"] == pytest.approx(1.0, abs=0.1)  # density measures fidelity, not diversity


def test_prdc_of_a_far_away_set_is_zero():
    real = rng(15).standard_normal((300, 3))
    out = prdc(real, rng(16).standard_normal((300, 3)) + 100.0)
    assert out == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_is_deterministic_and_chunk_invariant():
    r = rng(17)
    real, fake = r.standard_normal((500, 1, 4, 4)), r.standard_normal((400, 1, 4, 4)) * 1.3
    out = prdc(real, fake, k=3)
    assert prdc(real, fake, k=3) == out
    assert prdc(real, fake, k=3, chunk=33) == pytest.approx(out, rel=1e-12)
    assert prdc(real.reshape(500, -1), fake.reshape(400, -1), k=3) == pytest.approx(out, rel=1e-12)


def test_prdc_needs_k_plus_one_items_and_a_positive_k():
    x = rng(18).standard_normal((10, 2))
    with pytest.raises(ValueError, match=r"fake needs at least 6 items"):
        prdc(x, x[:5], k=5)
    with pytest.raises(ValueError, match=r"real needs at least 11 items"):
        prdc(x, x, k=10)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            prdc(x, x, k=bad)


# --- input checks shared by all three ----------------------------------------------------------------------

METRICS = {"mmd": lambda a, b: mmd(a, b), "sliced_wasserstein": lambda a, b: sliced_wasserstein(a, b),
           "prdc": lambda a, b: prdc(a, b)}


@pytest.mark.parametrize("name", METRICS)
def test_bad_input_raises_value_error_naming_the_problem(name):
    fn = METRICS[name]
    x = rng(19).standard_normal((50, 4))
    with pytest.raises(ValueError, match="same number of features per item, got 4 and 3"):
        fn(x, x[:, :3])
    with_nan = x.copy()
    with_nan[7, 2] = np.nan
    with pytest.raises(ValueError, match="y contains NaN or Inf|fake contains NaN or Inf"):
        fn(x, with_nan)
    with_inf = x.copy()
    with_inf[0, 0] = np.inf
    with pytest.raises(ValueError, match="x contains NaN or Inf|real contains NaN or Inf"):
        fn(with_inf, x)
    with pytest.raises(ValueError, match="is empty"):
        fn(x, x[:0])
    with pytest.raises(ValueError, match="scalar"):
        fn(x, np.float64(1.0))
