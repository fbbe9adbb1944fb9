"""Training-noise distributions over σ (DESIGN.md: "Training noise is a distribution over σ")."""

from __future__ import annotations

import math
from typing import Literal

import torch

from .schedules import vp_sigma

NoiseName = Literal["lognormal", "vp-linear", "vp-cosine"]

# t is drawn from [VP_T_MIN, 1]: t → 0 gives σ → 0, where the loss carries no signal (Song et al. 2021).
VP_T_MIN = 1e-3


def sample_sigma(n: int, kind: NoiseName, *, sigma_data: float, p_mean: float = -1.2, p_std: float = 1.2,
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                 u: torch.Tensor | None = None) -> torch.Tensor:
    """Draw n training noise levels (float32).

    - lognormal (EDM, Karras et al. 2022, Sec. 5): ln σ ~ N(p_mean + ln(2σ_data), p_std²). EDM's
      p_mean = −1.2 was tuned at σ_data = 0.5; the ln(2σ_data) shift keeps it meaningful for data of any
      scale (σ/σ_data is what the network sees).
    - vp-linear / vp-cosine: t ~ U(VP_T_MIN, 1), σ = σ(t) of that VP schedule (the "DDPM" noise).

    `u`, when given, are n uniforms in (0, 1) used instead of fresh randomness: stratified σ (across
    ranks or a fixed validation grid) comes in through it.
    """
    if u is None:  # drawn on the generator's device (a CUDA generator draws on its GPU)
        u = torch.rand(n, generator=generator, dtype=torch.float64,
                       device=generator.device if generator is not None else "cpu").to(device)
    u = u.to(torch.float64)
    if kind == "lognormal":
        z = math.sqrt(2.0) * torch.erfinv(2 * u.clamp(1e-7, 1 - 1e-7) - 1)  # inverse normal CDF
        sigma = torch.exp(p_mean + math.log(2 * sigma_data) + p_std * z)
    elif kind in ("vp-linear", "vp-cosine"):
        t = VP_T_MIN + (1 - VP_T_MIN) * u
        sigma = vp_sigma(t, "linear" if kind == "vp-linear" else "cosine")
    else:
        raise ValueError(f"unknown training noise {kind!r}; choose lognormal, vp-linear or vp-cosine")
    return sigma.to(torch.float32)
