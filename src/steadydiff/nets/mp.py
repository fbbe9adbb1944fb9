"""Magnitude-preserving layers with forced weight normalisation (`net.unet.mp`, `net.mlp.mp`).

From EDM2: Karras et al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion Models",
Sec. 2 and its appendix. The magnitude of an activation tensor is its root mean square. Every layer
here returns magnitude ≈ 1 for inputs of magnitude 1 (with uncorrelated entries), so activations
stay in range without normalisation layers and their statistics over the batch or a group of
channels. Weights get the same treatment: each output row is normalised in the forward pass, and
the stored weight is projected back onto that sphere at each training forward, so optimiser steps
turn weights rather than grow them and the effective learning rate does not decay over training.

`MPLayers` plugs these into the same MLP and U-Net definitions as the standard layers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Layers


def normalize(x: torch.Tensor, dim: int | tuple[int, ...], eps: float = 1e-4) -> torch.Tensor:
    """x / (eps + magnitude of x over `dim`): unit root mean square along `dim`."""
    rms = x.to(torch.float32).square().mean(dim=dim, keepdim=True).sqrt()
    return x / (eps + rms).to(x.dtype)


def mp_silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU with unit output magnitude for x ~ N(0, 1) (Eq. 81): E[silu(x)²] = 0.596²."""
    return F.silu(x) / 0.596


