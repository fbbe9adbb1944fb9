"""Kernel maximum mean discrepancy with a sum of Gaussian kernels (Gretton et al. 2012, "A Kernel
Two-Sample Test", JMLR 13)."""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import torch

from ._arrays import as_feature_pair, check_positive_int, mask_self, sq_distance_blocks

Estimator = Literal["unbiased", "biased"]

# Default widths: the pooled median pairwise distance (the "median heuristic", Gretton et al. 2012 §8) times
# these factors, so the statistic sees differences a little below and above the data's typical scale.
BANDWIDTH_FACTORS = (0.5, 1.0, 2.0)
# The median is taken over this many pooled items at most (≈5·10⁵ pairs: a stable estimate, quick to get).
MEDIAN_ITEMS = 1000


def median_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Median Euclidean distance between distinct items of the pooled sample (items flattened).

    At most MEDIAN_ITEMS pooled items are used, drawn with a fixed seed, so the value is deterministic.
    Pairs at distance 0 (duplicates) are left out; if every item is the same point, returns 1.0 (the
    MMD is then 0 whatever the width).
    """
    a, b = as_feature_pair(x, y, ("x", "y"))
    return _median_distance(a, b)


def _median_distance(a: np.ndarray, b: np.ndarray) -> float:
    pooled = np.concatenate([a, b])
    if len(pooled) > MEDIAN_ITEMS:
        pooled = pooled[np.random.default_rng(0).choice(len(pooled), MEDIAN_ITEMS, replace=False)]
    _, d2 = next(sq_distance_blocks(pooled, pooled, chunk=len(pooled)))  # one block: ≤ MEDIAN_ITEMS² entries
    upper = d2[torch.triu_indices(len(pooled), len(pooled), offset=1).unbind()]
    upper = upper[upper > 0].sqrt().numpy()
    return float(np.median(upper)) if len(upper) else 1.0


def _kernel_sum(a: np.ndarray, b: np.ndarray, inv_two_h2: torch.Tensor, *, skip_self: bool, chunk: int) -> float:
    """Σ_i Σ_j Σ_h exp(−||a_i − b_j||² / (2h²)), leaving out the terms i = j when skip_self (b is a)."""
    total = 0.0
    for start, d2 in sq_distance_blocks(a, b, chunk=chunk):
        if skip_self:
            mask_self(d2, start, float("inf"))  # exp(−∞) = 0: the diagonal drops out of the sum
        for g in inv_two_h2.tolist():
            total += float(torch.exp(d2 * -g).sum())
    return total


def mmd(x: np.ndarray, y: np.ndarray, bandwidths: float | np.ndarray | None = None, *,
        estimator: Estimator = "unbiased", chunk: int = 1024) -> float:
    """Squared MMD between samples x (N, ...) and y (M, ...), items flattened to vectors.

    Kernel: k(a, b) = Σ_h exp(−||a − b||² / (2h²)), a sum of Gaussian kernels of widths h ∈ `bandwidths`
    (a mixture of widths as in Li et al. 2015's moment-matching networks; each summand is characteristic,
    so MMD² = 0 only when the distributions agree). Default widths: `BANDWIDTH_FACTORS` × the pooled
    median pairwise distance (see `median_distance`). Since each summand has k(a, a) = 1, values scale
    with the number of widths.

    estimator="unbiased" (default; Gretton et al. 2012, Lemma 6 — two U-statistics and a mean):
        1/(N(N−1)) Σ_{i≠j} k(x_i, x_j) + 1/(M(M−1)) Σ_{i≠j} k(y_i, y_j) − 2/(NM) Σ_{i,j} k(x_i, y_j)
    It is centred on the true MMD², so it can be slightly negative when the distributions agree.
    estimator="biased" (the V-statistic, ibid. Eq. 5): the same with the diagonals kept and 1/N², 1/M²;
    ≥ 0, exactly 0 for identical sets, but biased upward by O(1/N).

    Pairwise terms are computed `chunk` rows at a time: memory is O(chunk · max(N, M)), never N × M.
    """
    if estimator not in get_args(Estimator):
        raise ValueError(f"estimator must be one of {get_args(Estimator)}, got {estimator!r}")
    chunk = check_positive_int(chunk, "chunk")
    unbiased = estimator == "unbiased"
    a, b = as_feature_pair(x, y, ("x", "y"), min_items=2 if unbiased else 1,
                           why=" for the unbiased estimator (it averages over pairs i ≠ j)")
    if bandwidths is None:
        widths = _median_distance(a, b) * np.asarray(BANDWIDTH_FACTORS)
    else:
        widths = np.atleast_1d(np.asarray(bandwidths, dtype=np.float64))
        if widths.ndim != 1 or len(widths) == 0 or not (np.isfinite(widths) & (widths > 0)).all():
            raise ValueError(f"bandwidths must be one or more positive finite numbers, got {bandwidths!r}")
    inv_two_h2 = torch.from_numpy(1.0 / (2.0 * widths**2))

    n, m = len(a), len(b)
    k_xx = _kernel_sum(a, a, inv_two_h2, skip_self=unbiased, chunk=chunk)
    k_yy = _kernel_sum(b, b, inv_two_h2, skip_self=unbiased, chunk=chunk)
    k_xy = _kernel_sum(a, b, inv_two_h2, skip_self=False, chunk=chunk)
    pairs_x, pairs_y = (n * (n - 1), m * (m - 1)) if unbiased else (n * n, m * m)
    return k_xx / pairs_x + k_yy / pairs_y - 2.0 * k_xy / (n * m)
