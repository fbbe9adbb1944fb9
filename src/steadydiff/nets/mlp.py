"""Residual MLP backbone F(x, c_noise, cond) for vectors (N, D): 2-D toys, tabular data."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .config import MLPConfig
from .layers import Dropout, Layers, NoiseEmbedding, NormFactory, flat_noise, with_extra
from .mp import MPLayers


def layer_norm(channels: int, affine: bool = True) -> nn.Module:
    return nn.LayerNorm(channels, elementwise_affine=affine)


def vector_norm_factory(kind: str) -> NormFactory:
    """`(channels, affine=...) -> layer` for the MLP's normalisation `kind` (net.mlp.norm)."""
    if kind == "layer":
        return layer_norm
    if kind == "none":
        return nn.Identity  # ignores its arguments
    raise ConfigError(f"unknown net.mlp.norm {kind!r}: use 'layer' or 'none'")


class MLPBlock(nn.Module):
    """Pre-norm residual block: LayerNorm → FiLM(emb) → Linear → SiLU → dropout → Linear(zero init).

    The noise embedding modulates every block by scale and shift (FiLM, Perez et al. 2018; the
    same scale-shift ADM uses in its U-Net blocks), so σ can change each block's features rather
    than only an additive bias at the input. The last Linear starts at zero: the block starts as
    the identity (as ADM's residual blocks do). With `MPLayers`: pixel norm → scale(emb) → MPConv →
    mp_silu → dropout → MPConv, joined by mp_sum.
    """

    def __init__(self, width: int, emb_dim: int, dropout: float, ops: Layers):
        super().__init__()
        self.ops = ops
        self.norm = ops.input_norm(width, affine=False)  # the FiLM bias supplies the affine
        self.emb = ops.emb_proj(emb_dim, width)
        self.fc1 = ops.layer(width, width)
        self.dropout = Dropout(dropout)
        self.fc2 = ops.branch_end(width, width)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.ops.act(self.fc1(self.ops.modulate(self.norm(x), self.emb(emb))))
        return self.ops.add(x, self.fc2(self.dropout(h)))


class MLPBackbone(nn.Module):
    """F(x, c_noise) for vectors x of shape (N, dim); returns a tensor of x's shape.

    Input Linear → `blocks` residual FiLM blocks → LayerNorm → SiLU → Linear(zero init), so F ≡ 0
    at initialisation. `cfg.norm` picks the normalisation; `cfg.mp` builds the same layout from
    the magnitude-preserving layers (`mp.MPLayers`, EDM2), whose output gain starts at 0.
    """

    def __init__(self, dim: int, cfg: MLPConfig, cond_classes: int = 0, cond_dim: int = 0,
                 cond_tokens: tuple[int, int] = (0, 0), extra_dim: int = 0):
        super().__init__()
        self.dim, self.extra_dim = dim, extra_dim
        self.ops = ops = MPLayers() if cfg.mp else Layers(vector_norm_factory(cfg.norm))
        self.embed = NoiseEmbedding(cfg.emb_dim, fourier_dim=cfg.emb_dim, ops=ops, cond_classes=cond_classes,
                                    cond_dim=cond_dim, cond_tokens=cond_tokens)
        self.inp = ops.input_layer(dim + extra_dim, cfg.width)
        self.blocks = nn.ModuleList(MLPBlock(cfg.width, cfg.emb_dim, cfg.dropout, ops) for _ in range(cfg.blocks))
        self.norm_out = ops.norm(cfg.width)
        self.out = ops.output_layer(cfg.width, dim)

    def forward(
        self, x: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor | None = None,
        extra: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`extra`: values beside x (N, extra_dim) for a network built with them (known values and their mask)."""
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(
                f"MLPBackbone built for vectors of size {self.dim}, got a batch shaped {tuple(x.shape)}"
            )
        emb = self.embed(flat_noise(c_noise, x.shape[0]).to(x.device), cond=cond)
        h = self.inp(with_extra(x, extra, self.extra_dim))
        for block in self.blocks:
            h = block(h, emb)
        return self.out(self.ops.act(self.norm_out(h)))
