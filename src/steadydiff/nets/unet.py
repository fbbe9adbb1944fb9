"""U-Net backbones F(x, c_noise): 2-D for images (N, C, H, W), 1-D for series (N, C, L).

The layout follows the ADM U-Net (Dhariwal & Nichol 2021, "improved DDPM" blocks): residual blocks
with the noise embedding injected by scale-shift after the second normalisation, self-attention at
chosen resolutions and in the middle, a skip connection from every encoder block to the decoder, and
zero-initialised last layers so F ≡ 0 at initialisation. Resampling has no weights (average pool
down, nearest up; as in EDM2, Karras et al. 2024), which works for any size: odd sizes are pooled
with ceil (7 → 4) and upsampled back to the exact size of the matching skip (4 → 7).

The 1-D U-Net for series is the same network with 1-D convolutions, pooling and attention over the time
steps (as the 1-D U-Nets of Diffusion-TS and CSDI's convolutional variants): one definition serves both.

On a CPU the 2-D activations run in channels_last memory order, which oneDNN convolutions prefer (a
64-channel 3×3 conv at 8×8 trained 2.7× faster here); the attention reads that layout as (N, H·W, C)
without a copy. The weights stay in the default layout so that checkpoints (safetensors needs
contiguous tensors) are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from .config import UNetConfig
from .layers import Dropout, Layers, NoiseEmbedding, flat_noise, norm_factory, with_extra
from .mp import MPLayers


class ResBlock(nn.Module):
    """norm → SiLU → conv → norm → scale-shift(emb) → SiLU → dropout → conv(zero init), plus skip.

    The scale-shift after the second normalisation is ADM's `use_scale_shift_norm` (Nichol &
    Dhariwal 2021, Sec. 3 / Appendix A), which they found better than adding the embedding. That
    norm has no affine of its own: the projection's bias already supplies one. (With `MPLayers`:
    pixel norm → mp_silu → conv → scale(emb) → mp_silu → dropout → conv, joined by mp_sum.)
    """

    def __init__(self, cin: int, cout: int, emb_dim: int, cfg: UNetConfig, ops: Layers):
        super().__init__()
        self.ops = ops
        self.norm1 = ops.input_norm(cin)
        self.conv1 = ops.layer(cin, cout, 3)
        self.emb = ops.emb_proj(emb_dim, cout)
        self.norm2 = ops.norm(cout, affine=False)
        self.dropout = Dropout(cfg.dropout)
        self.conv2 = ops.branch_end(cout, cout, 3)
        self.skip = ops.layer(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        ops = self.ops
        h = self.conv1(ops.act(self.norm1(x)))
        h = ops.act(ops.modulate(self.norm2(h), self.emb(emb)))
        h = self.conv2(self.dropout(h))
        return ops.add(self.skip(x), h)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the positions (H·W pixels or L time steps), pre-norm and residual (ADM's
    AttentionBlock)."""

    def __init__(self, channels: int, cfg: UNetConfig, ops: Layers):
        super().__init__()
        heads = max(1, channels // cfg.head_channels)
        while channels % heads:  # e.g. 112 channels at 32 per head: 3 heads do not divide, use 2
            heads -= 1
        self.heads = heads
        self.ops = ops
        self.norm = ops.norm(channels)
        self.qkv = ops.layer(channels, 3 * channels)
        self.proj = ops.branch_end(channels, channels)

    # False inside torch.func.vmap (nets.for_vmap): vmap has no batching rule for the fused CPU kernel and would
    # run it once per vmapped network; the same attention written out batches.
    fused = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, *where = x.shape
        p = x[0, 0].numel()  # positions
        # (N, C, *S) → (N, positions, C): a free view when an image is channels_last, one copy otherwise.
        t = self.norm(x).movedim(1, -1).reshape(n, p, c)
        qkv = self.ops.head_norm(self.qkv(t).view(n, p, 3, self.heads, c // self.heads))
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.fused:
            o = F.scaled_dot_product_attention(q, k, v)  # (N, heads, positions, head_channels), 1/√d scaling
        else:  # softmax(q kᵀ / √d) v (Vaswani et al. 2017, eq. 1)
            o = torch.softmax(q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5, dim=-1) @ v
        o = self.proj(o.transpose(1, 2).reshape(n, p, c))
        return self.ops.add(x, o.view(n, *where, c).movedim(-1, 1))


class Level(nn.Module):
    """One residual block, optionally followed by self-attention."""

    def __init__(self, cin: int, cout: int, emb_dim: int, attn: bool, cfg: UNetConfig, ops: Layers):
        super().__init__()
        self.res = ResBlock(cin, cout, emb_dim, cfg, ops)
        self.attn = SelfAttention(cout, cfg, ops) if attn else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.res(x, emb)
        return x if self.attn is None else self.attn(x)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """2×2 (series: 2) average pool; ceil_mode gives odd sizes a last, partial window (7 → 4), averaged over
    its in-bounds pixels only (padding=0), so no fake zeros enter at the border."""
    return (F.avg_pool1d if x.dim() == 3 else F.avg_pool2d)(x, 2, ceil_mode=True)


def upsample(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Nearest-neighbour to the skip's exact size: pixel i reads ⌊i·h/H⌋, which equals ⌊i/2⌋ (the
    pooling window it came from) also for odd H with h = ⌈H/2⌉, so up(down(x)) stays aligned."""
    return F.interpolate(x, size=size, mode="nearest")


class UNet(nn.Module):
    """F(x, c_noise) for items x of shape (N, in_channels, *size): images (H, W) or series (L,); returns a tensor
    of x's shape. Use `UNet2D` or `UNet1D`.

    Built from the standard layers with normalisation `cfg.norm`, or from the magnitude-preserving
    ones (`mp.MPLayers`, EDM2) when `cfg.mp` is true; the layout is the same.
    """

    # Layout of the activations (see the module docstring); the output is returned contiguous.
    memory_format = torch.contiguous_format

    def __init__(self, in_channels: int, size: tuple[int, ...], cfg: UNetConfig, aug_dim: int = 0,
                 cond_classes: int = 0, cond_dim: int = 0, cond_tokens: tuple[int, int] = (0, 0),
                 extra_channels: int = 0):
        super().__init__()
        self.item_shape = (in_channels, *size)
        self.checkpointing = cfg.checkpointing
        dims = len(size)
        self.ops = ops = MPLayers(dims) if cfg.mp else Layers(norm_factory(cfg.norm, cfg.groups, dims), dims)
        ch = [cfg.channels * m for m in cfg.channel_mult]
        emb_dim = cfg.emb_mult * cfg.channels
        self.embed = NoiseEmbedding(emb_dim, fourier_dim=cfg.channels, ops=ops, aug_dim=aug_dim,
                                    cond_classes=cond_classes, cond_dim=cond_dim, cond_tokens=cond_tokens)
        self.extra_channels = extra_channels  # input channels beside the image (known values and their mask)
        self.conv_in = ops.input_layer(in_channels + extra_channels, ch[0], 3)

        # Encoder: blocks_per_level blocks per level, then a (weightless) downsample. Every block's
        # output, and the input to each level, is kept for the decoder (ADM's skip layout).
        self.down = nn.ModuleList()
        skip_ch = [ch[0]]
        cin = ch[0]
        for lvl, cout in enumerate(ch):
            for _ in range(cfg.blocks_per_level):
                self.down.append(Level(cin, cout, emb_dim, lvl in cfg.attn_levels, cfg, ops))
                cin = cout
                skip_ch.append(cin)
            if lvl < len(ch) - 1:
                skip_ch.append(cin)  # the downsampled tensor is a skip too

        # Middle: residual block and self-attention at the lowest resolution. ADM has a second
        # residual block here; we drop it because the decoder's first block follows at the same
        # resolution, and on a CPU it cost ~10% of a step and ~13% of the parameters of the digits net.
        self.mid = Level(cin, cin, emb_dim, True, cfg, ops)

        # Decoder: blocks_per_level + 1 blocks per level, each taking one skip by concatenation,
        # then an upsample to the next level's exact size.
        self.up = nn.ModuleList()
        for lvl in reversed(range(len(ch))):
            for _ in range(cfg.blocks_per_level + 1):
                self.up.append(Level(cin + skip_ch.pop(), ch[lvl], emb_dim, lvl in cfg.attn_levels, cfg, ops))
                cin = ch[lvl]
        self.levels = len(ch)
        self.blocks_per_level = cfg.blocks_per_level

        self.norm_out = ops.norm(cin)
        self.conv_out = ops.output_layer(cin, in_channels, 3)

    def run(self, block: nn.Module, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """One block; with net.unet.checkpointing in training, its activations are recomputed in the backward pass
        (non-reentrant checkpointing, which replays the block's dropout masks from the saved RNG state)."""
        if self.checkpointing and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(block, h, emb, use_reentrant=False)
        return block(h, emb)

    def forward(
        self, x: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor | None = None,
        aug: torch.Tensor | None = None, extra: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`aug`: augmentation labels (N, data.augment.AUG_DIM) of the training images; None (sampling) is
        the untransformed image."""
        if tuple(x.shape[1:]) != self.item_shape:
            raise ValueError(f"{type(self).__name__} built for items {self.item_shape}, got a batch shaped "
                             f"{tuple(x.shape)}")
        emb = self.embed(flat_noise(c_noise, x.shape[0]).to(x.device), aug, cond)
        h = self.conv_in(with_extra(x, extra, self.extra_channels).contiguous(memory_format=self.memory_format))

        skips = [h]
        blocks = iter(self.down)
        for lvl in range(self.levels):
            for _ in range(self.blocks_per_level):
                h = self.run(next(blocks), h, emb)
                skips.append(h)
            if lvl < self.levels - 1:
                h = downsample(h)
                skips.append(h)

        h = self.run(self.mid, h, emb)

        blocks = iter(self.up)
        for lvl in reversed(range(self.levels)):
            for _ in range(self.blocks_per_level + 1):
                h = self.run(next(blocks), self.ops.cat(h, skips.pop()), emb)
            if lvl > 0:
                h = upsample(h, skips[-1].shape[2:])

        out = self.conv_out(self.ops.act(self.norm_out(h)))
        return out.contiguous()


class UNet2D(UNet):
    """The U-Net for images (N, C, H, W), its activations channels_last on a CPU (module docstring)."""

    memory_format = torch.channels_last

    def __init__(self, in_channels: int, image_size: tuple[int, int], cfg: UNetConfig, **kw: object):
        super().__init__(in_channels, tuple(image_size), cfg, **kw)


class UNet1D(UNet):
    """The U-Net for series (N, C, L): 1-D convolutions, pooling and attention over the time steps."""

    def __init__(self, in_channels: int, length: int, cfg: UNetConfig, **kw: object):
        super().__init__(in_channels, (int(length),), cfg, **kw)
