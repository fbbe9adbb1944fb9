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
                 extra: torch.Tensor | None = None, target: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (per-sample loss (N,), σ (N,)). σ and n may be given (fixed validation noise); `aug` are
        the augmentation labels of x (data.augment); `extra` the network's extra inputs (train.masks) and `target`
        (x's shape, 1 where an entry counts) which entries the loss averages over, as CSDI trains on the unknown
        entries only (an item with none counts all)."""
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
        return weight * per_sample, sigma
