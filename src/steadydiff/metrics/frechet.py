"""Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017, Eq. 6)."""

from __future__ import annotations

import numpy as np


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(cov)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_terms_stats(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> tuple[float, float]:
    """The Fréchet distance's two terms: (||μ1 − μ2||², Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½)).

    The mean term grows when the sets differ on average (in a classifier's features, mostly in their class
    mix), the covariance term when they differ in spread and shape. Tr (Σ1 Σ2)^½ is computed as
    Σ sqrt(eig(Σ1^½ Σ2 Σ1^½)): that matrix is symmetric PSD and has the same eigenvalues as Σ1 Σ2, so the
    trace comes from a stable symmetric eigen-solve, with no complex parts.
    """
    s1 = _psd_sqrt(cov1)
    eig = np.linalg.eigvalsh(s1 @ cov2 @ s1)
    tr_covmean = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff), float(np.trace(cov1) + np.trace(cov2) - 2 * tr_covmean)


def frechet_distance_stats(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||μ1 − μ2||² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½): the sum of `frechet_terms_stats`."""
    return sum(frechet_terms_stats(mu1, cov1, mu2, cov2))


def frechet_terms(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean term, covariance term) of the Fréchet distance between two feature sets; they sum to it."""
    return frechet_terms_stats(*gaussian_stats(a), *gaussian_stats(b))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance_stats(*gaussian_stats(a), *gaussian_stats(b))
