"""Random masks of known values for mask-conditioned training (train.masks), with randomness passed in.

As CSDI (Tashiro et al. 2021) trains an imputer, each training item gets a mask m (1 = known) drawn here; the
network sees the known values x·m and m as extra input channels and is trained to denoise the unknown entries. A
share of the items gets an empty mask, so the same network also samples from scratch. Kinds:

- `boxes`: a rectangle of unknown pixels, each side a quarter to three quarters of the image's;
- `strokes`: two to four thick line segments of unknown pixels (brush strokes, as in free-form inpainting);
- `scattered`: every value unknown with one probability per item, uniform in [0.1, 0.9];
- `half`: the left, right, top or bottom half unknown.

Vectors (tables) take `scattered` only. Image masks are shared by the channels of a pixel.

`window_level` gives the level a mask-conditioned series is shifted by (train.window_level): per item and channel
the mean of its known values. `lowres_of` gives the other array condition, a low-resolution copy for
super-resolution (train.lowres), and `match_block_means` makes an upscaled image agree with it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError

IMAGE_MASKS = ("boxes", "strokes", "scattered", "half")
VECTOR_MASKS = ("scattered",)
# Series (C, L): time steps unknown in every channel — scattered, a suffix (a forecast: the last 1…L/2 steps) or a
# gap (a block of 1…L/2 steps anywhere).
SERIES_MASKS = ("scattered", "suffix", "gap")


def lowres_of(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Images (N, C, H, W) averaged over factor × factor blocks (the low-resolution image) and repeated back to
    H × W (nearest), the network's extra input for super-resolution."""
    small = F.avg_pool2d(x, factor, ceil_mode=True)
    return upsample_to(small, x.shape[-2:])


def match_block_means(x: np.ndarray, low: np.ndarray, factor: int, lo: float, hi: float,
                      iters: int = 64) -> np.ndarray:
    """The images closest to `x` (N, C, H, W) with values in [lo, hi] whose factor × factor block means equal
    `low` (N, C, ⌈H/f⌉, ⌈W/f⌉; a block cut by the edge: the mean of its pixels, as `lowres_of` takes it).

    Per block this is the Euclidean projection onto {mean = target} ∩ [lo, hi]^k, which by its KKT conditions is
    clip(x + t, lo, hi) with one shift t per block (the same form as projecting onto the simplex, Duchi et al. 2008);
    the block mean of clip(x + t) rises monotonically in t, so t is found by bisection. Targets outside [lo, hi]
    are taken at the nearest bound (no image in range has them)."""
    n, c, h, w = x.shape
    f = factor
    hb, wb = -(-h // f), -(-w // f)
    pad = np.full((n, c, hb * f, wb * f), np.nan)
    pad[:, :, :h, :w] = x
    blocks = pad.reshape(n, c, hb, f, wb, f).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, hb, wb, f * f)
    valid = ~np.isnan(blocks)
    count = valid.sum(-1)
    target = np.clip(np.asarray(low, dtype=np.float64), lo, hi)
    a = lo - np.nanmax(blocks, axis=-1)  # every pixel at lo: the mean is lo ≤ target
    b = hi - np.nanmin(blocks, axis=-1)  # every pixel at hi: the mean is hi ≥ target
    for _ in range(iters):
        t = (a + b) / 2
        mean = np.where(valid, np.clip(blocks + t[..., None], lo, hi), 0.0).sum(-1) / count
        low_side = mean < target
        a, b = np.where(low_side, t, a), np.where(low_side, b, t)
    out = np.clip(blocks + ((a + b) / 2)[..., None], lo, hi)
    out = out.reshape(n, c, hb, wb, f, f).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, hb * f, wb * f)
    return out[:, :, :h, :w].astype(x.dtype)


