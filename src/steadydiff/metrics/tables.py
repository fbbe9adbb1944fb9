"""Metrics of generated tables (items (N, D), one column per feature) that read missing values (NaN) in the real
table as absent, so they score data sets with no complete row at all. Both are similarities: 1 is identical.

- `column_shapes`: per column, 1 − the Kolmogorov–Smirnov statistic between the real column's observed values
  and the generated column (the largest gap between the two empirical CDFs), averaged over columns — SDMetrics'
  KSComplement, the "column shapes" half of its quality score.
- `pair_trends`: per pair of columns, 1 − |r_real − r_fake| / 2 with r Pearson's correlation (the real one over the
  rows where both values are observed), averaged over pairs — SDMetrics' CorrelationSimilarity, the "column pair
  trends" half.

Given the table's column types (a `Table`, data/table.py: rows hold a boolean as one 0/1 entry and a categorical
column as its one-hot or bit block, each row's category read as `Table.decode` reads it), both score the table's
own columns: a boolean or categorical column's shape is 1 − the total variation distance between its category shares
(SDMetrics' TVComplement), and a pair with such a column is compared by 1 − the total variation distance between the
two columns' joint shares (SDMetrics' ContingencySimilarity), a numeric column of the pair cut at the real column's
deciles.
"""

from __future__ import annotations

import numpy as np

from ..data.table import Column, Table

MIN_OBSERVED = 5  # a column (or pair) with fewer observed real values is left out of the average
PAIR_BINS = 10  # a numeric column paired with a categorical one is cut into this many quantile bins of the real


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov–Smirnov statistic sup |F_a − F_b| (both 1-D, finite)."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    return float(np.max(np.abs(np.searchsorted(a, grid, side="right") / len(a)
                               - np.searchsorted(b, grid, side="right") / len(b))))


Group = tuple[int, int, Column | None]  # a column's entries [start, stop), and the column where it holds categories


def _groups(width: int, table: Table | None) -> list[Group]:
    """Each column's entries [start, stop) and, where it holds categories (boolean or categorical), its Column."""
    if table is None:
        return [(j, j + 1, None) for j in range(width)]
    return [(a, b, c if c.type in ("boolean", "categorical") else None)
            for (a, b), c in zip(table.spans(), table.columns, strict=True)]


def _tv(r: np.ndarray, f: np.ndarray, k: int) -> float:
    """Total variation distance between the shares of categories 0..k−1 in codes r and f."""
    return 0.5 * float(np.abs(np.bincount(r, minlength=k) / len(r) - np.bincount(f, minlength=k) / len(f)).sum())


def column_shapes(real: np.ndarray, fake: np.ndarray, table: Table | None = None) -> float:
    """Mean over columns of 1 − KS(real column's observed values, fake column), or with `table` 1 − TV for its
    boolean and categorical columns; see the module docstring."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    scores = []
    for a, b, col in _groups(real.shape[1], table):
        r, f = real[:, a:b], fake[:, a:b]
        r, f = r[~np.isnan(r).any(1)], f[~np.isnan(f).any(1)]
        if len(r) >= MIN_OBSERVED and len(f):
            scores.append(1.0 - (_ks(r[:, 0], f[:, 0]) if col is None else
                                 _tv(col.category_index(r), col.category_index(f), max(len(col.categories), 2))))
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


def _binned(real: np.ndarray, fake: np.ndarray, col: Column | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Category codes of one column's real and fake rows, and how many there can be: its categories, or (numbers,
    `col` None) PAIR_BINS quantile bins of the real values."""
    if col is not None:
        return col.category_index(real), col.category_index(fake), max(len(col.categories), 2)
    edges = np.unique(np.quantile(real[:, 0], np.linspace(0, 1, PAIR_BINS + 1)[1:-1]))
    return np.searchsorted(edges, real[:, 0]), np.searchsorted(edges, fake[:, 0]), len(edges) + 1


def _contingency(real: np.ndarray, fake: np.ndarray, gi: Group, gj: Group) -> float | None:
    """1 − TV between the joint shares of two columns, each side over its rows where the pair is observed."""
    (a, b, ci), (c, d, cj) = gi, gj

    def observed(x: np.ndarray) -> np.ndarray:
        return ~(np.isnan(x[:, a:b]).any(1) | np.isnan(x[:, c:d]).any(1))

    keep, kept = observed(real), observed(fake)  # a missing cell is absent, never a category or a bin
    if keep.sum() < MIN_OBSERVED or not kept.any():
        return None
    ri, fi, ki = _binned(real[keep, a:b], fake[kept, a:b], ci)
    rj, fj, kj = _binned(real[keep, c:d], fake[kept, c:d], cj)
    return 1.0 - _tv(ri * kj + rj, fi * kj + fj, ki * kj)


def pair_trends(real: np.ndarray, fake: np.ndarray, table: Table | None = None) -> float:
    """Mean over column pairs of 1 − |r_real − r_fake| / 2 (pairwise-complete real rows), or with `table`
    contingency similarity for a pair with a boolean or categorical column; see the module docstring. NaN for a
    single column."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    scores = []
    groups = _groups(real.shape[1], table)
    for i, gi in enumerate(groups):
        for gj in groups[i + 1:]:
            if gi[2] is not None or gj[2] is not None:
                score = _contingency(real, fake, gi, gj)
            else:
                r, f = _corr(real[:, gi[0]], real[:, gj[0]]), _corr(fake[:, gi[0]], fake[:, gj[0]])
                score = None if r is None or f is None else 1.0 - abs(r - f) / 2
            if score is not None:
                scores.append(score)
    return float(np.mean(scores)) if scores else float("nan")


def table_scores(real: np.ndarray, fake: np.ndarray, table: Table | None = None) -> dict[str, float]:
    """{"column_shapes", "pair_trends"} of `fake` against `real` (both (N, D) in the same units; `table`: the
    column types of a typed table's rows)."""
    return {"column_shapes": column_shapes(real, fake, table), "pair_trends": pair_trends(real, fake, table)}


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
