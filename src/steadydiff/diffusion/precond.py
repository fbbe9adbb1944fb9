"""One preconditioning wrapper for every parameterisation (Karras et al. 2022, Eq. 7 and Table 1).

    D(x; σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, c_noise(σ))

EDM, ε-, x0- and v-prediction differ only in the scalings (c_skip, c_out, c_in, c_noise); samplers,
losses and metrics see D alone. The scalings run in float32 whatever precision the backbone uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

Parameterization = Literal["edm", "eps", "x0", "v"]


@dataclass(frozen=True)
class Scalings:
    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor


def scalings(sigma: torch.Tensor, sigma_data: float, parameterization: Parameterization) -> Scalings:
    """(c_skip, c_out, c_in, c_noise) for noise levels `sigma` (any shape), in sigma's dtype.

    - edm: Table 1, "Ours": unit-variance network input and training target for every σ.
    - eps: F predicts the noise n, so D = x − σ·F (c_skip = 1, c_out = −σ).
    - x0:  F predicts the clean data directly (c_skip = 0, c_out = 1).
    - v:   F predicts the velocity of Salimans & Ho (2022); in σ-space these are the EDM scalings with
           c_out's sign flipped, so v- and EDM-prediction differ only in the sign of F's target.
    All use c_in = 1/sqrt(σ² + σ_data²) (unit-variance input) and c_noise = ln(σ)/4 (Table 1).
    """
    sd2 = sigma_data**2
    var = sigma**2 + sd2
    c_in = torch.rsqrt(var)
    c_noise = torch.log(sigma) / 4
    if parameterization == "edm":
        c_skip, c_out = sd2 / var, sigma * sigma_data * c_in
    elif parameterization == "v":
        c_skip, c_out = sd2 / var, -sigma * sigma_data * c_in
    elif parameterization == "eps":
        c_skip, c_out = torch.ones_like(sigma), -sigma
    elif parameterization == "x0":
        c_skip, c_out = torch.zeros_like(sigma), torch.ones_like(sigma)
    else:
        raise ValueError(f"unknown parameterization {parameterization!r}; choose edm, eps, x0 or v")
    return Scalings(c_skip=c_skip, c_out=c_out, c_in=c_in, c_noise=c_noise)


def _expand(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.ndim - 1)))


class Denoiser(nn.Module):
    """D(x; σ) around a backbone F(x, c_noise, cond). `autocast_dtype` runs F alone in reduced precision."""

    def __init__(self, backbone: nn.Module, sigma_data: float, parameterization: Parameterization = "edm",
                 autocast_dtype: torch.dtype | None = None):
        super().__init__()
        if not (sigma_data > 0 and math.isfinite(sigma_data)):
            raise ValueError(f"sigma_data must be a positive number, got {sigma_data}")
        scalings(torch.ones(1), sigma_data, parameterization)  # reject an unknown name now, not mid-run
        self.backbone = backbone
        self.sigma_data = float(sigma_data)
        self.parameterization = parameterization
        self.autocast_dtype = autocast_dtype

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None = None,
                aug: torch.Tensor | None = None, extra: torch.Tensor | None = None) -> torch.Tensor:
        """`aug`: augmentation labels of training images, `extra`: input channels beside x (known values and their
        mask, train.masks; not scaled by c_in: they are clean data); each passed to the backbone only when given."""
        x = x.float()
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).expand(x.shape[0])
        s = scalings(sigma, self.sigma_data, self.parameterization)
        x_in = _expand(s.c_in, x) * x
        kwargs = {} if aug is None else {"aug": aug}
        if extra is not None:
            kwargs["extra"] = extra
        if self.autocast_dtype is None:
            f = self.backbone(x_in, s.c_noise, cond, **kwargs)
        else:
            with torch.autocast(device_type=x.device.type, dtype=self.autocast_dtype):
                f = self.backbone(x_in, s.c_noise, cond, **kwargs)
        return _expand(s.c_skip, x) * x + _expand(s.c_out, x) * f.float()
