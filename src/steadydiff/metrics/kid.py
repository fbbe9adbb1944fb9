"""Kernel inception distance with its standard error (Bińkowski et al. 2018, "Demystifying MMD GANs", §4).

KID is the squared MMD under the cubic polynomial kernel k(a, b) = (a·b / d + 1)³ on d features per item,
estimated without bias. Unlike the Fréchet distance, whose estimate grows as the sets shrink, its expected
value does not depend on how many items are compared, so it is the distance to read for small data sets —
and being a U-statistic, it comes with a standard error.

With n items of each set paired as z_i = (x_i, y_i), the estimator is Gretton et al. 2012's Lemma 6:

    KID = 1/(n(n−1)) Σ_{i≠j} h(z_i, z_j),   h(z_i, z_j) = k(x_i, x_j) + k(y_i, y_j) − k(x_i, y_j) − k(x_j, y_i),

and its variance follows from Hoeffding's decomposition of a U-statistic of degree 2 (Serfling 1980, §5.2.1):

    Var KID = [4(n−2) ζ₁ + 2 ζ₂] / (n(n−1)),   ζ₁ = Var_z E_z' h(z, z'),   ζ₂ = Var h(z, z'),

with ζ₁ estimated by the variance of each item's mean h over the others (less the part that the finite average
itself adds) and ζ₂ by the variance of h over the pairs. ζ₁ vanishes when the two sets come from one
distribution, so then the ζ₂ term sets the error.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._arrays import as_features, check_positive_int

MAX_ITEMS = 2000  # items of each set at most (Bińkowski et al. average subsets of 1,000; the n² kernel cost)


def _kernel(a: torch.Tensor, b: torch.Tensor, d: int) -> torch.Tensor:
    return (a @ b.T / d + 1.0) ** 3


def _rows(a: np.ndarray, n: int) -> np.ndarray:
    """n rows of a: all of them, or a seeded random subset in their stored order."""
    return a if len(a) == n else a[np.sort(np.random.default_rng(0).choice(len(a), n, replace=False))]


def kid(x: np.ndarray, y: np.ndarray, *, max_items: int = MAX_ITEMS, chunk: int = 512) -> dict[str, float]:
    """{"kid", "kid_se", "kid_items"}: the unbiased KID of feature sets x (N, D) and y (M, D), its standard
    error, and the n = min(N, M, max_items) items of each set it used (a seeded random subset of a larger set,
    so the result is deterministic and a set stored in some order, e.g. by class, is not cut in it).

    Memory is O(chunk · n): the n × n kernel matrices are never held whole.
    """
    a, b = as_features(x, "x"), as_features(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y must have the same number of features per item, got {a.shape[1]} and "
                         f"{b.shape[1]}")
    n = min(len(a), len(b), check_positive_int(max_items, "max_items"))
    if n < 4:
        raise ValueError(f"KID needs at least 4 items in each set (its variance averages over distinct pairs), "
                         f"got {len(a)} and {len(b)}")
    d = a.shape[1]
    ta, tb = torch.from_numpy(_rows(a, n)), torch.from_numpy(_rows(b, n))
    row_sum = torch.zeros(n, dtype=torch.float64)
    total = total_sq = 0.0
    for start in range(0, n, check_positive_int(chunk, "chunk")):
        xa, yb = ta[start:start + chunk], tb[start:start + chunk]
        h = _kernel(xa, ta, d) + _kernel(yb, tb, d) - _kernel(xa, tb, d) - _kernel(yb, ta, d)
        rows = torch.arange(len(xa))
        h[rows, rows + start] = 0.0  # i = j is not a pair
        row_sum[start:start + len(xa)] = h.sum(1)
        total += float(h.sum())
        total_sq += float((h * h).sum())
    pairs = n * (n - 1)
    value = total / pairs
    zeta2 = max(total_sq / pairs - value ** 2, 0.0)
    # Each item's mean h over the n − 1 others varies by ζ₁ plus its own sampling noise, (ζ₂ − ζ₁)/(n − 1):
    # that noise is taken out, or the error would be √3 times too large when the sets agree.
    spread = float((row_sum / (n - 1)).var(correction=1))
    zeta1 = max((spread - zeta2 / (n - 1)) / (1 - 1 / (n - 1)), 0.0)
    var = (4 * (n - 2) * zeta1 + 2 * zeta2) / pairs
    return {"kid": value, "kid_se": math.sqrt(var), "kid_items": n}
