"""Denoiser wrappers for conditional sampling that solvers never see through (DESIGN.md, contracts): each returns a
plain `D'(x, σ)`, so every solver and step list works with every wrapper.

Classifier-free guidance (Ho & Salimans 2022, Eq. 6, written for the x0 estimate as in EDM2):

    D_w(x; σ, c) = D_u + w · (D_c − D_u),   D_c = D(x; σ, c),  D_u = D(x; σ, ∅)

w = 1 is plain conditional sampling and w = 0 unconditional; both are returned without the second evaluation, so
they equal those exactly. Otherwise the two branches run as one batched evaluation. `interval` limits guidance to
σ in [lo, hi] (Kynkäänniemi et al. 2024: guidance at high σ costs diversity and buys nothing); outside it D_c alone
is used. `guide` replaces the unconditional branch by another denoiser given the same condition — autoguidance
(Karras et al. 2024): a weaker version of the same model (earlier weights, or the raw instead of the EMA ones).

`guided_by_extra` applies the same rule to the extra inputs of a mask-conditioned network (train.masks): the known
values and their mask are the condition, and the empty mask, which a share of the training items get
(data/masks.py), is the unconditional branch — as InstructPix2Pix (Brooks et al. 2023, Eq. 3) guides by its input
image. w > 1 pushes completions towards what the known part implies.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .impute import rows_for, with_extra

CondDenoiser = Callable[..., torch.Tensor]  # (x, σ, cond) -> x0 estimate


@dataclass(frozen=True)
class Guidance:
    weight: float = 1.0
    interval: tuple[float, float] = (0.0, math.inf)  # σ range (inclusive) where the guidance weight applies
    # (the run's defaults live in SampleConfig: sample.guidance, sample.guidance_interval)

    def __post_init__(self) -> None:
        if not math.isfinite(self.weight):
            raise ValueError(f"guidance weight must be a finite number, got {self.weight}")
        lo, hi = self.interval
        if not 0 <= lo <= hi:
            raise ValueError(f"guidance interval must be 0 ≤ low ≤ high, got {self.interval}")


def null_like(cond: torch.Tensor) -> torch.Tensor:
    """The dropped condition of the same shape: label −1 for class ids, a NaN row for vectors (nets/layers.py)."""
    if cond.dtype.is_floating_point:
        return torch.full_like(cond, math.nan)
    return torch.full_like(cond, -1)


def guided(denoiser: CondDenoiser, cond: torch.Tensor, guidance: Guidance,
           guide: CondDenoiser | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """`D'(x, σ)` for one chunk of samples whose conditions are `cond` (one row per sample)."""
    w, (lo, hi) = guidance.weight, guidance.interval
    if w == 1:
        return lambda x, sigma: denoiser(x, sigma, cond)
    null = null_like(cond)
    if w == 0 and guide is None:
        return lambda x, sigma: denoiser(x, sigma, null)

    def d(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = float(sigma.reshape(-1)[0])  # the solvers give one σ to a whole batch
        if not lo <= s <= hi:
            return denoiser(x, sigma, cond)
        if guide is not None:  # autoguidance: the weaker model, with the same condition
            d_c, d_u = denoiser(x, sigma, cond), guide(x, sigma, cond)
        else:
            d_c, d_u = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([cond, null])).chunk(2)
        return d_u + w * (d_c - d_u)

    return d


def guided_by_extra(denoiser: CondDenoiser, extra: torch.Tensor, weight: float) -> CondDenoiser:
    """`D(x, σ, cond)` of a network with extra input channels (one row per sample of the chunk), guided by them:
    D_∅ + w · (D_e − D_∅), D_∅ with every extra channel zero (the empty mask of training); one batched evaluation.
    A class-guidance wrapper around it (`guided`) may hand it its two branches at once: `extra` is repeated to x's
    length."""
    if not math.isfinite(weight):
        raise ValueError(f"guidance weight must be a finite number, got {weight}")
    if weight == 1:
        return with_extra(denoiser, extra)

    def d(x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        e = rows_for(extra, len(x))
        both = None if cond is None else torch.cat([cond, cond])
        d_e, d_0 = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), both, None,
                            torch.cat([e, torch.zeros_like(e)])).chunk(2)
        return d_0 + weight * (d_e - d_0)

    return d
