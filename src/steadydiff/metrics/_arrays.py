"""Input checks and chunked pairwise distances shared by the sample-based metrics (mmd, prdc,
sliced_wasserstein): every item is flattened to a float64 row, and no N × M matrix is ever held whole."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def as_features(a: np.ndarray, name: str) -> np.ndarray:
    """(N, ...) array → float64 (N, D), each item flattened; ValueError naming `name` for bad input."""
    arr = np.asarray(a)
    if arr.ndim == 0:
        raise ValueError(f"{name} must be an array shaped (N, ...), got a scalar")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
            or arr.dtype == np.bool_):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    n, d = arr.shape[0], int(np.prod(arr.shape[1:]))
    if n == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if d == 0:
        raise ValueError(f"{name} has no features per item (shape {arr.shape})")
    out = arr.reshape(n, d).astype(np.float64)
    bad = ~np.isfinite(out).all(1)
    if bad.any():
        raise ValueError(f"{name} contains NaN or Inf in {int(bad.sum())} of its {n} items")
    return out


def as_feature_pair(x: np.ndarray, y: np.ndarray, names: tuple[str, str], *,
                    min_items: int = 1, why: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Both sets checked by `as_features`, with equal feature counts and at least `min_items` items each,
    centred on their pooled mean. Every metric here is translation invariant, and centring keeps
    ||a||² + ||b||² − 2a·b (see `sq_distance_blocks`) from cancelling away digits on offset data."""
    a, b = as_features(x, names[0]), as_features(y, names[1])
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names[0]} and {names[1]} must have the same number of features per item, "
                         f"got {a.shape[1]} and {b.shape[1]}")
    for arr, name in ((a, names[0]), (b, names[1])):
        if len(arr) < min_items:
            raise ValueError(f"{name} needs at least {min_items} items{why}, got {len(arr)}")
    shift = (a.sum(0) + b.sum(0)) / (len(a) + len(b))
    return a - shift, b - shift


def check_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def sq_distance_blocks(a: np.ndarray, b: np.ndarray, *, chunk: int) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (start, D²) with D²[i, j] = ||a[start + i] − b[j]||² for `chunk` rows of `a` at a time, so
    memory is O(chunk · len(b)) whatever len(a) is. One matmul per block via ||a||² + ||b||² − 2a·b,
    clamped at 0 against round-off."""
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    b_sq = (tb * tb).sum(1)
    for start in range(0, len(ta), chunk):
        block = ta[start:start + chunk]
        d2 = torch.addmm(b_sq[None, :], block, tb.T, alpha=-2.0).add_((block * block).sum(1)[:, None])
        yield start, d2.clamp_min_(0.0)


def mask_self(d2: torch.Tensor, start: int, value: float) -> torch.Tensor:
    """Set the entries pairing item start + i with itself (a block of a set against the same set)."""
    rows = torch.arange(d2.shape[0])
    d2[rows, rows + start] = value
    return d2
