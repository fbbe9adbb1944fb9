"""Parity suite: with an exact denoiser every solver must reproduce the distribution it denoises.

The analytic Gaussian-mixture denoiser is E[x0 | x_σ] exactly, so any error in the samples comes from
the solver (and from the finite number of samples). Step counts are the smallest round numbers at
which each solver passed comfortably when this suite was written; tolerances are stated beside
each check and leave room for the sampling error of 4000 samples.
"""

from __future__ import annotations

import math

import pytest
import torch

from steadydiff.diffusion.analytic import GaussianMixtureDenoiser
from steadydiff.sampling import SOLVERS, get_solver, karras_sigmas, sample, step_list

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
N_SAMPLES = 4000

# Steps per solver and step list. Heun and DPM-Solver++(2M) are higher order and need far fewer
# evaluations; VP-uniform steps spend few levels at low σ, where the modes are resolved, so the
# higher-order solvers need more of them than with Karras steps.
STEPS = {
    "karras": {"heun": 18, "dpmpp-2m": 25, "euler": 100, "ddim": 100, "ancestral": 200},
    "vp-uniform": {"heun": 40, "dpmpp-2m": 40, "euler": 100, "ddim": 100, "ancestral": 200},
}

# Tolerances (absolute). Standard errors for 4000 samples: a weight of 0.5 has 0.008 (1/8: 0.005),
# the mean of the circle mixture (variance ≈ 2 per axis) 0.022, a covariance entry ≈ 0.045.
# Measured over three seeds at the steps above: weights ≤ 0.027 off, means ≤ 0.07, covariances ≤ 0.09
# (with 2000 samples), and ≥ 98.5 % of samples within 4 std.
WITHIN_4_STD = 0.95  # fraction of samples within 4 std of their nearest mode centre
WEIGHT_TOL = 0.03  # |observed mode frequency − true weight|
MEAN_TOL = 0.15  # |sample mean − mixture mean|, per coordinate
COV_TOL = 0.2  # |sample covariance − mixture covariance|, per entry
# Spread of samples within their mode: RMS distance to the nearest centre over its exact value sqrt(2)·std,
# as (expected, tolerance). This is what separates a good solver from a poor one. Karras steps measured
# 0.95-1.07 (seeds 0-2, both mixtures): 1 within 0.1. VP-uniform steps are coarse at low σ (the last levels
# before σ_min are ≈ 0.03-0.05, about the mode std), which these step counts do not resolve, and each solver
# errs its own way, the same on every seed to ±0.01: Euler, DDIM and ancestral shrink the modes to 0.76-0.78,
# Heun inflates them to 1.26-1.28, DPM-Solver++(2M) to 1.03-1.09 (Euler needs ~400 steps to reach 0.93).
SPREAD = {"karras": {s: (1.0, 0.1) for s in SOLVERS},
          "vp-uniform": {"euler": (0.77, 0.03), "ddim": (0.77, 0.03), "ancestral": (0.775, 0.03),
                         "heun": (1.27, 0.03), "dpmpp-2m": (1.06, 0.05)}}


def circle_mixture() -> GaussianMixtureDenoiser:
    """8 equal modes on a circle of radius 2, std 0.05."""
    angle = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    return GaussianMixtureDenoiser(2.0 * torch.stack([angle.cos(), angle.sin()], 1), std=0.05)


def unequal_mixture() -> GaussianMixtureDenoiser:
    """4 modes with weights 0.5, 0.25, 0.15, 0.1 at irregular places, std 0.05."""
    means = torch.tensor([[-2.0, 0.0], [1.5, 1.5], [1.0, -2.0], [0.0, 0.5]], dtype=torch.float64)
    return GaussianMixtureDenoiser(means, std=0.05, weights=torch.tensor([0.5, 0.25, 0.15, 0.1]))


