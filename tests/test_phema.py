"""Post-hoc EMA: the σ_rel ↔ γ map, tracking against closed forms, reconstruction, state round trips."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from steadydiff.train.phema import (
    GAMMA_PEAK,
    STD_MAX,
    PowerEMA,
    Snapshot,
    exp_to_std,
    power_beta,
    power_dot,
    reconstruct,
    solve_weights,
    std_to_exp,
)


class Vec(nn.Module):
    """A "model" whose only parameter is a vector we set by hand (plus a buffer that must be copied)."""

    def __init__(self, d: int, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(d, dtype=dtype))
        self.register_buffer("seen", torch.zeros((), dtype=torch.int64))

    def set(self, value) -> None:
        with torch.no_grad():
            self.w.copy_(torch.as_tensor(value, dtype=self.w.dtype))
            self.seen += 1


def walk(steps: int, d: int, seed: int = 0) -> np.ndarray:
    return np.cumsum(np.random.default_rng(seed).standard_normal((steps, d)), axis=0)


def track(traj: np.ndarray, stds=(0.05, 0.10), every: int = 0, times=None):
    """Run PowerEMA over a trajectory (row k is θ at time times[k], default k + 1); snapshots every `every`."""
    model = Vec(traj.shape[1])
    ema = PowerEMA(model, stds)
    times = np.arange(1, len(traj) + 1) if times is None else times
    snaps = []
    for k, (t, theta) in enumerate(zip(times, traj, strict=True)):
        model.set(theta)
        ema.update(model, float(t))
        if every and (k + 1) % every == 0:
            snaps.append(ema.snapshot())
    return model, ema, snaps


# --------------------------------------------------------------------------------------------------
# The σ_rel ↔ γ map (Eq. 3).


def test_paper_values():
    # Sec. 3.2 tracks σ_rel = 0.05 and 0.10, i.e. γ = 16.97 and 6.94 (the larger γ is the narrower profile).
    assert std_to_exp(0.05) == pytest.approx(16.97, abs=0.005)
    assert std_to_exp(0.10) == pytest.approx(6.94, abs=0.005)
    assert exp_to_std(16.97) == pytest.approx(0.05, abs=1e-4)
    assert exp_to_std(6.94) == pytest.approx(0.10, abs=1e-4)
    # γ = 0 is the uniform average over [0, t], whose std is t / √12.
    assert exp_to_std(0.0) == pytest.approx(1 / math.sqrt(12), rel=1e-15)


@pytest.mark.parametrize("std", [1e-3, 0.01, 0.05, 0.075, 0.10, 0.2, 0.28, 0.3])
def test_std_round_trip(std):
    assert exp_to_std(std_to_exp(std)) == pytest.approx(std, rel=1e-10)


@pytest.mark.parametrize("gamma", [GAMMA_PEAK + 0.01, -0.2, 0.0, 1.0, 6.94, 16.97, 100.0, 1e4])
def test_gamma_round_trip(gamma):
    assert std_to_exp(exp_to_std(gamma)) == pytest.approx(gamma, rel=1e-7, abs=1e-9)


def test_map_limits():
    assert std_to_exp(STD_MAX) == pytest.approx(GAMMA_PEAK, abs=1e-5)
    for bad in (0.0, -0.1, 0.31, float("nan")):
        with pytest.raises(ValueError, match="sigma_rel"):
            std_to_exp(bad)
    with pytest.raises(ValueError, match="> -1"):
        exp_to_std(-1.0)


def test_power_beta():
    assert power_beta(1, 6.94) == 0.0  # the first update replaces the average
    assert power_beta(10, 2.0) == pytest.approx(0.9**3)
    assert power_beta(100, 2.0, delta=10) == pytest.approx(0.9**3)  # time in samples: batch of 10
    with pytest.raises(ValueError):
        power_beta(0, 1.0)


# --------------------------------------------------------------------------------------------------
# Tracking equals the power-function average in closed form.


@pytest.mark.parametrize("std", [0.05, 0.10])
def test_update_is_power_average_of_t(std):
    # θ_t = t: the average of the piecewise-constant trajectory under p(τ) = (γ+1)τ^γ/T^(γ+1) has the
    # exact weights w_t = (t^(γ+1) − (t−1)^(γ+1)) / T^(γ+1), i.e. ∝ t^γ up to O(γ/t) corrections.
    T = 1000
    t = np.arange(1, T + 1, dtype=np.float64)
    _, ema, _ = track(t[:, None], stds=(std,))
    g = std_to_exp(std)
    exact = ((t / T) ** (g + 1) - ((t - 1) / T) ** (g + 1)) @ t
    assert ema.profiles[0]["w"].item() == pytest.approx(exact, rel=1e-12)
    w = t**g / (t**g).sum()
    assert ema.profiles[0]["w"].item() == pytest.approx(w @ t, rel=1e-3)
    # ... and the continuous profile on θ(τ) = ⌈τ⌉: (γ+1)/(γ+2)·T plus about half a step.
    assert ema.profiles[0]["w"].item() == pytest.approx((g + 1) / (g + 2) * T + 0.5, abs=0.05)


def test_update_random_trajectory_and_uneven_times():
    # Updates at uneven times (e.g. samples seen with a changing batch size): parameters held over
    # (t_{k−1}, t_k] weigh (t_k^(γ+1) − t_{k−1}^(γ+1)) / T^(γ+1).
    rng = np.random.default_rng(1)
    times = np.cumsum(rng.integers(1, 64, size=300)).astype(np.float64)
    traj = rng.standard_normal((300, 5))
    model, ema, _ = track(traj, times=times)
    prev = np.r_[0.0, times[:-1]]
    for gamma, params in zip(ema.gammas, ema.profiles, strict=True):
        w = (times / times[-1]) ** (gamma + 1) - (prev / times[-1]) ** (gamma + 1)
        np.testing.assert_allclose(params["w"].numpy(), w @ traj, rtol=1e-10, atol=1e-12)
    assert ema.buffers["seen"].item() == 300 and ema.step == times[-1]


def test_update_needs_increasing_steps():
    model = Vec(2)
    ema = PowerEMA(model)
    ema.update(model, 5)
    with pytest.raises(ValueError, match="increasing"):
        ema.update(model, 5)
    with pytest.raises(ValueError, match="distinct"):
        PowerEMA(model, stds=(0.05, 0.05))


def test_low_precision_model_is_averaged_in_float32():
    model = Vec(3, dtype=torch.bfloat16)
    ema = PowerEMA(model)
    assert all(p["w"].dtype == torch.float32 for p in ema.profiles)
    model.set([1.0, 2.0, 3.0])
    ema.update(model, 1)
    assert ema.profiles[0]["w"].tolist() == [1.0, 2.0, 3.0]


# --------------------------------------------------------------------------------------------------
# Post-hoc reconstruction (Appendix C.2).


def test_power_dot_matches_numerical_integral():
    tau = np.linspace(0, 1, 400_001)[1:]
    for ta, ga, tb, gb in [(1.0, 6.94, 1.0, 16.97), (0.6, 3.0, 1.0, 0.5), (1.0, 16.97, 0.3, 6.94)]:
        pa = np.where(tau <= ta, (ga + 1) * tau**ga / ta ** (ga + 1), 0.0)
        pb = np.where(tau <= tb, (gb + 1) * tau**gb / tb ** (gb + 1), 0.0)
        numeric = (pa * pb).sum() * (tau[1] - tau[0])
        assert power_dot(ta, ga, tb, gb) == pytest.approx(numeric, rel=1e-3)
    # Scale-free: stretching time by c divides every product by c; huge γ and t do not overflow.
    assert power_dot(1e7, 50.0, 3e6, 80.0) == pytest.approx(power_dot(10.0, 50.0, 3.0, 80.0) / 1e6, rel=1e-9)


def test_solve_weights_picks_a_tracked_profile():
    steps = np.repeat(np.arange(100, 1001, 100), 2)
    gammas = np.tile([std_to_exp(0.05), std_to_exp(0.10)], 10)
    x = solve_weights(steps, gammas, target_std=0.10)
    expect = np.zeros(20)
    expect[-1] = 1.0
    np.testing.assert_allclose(x, expect, atol=1e-8)
    assert x.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="exactly one"):
        solve_weights(steps, gammas, target_std=0.1, target_gamma=3.0)
    with pytest.raises(ValueError, match="exactly one"):
        solve_weights(steps, gammas)


def test_reconstruct_tracked_profile():
    traj = walk(1000, 16)
    _, ema, snaps = track(traj, every=100)
    for i, std in enumerate(ema.stds):
        got = reconstruct(snaps, std)
        assert got["w"].dtype == torch.float32
        # float32 snapshots: agreement to float32 rounding of values of size ~30.
        np.testing.assert_allclose(got["w"].numpy(), ema.profiles[i]["w"].numpy(), rtol=1e-5, atol=1e-4)
        assert got["seen"].item() == 1000  # buffers from the latest snapshot


def test_reconstruct_intermediate_profile_matches_direct_tracking():
    # Snapshots of σ_rel 0.05 and 0.10 every 100 of 2000 steps of a random walk; a third PowerEMA tracks
    # the targets directly. Tolerance: 0.5 % of the walk's spread over the last 30 % of training (the
    # window these averages cover); the observed errors are about 10× smaller.
    traj = walk(2000, 64, seed=2)
    _, _, snaps = track(traj, every=100)
    targets = (0.075, 0.15)
    _, direct, _ = track(traj, stds=targets)
    spread = traj[-600:].std(axis=0).mean()
    for std, params in zip(targets, direct.profiles, strict=True):
        err = np.abs(reconstruct(snaps, std)["w"].numpy() - params["w"].numpy()).max()
        assert err < 5e-3 * spread, (std, err / spread)
    # The reconstructed profile itself is close to the target: relative L² residual below 1 %.
    steps = np.array([s.step for s in snaps for _ in s.gammas])
    gammas = np.array([g for s in snaps for g in s.gammas])
    x = solve_weights(steps, gammas, target_std=0.075)
    g_r = std_to_exp(0.075)
    a = power_dot(steps[:, None], gammas[:, None], steps[None], gammas[None])
    b = power_dot(steps, gammas, 2000.0, g_r)
    c = power_dot(2000.0, g_r, 2000.0, g_r)
    assert math.sqrt(max(x @ a @ x - 2 * x @ b + c, 0.0) / c) < 0.01


def test_float16_snapshots_reconstruct_nearly_as_well():
    traj = walk(1000, 16, seed=3) / 30  # parameter-like magnitudes
    model, ema, _ = track(traj[:1])
    snaps32, snaps16 = [], []
    for t in range(2, 1001):
        model.set(traj[t - 1])
        ema.update(model, t)
        if t % 100 == 0:
            snaps32.append(ema.snapshot())
            snaps16.append(ema.snapshot(torch.float16))
    assert snaps16[0].profiles[0]["w"].dtype == torch.float16
    a = reconstruct(snaps32, 0.075)["w"].numpy()
    b = reconstruct(snaps16, 0.075)["w"].numpy()
    assert np.abs(a - b).max() < 2e-3 * np.abs(a).max()


# --------------------------------------------------------------------------------------------------
# Saving and loading.


def test_state_dict_round_trip_through_safetensors(tmp_path):
    traj = walk(50, 4, seed=4)
    model, ema, _ = track(traj[:30])
    save_file(ema.state_dict(), tmp_path / "ema.safetensors")
    (tmp_path / "ema.json").write_text(json.dumps(ema.metadata()))

    fresh = PowerEMA(Vec(4))
    fresh.load_state_dict(load_file(tmp_path / "ema.safetensors"), json.loads((tmp_path / "ema.json").read_text()))
    assert fresh.step == 30
    for k, v in ema.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)
    for t in range(31, 51):  # resuming continues exactly
        model.set(traj[t - 1])
        ema.update(model, t)
        fresh.update(model, t)
    for k, v in ema.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)

    with pytest.raises(ValueError, match="stds"):
        PowerEMA(Vec(4), stds=(0.05, 0.2)).load_state_dict(ema.state_dict(), ema.metadata())
    partial = dict(ema.state_dict())
    del partial["profile1/w"]
    with pytest.raises(KeyError, match="profile1/w"):
        fresh.load_state_dict(partial, ema.metadata())


def test_snapshot_round_trip(tmp_path):
    _, ema, snaps = track(walk(200, 3, seed=5), every=100)
    snap = snaps[-1]
    assert snap.step == 200 and snap.stds == ema.stds and snap.profiles[0]["w"].dtype == torch.float32
    save_file(snap.tensors(), tmp_path / "snap.safetensors")
    back = Snapshot.from_tensors(load_file(tmp_path / "snap.safetensors"), json.loads(json.dumps(snap.metadata())))
    assert back.step == snap.step and back.gammas == snap.gammas
    assert all(torch.equal(a["w"], b["w"]) for a, b in zip(back.profiles, snap.profiles, strict=True))
    model = Vec(3)
    model.load_state_dict(reconstruct(snaps, 0.08))  # loads straight into the model
    with pytest.raises(ValueError, match="before the first update"):
        PowerEMA(model).snapshot()
