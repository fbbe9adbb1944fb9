"""Dynamic loss scaling for fp16 training (train.precision=fp16).

fp16 holds values down to about 6e-8 (6e-5 at full precision), so the small gradients of a diffusion loss vanish in
its backward pass. Mixed-precision training (Micikevicius et al. 2018, "Mixed Precision Training", section 3.2)
multiplies the loss by a scale S before the backward pass and divides the gradients by S before they are used; S
is chosen dynamically: a step whose gradients overflow (a non-finite value on a finite loss) is not applied and S is
halved, and after `growth_interval` clean steps in a row S is doubled (the rule of torch.amp.GradScaler). The scale
and its counter live on the device and are updated without a host synchronisation; the stability guard is told
which steps overflowed, so it neither learns from them nor counts them as faults (train/guard.py, SCALER).
"""

from __future__ import annotations

from typing import Any

import torch

INIT_SCALE = 2.0 ** 16
GROWTH_INTERVAL = 2000
MIN_SCALE = 1.0  # never below 1: an overflow at scale 1 is the model's, which the guard judges


class LossScaler:
    """S and the count of clean steps since it last changed (see the module docstring)."""

    def __init__(self, device: torch.device, init: float = INIT_SCALE, growth_interval: int = GROWTH_INTERVAL):
        self.scale = torch.tensor(float(init), device=device)
        self.good = torch.zeros((), dtype=torch.int64, device=device)
        self.growth_interval = growth_interval

    def unscale_(self, params: list[torch.nn.Parameter]) -> None:
        """Divide the gradients by S in place (before clipping, the gradient norm and the step)."""
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            torch._foreach_mul_(grads, 1.0 / self.scale)

    def overflowed(self, per_sample: torch.Tensor, grad_norm: torch.Tensor) -> torch.Tensor:
        """True when the gradients overflowed although every loss is finite: the scale's fault, not the model's
        (a non-finite loss stays the guard's to judge). At scale MIN_SCALE an overflow is the model's too."""
        return torch.isfinite(per_sample).all() & ~torch.isfinite(grad_norm) & (self.scale > MIN_SCALE)

    def update(self, overflow: torch.Tensor) -> None:
        """Halve S after an overflow; double it after `growth_interval` clean steps."""
        good = torch.where(overflow, torch.zeros_like(self.good), self.good + 1)
        grow = good >= self.growth_interval
        self.scale = torch.where(overflow, (self.scale * 0.5).clamp(min=MIN_SCALE),
                                 torch.where(grow, self.scale * 2.0, self.scale))
        self.good = torch.where(grow, torch.zeros_like(good), good)

    def state_dict(self) -> dict[str, Any]:
        return {"scale": float(self.scale), "good": int(self.good)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale.fill_(float(state["scale"]))
        self.good.fill_(int(state["good"]))
