"""Variance-preserving schedules as maps between t ∈ [0, 1], ᾱ(t) and σ(t).

A VP sample z_t = sqrt(ᾱ) x + sqrt(1 − ᾱ) n is, divided by sqrt(ᾱ), the σ-space sample x + σ n with
σ(t) = sqrt(1 − ᾱ(t)) / sqrt(ᾱ(t)) (Karras et al. 2022, Table 1). Everything downstream sees σ only.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

VPName = Literal["linear", "cosine"]

# Continuous-time limit of DDPM's linear betas 1e-4 … 0.02 over 1000 steps (Song et al. 2021, VP SDE).
BETA_MIN, BETA_MAX = 0.1, 20.0
# Nichol & Dhariwal (2021), Eq. 17: offset s keeps β small near t = 0.
COSINE_S = 0.008
# The cosine ᾱ reaches 0 at t = 1; t is capped where σ would pass this, as the paper clips β at 0.999.
COSINE_SIGMA_CAP = 1.0e3


def alpha_bar(t: torch.Tensor, schedule: VPName) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.float64)
    if schedule == "linear":
        return torch.exp(-(BETA_MIN * t + 0.5 * (BETA_MAX - BETA_MIN) * t**2))
    if schedule == "cosine":
        f = torch.cos((t + COSINE_S) / (1 + COSINE_S) * math.pi / 2) ** 2
        f0 = math.cos(COSINE_S / (1 + COSINE_S) * math.pi / 2) ** 2
        return (f / f0).clamp(min=1.0 / (1.0 + COSINE_SIGMA_CAP**2))
    raise ValueError(f"unknown VP schedule {schedule!r}; choose 'linear' or 'cosine'")


def vp_sigma(t: torch.Tensor, schedule: VPName) -> torch.Tensor:
    """σ(t) = sqrt(1 − ᾱ(t)) / sqrt(ᾱ(t)), in float64."""
    ab = alpha_bar(t, schedule)
    return torch.sqrt((1 - ab) / ab)


def vp_t(sigma: torch.Tensor, schedule: VPName) -> torch.Tensor:
    """Inverse of vp_sigma: the t at which the schedule reaches σ (float64)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    ab = 1.0 / (1.0 + sigma**2)
    if schedule == "linear":
        # Solve ½(β_max − β_min) t² + β_min t + ln ᾱ = 0 for t ≥ 0.
        a, b, c = 0.5 * (BETA_MAX - BETA_MIN), BETA_MIN, torch.log(ab)
        return (-b + torch.sqrt(b * b - 4 * a * c)) / (2 * a)
    if schedule == "cosine":
        f0 = math.cos(COSINE_S / (1 + COSINE_S) * math.pi / 2) ** 2
        return torch.arccos(torch.sqrt(ab * f0).clamp(max=1.0)) * 2 / math.pi * (1 + COSINE_S) - COSINE_S
    raise ValueError(f"unknown VP schedule {schedule!r}; choose 'linear' or 'cosine'")
