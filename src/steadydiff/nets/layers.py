"""Layers shared by the backbones: noise-level embedding, normalisation, zero-initialised projections.

The backbone F sees the noise level only through `c_noise` (EDM, Karras et al. 2022, Eq. 7 and
Table 1), a float per sample. With EDM's c_noise = ln(σ)/4 the values lie in about [-3, 2]; a VP
parameterisation may instead pass c_noise = (M − 1)·t in [0, 999]. The embedding below is built to
resolve both ranges.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

NormKind = Literal["group", "layer"]


def check_cond(cond: torch.Tensor | None) -> None:
    """Refuse a conditioning input: no backbone is class-conditional yet, and silently ignoring a
    label the caller meant to use would produce unconditional samples without saying so."""
    if cond is not None:
        raise ConfigError("class conditioning is not supported yet: call the network with cond=None")


def flat_noise(c_noise: torch.Tensor, n: int) -> torch.Tensor:
    """c_noise as a float tensor of shape (n,): accepts (n,), (n, 1, ...) or a single value."""
    c = torch.as_tensor(c_noise).reshape(-1)
    if c.numel() == 1:
        return c.expand(n)
    if c.numel() != n:
        raise ValueError(f"c_noise has {c.numel()} values for a batch of {n} items")
    return c


class FourierFeatures(nn.Module):
    """[cos(ω_k c), sin(ω_k c)] for fixed, geometrically spaced angular frequencies ω_k.

    The transformer positional embedding used by DDPM/ADM (ω from 1 down to 1e-4) wastes most of its
    frequencies on EDM's small c_noise range (|c| ≲ 3: sin(1e-4·c) is constant to the eye), while
    EDM2's random Fourier features (ω ~ 2π·N(0, 1)) are tuned to that range only. Spanning
    ω ∈ [1e-3, 32] gives ~12 frequencies that vary over ln(σ)/4 and still separates the integer
    time steps t ∈ [0, 999] of a VP schedule (the lowest frequency does not wrap over 1000).
    """

    omega_min = 1e-3
    omega_max = 32.0

    def __init__(self, dim: int):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"Fourier feature size must be even and >= 2, got {dim}")
        half = dim // 2
        log_omega = torch.linspace(math.log(self.omega_min), math.log(self.omega_max), half)
        # A buffer, not a parameter: fixed frequencies keep the embedding's meaning stable over
        # training; it is saved with the model so a change of these constants cannot break loading.
        self.register_buffer("omega", log_omega.exp(), persistent=True)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        arg = c.to(torch.float32)[:, None] * self.omega[None, :]
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class NoiseEmbedding(nn.Module):
    """c_noise (N,) → (N, out_dim): Fourier features followed by a 2-layer MLP (as in ADM's
    `time_embed`). The final SiLU is applied here once, instead of at the start of every block's
    projection as in ADM, which is the same function and saves one activation per block."""

    def __init__(self, out_dim: int, fourier_dim: int):
        super().__init__()
        self.fourier = FourierFeatures(fourier_dim)
        self.mlp = nn.Sequential(
            nn.Linear(fourier_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim), nn.SiLU()
        )

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.fourier(c_noise))


def make_norm(kind: NormKind, channels: int, groups: int, *, affine: bool = True) -> nn.Module:
    """Normalisation for conv features (N, C, H, W) or vectors (N, C).

    - "group": GroupNorm(groups, C), as in the DDPM/ADM U-Nets.
    - "layer": GroupNorm(1, C), i.e. LayerNorm over all of (C, H, W) per sample with a per-channel
      affine. We chose it over a channel-wise LayerNorm (over C at each pixel) because it uses the
      same fused kernel as GroupNorm, needs no permutes, and keeps spatial statistics (a per-pixel
      norm would also erase the per-pixel brightness a denoiser must see).
    """
    if kind == "group":
        if channels % groups:
            raise ConfigError(f"{channels} channels do not split into {groups} GroupNorm groups")
        return nn.GroupNorm(groups, channels, affine=affine)
    if kind == "layer":
        return nn.GroupNorm(1, channels, affine=affine)
    raise ConfigError(f"unknown norm {kind!r}: use 'group' or 'layer'")


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's weights and bias and return it.

    Used on the last layer of each residual branch and of the network (ADM, Nichol & Dhariwal 2021):
    every residual block starts as the identity and F ≡ 0 at initialisation, so D(x, σ) = c_skip·x
    at step 0 — the best denoiser that ignores its network, and a stable start.
    """
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def zero_linear(in_features: int, out_features: int) -> nn.Linear:
    return zero_init(nn.Linear(in_features, out_features))


def zero_conv2d(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Conv2d:
    return zero_init(nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2))


def scale_shift(h: torch.Tensor, emb_out: torch.Tensor) -> torch.Tensor:
    """FiLM / ADM scale-shift: h·(1 + scale) + shift, with [scale, shift] = emb_out split on dim 1.

    emb_out is (N, 2C) and is broadcast over any trailing (spatial) dims of h (N, C, ...).
    The `1 +` keeps the block at plain normalisation when the projection outputs 0.
    """
    scale, shift = emb_out.view(emb_out.shape[0], emb_out.shape[1], *([1] * (h.dim() - 2))).chunk(2, dim=1)
    return torch.addcmul(shift, h, scale + 1.0)



class Dropout(nn.Module):
    """Element-wise dropout (inverted scaling), cheap on a CPU.

    torch's CPU `bernoulli_` draws one Mersenne-Twister number per element; in the digits U-Net that
    made dropout ~10% of a training step. Here one 64-bit draw yields four 16-bit uniforms, so the
    mask costs ~1/3 as much. The rate is quantised to 1/65536 (p = 0.1 becomes 0.100006), and the
    kept values are scaled by 1/(1 − p) of that exact rate, so E[output] = input. On other devices
    the fused `F.dropout` kernel is already fast and is used as is.
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {p}")
        self.p = p
        self.drop_levels = round(p * 65536)  # of 65536 equally likely 16-bit values, these many drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_levels == 0:
            return x
        if x.device.type != "cpu" or not (
            x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
        ):
            return F.dropout(x, self.p, training=True)
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device)
        words.random_(-(2**63), 2**63 - 1)  # all 64 bits random (plain random_() leaves the sign bit 0)
        # Dense strides (either layout) index 0..n−1 exactly once, so the mask can share x's layout.
        u = words.view(torch.int16)[:n].as_strided(x.shape, x.stride())
        keep = u >= (-32768 + self.drop_levels)
        return x * (keep * (65536 / (65536 - self.drop_levels))).to(x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}"