MIXTURES = {"circle": circle_mixture, "unequal": unequal_mixture}
CASES = [(lst, solver) for lst in STEPS for solver in SOLVERS]


@pytest.mark.parametrize("mixture", list(MIXTURES))
@pytest.mark.parametrize(("list_name", "solver_name"), CASES)
def test_solver_reproduces_mixture(mixture, list_name, solver_name):
    D = MIXTURES[mixture]()
    sigmas = step_list(list_name, STEPS[list_name][solver_name], SIGMA_MIN, SIGMA_MAX)
    # Solvers called directly with one generator: per-seed noise is tested in the contract suite and
    # thousands of per-row generators would only slow this test down.
    g = torch.Generator().manual_seed(0)
    x = sigmas[0] * torch.randn(N_SAMPLES, 2, generator=g)
    out = get_solver(solver_name)(D, x, sigmas, noise=lambda like: torch.randn(like.shape, generator=g))
    out = out.double()

    nearest = torch.cdist(out, D.means).min(dim=1)
    freq = torch.bincount(nearest.indices, minlength=D.means.shape[0]).double() / N_SAMPLES
    assert bool((freq > 0).all()), f"modes missed: {freq}"
    assert (nearest.values < 4 * D.std).double().mean() >= WITHIN_4_STD
    assert (freq - D.weights).abs().max() <= WEIGHT_TOL, f"{freq} vs {D.weights}"
    assert (out.mean(0) - D.mean()).abs().max() <= MEAN_TOL
    assert (torch.cov(out.T) - D.covariance()).abs().max() <= COV_TOL
    near = nearest.values[nearest.values < 4 * D.std]
    spread = near.pow(2).mean().sqrt() / (math.sqrt(2) * D.std)
    expected, tol = SPREAD[list_name][solver_name]
    assert abs(spread - expected) <= tol, f"within-mode spread {spread:.3f} × the true one, expected {expected}"


def test_sample_api_reproduces_mixture():
    """The same check through `sample` with per-seed noise, for the default sampler."""
    D = circle_mixture()
    out = sample(D, (N_SAMPLES, 2), karras_sigmas(18, SIGMA_MIN, SIGMA_MAX), "heun", range(N_SAMPLES))
    out = out.double()
    nearest = torch.cdist(out, D.means).min(dim=1)
    freq = torch.bincount(nearest.indices, minlength=8).double() / N_SAMPLES
    assert (nearest.values < 4 * D.std).double().mean() >= WITHIN_4_STD
    assert (freq - D.weights).abs().max() <= WEIGHT_TOL


def single_gaussian() -> tuple[GaussianMixtureDenoiser, torch.Tensor, float]:
    mu, s = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), 0.5
    return GaussianMixtureDenoiser(mu[None], std=s), mu, s


def test_heun_single_gaussian_is_the_exact_affine_map():
    """For N(μ, s²I) the probability-flow ODE is linear: x(σ) − μ = sqrt(s² + σ²)·c along each path,
    so x(0) = μ + A·(x(σ_max) − μ) with A = s / sqrt(s² + σ_max²), sending N(μ, σ_max²) to N(μ, s²).
    D is affine in x here, so Heun's map is affine too, with its own A; 50 Karras steps must get A
    within 1 % (measured: 0.6 %), and the samples' mean and std must be μ and s."""
    D, mu, s = single_gaussian()
    sigmas = karras_sigmas(50, SIGMA_MIN, SIGMA_MAX)
    n = torch.randn(4000, 3, generator=torch.Generator().manual_seed(0))
    x = SIGMA_MAX * n
    out = SOLVERS["heun"](D, x, sigmas).double()
    a_exact = s / math.sqrt(s**2 + SIGMA_MAX**2)
    exact = mu + a_exact * (x.double() - mu)
    assert ((out - mu) / (exact - mu) - 1).abs().max() < 0.01
    # Moments of the samples (standard errors for 4000 samples: mean 0.008, std 0.006).
    torch.testing.assert_close(out.mean(0), mu, atol=0.03, rtol=0)
    torch.testing.assert_close(out.std(0), torch.full((3,), s, dtype=torch.float64), atol=0.02, rtol=0)


