"""Sliced Wasserstein-2 distance (Rabin et al. 2011; Bonneel et al. 2015, "Sliced and Radon Wasserstein
Barycenters of Measures")."""

from __future__ import annotations

import numpy as np

from ._arrays import as_feature_pair, check_positive_int


def _quantile_grid(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The common grid on which both empirical quantile functions are constant.

    The quantile function of n sorted values steps at t = i/n, that of m values at t = j/m. In units of
    1/(n·m) those breakpoints are the integers i·m and j·n, so their union is exact. On the interval
    [e, e′) between consecutive breakpoints the first function equals sorted_x[e // m], the second
    sorted_y[e // n], and the interval has weight (e′ − e)/(n·m). For n = m this is the familiar
    pairing of the i-th smallest values with weights 1/n.
    """
    edges = np.union1d(np.arange(n + 1, dtype=np.int64) * m, np.arange(m + 1, dtype=np.int64) * n)
    start = edges[:-1]
    return start // m, start // n, np.diff(edges) / (n * m)


def sliced_wasserstein(x: np.ndarray, y: np.ndarray, n_projections: int = 256, seed: int = 0, *,
                       chunk: int = 64) -> float:
    """SW₂(μ, ν) = ( E_θ W₂²(θ·μ, θ·ν) )^½ with θ uniform on the unit sphere S^{D−1}.

    x (N, ...) and y (M, ...), items flattened to D-vectors; N ≠ M is fine. The expectation is a mean over
    `n_projections` directions θ = g/||g||, g ~ N(0, I_D) from `np.random.default_rng(seed)`, so the value
    is deterministic for a seed. For each direction the 1-D W₂² between the projected samples is exact:
    the optimal 1-D coupling is monotone, so W₂² = ∫₀¹ |F_x⁻¹(t) − F_y⁻¹(t)|² dt, the squared L² distance
    between quantile functions, summed over the grid where both are constant (`_quantile_grid`).

    Units are those of the data. Example: for N(0, I) against N(m, I), each projection is a 1-D shift by
    θ·m, so SW₂² = E(θ·m)² = ||m||²/D. Projections are done `chunk` directions at a time.
    """
    n_projections = check_positive_int(n_projections, "n_projections")
    chunk = check_positive_int(chunk, "chunk")
    a, b = as_feature_pair(x, y, ("x", "y"))
    g = np.random.default_rng(seed).standard_normal((a.shape[1], n_projections))
    # A Gaussian vector's direction is uniform on the sphere; a zero draw has probability 0.
    theta = g / np.linalg.norm(g, axis=0, keepdims=True)
    ix, iy, weight = _quantile_grid(len(a), len(b))

    w2_sq = np.empty(n_projections)
    for start in range(0, n_projections, chunk):
        t = theta[:, start:start + chunk]
        qx, qy = np.sort(a @ t, axis=0), np.sort(b @ t, axis=0)  # quantile values per direction
        w2_sq[start:start + chunk] = weight @ (qx[ix] - qy[iy]) ** 2
    return float(np.sqrt(w2_sq.mean()))
