"""Denoiser backbones F(x, c_noise, cond=None) -> tensor of x's shape (see DESIGN.md, `nets/`).

`build_backbone(cfg, item_shape)` picks and builds one: the residual MLP for vector items (D,),
the 1-D U-Net for series (C, L), the 2-D U-Net for image items (C, H, W). All output exactly 0 at
initialisation. Stability options:
`net.unet.norm` / `net.mlp.norm` pick the normalisation, and `net.unet.mp` / `net.mlp.mp` build the
same networks from EDM2's magnitude-preserving layers with forced weight normalisation (`mp.py`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import ConfigError
from .config import MLPConfig, NetConfig, UNetConfig
from .layers import Dropout
from .mlp import MLPBackbone
from .unet import SelfAttention, UNet, UNet1D, UNet2D

__all__ = [
    "MLPBackbone", "MLPConfig", "NetConfig", "UNet1D", "UNet2D", "UNetConfig", "build_backbone",
    "count_parameters", "for_vmap",
]


def for_vmap(module: nn.Module) -> nn.Module:
    """A copy of `module` that torch.func.vmap can run: U-Net activations in the default layout (vmap cannot
    query channels_last), dropout through F.dropout (one mask per vmapped network) and attention written out (no
    batching rule for the fused CPU kernel). Same weights, same function; only layout and kernels differ."""
    twin = copy.deepcopy(module)
    for m in twin.modules():
        if isinstance(m, UNet):
            m.memory_format = torch.contiguous_format
        if isinstance(m, Dropout):
            m.own_mask = False
        if isinstance(m, SelfAttention):
            m.fused = False
    return twin


def build_backbone(cfg: NetConfig, item_shape: tuple[int, ...], aug_dim: int = 0, cond_classes: int = 0,
                   cond_dim: int = 0, cond_tokens: tuple[int, int] = (0, 0), extra: int = 0) -> nn.Module:
    """The backbone for data items of shape `item_shape`: (D,) for vectors, (C, L) for series, (C, H, W) for
    images.
    `aug_dim` > 0 gives the U-Net inputs for augmentation labels (data.augment); `cond_classes` > 0 makes it
    class-conditional, `cond_dim` > 0 conditional on vectors of that size, `cond_tokens` = (vocabulary size, caption
    length) on captions (layers.CondEmbedding); `extra` input channels (features for vectors) go beside x.

    A kind that does not fit the items raises ConfigError naming both. We do not flatten images
    into the MLP: it would train, but badly, and silently; asking for it explicitly is clearer.
    """
    cfg.check()
    shape = tuple(int(s) for s in item_shape)
    if any(s < 1 for s in shape):
        raise ConfigError(f"data items shaped {shape} have an empty dimension")
    kind = cfg.kind
    if kind == "auto":
        kind = {1: "mlp", 2: "unet1d", 3: "unet2d"}.get(len(shape))
        if kind is None:
            raise ConfigError(f"net.kind='auto' has no backbone for items shaped {shape}: it needs vectors "
                              f"(D,), series (C, L) or images (C, H, W)")
    if kind == "mlp":
        if len(shape) != 1:
            raise ConfigError(f"net.kind='mlp' needs vector items shaped (D,); this data has items shaped "
                              f"{shape}. Use net.kind=unet2d or auto.")
        return MLPBackbone(shape[0], cfg.mlp, cond_classes=cond_classes, cond_dim=cond_dim, cond_tokens=cond_tokens,
                           extra_dim=extra)
    if kind == "unet2d":
        if len(shape) != 3:
            raise ConfigError(f"net.kind='unet2d' needs image items shaped (C, H, W); this data has items "
                              f"shaped {shape}. Use net.kind=auto.")
        return UNet2D(shape[0], (shape[1], shape[2]), cfg.unet, aug_dim=aug_dim, cond_classes=cond_classes,
                      cond_dim=cond_dim, cond_tokens=cond_tokens, extra_channels=extra)
    if kind == "unet1d":
        if len(shape) != 2:
            raise ConfigError(f"net.kind='unet1d' needs series items shaped (C, L); this data has items shaped "
                              f"{shape}. Use net.kind=auto.")
        return UNet1D(shape[0], shape[1], cfg.unet, aug_dim=aug_dim, cond_classes=cond_classes, cond_dim=cond_dim,
                      cond_tokens=cond_tokens, extra_channels=extra)
    raise ConfigError(f"unknown net.kind {kind!r}: use 'auto', 'mlp', 'unet1d' or 'unet2d'")


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in module.parameters())
