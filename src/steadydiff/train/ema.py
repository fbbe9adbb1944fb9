"""Exponential moving average of the weights: pure maths plus a tiny class (EDM2's phema.py idea)."""

from __future__ import annotations

import torch
from torch import nn


def ema_beta(batch_size: int, samples_seen: int, halflife_samples: float, rampup: float | None) -> float:
    """Per-step decay for a half-life counted in samples (Karras et al. 2022, training_loop.py).

    With a ramp-up ratio r the half-life is at most r × samples seen, so the average forgets the random
    initialisation quickly early on and keeps its meaning when the batch size changes.
    """
    halflife = float(halflife_samples)
    if rampup is not None and rampup > 0:
        halflife = min(halflife, samples_seen * rampup)
    if halflife <= 0:
        return 0.0
    return 0.5 ** (batch_size / halflife)


class EMA:
    """Averages parameters only; buffers (e.g. normalisation statistics) are copied, never averaged."""

    def __init__(self, model: nn.Module):
        self.params = {k: p.detach().clone() for k, p in model.named_parameters()}
        self.buffers = {k: b.detach().clone() for k, b in model.named_buffers()}

    @torch.no_grad()
    def update(self, model: nn.Module, beta: float) -> None:
        names, params = zip(*model.named_parameters(), strict=True)
        torch._foreach_lerp_([self.params[k] for k in names], [p.detach() for p in params], 1.0 - beta)
        for k, b in model.named_buffers():
            self.buffers[k].copy_(b)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into a model of the same architecture."""
        for k, p in model.named_parameters():
            p.copy_(self.params[k])
        for k, b in model.named_buffers():
            b.copy_(self.buffers[k])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**self.params, **self.buffers}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = (set(self.params) | set(self.buffers)) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)[:5]}")
        for k in self.params:
            self.params[k].copy_(state[k])
        for k in self.buffers:
            self.buffers[k].copy_(state[k])
