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


@dataclass
class UNetConfig:
    """2-D U-Net for images."""

    channels: int = 32  # channels at full resolution
    channel_mult: tuple[int, ...] = (1, 2)  # one entry per resolution level
    blocks_per_level: int = 1  # residual blocks per level on the way down (one more on the way up)
    attn_levels: tuple[int, ...] = ()  # levels (0 = full res) with self-attention; the middle always has it
    head_channels: int = 32  # channels per attention head
    dropout: float = 0.1
    norm: Literal["group", "layer"] = "group"
    groups: int = 8  # GroupNorm groups
    emb_mult: int = 4  # noise-embedding width = emb_mult × channels


@dataclass
class NetConfig:
    """Which backbone to build; `auto` picks the MLP for vectors and the U-Net for images."""

    kind: Literal["auto", "mlp", "unet2d"] = "auto"
    mlp: MLPConfig = field(default_factory=MLPConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)

    def check(self) -> None:
        u = self.unet
        if not u.channel_mult:
            raise ConfigError("net.unet.channel_mult needs at least one level, e.g. [1, 2]")
        bad = [lvl for lvl in u.attn_levels if not 0 <= lvl < len(u.channel_mult)]
        if bad:
            raise ConfigError(f"net.unet.attn_levels {bad} out of range 0..{len(u.channel_mult) - 1}")
        for c in (u.channels * m for m in u.channel_mult):
            if u.norm == "group" and c % u.groups:
                raise ConfigError(f"net.unet: {c} channels do not split into {u.groups} GroupNorm groups")
        for name, value in (("net.unet.dropout", u.dropout), ("net.mlp.dropout", self.mlp.dropout)):
            if not 0 <= value < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {value}")
