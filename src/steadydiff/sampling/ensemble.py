"""Sampling from an ensemble of K denoisers trained from different seeds (train.ensemble, train/ensemble.py).

Two ways to combine them (sample.ensemble):

- **mixture**: each sample comes from one member, `member_of(seed_i, K)`, a function of the sample's own seed (and so
  of (seed, i)) alone: the samples are draws from the equal-weight mixture of the members' distributions, at the cost
  of one model, and sample i never depends on n or the batch size. The caller routes each sample's rows to its
  member (api.Ensemble); no wrapper is needed for that.
- **mean**: D̄(x, σ) = (1/K) Σ_k D_k(x, σ) at every network evaluation (`EnsembleDenoiser` without `pick`), K times
  the cost. For K identical members it is that member.

Uncertainty: the members' disagreement on the denoised estimate along the path, per sample and per value —
`EnsembleDenoiser` with `rows` evaluates every member on every row and keeps the spread of their estimates exactly
as MC dropout keeps the spread of its passes (sampling/spread.py). With `pick` it still returns each row's own
member's estimate (a mixture sample), so asking for the spread does not change what a mixture samples, only its cost
(K evaluations per step instead of one).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .config import EnsembleMode
from .noise import derive_seed
from .spread import PathSpread

ENSEMBLE_MODES: tuple[EnsembleMode, ...] = ("mixture", "mean")
_PICK = 0x6D6978  # the stream a mixture's member choice is drawn from ("mix")


def member_of(seeds: Sequence[int], k: int) -> np.ndarray:
    """The member (0 … k − 1) each sample of a mixture comes from: a hash of the sample's seed, so the choice is a
    function of (seed, i) alone and each member gets a share 1/k of the samples on average."""
    return np.array([derive_seed(int(s), _PICK) % k for s in seeds], dtype=np.int64)


class EnsembleDenoiser(nn.Module):
    """K denoisers as one, with the signature of `diffusion.Denoiser` (x, σ, cond, aug, extra): the mean of the
    members' estimates, or with `pick` (one member per sample) each row's own member's estimate. With `rows`, the
    members' spread over the first `rows` rows of each evaluation is kept (`spread()`); `pick` then has `rows`
    entries and a guidance batch of both branches (2·rows) takes it twice."""

    def __init__(self, members: Sequence[nn.Module], pick: torch.Tensor | None = None, rows: int | None = None):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.pick = pick
        self.meter = PathSpread(rows) if rows is not None else None
        # what `Model` reads of its denoiser: the members' common σ_data (they trained on the same data)
        self.sigma_data = getattr(members[0], "sigma_data", None)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None = None,
                aug: torch.Tensor | None = None, extra: torch.Tensor | None = None) -> torch.Tensor:
        if self.pick is not None and self.meter is None:
            raise ValueError("a mixture without the spread evaluates each sample's member alone; route the rows to "
                             "their members instead of evaluating every member (api.Ensemble does)")
        stack = torch.stack([m(x, sigma, cond, aug, extra) for m in self.members])
        if self.meter is not None:
            self.meter.add(stack)
        if self.pick is None:
            return stack.mean(0)
        pick = self.pick.to(x.device)
        pick = pick.repeat(len(x) // len(pick)) if len(x) != len(pick) else pick
        return stack[pick, torch.arange(len(x), device=x.device)]

    def spread(self) -> torch.Tensor | None:
        """√(mean over evaluations of the members' variance of D), per value of the last batch (None before a call
        or without `rows`)."""
        return None if self.meter is None else self.meter.value()
