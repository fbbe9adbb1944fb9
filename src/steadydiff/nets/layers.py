"""Layers shared by the backbones: noise-level embedding, normalisation, zero-initialised projections.

The backbone F sees the noise level only through `c_noise` (EDM, Karras et al. 2022, Eq. 7 and
Table 1), a float per sample. With EDM's c_noise = ln(σ)/4 the values lie in about [-3, 2]; a VP
parameterisation may instead pass c_noise = (M − 1)·t in [0, 999]. The embedding below is built to
resolve both ranges.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

NormKind = Literal["group", "layer", "batch", "none"]  # net.unet.norm
SampleNormKind = Literal["group", "layer", "none"]  # the per-sample ones, which make_norm builds
NormFactory = Callable[..., nn.Module]  # (channels, affine=...) -> normalisation layer

log = logging.getLogger("steadydiff")


class TextEncoder(nn.Module):
    """Token ids (N, L) → (N, dim), trained with the denoiser (no downloaded weights): word embeddings plus learned
    positions, `layers` pre-norm transformer layers (Vaswani et al. 2017; pre-norm as in GPT-2), and the mean over
    the caption's words. Id 0 pads (masked out of attention and of the mean)."""

    def __init__(self, vocab_size: int, max_len: int, dim: int, width: int = 64, layers: int = 2, heads: int = 4):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, width, padding_idx=0)
        self.positions = nn.Parameter(0.02 * torch.randn(max_len, width))
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(width, dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pad = ids == 0
        h = self.body(self.tokens(ids) + self.positions[:ids.shape[1]], src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).to(h.dtype)
        return self.out((h * keep).sum(1) / keep.sum(1).clamp(min=1))


class CondEmbedding(nn.Module):
    """One condition per item → (N, dim): a class id (a table row; −1, the dropped condition, reads the extra last
    row) or a normalised condition vector (a linear map; a row of NaN, the dropped condition, reads a learned null
    vector). A dropped condition is a learned "null" value, so one network is both conditional and unconditional
    (classifier-free guidance, Ho & Salimans 2022). Rows start N(0, 1), the scale of the Fourier features they join.
    """

    def __init__(self, dim: int, classes: int = 0, vector_dim: int = 0, tokens: tuple[int, int] = (0, 0)):
        super().__init__()
        if sum(map(bool, (classes, vector_dim, tokens[0]))) != 1:
            raise ValueError("a condition embedding needs one of: classes, a vector size, a vocabulary")
        self.classes, self.vector_dim, self.tokens = classes, vector_dim, tuple(tokens)
        if classes:
            self.table = nn.Embedding(classes + 1, dim)
        elif tokens[0]:
            self.text = TextEncoder(tokens[0], tokens[1], dim)
            self.null = nn.Parameter(torch.randn(dim))
        else:
            self.proj = nn.Linear(vector_dim, dim)
            self.null = nn.Parameter(torch.randn(dim))

    def forward(self, cond: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
        if self.classes:
            ids = torch.full((n,), -1, dtype=torch.long, device=device) if cond is None else cond.reshape(-1).long()
            if ids.numel() != n:  # an id out of range is refused by the table itself (no host sync per step)
                raise ValueError(f"class conditions must be {n} ids in 0..{self.classes - 1} (or -1: none), got "
                                 f"shape {tuple(cond.shape) if cond is not None else None}")
            return self.table(torch.where(ids < 0, self.classes, ids))
        if cond is None:
            return self.null.expand(n, -1)
        if self.tokens[0]:  # caption token ids (N, L); a row starting with −1 is the dropped condition
            ids = cond.reshape(n, -1).long()
            if ids.shape[1] > self.tokens[1]:
                raise ValueError(f"token ids must be (N, ≤ {self.tokens[1]}) below {self.tokens[0]}, got shape "
                                 f"{tuple(cond.shape)}")
            dropped = ids[:, :1] < 0
            safe = torch.where(dropped, torch.ones_like(ids), ids.clamp(min=0))  # a real caption in dropped rows
            return torch.where(dropped, self.null, self.text(safe))
        v = cond.reshape(n, -1).float()
        if v.shape[1] != self.vector_dim:
            raise ValueError(f"condition vectors must have {self.vector_dim} values, got shape {tuple(cond.shape)}")
        dropped = torch.isnan(v).any(1, keepdim=True)
        return torch.where(dropped, self.null.to(v.dtype), self.proj(torch.nan_to_num(v)))


def check_cond(cond: torch.Tensor | None, embed: CondEmbedding | None) -> None:
    """Refuse a condition given to a network built without one: silently ignoring what the caller meant to use
    would produce unconditional samples without saying so."""
    if cond is not None and embed is None:
        raise ConfigError("this network was built without a condition (an unconditional run): call it with "
                          "cond=None, or train with train.conditional=on on data that carries labels or vectors")


def with_extra(x: torch.Tensor, extra: torch.Tensor | None, size: int) -> torch.Tensor:
    """x with the extra input channels (dim 1) a network was built with: `extra`, or zeros when None (for masks:
    nothing known). Refuses extra values given to a network built without them."""
    if size == 0:
        if extra is not None:
            raise ConfigError("this network was built without extra input channels (train.masks); call it with "
                              "extra=None")
        return x
    if extra is None:
        extra = x.new_zeros((x.shape[0], size, *x.shape[2:]))
    if extra.shape[0] != x.shape[0] or extra.shape[1] != size or extra.shape[2:] != x.shape[2:]:
        raise ValueError(f"extra input shaped {tuple(extra.shape)}; this network takes ({x.shape[0]}, {size}, "
                         f"{', '.join(map(str, x.shape[2:]))})")
    return torch.cat([x, extra.to(x.dtype)], dim=1)


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
    `time_embed`). The final activation is applied here once, instead of at the start of every
    block's projection as in ADM, which is the same function and saves one activation per block."""

    def __init__(self, out_dim: int, fourier_dim: int, ops: Layers, aug_dim: int = 0, cond_classes: int = 0,
                 cond_dim: int = 0, cond_tokens: tuple[int, int] = (0, 0)):
        super().__init__()
        self.fourier = FourierFeatures(fourier_dim)
        self.fourier_gain = ops.fourier_gain
        self.mlp = nn.Sequential(
            ops.layer(fourier_dim, out_dim), ops.act_layer(), ops.layer(out_dim, out_dim), ops.act_layer()
        )
        # Augmentation labels enter beside the noise features (EDM's map_augment, Karras et al. 2022,
        # App. F.2). Zero-initialised: the untrained network ignores them, and zero labels (sampling) never
        # change the output.
        self.aug = nn.Linear(aug_dim, fourier_dim, bias=False) if aug_dim else None
        if self.aug is not None:
            nn.init.zeros_(self.aug.weight)
        # The condition enters the same way, added to the noise features before the MLP (EDM's map_label).
        self.cond = CondEmbedding(fourier_dim, cond_classes, cond_dim, cond_tokens) \
            if cond_classes or cond_dim or cond_tokens[0] else None

    def forward(self, c_noise: torch.Tensor, aug: torch.Tensor | None = None,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        check_cond(cond, self.cond)
        h = self.fourier(c_noise) * self.fourier_gain
        if self.cond is not None:
            h = h + self.cond(cond, len(c_noise), h.device).to(h.dtype)
        if aug is not None:
            if self.aug is None:
                raise ConfigError("this network was built without augmentation labels (data.augment=0); "
                                  "call it with aug=None")
            h = h + self.aug(aug.to(h.dtype))
        return self.mlp(h)


def make_norm(kind: SampleNormKind, channels: int, groups: int, *, affine: bool = True) -> nn.Module:
    """A normalisation that sees each sample alone, for conv features (N, C, H, W) or vectors (N, C).

    - "group": GroupNorm(groups, C), as in the DDPM/ADM U-Nets.
    - "layer": GroupNorm(1, C), i.e. LayerNorm over all of (C, H, W) per sample with a per-channel
      affine. We chose it over a channel-wise LayerNorm (over C at each pixel) because it uses the
      same fused kernel as GroupNorm, needs no permutes, and keeps spatial statistics (a per-pixel
      norm would also erase the per-pixel brightness a denoiser must see).
    - "none": the identity.

    BatchNorm is not built here but by `norm_factory`, so that a network can only get one together
    with the warning about it.
    """
    if kind == "group":
        if channels % groups:
            raise ConfigError(f"{channels} channels do not split into {groups} GroupNorm groups")
        return nn.GroupNorm(groups, channels, affine=affine)
    if kind == "layer":
        return nn.GroupNorm(1, channels, affine=affine)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"unknown norm {kind!r} for make_norm: use 'group', 'layer' or 'none'")


BATCH_NORM_WARNING = (
    "net.unet.norm='batch': BatchNorm couples the samples of a batch, so a noisy sample's normalisation "
    "statistics depend on the other noise levels in its batch, and the network behaves differently in "
    "training (batch statistics) and in evaluation and sampling (running averages). This is known to harm "
    "diffusion models; use net.unet.norm='group'."
)


def norm_factory(kind: NormKind, groups: int, dims: int = 2) -> NormFactory:
    """`(channels, affine=...) -> layer` for the U-Net's normalisation `kind`; call once per network.

    "batch" (BatchNorm1d/2d) is offered for comparison experiments only: it logs BATCH_NORM_WARNING.
    """
    if kind == "batch":
        log.warning(BATCH_NORM_WARNING)
        return nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
    if kind not in ("group", "layer", "none"):
        raise ConfigError(f"unknown norm {kind!r}: use 'group', 'layer', 'batch' or 'none'")
    return partial(make_norm, kind, groups=groups)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's weights and bias and return it.

    Used on the last layer of each residual branch and of the network (ADM, Nichol & Dhariwal 2021):
    every residual block starts as the identity and F ≡ 0 at initialisation, so D(x, σ) = c_skip·x
    at step 0 — the best denoiser that ignores its network, and a stable start.
    """
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


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

    # False inside torch.func.vmap (nets.for_vmap): a mask drawn into a fresh tensor would be one mask for all
    # the vmapped networks; F.dropout draws one per network there (vmap's randomness="different").
    own_mask = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_levels == 0:
            return x
        if not self.own_mask or x.device.type != "cpu" or not (
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


class Layers:
    """The vocabulary a backbone is written in: learned layers and normalisations asked for by their
    role, and the few elementwise operations that join them.

    The MLP and the U-Net build every layer through this object, so one definition of each network
    serves both this standard set and the magnitude-preserving one (`mp.MPLayers`, EDM2) instead of
    a copy of each network per set. Layers are built in the caller's order, so a network draws the
    same random initialisation as if it had called the layer classes itself.
    """

    fourier_gain = 1.0  # factor on the Fourier features of the noise embedding

    def __init__(self, norm: NormFactory, dims: int = 2):
        self.norm_factory = norm
        self.dims = dims  # spatial dimensions of the convolutions: 2 for images, 1 for series

    # Learned maps: fully connected when kernel is None, else a "same" convolution of width kernel per dim.
    def layer(self, cin: int, cout: int, kernel: int | None = None) -> nn.Module:
        if kernel is None:
            return nn.Linear(cin, cout)
        return (nn.Conv1d if self.dims == 1 else nn.Conv2d)(cin, cout, kernel, padding=kernel // 2)

    def input_layer(self, cin: int, cout: int, kernel: int | None = None) -> nn.Module:
        """The network's first layer, reading the data."""
        return self.layer(cin, cout, kernel)

    def branch_end(self, cin: int, cout: int, kernel: int | None = None) -> nn.Module:
        """Last layer of a residual branch; zero-initialised, so the block starts as the identity."""
        return zero_init(self.layer(cin, cout, kernel))

    def output_layer(self, cin: int, cout: int, kernel: int | None = None) -> nn.Module:
        """The network's last layer; zero-initialised, so F ≡ 0 at initialisation."""
        return zero_init(self.layer(cin, cout, kernel))

    def emb_proj(self, emb_dim: int, channels: int) -> nn.Module:
        """Projects the noise embedding to what `modulate` takes: [scale, shift] per channel."""
        return nn.Linear(emb_dim, 2 * channels)

    def norm(self, channels: int, affine: bool = True) -> nn.Module:
        return self.norm_factory(channels, affine=affine)

    def input_norm(self, channels: int, affine: bool = True) -> nn.Module:
        """The normalisation of a residual block's input; the standard set has one kind for all."""
        return self.norm(channels, affine)

    act = staticmethod(F.silu)
    act_layer = nn.SiLU  # the same activation as a module
    modulate = staticmethod(scale_shift)

    def add(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        """Join a residual branch to its skip path."""
        return x + branch

    def cat(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Join the U-Net decoder's features and a skip on the channel dim."""
        return torch.cat([a, b], dim=1)

    def head_norm(self, qkv: torch.Tensor) -> torch.Tensor:
        """Applied to attention's queries, keys and values, shaped (..., 3, heads, head_channels)."""
        return qkv
