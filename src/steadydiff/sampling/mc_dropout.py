"""Monte Carlo dropout at sampling (Gal & Ghahramani 2016): the denoiser evaluated `passes` times with its dropout
left on, the mean used as D and the spread kept as the model's uncertainty about its own estimate.

Each evaluation's masks come from the torch generator seeded with (seed, evaluation, pass), so a call draws the
same samples again; unlike dropout-free sampling, a sample then also depends on the batch it is drawn in (the
masks are drawn for the whole batch). The spread returned is the root mean, over the sampling path's evaluations,
of the passes' variance of D, per value, in the network's normalised units (sampling/spread.py, shared with
ensembles).
"""

from __future__ import annotations

import torch
from torch import nn

from .noise import derive_seed
from .spread import PathSpread


def dropout_modules(net: nn.Module) -> list[nn.Module]:
    """The modules that drop values in training mode: torch's and steadydiff's own (nets/layers.py)."""
    return [m for m in net.modules() if isinstance(m, nn.Dropout) or type(m).__name__ == "Dropout"]


class MCDropout(nn.Module):
    """D(x; σ, …) as the mean of `passes` dropout passes of `denoiser`, accumulating their variance over the first
    `rows` rows of each evaluation (the samples; classifier-free guidance evaluates them and their unconditional
    twins in one batch of 2·rows, and the conditional half is the one kept)."""

    def __init__(self, denoiser: nn.Module, passes: int, seed: int, rows: int):
        super().__init__()
        if passes < 1:
            raise ValueError(f"MC dropout needs at least 1 pass, got {passes}")
        self.inner = denoiser
        self.passes, self.seed, self.rows = passes, seed, rows
        self.calls = 0
        self.meter = PathSpread(rows)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None = None,
                aug: torch.Tensor | None = None, extra: torch.Tensor | None = None) -> torch.Tensor:
        drops = dropout_modules(self.inner)
        for m in drops:
            m.train()
        try:
            outs = []
            for k in range(self.passes):
                torch.manual_seed(derive_seed(self.seed, self.calls, k))
                outs.append(self.inner(x, sigma, cond, aug, extra))
        finally:
            for m in drops:
                m.eval()
        self.calls += 1
        stack = torch.stack(outs)
        self.meter.add(stack)
        return stack.mean(0)

    def spread(self) -> torch.Tensor | None:
        """√(mean over evaluations of the passes' variance), per value of the last batch (None before a call)."""
        return self.meter.value()
