"""The spread of several estimates of the denoised sample along a sampling path: the uncertainty map of MC dropout
(sampling/mc_dropout.py: passes with dropout on) and of ensembles (sampling/ensemble.py: the members), one
definition for both.

At each network evaluation the K estimates D_1 … D_K of the same rows give a variance per value (population variance,
1/K); the spread is √(mean over the path's evaluations of that variance), per value, in the network's normalised
units. It is zero when the estimates agree at every step.
"""

from __future__ import annotations

import torch


class PathSpread:
    """Accumulates the estimates' variance over the first `rows` rows of each evaluation (the samples; classifier-free
    guidance evaluates them and their unconditional twins in one batch of 2·rows, and the conditional half is kept)."""

    def __init__(self, rows: int):
        self.rows = rows
        self.evaluations = 0
        self.var_sum: torch.Tensor | None = None

    def add(self, estimates: torch.Tensor) -> None:
        """`estimates`: (K, batch, ...) — K estimates of D for the same batch at one evaluation (nothing is kept
        where `rows` is 0: a caller that draws batch after batch and wants no spread)."""
        if not self.rows:
            return
        var = estimates[:, :self.rows].var(0, correction=0)
        self.var_sum = var if self.var_sum is None else self.var_sum + var
        self.evaluations += 1

    def value(self) -> torch.Tensor | None:
        """√(mean over evaluations of the variance), per value (None before an evaluation)."""
        return None if self.var_sum is None else (self.var_sum / max(self.evaluations, 1)).sqrt()
