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
    allow_nan: bool = False,
) -> None:
    """Raise DataError if `x` holds NaN or ±Inf values (±Inf only with `allow_nan`: NaN then marks a missing
    value, see `check_missing`).

    `x` is (N, ...) items. `lines` (1-based file line of each item) and `columns` (feature names) let the
    message point into a CSV file.
    """
    if not np.issubdtype(x.dtype, np.inexact):
        return  # integer and boolean arrays are always finite
    bad = np.isinf(x) if allow_nan else ~np.isfinite(x)
    if not bad.any():
        return
    n_nan = int(np.isnan(x).sum())
    n_inf = int(np.isinf(x).sum())
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
    if allow_nan:
        raise DataError(f"{where}: {n_inf:,} value(s) are infinite; the first is {value} at {place}. Mark an unknown "
                        "value as missing (an empty cell, or NaN) or remove those items.")
    raise DataError(
        f"{where}: {n_nan + n_inf:,} value(s) are not finite ({n_nan:,} NaN, {n_inf:,} Inf); the first is "
        f"{value} at {place}. Fill in or remove those items before training (e.g. drop rows with "
        f"missing values)" + (", or set data.missing=learn to train around missing values (vectors and series)"
                              if n_nan else "") + "."
    )


def check_missing(
    x: np.ndarray,
    where: str,
    *,
    lines: Sequence[int] | np.ndarray | None = None,
    columns: Sequence[str] | None = None,
) -> None:
    """Raise DataError if an item or a column (a channel, for series) of `x` is missing (NaN) throughout: nothing
    could be learnt of it. `x` is (N, D) vectors or (N, C, L) series."""
    missing = np.isnan(x)
    if not missing.any():
        return
    whole_item = missing.reshape(len(x), -1).all(1)
    if whole_item.any():
        i = int(np.argmax(whole_item))
        place = f"line {int(lines[i])}" if lines is not None else f"item {i} (0-based)"
        what = "row" if x.ndim == 2 else "window" if x.ndim == 3 else "item"
        raise DataError(f"{where}: {int(whole_item.sum()):,} {what}(s) hold no value at all, the first at {place}; "
                        f"remove them (nothing can be learnt from an empty {what})")
    per_column = missing.all(axis=0) if x.ndim == 2 else missing.all(axis=(0, 2))
    if per_column.any():
        j = int(np.argmax(per_column))
        name = f"'{columns[j]}'" if columns is not None and j < len(columns) else f"{j + 1} (1-based)"
        what = "column" if x.ndim == 2 else "channel"
        raise DataError(f"{where}: {what} {name} holds no value at all (every entry is missing); drop it")


def check_min_items(x: np.ndarray, where: str = "data") -> None:
    """Raise DataError unless `x` holds at least two items (a distribution needs more than one point)."""
    n = 0 if x.ndim == 0 else int(x.shape[0])
    if n < 2:
        raise DataError(
            f"{where}: found {n} item(s); training needs at least 2 (and many more to learn anything). "
            "Check that the file or folder holds the data you meant."
        )
