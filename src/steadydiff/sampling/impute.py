"""Imputation without training for it: the known values replace the denoiser's estimate of them.

    D'(x, σ) = m ⊙ x_known + (1 − m) ⊙ D(x, σ)          (m = 1 where a value is known)

Along the probability-flow ODE dx/dσ = (x − D')/σ (Karras et al. 2022, Eq. 3) a known entry then follows
x_known + σ·n exactly, the noisy version of its true value, so the network sees at every σ what it saw in training,
while the unknown entries are denoised in the context of the known ones. As a denoiser wrapper it works with every
solver and step list (DESIGN.md). The solver's last step lands the known entries on x_known up to rounding; the
caller pastes them back exactly in the user's units.

RePaint's resampling (Lugmayr et al. 2022, Alg. 1) harmonises the two parts better: each step from σ to σ' is taken
`resample` times, re-noising from σ' back to σ in between (x + sqrt(σ² − σ'²)·n, the forward process in σ-space),
with Heun's step (Karras et al. 2022, Alg. 1, lines 5–8) as the move.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .solvers import Denoiser, Noise, _denoise, _levels


def with_known(denoiser: Denoiser, known: torch.Tensor, mask: torch.Tensor) -> Denoiser:
    """D' above for one chunk: `known` holds the known values (anything where `mask` is False)."""
    keep = mask.to(known.dtype)

    def d(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return keep * known + (1 - keep) * denoiser(x, sigma)

    return d


def with_extra(denoiser: Callable[..., torch.Tensor], extra: torch.Tensor) -> Callable[..., torch.Tensor]:
    """`D(x, σ, cond)` of a mask-conditioned network (train.masks) with its extra inputs — the known values and
    their mask — bound; a guidance wrapper's batch of both branches gets them twice."""

    def d(x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return denoiser(x, sigma, cond, None, rows_for(extra, len(x)))

    return d


def rows_for(extra: torch.Tensor, n: int) -> torch.Tensor:
    """`extra` (one row per sample) for a batch of n = k·len(extra) rows: the k branches a guidance wrapper
    stacks each get the samples' rows."""
    return extra if n == len(extra) else extra.repeat(n // len(extra), *([1] * (extra.dim() - 1)))


def heun_step(denoiser: Denoiser, x: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    d = (x - _denoise(denoiser, x, sigma)) / sigma
    x_euler = x + (sigma_next - sigma) * d
    if sigma_next == 0.0:
        return x_euler
    d_next = (x_euler - _denoise(denoiser, x_euler, sigma_next)) / sigma_next
    return x + (sigma_next - sigma) * (d + d_next) / 2


def resampled(resample: int) -> Callable[..., torch.Tensor]:
    """A solver with the usual signature that takes every Heun step `resample` times (RePaint's jumps of one)."""

    def solver(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, noise: Noise | None = None,
               callback=None) -> torch.Tensor:
        draw = torch.randn_like if noise is None else noise
        levels = _levels(sigmas)
        for sigma, sigma_next in zip(levels[:-1], levels[1:], strict=True):
            for u in range(resample):
                x_next = heun_step(denoiser, x, sigma, sigma_next)
                if u < resample - 1:
                    x = x_next + math.sqrt(sigma**2 - sigma_next**2) * draw(x_next)
            x = x_next
        return x

    return solver
