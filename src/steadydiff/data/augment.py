"""Training-time augmentation with randomness passed in, so a resumed run draws the same flips.

Only applied to training batches, never to held-out data. A horizontal flip "leaks" into samples only
if the data are not mirror-symmetric in distribution (text, digits): then leave `data.hflip` off.
"""

from __future__ import annotations

import torch

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
