"""The denoising loss: a small callable returning one value per sample (EDM2's EDM2Loss idea).

    L(x) = λ(σ) · mean_i (D(x + σn; σ) − x)²,   σ ~ training noise,   n ~ N(0, I)

The loop reduces the per-sample values; per-σ-bin statistics (stability guards, diagnostics) use them
with the σ each sample had.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .noise import NoiseName, sample_sigma
from .precond import Denoiser, scalings

Weighting = Literal["edm", "min-snr", "uniform"]


def loss_weight(sigma: torch.Tensor, sigma_data: float, weighting: Weighting, parameterization: str,
                min_snr_gamma: float = 5.0) -> torch.Tensor:
    """λ(σ) for the x0-space squared error.

    - edm: λ = (σ² + σ_data²)/(σ·σ_data)² (Karras et al. 2022, Eq. 8 with Table 1), so every σ
      contributes a unit-variance target at initialisation.
    - uniform: λ = 1/c_out(σ)², i.e. plain MSE on the network's own target — with ε-prediction this is
      DDPM's L_simple on ε; with EDM scalings it equals the edm weighting.
    - min-snr: min-SNR-γ (Hang et al. 2023): with SNR = σ_data²/σ², λ = min(SNR, γ)/σ_data². Expressed
      in x0-space, the same weight serves ε-, x0- and v-prediction.
    """
    if weighting == "edm":
        return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    if weighting == "uniform":
        return 1.0 / scalings(sigma, sigma_data, parameterization).c_out ** 2  # type: ignore[arg-type]
    if weighting == "min-snr":
        snr = sigma_data**2 / sigma**2
        return snr.clamp(max=min_snr_gamma) / sigma_data**2
    raise ValueError(f"unknown loss weighting {weighting!r}; choose edm, min-snr or uniform")


@dataclass
class DenoisingLoss:
    noise: NoiseName = "lognormal"
    p_mean: float = -1.2
    p_std: float = 1.2
    weighting: Weighting = "edm"
    min_snr_gamma: float = 5.0

    def __call__(self, denoiser: Denoiser, x: torch.Tensor, *, generator: torch.Generator | None,
                 sigma: torch.Tensor | None = None, n: torch.Tensor | None = None,
                 cond: torch.Tensor | None = None, aug: torch.Tensor | None = None,
                 extra: torch.Tensor | None = None, target: torch.Tensor | None = None,
                 want_denoised: bool = False) -> tuple[torch.Tensor, ...]:
        """Return (per-sample loss (N,), σ (N,)). σ and n may be given (fixed validation noise); `aug` are
        the augmentation labels of x (data.augment); `extra` the network's extra inputs (train.masks) and `target`
        (x's shape, 1 where an entry counts) which entries the loss averages over, as CSDI trains on the unknown
        entries only (an item with none counts all). `want_denoised` also returns D(x + σn; σ) (the MMD term)."""
        core = getattr(denoiser, "module", denoiser)  # a DistributedDataParallel wrapper's denoiser
        if sigma is None:
            sigma = sample_sigma(x.shape[0], self.noise, sigma_data=core.sigma_data, p_mean=self.p_mean,
                                 p_std=self.p_std, generator=generator).to(x.device)
        if n is None:
            n = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        denoised = denoiser(x + s * n, sigma, cond, aug, extra)
        weight = loss_weight(sigma, core.sigma_data, self.weighting, core.parameterization,
                             self.min_snr_gamma)
        err = (denoised - x).square().flatten(1)
        if target is None:
            per_sample = err.mean(1)
        else:
            t = target.flatten(1).to(err.dtype)
            count = t.sum(1)
            per_sample = torch.where(count > 0, (err * t).sum(1) / count.clamp(min=1), err.mean(1))
        return (weight * per_sample, sigma, denoised) if want_denoised else (weight * per_sample, sigma)


# The MMD diversity term (train.mmd_weight): denoised estimates at moderate σ against the clean batch.
MMD_SIGMA_RANGE = (0.05, 1.0)  # × σ_data: below, D(x) ≈ x says nothing; above, D(x) is a blurred mean by design
MMD_BANDWIDTHS = (0.5, 1.0, 2.0)  # × the median pairwise distance of the clean batch (Gretton et al. 2012)


def mmd_term(denoised: torch.Tensor, clean: torch.Tensor, sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """MMD² (the biased V-statistic, ≥ 0 and exactly 0 for identical sets; Gretton et al. 2012, Eq. 5) between the
    denoised estimates of the items whose σ lies in MMD_SIGMA_RANGE·σ_data and the whole clean batch, with a sum of
    Gaussian kernels at MMD_BANDWIDTHS × the clean batch's median pairwise distance, in data space (items
    flattened). The clean batch and the bandwidth are constants: the gradient reaches the network through the
    denoised estimates only. Zero when fewer than two items fall in the σ range."""
    lo, hi = (r * sigma_data for r in MMD_SIGMA_RANGE)
    pick = (sigma >= lo) & (sigma <= hi)
    if int(pick.sum()) < 2:
        return denoised.new_zeros(())
    x = denoised[pick].flatten(1).float()
    y = clean.detach().flatten(1).float()
    with torch.no_grad():
        d_yy = torch.cdist(y, y)
        median = d_yy[~torch.eye(len(y), dtype=torch.bool, device=y.device)].median().clamp(min=1e-6)
    scales = [(b * median) ** 2 for b in MMD_BANDWIDTHS]

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # squared distances from inner products: differentiable where a point meets itself (cdist's root is not)
        d2 = (a.square().sum(1)[:, None] + b.square().sum(1)[None, :] - 2 * a @ b.T).clamp(min=0)
        return sum(torch.exp(-d2 / (2 * s)) for s in scales).mean()

    return k(x, x) + k(y, y) - 2 * k(x, y)
