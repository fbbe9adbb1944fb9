"""Checks every data set passes before it is split: finite values and enough items.

Each check raises `DataError` saying what is wrong, where (item index; for CSV tables the file line and
column) and how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import DataError


def check_finite(
    x: np.ndarray,
    where: str,
    *,
    lines: Sequence[int] | np.ndarray | None = None,
    columns: Sequence[str] | None = None,
) -> None:
    """Raise DataError if `x` holds NaN or ±Inf values.

    `x` is (N, ...) items. `lines` (1-based file line of each item) and `columns` (feature names) let the
    message point into a CSV file.
    """
    if not np.issubdtype(x.dtype, np.inexact):
        return  # integer and boolean arrays are always finite
    bad = ~np.isfinite(x)
    if not bad.any():
        return
    n_nan = int(np.isnan(x).sum())
    n_inf = int(bad.sum()) - n_nan
    first = np.argwhere(bad)[0]  # row-major: the first bad item, then its first bad entry
    item = int(first[0])
    value = x[tuple(first)]
    if x.ndim == 2:
        feature = int(first[1])
        column = f"'{columns[feature]}'" if columns is not None else f"{feature + 1} (1-based)"
        if lines is not None:
            place = f"line {int(lines[item])}, column {column} (item {item})"
        else:
            place = f"item {item}, column {column}"
    else:
        place = f"item {item} (0-based), at position {tuple(int(i) for i in first[1:])}"
    raise DataError(
        f"{where}: {n_nan + n_inf:,} value(s) are not finite ({n_nan:,} NaN, {n_inf:,} Inf); the first is "
        f"{value} at {place}. Fill in or remove those items before training (e.g. drop rows with "
        f"missing values)."
    )


def check_min_items(x: np.ndarray, where: str = "data") -> None:
    """Raise DataError unless `x` holds at least two items (a distribution needs more than one point)."""
    n = 0 if x.ndim == 0 else int(x.shape[0])
    if n < 2:
        raise DataError(
            f"{where}: found {n} item(s); training needs at least 2 (and many more to learn anything). "
            "Check that the file or folder holds the data you meant."
        )