def window_level(x: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """(N, C, 1, …): per item and channel, the mean of x over the entries where `known` is nonzero (anything,
    NaN included, elsewhere), 0 where a channel has none. RevIN's instance mean (Kim et al. 2022) over the
    context alone, so training (the drawn mask) and imputation (the given values) take it alike."""
    k = known.flatten(2) != 0
    count = k.sum(-1)
    total = torch.where(k, x.flatten(2), torch.zeros((), dtype=x.dtype, device=x.device)).sum(-1)
    level = torch.where(count > 0, total / count.clamp(min=1), torch.zeros((), dtype=x.dtype, device=x.device))
    return level.reshape(*level.shape, *([1] * (x.dim() - 2)))


def upsample_to(small: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(small, size=tuple(int(s) for s in size), mode="nearest")


def parse_masks(spec: str, kind: str) -> tuple[str, ...]:
    """train.masks ("boxes,half", "all", "" for off) as a tuple of kinds this data takes."""
    allowed = {"image": IMAGE_MASKS, "series": SERIES_MASKS}.get(kind, VECTOR_MASKS)
    names = tuple(n.strip() for n in spec.split(",") if n.strip())
    if names == ("all",):
        return allowed
    bad = [n for n in names if n not in allowed]
    if bad:
        raise ConfigError(f"train.masks: {', '.join(bad)} not available for {kind} data; choose from "
                          f"{', '.join(allowed)} (or 'all')")
    return names


def _grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return ys, xs


def _box(h: int, w: int, g: torch.Generator) -> torch.Tensor:
    u = torch.rand(4, generator=g)
    bh, bw = int(h * (0.25 + 0.5 * u[0])) or 1, int(w * (0.25 + 0.5 * u[1])) or 1
    top, left = int(u[2] * (h - bh + 1)), int(u[3] * (w - bw + 1))
    known = torch.ones(h, w)
    known[top:top + bh, left:left + bw] = 0
    return known


def _strokes(h: int, w: int, g: torch.Generator) -> torch.Tensor:
    ys, xs = _grid(h, w)
    known = torch.ones(h, w)
    count = 2 + int(torch.randint(3, (1,), generator=g))
    width = max(1.0, min(h, w) / 8)
    for _ in range(count):
        p = torch.rand(4, generator=g) * torch.tensor([h - 1, w - 1, h - 1, w - 1])
        a, b = p[:2], p[2:]
        d = b - a
        t = (((ys - a[0]) * d[0] + (xs - a[1]) * d[1]) / d.square().sum().clamp(min=1e-6)).clamp(0, 1)
        dist = ((ys - a[0] - t * d[0]).square() + (xs - a[1] - t * d[1]).square()).sqrt()
        known[dist <= width / 2 + 0.5] = 0
    return known


def _half(h: int, w: int, g: torch.Generator) -> torch.Tensor:
    known = torch.ones(h, w)
    side = int(torch.randint(4, (1,), generator=g))
    if side == 0:
        known[:, w // 2:] = 0  # right half unknown
    elif side == 1:
        known[:, :w - w // 2] = 0
    elif side == 2:
        known[h // 2:] = 0
    else:
        known[:h - h // 2] = 0
    return known


def draw_masks(n: int, item_shape: Sequence[int], kinds: Sequence[str], none_share: float,
               generator: torch.Generator) -> torch.Tensor:
    """(n, *item_shape) float masks, 1 where a value is known; each item's kind uniform over `kinds`, and with
    probability `none_share` nothing known."""
    shape = tuple(int(s) for s in item_shape)
    out = torch.ones((n, *shape))
    choice = torch.randint(len(kinds), (n,), generator=generator)
    empty = torch.rand(n, generator=generator) < none_share
    for i in range(n):
        kind = kinds[int(choice[i])]
        if empty[i]:
            out[i] = 0
        elif kind == "scattered":
            p = 0.1 + 0.8 * torch.rand(1, generator=generator)
            m = (torch.rand(shape if len(shape) == 1 else shape[1:], generator=generator) >= p).float()
            out[i] = m if len(shape) == 1 else m.expand(shape)
        elif kind in ("suffix", "gap"):
            steps = shape[-1]
            k = 1 + int(torch.randint(max(steps // 2, 1), (1,), generator=generator))
            start = steps - k if kind == "suffix" else int(torch.randint(steps - k + 1, (1,), generator=generator))
            out[i, :, start:start + k] = 0
        else:
            h, w = shape[1], shape[2]
            m = {"boxes": _box, "strokes": _strokes, "half": _half}[kind](h, w, generator)
            out[i] = m.expand(shape)
    return out


def whole_blocks(known: torch.Tensor, spans: Sequence[tuple[int, int]]) -> torch.Tensor:
    """(n, D) masks with each categorical block [a, b) (one-hot or bits) known or unknown as a whole (the state of its
    first entry): a category is given or asked for as one value, as `impute` does, never a part of its code."""
    if not spans:
        return known
    out = known.clone()
    for a, b in spans:
        out[:, a:b] = known[:, a:a + 1]
    return out
