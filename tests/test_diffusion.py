"""The σ-space core: defining properties of the scalings, weightings, noise distributions, VP maps."""

import math

import pytest
import torch

from steadydiff.diffusion import Denoiser, DenoisingLoss, loss_weight, sample_sigma, scalings, vp_sigma, vp_t
from steadydiff.diffusion.schedules import alpha_bar

SIGMAS = torch.tensor([0.002, 0.05, 0.3, 1.0, 4.0, 80.0], dtype=torch.float64)


class Oracle(torch.nn.Module):
    """A backbone that outputs a given tensor, to check D's algebra with a known F."""

    def __init__(self):
        super().__init__()
        self.out = None

    def forward(self, x, c_noise, cond=None):
        return self.out


@pytest.mark.parametrize("sigma_data", [0.5, 1.7])
def test_edm_scalings_give_unit_variance_input_and_target(sigma_data):
    """Karras et al. (2022), Sec. 5 / App. B.6: c_in and c_out are chosen for unit variance."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, generator=g, dtype=torch.float64) * sigma_data
    n = torch.randn(200_000, generator=g, dtype=torch.float64)
    for sigma in SIGMAS:
        s = scalings(sigma, sigma_data, "edm")
        x_noisy = x + sigma * n
        assert (s.c_in * x_noisy).std().item() == pytest.approx(1.0, rel=0.01)
        target = (x - s.c_skip * x_noisy) / s.c_out
        assert target.std().item() == pytest.approx(1.0, rel=0.01)
        # EDM weighting is exactly 1/c_out² for EDM scalings: every σ has unit-variance loss at init.
        assert (loss_weight(sigma, sigma_data, "edm", "edm") * s.c_out**2).item() == pytest.approx(1.0)


@pytest.mark.parametrize("param", ["edm", "eps", "x0", "v"])
def test_each_parameterisation_recovers_clean_data_from_its_ideal_target(param):
    sigma_data = 0.8
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, generator=g) * sigma_data
    n = torch.randn(64, 3, generator=g)
    sigma = torch.exp(torch.randn(64, generator=g))
    oracle = Oracle()
    d = Denoiser(oracle, sigma_data, param)
    s = scalings(sigma, sigma_data, param)
    x_noisy = x + sigma[:, None] * n
    ideal = {"eps": n, "x0": x, "edm": (x - s.c_skip[:, None] * x_noisy) / s.c_out[:, None]}
    # Salimans & Ho (2022): v = α·n − s·x/σ_data with α = σ_data/sqrt(σ²+σ_data²), s = σ/sqrt(σ²+σ_data²).
    root = torch.sqrt(sigma**2 + sigma_data**2)[:, None]
    ideal["v"] = (sigma_data / root) * n - (sigma[:, None] / root) * x / sigma_data
    oracle.out = ideal[param]
    torch.testing.assert_close(d(x_noisy, sigma), x, atol=1e-4, rtol=1e-4)


def test_scalings_limits():
    """As σ → 0 every parameterisation passes x through (c_skip → 1 or F ≈ x); as σ → ∞ EDM trusts F."""
    small, big = torch.tensor(1e-6), torch.tensor(1e6)
    s = scalings(small, 0.5, "edm")
    assert s.c_skip.item() == pytest.approx(1.0) and s.c_out.item() == pytest.approx(0.0, abs=1e-5)
    s = scalings(big, 0.5, "edm")
    assert s.c_skip.item() == pytest.approx(0.0, abs=1e-9) and s.c_out.item() == pytest.approx(0.5, rel=1e-6)
    assert scalings(big, 0.5, "eps").c_skip.item() == 1.0
    assert scalings(big, 0.5, "x0").c_skip.item() == 0.0


def test_unknown_parameterisation_is_refused_at_construction():
    with pytest.raises(ValueError, match="edm, eps, x0 or v"):
        Denoiser(Oracle(), 0.5, "epsilon")


def test_weightings():
    sigma = SIGMAS
    # uniform with ε-prediction is DDPM's L_simple: ‖ε̂ − ε‖² = ‖D − x‖²/σ².
    torch.testing.assert_close(loss_weight(sigma, 0.5, "uniform", "eps"), 1 / sigma**2)
    # min-SNR-γ caps the weight of low-noise levels at γ/σ_data² and follows SNR/σ_data² elsewhere.
    w = loss_weight(sigma, 0.5, "min-snr", "eps", min_snr_gamma=5.0)
    snr = 0.25 / sigma**2
    torch.testing.assert_close(w, torch.minimum(snr, torch.tensor(5.0, dtype=torch.float64)) / 0.25)
    with pytest.raises(ValueError, match="edm, min-snr or uniform"):
        loss_weight(sigma, 0.5, "snr", "edm")


def test_lognormal_sigma_quantiles():
    """ln σ ~ N(p_mean + ln 2σ_data, p_std²): median and spread."""
    g = torch.Generator().manual_seed(0)
    s = sample_sigma(100_000, "lognormal", sigma_data=0.5, p_mean=-1.2, p_std=1.2, generator=g)
    assert s.log().median().item() == pytest.approx(-1.2, abs=0.02)
    assert s.log().std().item() == pytest.approx(1.2, rel=0.02)
    s = sample_sigma(100_000, "lognormal", sigma_data=2.0, p_mean=-1.2, p_std=1.2, generator=g)
    assert s.log().median().item() == pytest.approx(-1.2 + math.log(4.0), abs=0.02)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_vp_maps(schedule):
    t = torch.linspace(0.001, 0.99, 50, dtype=torch.float64)
    sigma = vp_sigma(t, schedule)
    assert (sigma.diff() > 0).all()
    torch.testing.assert_close(vp_t(sigma, schedule), t, atol=1e-7, rtol=1e-7)
    # σ² = (1 − ᾱ)/ᾱ: the VP sample divided by sqrt(ᾱ) is x + σ n.
    ab = alpha_bar(t, schedule)
    torch.testing.assert_close(sigma**2, (1 - ab) / ab)


def test_vp_linear_matches_discrete_ddpm_betas():
    """The continuous linear schedule matches DDPM's 1000 discrete betas (1e-4 … 0.02) closely."""
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    ab_discrete = torch.cumprod(1 - betas, 0)
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    rel = (vp_sigma(t, "linear") / torch.sqrt((1 - ab_discrete) / ab_discrete) - 1).abs()
    assert rel[10:].max().item() < 0.04  # log(1 − β) ≈ −β − β²/2: a few percent near t = 1


def test_loss_is_per_sample_and_fixed_noise_is_exact():
    d = Denoiser(Oracle(), 0.5, "x0")
    x = torch.randn(16, 2)
    d.backbone.out = torch.zeros(16, 2)
    loss = DenoisingLoss(weighting="uniform")
    sigma = torch.full((16,), 0.7)
    value, s = loss(d, x, generator=None, sigma=sigma, n=torch.zeros_like(x))
    assert value.shape == (16,)
    torch.testing.assert_close(value, x.square().mean(1))  # F ≡ 0 in x0-space: error is x itself
    torch.testing.assert_close(s, sigma)
