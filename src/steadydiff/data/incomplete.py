"""Reading data with missing values for `steadydiff impute`: NaN marks what is unknown.

- `.npy` / `.npz` (the array, or the one named `x`): items shaped like the run's, NaN where unknown;
- `.csv`: rows of the run's columns (a header row optional), empty cells and nan/NA unknown; for a run on a typed
  table (data/table.py) its own columns — categories by name, booleans as true/false — encoded as its rows are;
- an image (PNG/JPEG) with a mask image whose white pixels are unknown, both at the run's image size.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from .sources import IMAGE_SUFFIXES, PARQUET_SUFFIXES, _delimiter, _is_number, parquet_cells, read_array_file
from .table import MISSING_CELLS as MISSING
from .table import Column, Table


def read_incomplete(path: str | Path, item_shape: tuple[int, ...], *, mask: str | Path | None = None,
                    columns: list[str] | None = None, value_range: tuple[float, float] | None = None,
                    image_needs_mask: bool = True, table: Table | None = None) -> np.ndarray:
    """(N, *item_shape) float32 in the user's units, NaN where a value is unknown. An image's 8-bit pixels map
    black..white onto the run's `value_range` (its images' units: 0..16 for digits). `table`: the run's typed table,
    whose columns a CSV holds (an unknown category is NaN in its whole block)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--in {path}: no such file")
    suffix = path.suffix.lower()
    if mask is not None and suffix not in IMAGE_SUFFIXES:
        raise DataError(f"--mask goes with an image (--in FILE.png); {path.name} is not one: mark unknown values "
                        "with NaN (or empty CSV cells) instead")
    if suffix in (".npy", ".npz"):
        x = _array(path)
    elif suffix == ".csv" and table is not None:
        x = _table_csv(path, table)
    elif suffix in PARQUET_SUFFIXES:
        x = _parquet(path, table, columns)
    elif suffix == ".csv":
        x = _csv(path, columns)
    elif suffix in IMAGE_SUFFIXES:
        if mask is None and image_needs_mask:
            raise DataError(f"--in {path.name} is an image: give --mask MASK.png, white where pixels are unknown")
        x = _image(path, None if mask is None else Path(mask), item_shape)
        if value_range is not None:
            lo, hi = value_range
            x = (lo + (hi - lo) * x / 255.0).astype(np.float32)
    else:
        raise DataError(f"--in {path.name}: give a .npy/.npz array, a .csv or .parquet table or an image with --mask")
    if x.shape == item_shape:
        x = x[None]
    if x.shape[1:] != item_shape:
        raise DataError(f"{path.name}: items shaped {x.shape[1:]}, but the run's items are shaped {item_shape}")
    if np.isinf(x).any():
        where = tuple(int(i) for i in np.argwhere(np.isinf(x))[0])
        raise DataError(f"{path.name}: value {where} is infinite; mark unknown values with NaN")
    return x


def _array(path: Path) -> np.ndarray:
    loaded = np.load(path, allow_pickle=False) if path.suffix.lower() == ".npz" else None
    key = None
    if loaded is not None:
        with loaded:
            key = "x" if "x" in loaded.files else None
    raw = read_array_file(path, key)  # never unpickles; names the file and key in its errors
    return np.asarray(raw.x, dtype=np.float32)


def _csv(path: Path, columns: list[str] | None) -> np.ndarray:
    rows = [r for r in csv.reader(path.read_text(encoding="utf-8-sig").splitlines()) if r and any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"{path.name}: the CSV file is empty")
    if not any(_is_number(c) for c in rows[0]) and not all(c.strip().lower() in MISSING for c in rows[0]):
        header, rows = [c.strip() for c in rows[0]], rows[1:]
        if columns is not None and header != columns:
            raise DataError(f"{path.name}: columns {header}, but the run was trained on {columns}; give the same "
                            "columns in the same order")
    width = len(columns) if columns is not None else len(rows[0])
    out = np.empty((len(rows), width), dtype=np.float32)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise DataError(f"{path.name}: data row {i + 1} has {len(row)} fields; the run has {width} columns")
        for j, cell in enumerate(row):
            text = cell.strip()
            if text.lower() in MISSING:
                out[i, j] = np.nan
            elif _is_number(text):
                out[i, j] = float(text)
            else:
                raise DataError(f"{path.name}: data row {i + 1}, column {j + 1} holds {text!r}: give a number, or "
                                "leave the cell empty where the value is unknown")
    return out


def _table_csv(path: Path, table: Table) -> np.ndarray:
    """Rows of the run's table columns (a header row of their names optional; the separator sniffed), each cell as
    its column reads it, empty (or NA) where unknown: the run's rows of numbers, NaN where unknown."""
    text = path.read_text(encoding="utf-8-sig")
    numbered = [(i + 1, r) for i, r in enumerate(csv.reader(text.splitlines(), delimiter=_delimiter(text)))
                if r and any(c.strip() for c in r)]
    if not numbered:
        raise DataError(f"{path.name}: the CSV file is empty")
    names = table.names
    first = [c.strip() for c in numbered[0][1]]
    if first == names:
        numbered = numbered[1:]
    elif set(first) & set(names):
        raise DataError(f"{path.name}: columns {first}, but the run was trained on {names}; give the same columns in "
                        "the same order")
    for line, row in numbered:
        if len(row) != len(names):
            raise DataError(f"{path.name}: line {line} has {len(row)} fields; the run has {len(names)} columns "
                            f"({', '.join(names)})")
    lines = [line for line, _ in numbered]
    cells = [[row[j].strip() for _, row in numbered] for j in range(len(names))]
    return table.encode(cells, path.name, lines).astype(np.float32)


def _parquet(path: Path, table: Table | None, columns: list[str] | None) -> np.ndarray:
    """A parquet file of the run's columns (in its order; missing values where unknown): the run's rows of numbers,
    NaN where unknown — each value read as a CSV cell would be (sources.parquet_cells)."""
    names, cells = parquet_cells(path)
    expected = table.names if table is not None else columns
    if expected is not None and names != expected:
        raise DataError(f"{path.name}: columns {names}, but the run was trained on {expected}; give the same columns "
                        "in the same order")
    if table is None:  # a run on an array: every column a number, read and checked as a table's numeric column
        table = Table(tuple(Column(name, "numeric") for name in names))
    return table.encode(cells, path.name).astype(np.float32)


def _image(path: Path, mask_path: Path | None, item_shape: tuple[int, ...]) -> np.ndarray:
    if len(item_shape) != 3:
        raise DataError(f"{path.name} is an image, but the run's items are vectors shaped {item_shape}")
    c, h, w = item_shape
    try:
        with Image.open(path) as im:
            img = np.asarray(im.convert("L" if c == 1 else "RGB"), dtype=np.float32)
        m = np.zeros(img.shape[:2], np.float32)
        if mask_path is not None:
            with Image.open(mask_path) as im:
                m = np.asarray(im.convert("L"), dtype=np.float32)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path.name} (or its mask) as an image ({e})") from None
    if img.shape[:2] != (h, w) or m.shape != (h, w):
        raise DataError(f"{path.name} is {img.shape[1]}×{img.shape[0]} (its mask {m.shape[1]}×{m.shape[0]}); the "
                        f"run's images are {w}×{h}: resize to that size")
    x = img[None] if c == 1 else img.transpose(2, 0, 1)
    return np.where(m[None] > 127, np.nan, x).astype(np.float32)
