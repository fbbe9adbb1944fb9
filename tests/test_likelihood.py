"""Log-likelihood through the probability-flow ODE, checked against closed forms with exact denoisers."""

from __future__ import annotations

import json
import math

import pytest
import torch

from steadydiff.diffusion.analytic import GaussianMixtureDenoiser
from steadydiff.metrics.likelihood import bits_per_dim, log_likelihood

SIGMA_MIN = 1e-3


def mixture_log_density(x: torch.Tensor, means: torch.Tensor, std: float) -> torch.Tensor:
    """log Σ_k ½·N(x; μ_k, (s² + σ_min²) I), the density the ODE starts from at σ_min."""
    v, d = std**2 + SIGMA_MIN**2, x.shape[1]
    logs = -0.5 * ((x.double()[:, None] - means[None]) ** 2).sum(-1) / v - 0.5 * d * math.log(2 * math.pi * v)
    return torch.logsumexp(logs, 1) - math.log(len(means))


def test_gaussian_mixture_matches_its_density() -> None:
    """A 2-D mixture of four modes with its exact denoiser, exact divergence: within 0.01 nats on average and 0.05
    at worst of the analytic log-density at the default 128 Heun steps (measured 0.006 / 0.05 at 64 steps; second
    order: 16 steps are ~0.1 nats off)."""
    g = torch.Generator().manual_seed(0)
    means = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    denoiser, std = GaussianMixtureDenoiser(means, 0.3), 0.3
    x = (means[torch.randint(0, 4, (120,), generator=g)] + std * torch.randn(120, 2, generator=g,
                                                                             dtype=torch.float64)).float()
    exact = mixture_log_density(x, means, std)
    err = log_likelihood(denoiser, x, sigma_data=float(x.std()), sigma_min=SIGMA_MIN) - exact
    assert abs(float(err.mean())) < 0.01 and float(err.abs().max()) < 0.05
    coarse = log_likelihood(denoiser, x, sigma_data=float(x.std()), sigma_min=SIGMA_MIN, steps=16) - exact
    assert float(coarse.abs().mean()) > 4 * float(err.abs().mean())  # the step count matters, and is reported
    # Hutchinson's estimate (8 probes) is unbiased around the exact divergence's result
    hutch = log_likelihood(denoiser, x, sigma_data=float(x.std()), sigma_min=SIGMA_MIN, probes=8,
                           generator=torch.Generator().manual_seed(1)) - exact
    assert abs(float(hutch.mean() - err.mean())) < 3 * float((hutch - err).std()) / len(x) ** 0.5 + 1e-3


def test_gaussian_in_32_dimensions_through_hutchinson() -> None:
    """N(μ, s² I) in 32 dimensions (Hutchinson's path by default): its denoiser's Jacobian is a multiple of I, so
    Rademacher probes are exact and the result matches the closed form to the integrator's error."""
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(1, 32, generator=g, dtype=torch.float64) * 0.5
    std = 0.5
    x = (mu + std * torch.randn(50, 32, generator=g, dtype=torch.float64)).float()
    denoiser = GaussianMixtureDenoiser(mu, std)
    got = log_likelihood(denoiser, x, sigma_data=0.55, sigma_min=SIGMA_MIN, generator=g)
    err = got - mixture_log_density(x, mu, std)
    # of log-densities around −10 nats per item; the rest is the integrator's (~1e-3 per dimension) and the prior's
    # (centred at 0, the data at μ: ~|x_T·μ|/σ_max² per item)
    assert abs(float(err.mean())) < 0.06 and float(err.abs().max()) < 0.15


def test_bits_per_dim_of_a_uniform_density() -> None:
    """A density uniform on the unit cube, 256 levels per dimension: 8 bits per dimension, whatever d."""
    for d in (1, 64, 3072):
        assert float(bits_per_dim(torch.zeros(1, dtype=torch.float64), d, 1 / 256)) == pytest.approx(8.0)


def test_eval_nll_on_a_trained_run(tmp_path) -> None:
    from steadydiff.config import from_dict
    from steadydiff.evaluate import likelihood
    from steadydiff.train.loop import train

    cfg = from_dict({"data": {"source": "toy:ring8", "toy_samples": 1000},
                     "net": {"mlp": {"width": 64, "blocks": 2}},
                     "train": {"steps": 300, "batch_size": 64, "sample_metrics_every": 0, "sample_every": 0,
                               "val_items": 32},
                     "sample": {"steps": 6, "grid_n": 16}})
    train(cfg, tmp_path / "run", progress=False)
    res = likelihood(tmp_path / "run", n=60, steps=24)
    again = likelihood(tmp_path / "run", n=60, steps=24)
    assert (res["train"], res["holdout"]) == (again["train"], again["holdout"])  # deterministic for a seed
    assert res["unit"].startswith("nats") and res["divergence"] == "exact"
    assert res["train"]["n"] == res["holdout"]["n"] == 60
    # In the normalised units (unit variance per column) a Gaussian fitted to the data scores E[½|x|²] + ln 2π =
    # 2.84 nats per item; a model that has begun to learn ring8's eight narrow modes scores clearly less
    # (measured 2.27 after 300 steps; a perfect model would reach about −3.6)
    assert res["train"]["mean"] < 2.6 and res["holdout"]["mean"] < 2.6
    assert "memorisation" in res["gap"]["reading"]
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["nll"]["train"] == res["train"]


def test_dequantised_digits_spread_across_one_level():
    """digits: values 0…16 map to [−1, 1], one level is 0.125 wide there, and each value is spread uniformly over
    its own level only."""
    import numpy as np

    from steadydiff.evaluate import dequantised

    items = np.arange(17, dtype=np.float64).repeat(200)
    x = dequantised(items, 0.0, 16.0, 0.125, np.random.default_rng(0))
    centre = (items - 8) / 8
    assert np.abs(x - centre).max() <= 0.0625 and np.abs(x - centre).max() > 0.06
    assert abs(float((x - centre).std()) - 0.125 / 12**0.5) < 0.003  # uniform across the level
