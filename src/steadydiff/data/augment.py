"""Training-time augmentation with randomness passed in, so a resumed run draws the same transformations.

Only applied to training batches, never to held-out data. A plain horizontal flip (`hflip`) "leaks" into
samples if the data are not mirror-symmetric in distribution (text, digits): then leave `data.hflip` off.
`augment` does not leak: the network is told what was done (see below).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import DataError


def hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each (C, H, W) image of the batch left-right with probability 1/2, drawn from `generator`.

    One uniform number is drawn per image, so the flips depend on the generator state and the batch size
    alone. Returns a new tensor; `x` is left unchanged.
    """
    if x.ndim != 4:
        raise DataError(f"data.hflip applies to image batches (N, C, H, W) only, got shape {tuple(x.shape)}; "
                        "set data.hflip=false for vector data")
    flip = torch.rand(x.shape[0], generator=generator, device=generator.device) < 0.5
    flip = flip.to(x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(-1), x)


# Non-leaking geometric augmentation (Karras et al. 2022, "Elucidating the Design Space", App. F.2, after
# ADA, Karras et al. 2020): each training image is flipped, turned and shifted at random, and the network
# is told which transformation it saw through AUG_DIM labels added to its noise embedding. Sampling passes
# zero labels (no transformation), so the transformed images never leak into samples — even for digits,
# whose mirror images are not digits — while the network still learns from the extra variety. This is a
# regulariser for small data sets: on digits (1,500 images, 256 epochs) the held-out loss stops falling
# while the training loss goes on (BENCHMARKS.md, digits).
AUG_DIM = 5  # x-flip, sin and cos − 1 of the quarter turn, x shift, y shift (all 0 for the identity)
_SIN, _COS_M1 = (0.0, 1.0, 0.0, -1.0), (0.0, -1.0, -2.0, -1.0)  # sin(kπ/2), cos(kπ/2) − 1 for k = 0..3


def max_shift(height: int, width: int) -> int:
    """Largest integer shift: 1/8 of the smaller side (EDM's translate_int 0.125), at least 1 pixel."""
    return max(1, round(min(height, width) / 8))


def augment(x: torch.Tensor, p: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (transformed images, labels (N, AUG_DIM)) for a batch (N, C, H, W).

    Each image independently, each with probability p: a horizontal flip; a quarter, half or
    three-quarter turn (square images only); an integer shift of up to `max_shift` pixels in x and y,
    the uncovered border filled by reflection. Every random number is drawn for every image whatever
    happens, so the result depends on the generator state, p and the batch alone (resume is exact).
    """
    if x.ndim != 4:
        raise DataError(f"data.augment applies to image batches (N, C, H, W) only, got shape {tuple(x.shape)}; "
                        "set data.augment=0 for vector data")
    n, _, h, w = x.shape
    m = max_shift(h, w)
    # Draws and decisions stay on the generator's device (the CPU in the loop), and images are selected by
    # index tensors, never by boolean masks on x's device: deciding what to do costs no device synchronisation.
    dev = generator.device
    use = torch.rand(n, 3, generator=generator, device=dev) < p
    turns = torch.randint(1, 4, (n,), generator=generator, device=dev)
    shift = torch.randint(-m, m + 1, (n, 2), generator=generator, device=dev)
    k = torch.where(use[:, 1] & (h == w), turns, torch.zeros_like(turns))
    d = torch.where(use[:, 2:3], shift, torch.zeros_like(shift))  # (dx, dy): content moves right/down
    labels = torch.stack([use[:, 0].float(), torch.tensor(_SIN, device=dev)[k],  # exact for quarter turns
                          torch.tensor(_COS_M1, device=dev)[k], d[:, 0].float() / m, d[:, 1].float() / m], 1)

    x = torch.where(use[:, 0].to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)
    if (k > 0).any():
        x = x.clone()
        for q in (1, 2, 3):
            idx = (k == q).nonzero().squeeze(1)
            if len(idx):
                idx = idx.to(x.device)
                x[idx] = torch.rot90(x[idx], q, dims=(-2, -1))
    if (d != 0).any():
        # Output pixel (i, j) of an image shifted by (dx, dy) reads pixel (i − dy, j − dx) of the image with its
        # border reflected m deep: one gather for the whole batch.
        padded = F.pad(x, (m, m, m, m), mode="reflect" if m < min(h, w) else "replicate")
        dd = d.to(x.device)
        rows = torch.arange(h, device=x.device) + m - dd[:, 1:2]  # (N, H)
        cols = torch.arange(w, device=x.device) + m - dd[:, 0:1]  # (N, W)
        x = padded[torch.arange(n, device=x.device)[:, None, None, None],
                   torch.arange(x.shape[1], device=x.device)[None, :, None, None],
                   rows[:, None, :, None], cols[:, None, None, :]]
    return x, labels.to(x.device)