@pytest.mark.parametrize(("solver_name", "order"), [("euler", 1), ("ddim", 1), ("heun", 2), ("dpmpp-2m", 2)])
def test_deterministic_solvers_converge_at_their_order(solver_name, order):
    """Doubling the Karras steps divides the error of the single-Gaussian map by about 2^order
    (measured: 2.0 for Euler/DDIM, 4.2-4.3 for Heun and DPM-Solver++(2M) at 50 → 100 steps)."""
    D, mu, s = single_gaussian()
    x = mu + SIGMA_MAX * torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a_exact = s / math.sqrt(s**2 + SIGMA_MAX**2)

    def error(steps: int) -> float:
        out = SOLVERS[solver_name](D, x, karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX))
        return float(((out - mu) / (x - mu) / a_exact - 1).abs().max())

    ratio = error(50) / error(100)
    assert 0.9 * 2**order < ratio < 1.25 * 2**order


# ---- the analytic denoiser itself -----------------------------------------------------------


def test_denoiser_limits():
    D = unequal_mixture()
    # σ → 0: a point near a mode is already clean.
    x = D.means + 0.01
    torch.testing.assert_close(D(x, torch.full((4,), 1e-4)), x, atol=1e-6, rtol=0)
    # σ → ∞: the observation says nothing, so D is the mixture mean.
    x = 1e4 * torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    big = D(x, torch.full((5,), 1e8, dtype=torch.float64))
    torch.testing.assert_close(big, D.mean().expand(5, 2), atol=1e-4, rtol=0)
    # Huge but finite inputs stay finite (log-sum-exp responsibilities).
    assert bool(D(torch.full((2, 2), 1e3), torch.tensor([1e-3, 1e-3])).isfinite().all())


def test_denoiser_matches_tweedie_and_monte_carlo():
    D = unequal_mixture()
    g = torch.Generator().manual_seed(0)
    x = 1.5 * torch.randn(6, 2, dtype=torch.float64, generator=g)
    sigma = torch.tensor([0.05, 0.1, 0.3, 0.7, 1.5, 5.0], dtype=torch.float64)
    got = D(x, sigma)

    # Tweedie: E[x0 | x] = x + σ² ∇ log p_σ(x), with p_σ = Σ w_k N(μ_k, (s² + σ²) I) in closed form.
    xr = x.clone().requires_grad_(True)
    v = (D.std**2 + sigma**2)[:, None]
    sq = ((xr[:, None, :] - D.means[None]) ** 2).sum(-1)  # (N, K)
    # The Gaussian normaliser (2π v)^(−D/2) is the same for every k and does not depend on x: dropped.
    log_p = torch.logsumexp(torch.log(D.weights) - sq / (2 * v), 1)
    (grad,) = torch.autograd.grad(log_p.sum(), xr)
    torch.testing.assert_close(got, x + sigma[:, None] ** 2 * grad, atol=1e-10, rtol=0)

    # Monte Carlo: weight prior draws x0 by the likelihood N(x; x0, σ²I) (self-normalised).
    x0 = D.sample(200_000, g).double()
    for i in [2, 3, 4]:
        logw = -((x[i] - x0) ** 2).sum(1) / (2 * sigma[i] ** 2)
        w = torch.softmax(logw, 0)
        torch.testing.assert_close(got[i], (w[:, None] * x0).sum(0), atol=0.03, rtol=0)


def test_mixture_sample_has_the_closed_form_moments():
    D = unequal_mixture()
    x = D.sample(100_000, torch.Generator().manual_seed(0)).double()
    torch.testing.assert_close(x.mean(0), D.mean(), atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), D.covariance(), atol=0.03, rtol=0)
