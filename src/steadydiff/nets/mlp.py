"""Residual MLP backbone F(x, c_noise) for vectors (N, D): 2-D toys, tabular data."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import MLPConfig
from .layers import Dropout, NoiseEmbedding, check_cond, flat_noise, scale_shift, zero_linear


class MLPBlock(nn.Module):
    """Pre-norm residual block: LayerNorm → FiLM(emb) → Linear → SiLU → dropout → Linear(zero init).

    The noise embedding modulates every block by scale and shift (FiLM, Perez et al. 2018; the
    same scale-shift ADM uses in its U-Net blocks), so σ can change each block's features rather
    than only an additive bias at the input. The last Linear starts at zero: the block starts as
    the identity (as ADM's residual blocks do).
    """

    def __init__(self, width: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)  # the FiLM bias supplies the affine
        self.emb = nn.Linear(emb_dim, 2 * width)
        self.fc1 = nn.Linear(width, width)
        self.dropout = Dropout(dropout)
        self.fc2 = zero_linear(width, width)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.fc1(scale_shift(self.norm(x), self.emb(emb))))
        return x + self.fc2(self.dropout(h))


class MLPBackbone(nn.Module):
    """F(x, c_noise) for vectors x of shape (N, dim); returns a tensor of x's shape.

    Input Linear → `blocks` residual FiLM blocks → LayerNorm → SiLU → Linear(zero init), so F ≡ 0
    at initialisation.
    """

    def __init__(self, dim: int, cfg: MLPConfig):
        super().__init__()
        self.dim = dim
        self.embed = NoiseEmbedding(cfg.emb_dim, fourier_dim=cfg.emb_dim)
        self.inp = nn.Linear(dim, cfg.width)
        self.blocks = nn.ModuleList(MLPBlock(cfg.width, cfg.emb_dim, cfg.dropout) for _ in range(cfg.blocks))
        self.norm_out = nn.LayerNorm(cfg.width)
        self.out = zero_linear(cfg.width, dim)

    def forward(
        self, x: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_cond(cond)
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(
                f"MLPBackbone built for vectors of size {self.dim}, got a batch shaped {tuple(x.shape)}"
            )
        emb = self.embed(flat_noise(c_noise, x.shape[0]).to(x.device))
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F.silu(self.norm_out(h)))
