"""Memorisation: how close samples come to their nearest training item, judged against the training
set's own nearest-neighbour distances (a copy is far closer than two distinct training items are)."""

from __future__ import annotations

import numpy as np
import torch


def nearest_distances(queries: np.ndarray, reference: np.ndarray, *, exclude_self: bool = False,
                      chunk: int = 1024) -> np.ndarray:
    """Euclidean distance from each query to its nearest reference item (flattened)."""
    q = torch.as_tensor(queries.reshape(len(queries), -1), dtype=torch.float64)
    r = torch.as_tensor(reference.reshape(len(reference), -1), dtype=torch.float64)
    out = []
    for start in range(0, len(q), chunk):
        d = torch.cdist(q[start:start + chunk], r)
        if exclude_self:
            idx = torch.arange(start, min(start + chunk, len(q)))
            d[torch.arange(len(idx)), idx] = float("inf")
        out.append(d.min(1).values)
    return torch.cat(out).numpy()


def copy_fraction(samples: np.ndarray, train: np.ndarray, *, ratio: float = 1 / 3) -> dict[str, float]:
    """Share of samples closer to a training item than `ratio` × the median training-set NN distance.

    The threshold is relative to how far apart real training items are, so it means the same for any
    data scale (Somepalli et al. 2023 use a similar relative criterion).
    """
    train_nn = nearest_distances(train, train, exclude_self=True)
    sample_nn = nearest_distances(samples, train)
    threshold = ratio * float(np.median(train_nn))
    return {"copy_fraction": float((sample_nn < threshold).mean()), "threshold": threshold,
            "median_sample_nn": float(np.median(sample_nn)), "median_train_nn": float(np.median(train_nn))}