def mp_sum(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """(1 − t)·a + t·b rescaled to unit magnitude for uncorrelated unit inputs (Eq. 88).

    t is b's share: a residual branch joined with t = 0.3 contributes 30% of the sum, whatever its
    depth, where a plain x + branch would let the magnitudes grow block by block.
    """
    return torch.lerp(a, b, t) / math.sqrt((1 - t) ** 2 + t**2)


def mp_cat(a: torch.Tensor, b: torch.Tensor, t: float, dim: int = 1) -> torch.Tensor:
    """Concatenation with unit magnitude whose parts carry the shares (1 − t) : t (Eq. 103).

    With unit inputs of Na and Nb channels, scaling them by wa and wb gives energy Na·wa² + Nb·wb²
    per position, which must equal Na + Nb; the parts' energies are set in the ratio (1 − t)² : t²
    as in mp_sum. So wa = (1 − t)·s/√Na and wb = t·s/√Nb with s² = (Na + Nb)/((1 − t)² + t²).
    Without it, the part with more channels would dominate the next layer's input.
    """
    na, nb = a.shape[dim], b.shape[dim]
    s = math.sqrt((na + nb) / ((1 - t) ** 2 + t**2))
    return torch.cat([a * ((1 - t) * s / math.sqrt(na)), b * (t * s / math.sqrt(nb))], dim=dim)


class MPSiLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mp_silu(x)


class PixelNorm(nn.Module):
    """Each position's channel vector (dim 1) scaled to unit magnitude: EDM2's pixel normalisation,
    the weaker normalisation left on the encoder's main path once group norms are removed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return normalize(x, dim=1)


class MPConv(nn.Module):
    """Magnitude-preserving linear layer (Eq. 47) with forced weight normalisation (Eq. 66); no bias.

    Fully connected when kernel is None, else a kernel×kernel "same" convolution. Each output row
    w_i (fan_in = cin·kernel² entries) is used as ŵ_i = g · w_i / ‖w_i‖: a unit row, so an output
    channel has the magnitude of its input when the input's entries are uncorrelated.

    Forced weight normalisation: in training mode the stored rows are first reset, in place and
    outside autograd, to unit root mean square (‖w_i‖ = √fan_in). The forward pass still divides by
    the norm, so the gradient is projected onto the sphere; the reset undoes the growth of ‖w_i‖
    that each step would otherwise add, which keeps the learning rate's meaning fixed.
    Since every training forward writes the weight in place, a graph from an earlier training
    forward of the same layer can no longer be differentiated (autograd raises): run one training
    forward per backward, as our loop does, or evaluate in eval mode.

    `learned_gain=True` gives g a learned scalar initialised to 0, for layers whose output must
    start at 0 (EDM2's output gain and embedding gains); otherwise g = 1.
    """

    def __init__(self, cin: int, cout: int, kernel: int | None = None, *, learned_gain: bool = False,
                 dims: int = 2):
        super().__init__()
        self.kernel = kernel
        shape = (cout, cin) if kernel is None else (cout, cin, *([kernel] * dims))
        self.rows = tuple(range(1, len(shape)))  # the dims of one output row
        self.weight = nn.Parameter(normalize(torch.randn(shape), dim=self.rows))
        self.gain = nn.Parameter(torch.zeros(())) if learned_gain else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.weight.copy_(normalize(self.weight, dim=self.rows))  # forced weight normalisation (Eq. 66)
        fan_in = self.weight[0].numel()
        w = normalize(self.weight, dim=self.rows) / math.sqrt(fan_in)  # unit rows (Eq. 47)
        if self.gain is not None:
            w = w * self.gain
        w = w.to(x.dtype)
        if self.kernel is None:
            return F.linear(x, w)
        return (F.conv1d if w.dim() == 3 else F.conv2d)(x, w, padding=self.kernel // 2)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, kernel={self.kernel}, " \
               f"learned_gain={self.gain is not None}"


class MPInput(MPConv):
    """The first layer: reads the data with a constant channel of ones appended, as EDM2 does. With no
    biases anywhere, that channel gives the network an offset to work with, and through the
    convolutions' zero padding it marks the image border."""

    def __init__(self, cin: int, cout: int, kernel: int | None = None, dims: int = 2):
        super().__init__(cin + 1, cout, kernel, dims=dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.cat([x, torch.ones_like(x[:, :1])], dim=1))


class MPLayers(Layers):
    """The magnitude-preserving set (EDM2's final architecture) for the shared MLP and U-Net code.

    - every learned layer is an MPConv, with no bias;
    - no normalisation layers except pixel norm of each residual block's input (`input_norm`);
      attention normalises its queries, keys and values per head, as EDM2 does (cosine attention);
    - the noise embedding modulates features by 1 + g·proj(emb) with g learned from 0: a scale only,
      since an added shift would change the features' magnitude;
    - residual branches join their skip by mp_sum and decoder skips join by mp_cat;
    - the output layer has a learned gain initialised to 0, so F ≡ 0 at initialisation.

    Where the shared network code differs from EDM2's U-Net: pixel norm sits on the residual
    branch's input in every block (EDM2: on both paths, encoder blocks only), which leaves the skip
    path an mp_sum chain whose magnitude returns towards 1 block by block; the output layer reads
    mp_silu of the features (EDM2: the features); the Fourier frequencies are our fixed geometric
    ones (`FourierFeatures`); and there is no activation clipping.
    """

    residual_balance = 0.3  # t of mp_sum for residual and attention branches (EDM2's default)
    concat_balance = 0.5  # t of mp_cat for the decoder's skips (EDM2's default)
    fourier_gain = math.sqrt(2.0)  # [cos, sin] pairs have magnitude 1/√2; EDM2 scales by √2 too (Eq. 75)

    def __init__(self, dims: int = 2) -> None:
        super().__init__(norm=nn.Identity, dims=dims)  # no normalisation layers; nn.Identity ignores its arguments

    def layer(self, cin: int, cout: int, kernel: int | None = None) -> nn.Module:
        return MPConv(cin, cout, kernel, dims=self.dims)

    def input_layer(self, cin: int, cout: int, kernel: int | None = None) -> nn.Module:
        return MPInput(cin, cout, kernel, dims=self.dims)

    def branch_end(self, cin: int, cout: int, kernel: int | None = None) -> nn.Module:
        return MPConv(cin, cout, kernel, dims=self.dims)  # the branch's share is set by mp_sum, not by a zero start

    def output_layer(self, cin: int, cout: int, kernel: int | None = None) -> nn.Module:
        return MPConv(cin, cout, kernel, learned_gain=True, dims=self.dims)

    def emb_proj(self, emb_dim: int, channels: int) -> nn.Module:
        return MPConv(emb_dim, channels, learned_gain=True)

    def input_norm(self, channels: int, affine: bool = True) -> nn.Module:
        return PixelNorm()

    act = staticmethod(mp_silu)
    act_layer = MPSiLU

    @staticmethod
    def modulate(h: torch.Tensor, emb_out: torch.Tensor) -> torch.Tensor:
        return h * (1.0 + emb_out.view(*emb_out.shape, *([1] * (h.dim() - 2))))

    def add(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return mp_sum(x, branch, self.residual_balance)

    def cat(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return mp_cat(a, b, self.concat_balance)

    def head_norm(self, qkv: torch.Tensor) -> torch.Tensor:
        return normalize(qkv, dim=-1)  # cosine attention: unit q, k, v per head
