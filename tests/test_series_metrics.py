"""Series metrics judged on cases whose answer is known: the batched GRU is torch's GRU, a classifier cannot tell
windows of one process apart but tells a different process at once, forecasts' CRPS and MASE match their closed
forms, and a Reference reads series against its floor."""

import math

import numpy as np
import pytest
import torch

from steadydiff.data import DataConfig, Normaliser, load_data
from steadydiff.metrics import reference
from steadydiff.metrics.reference import Reference, against_floor, own_error
from steadydiff.metrics.series import (
    _GRUs,
    acf_distance,
    crps,
    discriminative_score,
    mase,
    mean_acf,
    predictive_score,
    spectrum_distance,
)


def sines(n: int, seed: int) -> np.ndarray:
    """TimeGAN's sines: 5 channels × 24 steps, frequency and phase ~ U(0, 0.1), on [0, 1]."""
    rng = np.random.default_rng(seed)
    f, p = rng.uniform(0, 0.1, (n, 5, 1)), rng.uniform(0, 0.1, (n, 5, 1))
    return ((np.sin(f * np.arange(24) + p) + 1) / 2).astype(np.float32)


def ar1(n: int, phi: float, length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, length))
    e = rng.standard_normal((n, 1, length))
    for t in range(1, length):
        x[:, :, t] = phi * x[:, :, t - 1] + e[:, :, t]
    return x.astype(np.float32)


def test_the_batched_grus_compute_what_torch_gru_computes():
    torch.manual_seed(0)
    nets = _GRUs(repeats=2, channels=3, hidden=4, every_step=True)
    x = torch.randn(2, 5, 7, 3)
    out = nets(x)
    for r in range(2):
        ref = torch.nn.GRU(3, 4, batch_first=True)
        with torch.no_grad():
            ref.weight_ih_l0.copy_(nets.w_ih[r])
            ref.weight_hh_l0.copy_(nets.w_hh[r])
            ref.bias_ih_l0.copy_(nets.b_ih[r, 0])
            ref.bias_hh_l0.copy_(nets.b_hh[r, 0])
            seq, _ = ref(x[r])
        expected = seq @ nets.w_out[r] + nets.b_out[r]
        torch.testing.assert_close(out[r], expected.squeeze(-1), atol=1e-5, rtol=1e-5)


def test_the_discriminative_score_tells_another_process_from_the_real_one_and_not_the_real_one_from_itself():
    real, same = sines(600, 1), sines(600, 2)
    low = real - 0.25  # the same sines, a quarter lower: a level no real window has
    twin = discriminative_score(real, same, repeats=3, iterations=400)
    other = discriminative_score(real, low, repeats=3, iterations=400)
    assert twin["discriminative"] < 0.08
    assert other["discriminative"] > 0.25
    quick = discriminative_score(real, same, repeats=2, iterations=30)
    assert discriminative_score(real, same, repeats=2, iterations=30) == quick  # seeded: the same every time


def test_the_discriminative_score_does_not_reward_unequal_set_sizes():
    """Ten times as many windows of one side (a small held-out set against the default sample count): windows
    of one process still score near 0, not the share of the larger class."""
    real, many = sines(60, 1), sines(600, 2)
    assert discriminative_score(real, many, repeats=3, iterations=400)["discriminative"] < 0.1


def test_the_predictive_score_is_worse_when_trained_on_windows_whose_target_channel_is_wrong():
    real, train = sines(500, 1), sines(500, 2)
    wrong = train.copy()
    wrong[:, -1] -= 0.3  # the predicted channel at a level no real window has
    good = predictive_score(train, real, repeats=2, iterations=600)
    bad = predictive_score(wrong, real, repeats=2, iterations=600)
    assert good["predictive"] < 0.12  # TimeGAN reports 0.094 for real sines at 5,000 iterations
    assert bad["predictive"] > good["predictive"] + 2 * (good["predictive_sd"] + bad["predictive_sd"])


def test_autocorrelation_and_spectrum_distances_separate_processes():
    a, b = ar1(300, 0.8, 128, 0), ar1(300, 0.8, 128, 1)
    white = ar1(300, 0.0, 128, 2)
    assert mean_acf(a)[0, 0] == pytest.approx(0.8, abs=0.06)  # lag 1 of an AR(1) is φ (short-window bias aside)
    assert acf_distance(a, b) < 0.01 < 0.05 < acf_distance(a, white)  # averaged over lags 1 … 64
    assert spectrum_distance(a, b) < 0.05 < 0.3 < spectrum_distance(a, white)
    t = np.arange(64)
    slow, fast = (np.sin(0.2 * t)[None, None] * np.ones((4, 1, 1)), np.sin(1.3 * t)[None, None] * np.ones((4, 1, 1)))
    assert spectrum_distance(slow, fast) > 0.9  # no frequency in common


def test_crps_and_mase_match_their_closed_forms():
    rng = np.random.default_rng(0)
    # CRPS(N(0, 1), y = 0) = 2φ(0) − 1/√π = (√2 − 1)/√π
    assert crps(rng.standard_normal((20_000, 1)), np.zeros(1)) == pytest.approx((math.sqrt(2) - 1) / math.sqrt(math.pi),
                                                                               abs=0.005)
    assert crps(np.full((7, 3), 2.0), np.array([1.0, 2.0, 4.5])) == pytest.approx((1 + 0 + 2.5) / 3)  # a point mass
    history = np.array([1.0, 2.0, 1.0, 2.0, 1.5])  # seasonal-naive (lag 2) errors 0, 0, 0.5: scale 1/6
    assert mase(np.array([1.0, 2.0]), np.array([1.5, 2.0]), history, season=2) == pytest.approx(0.25 / (1 / 6))
    with pytest.raises(ValueError, match="constant"):
        mase(np.ones(2), np.ones(2), np.ones(5), season=1)


def test_a_reference_scores_series_against_floors_with_their_spread(monkeypatch):
    monkeypatch.setattr(reference, "GRU_ITERATIONS", (400, 400))  # TimeGAN's 2,000 / 5,000 take minutes
    ds = load_data(DataConfig(source="toy:sines", toy_samples=1200))
    ref = Reference(ds, Normaliser.fit(ds.train, ds.kind), 100, gru_scores=True)
    real = ref.real_data
    for key in ("acf_distance", "spectrum_distance", "fd_data"):
        assert real[f"{key}_sd"] > 0  # the floor's spread over draws of real windows
    assert real["discriminative"] < 0.15
    flat = np.repeat(ds.holdout[:100, :, :1], 24, axis=2)  # every window constant: no sine left
    scores = ref.score(flat)
    assert scores["acf_distance"] > 5 * real["acf_distance"]
    assert scores["discriminative"] > real["discriminative"] + 0.2
    assert against_floor("discriminative", scores["discriminative"], real, own_error(scores, "discriminative"))[0] \
        == "above"
    assert against_floor("acf_distance", real["acf_distance"], real)[0] == "at"
