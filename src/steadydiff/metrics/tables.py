"""Metrics of generated tables (items (N, D), one column per feature) that read missing values (NaN) in the real
table as absent, so they score data sets with no complete row at all. Both are similarities: 1 is identical.

- `column_shapes`: per column, 1 − the Kolmogorov–Smirnov statistic between the real column's observed values
  and the generated column (the largest gap between the two empirical CDFs), averaged over columns — SDMetrics'
  KSComplement, the "column shapes" half of its quality score.
- `pair_trends`: per pair of columns, 1 − |r_real − r_fake| / 2 with r Pearson's correlation (the real one over the
  rows where both values are observed), averaged over pairs — SDMetrics' CorrelationSimilarity, the "column pair
  trends" half.
"""

from __future__ import annotations

import numpy as np

MIN_OBSERVED = 5  # a column (or pair) with fewer observed real values is left out of the average


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov–Smirnov statistic sup |F_a − F_b| (both 1-D, finite)."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    return float(np.max(np.abs(np.searchsorted(a, grid, side="right") / len(a)
                               - np.searchsorted(b, grid, side="right") / len(b))))


def column_shapes(real: np.ndarray, fake: np.ndarray) -> float:
    """Mean over columns of 1 − KS(real column's observed values, fake column); see the module docstring."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    scores = []
    for j in range(real.shape[1]):
        r = real[:, j][~np.isnan(real[:, j])]
        f = fake[:, j][~np.isnan(fake[:, j])]
        if len(r) >= MIN_OBSERVED and len(f):
            scores.append(1.0 - _ks(r, f))
    return float(np.mean(scores)) if scores else float("nan")


def _corr(x: np.ndarray, y: np.ndarray) -> float | None:
    keep = ~(np.isnan(x) | np.isnan(y))
    if keep.sum() < MIN_OBSERVED:
        return None
    x, y = x[keep], y[keep]
    sx, sy = x.std(), y.std()
    if sx == 0 or sy == 0:
        return None
    return float(np.mean((x - x.mean()) * (y - y.mean())) / (sx * sy))


def pair_trends(real: np.ndarray, fake: np.ndarray) -> float:
    """Mean over column pairs of 1 − |r_real − r_fake| / 2 (pairwise-complete real rows); see the module
    docstring. NaN for a single column."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    scores = []
    d = real.shape[1]
    for i in range(d):
        for j in range(i + 1, d):
            r, f = _corr(real[:, i], real[:, j]), _corr(fake[:, i], fake[:, j])
            if r is not None and f is not None:
                scores.append(1.0 - abs(r - f) / 2)
    return float(np.mean(scores)) if scores else float("nan")


def table_scores(real: np.ndarray, fake: np.ndarray) -> dict[str, float]:
    """{"column_shapes", "pair_trends"} of `fake` against `real` (both (N, D) in the same units)."""
    return {"column_shapes": column_shapes(real, fake), "pair_trends": pair_trends(real, fake)}


def efficacy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, *,
             seed: int = 0) -> float:
    """Machine-learning efficacy: the held-out accuracy (`test_*`, real rows) of a gradient-boosted classifier
    (scikit-learn's HistGradientBoostingClassifier, which reads NaN as missing) trained on `train_*` — synthetic
    rows for the score, real training rows for its ceiling ("train on synthetic, test on real")."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(random_state=seed).fit(train_x, train_y)
    return float(model.score(test_x, test_y))


def closest_record(rows: np.ndarray, train: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Each row's Euclidean distance to its closest training record, columns divided by `scale` (their std),
    over the columns both rows observe (rescaled to all columns: × √(D / observed)): the distance to closest
    record (DCR) of privacy audits. Synthetic rows much closer to the training records than held-out real rows
    are copies."""
    a = np.asarray(rows, np.float64) / scale
    b = np.asarray(train, np.float64) / scale
    out = np.empty(len(a))
    for i, r in enumerate(a):
        diff = b - r
        seen = ~np.isnan(diff)
        d2 = np.where(seen, diff, 0.0) ** 2
        n = seen.sum(1)
        dist = np.sqrt(d2.sum(1) * a.shape[1] / np.maximum(n, 1))
        out[i] = float(np.min(np.where(n > 0, dist, np.inf)))
    return out
