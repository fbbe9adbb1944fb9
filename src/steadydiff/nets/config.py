"""Configuration of the denoiser backbones F."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import ConfigError


@dataclass
class MLPConfig:
    """Residual MLP for vectors (2-D toys, tables)."""

    width: int = 256
    blocks: int = 4
    emb_dim: int = 64  # noise-level embedding size
    dropout: float = 0.0
    norm: Literal["layer", "none"] = "layer"  # normalisation of each block's input and of the output
    mp: bool = False  # magnitude-preserving layers with forced weight normalisation (EDM2; see nets/mp.py)


@dataclass
class UNetConfig:
    """U-Net for images (2-D) and series (1-D)."""

    channels: int = 32  # channels at full resolution
    channel_mult: tuple[int, ...] = (1, 2)  # one entry per resolution level
    blocks_per_level: int = 1  # residual blocks per level on the way down (one more on the way up)
    attn_levels: tuple[int, ...] = ()  # levels (0 = full res) with self-attention; the middle always has it
    head_channels: int = 32  # channels per attention head
    # With the default image augmentation (data.augment 0.12) regularising, dropout cost quality on digits
    # (BENCHMARKS.md, digits: 0, 0.05 and EDM's 0.1 over training and sampling seeds; 0.1 again on a validation
    # split: BENCHMARKS.md, defaults).
    dropout: float = 0.0
    # "batch" (BatchNorm) couples the samples of a batch and is known to harm diffusion models: it
    # logs a warning and is there for comparisons only. "none" leaves the activations unnormalised.
    norm: Literal["group", "layer", "batch", "none"] = "group"
    groups: int = 8  # GroupNorm groups
    emb_mult: int = 4  # noise-embedding width = emb_mult × channels
    # Magnitude-preserving layers with forced weight normalisation (EDM2; see nets/mp.py): no
    # normalisation layers, so `norm` must stay at its default or be "none".
    mp: bool = False
    # Activation checkpointing (torch.utils.checkpoint) of every block in training: the activations inside a block
    # are recomputed in the backward pass instead of kept — less memory for about one more forward pass of time.
    checkpointing: bool = False


@dataclass
class NetConfig:
    """Which backbone to build; `auto` picks the MLP for vectors, the 1-D U-Net for series and the 2-D U-Net for
    images."""

    kind: Literal["auto", "mlp", "unet1d", "unet2d"] = "auto"
    mlp: MLPConfig = field(default_factory=MLPConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)

    def check(self) -> None:
        u = self.unet
        if not u.channel_mult:
            raise ConfigError("net.unet.channel_mult needs at least one level, e.g. [1, 2]")
        bad = [lvl for lvl in u.attn_levels if not 0 <= lvl < len(u.channel_mult)]
        if bad:
            raise ConfigError(f"net.unet.attn_levels {bad} out of range 0..{len(u.channel_mult) - 1}")
        if u.mp and u.norm in ("layer", "batch"):
            raise ConfigError(f"net.unet.norm={u.norm!r} cannot apply with net.unet.mp=true: magnitude-preserving "
                              f"layers use no normalisation layers (leave norm at 'group' or set 'none')")
        for c in (u.channels * m for m in u.channel_mult):
            if u.norm == "group" and not u.mp and c % u.groups:
                raise ConfigError(f"net.unet: {c} channels do not split into {u.groups} GroupNorm groups")
        for name, value in (("net.unet.dropout", u.dropout), ("net.mlp.dropout", self.mlp.dropout)):
            if not 0 <= value < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {value}")
