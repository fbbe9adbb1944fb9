"""The data layer: read a source, validate it, split it once, and describe it to the user.

`load_data(cfg, data)` returns a `Dataset` in the user's units (float32); the training loop fits a
`Normaliser` on `Dataset.train` and augments training batches with `hflip`. The held-out split depends on
`cfg.split_seed` alone, never on the training seed, so metrics on it stay comparable across runs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..errors import DataError
from .augment import hflip
from .cond import CondSpec, condition_from_array
from .config import DataConfig
from .normalise import MAX_LEVELS, Normaliser
from .sources import BUILTINS, Raw, from_array, image_files, luma, read_source
from .stream import STREAM_ABOVE_BYTES, LazyItems, RowFile, check_finite_streamed, distinct_values, is_lazy, value_range
from .stream import fingerprint as items_fingerprint
from .table import Table
from .text import embed_texts
from .validate import check_finite, check_min_items, check_missing

__all__ = [
    "BUILTINS",
    "DataConfig",
    "Dataset",
    "Normaliser",
    "check_finite",
    "check_min_items",
    "describe",
    "fit_normaliser",
    "hflip",
    "image_levels",
    "load_data",
    "split_indices",
]


@dataclass
class Dataset:
    """One data set, split once into training and held-out items, in the user's units."""

    name: str  # e.g. "digits" or the path
    kind: Literal["vector", "image", "series"]
    # float32, raw user units, (N, D) or (N, C, H, W); streamed data (data.stream): rows read on demand
    train: np.ndarray | LazyItems
    holdout: np.ndarray  # float32, same layout, may have 0 items; always in memory (give data.holdout as a count)
    train_labels: np.ndarray | None = None  # int64 class labels where the source has them
    holdout_labels: np.ndarray | None = None
    class_names: list[str] | None = None  # where the labels are classes a user can ask for (data/cond.py)
    train_vectors: np.ndarray | None = None  # float32 (N, K) condition vectors where the source has them
    holdout_vectors: np.ndarray | None = None
    train_captions: list[str] | None = None  # one caption per item where the source has them
    holdout_captions: list[str] | None = None
    text_encoder: str | None = None  # data.text_encoder: the captions' embeddings are the vectors above
    columns: list[str] | None = None  # feature names for tables
    table: Table | None = None  # a CSV or parquet table's column types; train and holdout hold its encoded rows
    modes: np.ndarray | None = None  # known mode centres (raw units) for toy mixtures
    mode_std: float | None = None
    mode_weights: np.ndarray | None = None  # the mixture's weights where they are not equal (toy:grid25-imbalanced)
    notes: list[str] = field(default_factory=list)  # plain-language notes: conversions, resizes, ...
    skipped: list[str] = field(default_factory=list)  # source files left out (data.bad_files=skip), "name: why"

    @property
    def missing_share(self) -> float:
        """The share of the training entries that are missing (NaN; data.missing=learn)."""
        if is_lazy(self.train):
            return 0.0  # streamed data is refused with missing values (stream.check_finite_streamed)
        return float(np.isnan(self.train).mean()) if np.issubdtype(self.train.dtype, np.floating) else 0.0

    def missing_by_column(self) -> dict[str, float] | None:
        """Each column's (vectors) or channel's (series) share of missing training entries; None if none is."""
        if not self.missing_share:
            return None
        share = np.isnan(self.train).mean(axis=0 if self.kind == "vector" else (0, 2))
        names = self.columns or [f"{'column' if self.kind == 'vector' else 'channel'} {j + 1}"
                                 for j in range(len(share))]
        return {str(n): round(float(v), 6) for n, v in zip(names, share, strict=True)}

    def complete(self) -> tuple[Dataset, str | None]:
        """This data set with only its complete items (no missing value), and a note saying how many were left
        out (None when every item is complete): what distances between sets of items are computed on."""
        def whole(x: np.ndarray) -> np.ndarray:
            if not len(x) or not np.issubdtype(x.dtype, np.floating):
                return np.ones(len(x), bool)
            return ~np.isnan(x.reshape(len(x), -1)).any(1)

        if is_lazy(self.train):
            return self, None  # complete by construction
        keep_t, keep_h = whole(self.train), whole(self.holdout)
        if keep_t.all() and keep_h.all():
            return self, None

        def pick(v: Any, keep: np.ndarray) -> Any:
            if v is None:
                return None
            return [c for c, k in zip(v, keep, strict=True) if k] if isinstance(v, list) else v[keep]

        done = dataclasses.replace(
            self, train=self.train[keep_t], holdout=self.holdout[keep_h],
            train_labels=pick(self.train_labels, keep_t), holdout_labels=pick(self.holdout_labels, keep_h),
            train_vectors=pick(self.train_vectors, keep_t), holdout_vectors=pick(self.holdout_vectors, keep_h),
            train_captions=pick(self.train_captions, keep_t), holdout_captions=pick(self.holdout_captions, keep_h))
        return done, (f"scored on the complete items only: {int(keep_t.sum()):,} of {len(keep_t):,} training and "
                      f"{int(keep_h.sum()):,} of {len(keep_h):,} held-out items have no missing value")

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.train.shape[1:])

    def condition(self, conditional: str) -> CondSpec | None:
        """The run's condition for train.conditional = auto | on | off: auto conditions on the labels (with class
        names) or vectors the data carries; on refuses data that carries none."""
        if conditional == "off":
            return None
        if self.train_captions is not None and self.text_encoder:
            return dataclasses.replace(CondSpec.for_vectors(self.train_vectors), encoder=self.text_encoder)
        if self.train_captions is not None:
            return CondSpec.for_captions(self.train_captions)
        if self.class_names is not None and self.train_labels is not None:
            return CondSpec.for_labels(self.train_labels, self.class_names)
        if self.train_vectors is not None:
            return CondSpec.for_vectors(self.train_vectors)
        if conditional == "on":
            raise DataError(f"train.conditional=on, but {self.name} carries no conditions. Give classes as image "
                            "sub-folders (one per class), an .npz with 'x' and 'y', a CSV with data.label_column, or "
                            "a torch Dataset returning (x, y); or set train.conditional=auto")
        return None

    def conditions(self, split: str) -> np.ndarray | None:
        """The training or held-out items' conditions: captions, label ids (N,) or vectors (N, K) in user units."""
        if self.train_captions is not None and not self.text_encoder:
            captions = self.train_captions if split == "train" else self.holdout_captions
            return np.asarray(captions, dtype=object)
        if self.class_names is not None:
            return self.train_labels if split == "train" else self.holdout_labels
        return self.train_vectors if split == "train" else self.holdout_vectors

    @functools.cached_property
    def fingerprint(self) -> str:
        """16 hex digits of the SHA-256 of the training items' float32 bytes (streamed: the same digest, block
        by block): written to dataset.json, so a resumed run, `eval` and `report` can tell the data they found
        is the data the run was trained on."""
        return items_fingerprint(self.train)

    @property
    def streamed(self) -> bool:
        return is_lazy(self.train)


def split_indices(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices of n items: a shuffle by `seed`, each part kept in the source's order.

    `holdout` < 1 is a fraction (round(holdout · n) items), ≥ 1 a count; at least one item must train.
    """
    k = math.floor(holdout * n + 0.5) if holdout < 1 else int(holdout)
    if k >= n:
        raise DataError(f"data.holdout={holdout:g} would hold out {k:,} of {n:,} items, leaving none "
                        f"to train on; use a fraction below 1 (e.g. 0.1) or a count below {n:,}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


def load_data(cfg: DataConfig, data: Any = None) -> Dataset:
    """Read, validate and split a data set.

    `data`, when given, overrides `cfg.source`: a built-in name or path (str / os.PathLike), a numpy
    array or torch tensor (shape rules as for .npy files), or a torch.utils.data.Dataset whose items
    are arrays/tensors or tuples (item, label, ...) with integer labels.
    """
    cfg.check()
    if data is None or isinstance(data, str | os.PathLike):
        name = cfg.source if data is None else os.fspath(data)
        cfg = dataclasses.replace(cfg, source=name)
        raw = read_streamed(cfg) if should_stream(cfg) else read_source(cfg)
    elif isinstance(data, np.ndarray):
        name, raw = "numpy array", from_array(data, "the numpy array", cfg.kind)
    elif isinstance(data, torch.Tensor):
        name, raw = "torch tensor", from_array(data.detach().cpu().numpy(), "the torch tensor", cfg.kind)
    elif isinstance(data, torch.utils.data.Dataset):
        name = f"{type(data).__name__} (torch Dataset)"
        raw = _from_torch_dataset(data, name)
    else:
        raise DataError(f"cannot train on data of type {type(data).__name__}; give a built-in name, a path, "
                        "a numpy array, a torch tensor or a torch.utils.data.Dataset")
    if cfg.kind != "auto" and raw.kind != cfg.kind and not (cfg.window and raw.kind == "vector"):
        raise DataError(f"data.kind={cfg.kind} does not fit {name}, which holds {raw.kind} data; leave data.kind at "
                        "auto (or give an array that can be read so)")
    if isinstance(raw.x, RowFile):
        return _streamed_dataset(cfg, name, raw)
    if raw.kind == "image":
        _apply_channels(raw, cfg.channels, name)

    # Validation runs on every item, before the split.
    learn_missing = cfg.missing == "learn" and raw.kind in ("vector", "series")
    check_finite(raw.x, name, lines=raw.lines, columns=raw.columns, allow_nan=learn_missing)
    if learn_missing and not cfg.window:  # one long series: its windows are checked once cut (_windows)
        check_missing(raw.x, name, lines=raw.lines, columns=raw.columns)
    check_min_items(raw.x, name)
    x = _as_float32(raw.x, name)

    if cfg.text_encoder is not None:
        if raw.captions is None:
            raise DataError(f"data.text_encoder={cfg.text_encoder!r} embeds captions, and {name} has none (put "
                            "captions.csv or captions.jsonl beside the images, or return (x, caption) from a Dataset)")
        raw.vectors = embed_texts(cfg.text_encoder, raw.captions)
        raw.notes.append(f"{name}: captions embedded by {cfg.text_encoder} ({raw.vectors.shape[1]} values each)")
    if cfg.label_column is not None and raw.lines is None:  # only CSV files have lines
        raise DataError(f"data.label_column={cfg.label_column!r} applies to CSV files only; {name} is not one "
                        "(image sub-folders, an .npz 'y' or a Dataset's (x, y) give conditions there)")
    if cfg.window:
        return _windows(cfg, name, raw, x)
    train_idx, hold_idx = split_indices(len(x), cfg.holdout, cfg.split_seed)
    labels, vectors = raw.labels, raw.vectors
    ds = Dataset(
        name=name,
        kind=raw.kind,
        train=np.ascontiguousarray(x[train_idx]),
        holdout=np.ascontiguousarray(x[hold_idx]),
        train_labels=None if labels is None else labels[train_idx],
        holdout_labels=None if labels is None else labels[hold_idx],
        class_names=raw.class_names,
        train_vectors=None if vectors is None else vectors[train_idx],
        holdout_vectors=None if vectors is None else vectors[hold_idx],
        train_captions=None if raw.captions is None else [raw.captions[i] for i in train_idx],
        holdout_captions=None if raw.captions is None else [raw.captions[i] for i in hold_idx],
        text_encoder=cfg.text_encoder,
        columns=raw.columns,
        table=raw.table,
        modes=raw.modes,
        mode_std=raw.mode_std,
        mode_weights=raw.mode_weights,
        notes=list(raw.notes),
        skipped=list(raw.skipped),
    )
    if ds.kind in ("vector", "series"):
        ds.notes.extend(Normaliser.fit(ds.train, ds.kind, ds.columns, ds.table).notes)
    return ds


# --------------------------------------------------------------------------------------------------
# Streamed data (data.stream): items stay on disk; see data/stream.py and data/cache.py.

FIT_SAMPLE = 100_000  # a streamed set of vectors or series fits its normaliser on this many items at most


def should_stream(cfg: DataConfig) -> bool:
    """Whether `cfg.source` is read row by row from disk: data.stream=on for an image folder or a .npy file,
    auto for one whose items would take more than STREAM_ABOVE_BYTES as float32 (see DataConfig.stream)."""
    if cfg.stream == "off":
        return False
    if cfg.window:
        if cfg.stream == "on":
            raise DataError("data.window cuts one long series into windows in memory; it cannot be streamed: set "
                            "data.stream=auto (or off)")
        return False
    path = Path(cfg.source).expanduser()
    streamable = cfg.source not in BUILTINS and (path.is_dir() or (path.is_file() and path.suffix.lower() == ".npy"))
    if not streamable:
        if cfg.stream == "on":
            raise DataError(f"data.stream=on reads image folders and .npy files row by row; {cfg.source} is neither "
                            "(.npz, CSV and built-in sets are read into memory): convert it to a .npy file with "
                            "np.save, or set data.stream=auto")
        return False
    if cfg.stream == "on":
        return True
    if path.is_dir():  # as float32, RGB at data.image_size (the widest it can be read)
        return len(image_files(path)[0]) * 3 * cfg.image_size ** 2 * 4 > STREAM_ABOVE_BYTES
    try:
        rows = RowFile.npy(path)
    except DataError:  # the in-memory reader says what is wrong with the file
        return False
    return len(rows) * rows.row_bytes // rows.dtype.itemsize * 4 > STREAM_ABOVE_BYTES


def read_streamed(cfg: DataConfig) -> Raw:
    """An image folder through its cache, or a .npy file by its header: a `Raw` whose x is a `RowFile`."""
    path = Path(cfg.source).expanduser()
    if path.is_dir():
        from .cache import read_folder_cached  # PIL and the cache only where a folder is streamed

        return read_folder_cached(path, cfg.image_size, cfg.channels, cfg.bad_files, cfg.cache_dir)
    rows = RowFile.npy(path)
    if len(rows.shape) < 1:
        raise DataError(f"{path.name}: holds a single value (shape ()); save (N, ...) items")
    # The shape is read as `from_array` reads it (its checks and notes), on two stand-in items whose values are
    # their positions: a reading that only reshapes keeps them in order, and rows can then be read as they lie.
    from_array(np.zeros((2, *rows.shape[1:]), dtype=rows.dtype), path.name, cfg.kind)
    positions = np.arange(2 * int(np.prod(rows.shape[1:], dtype=np.int64)), dtype=np.float64)
    probe = from_array(positions.reshape(2, *rows.shape[1:]), path.name, cfg.kind)
    if not np.array_equal(np.asarray(probe.x).ravel(), positions):
        raise DataError(f"{path.name}: its items {rows.shape[1:]} are read as {probe.x.shape[1:]} by moving axes (e.g. "
                        "channels-last images), which cannot be done row by row; save them in the read layout "
                        "(np.save(path, np.ascontiguousarray(x.transpose(0, 3, 1, 2)))) or set data.stream=off")
    if cfg.npz_key is not None:
        probe.notes.insert(0, f"data.npz_key={cfg.npz_key!r} ignored: {path.name} is a .npy file, not .npz")
    rows.shape = (len(rows), *probe.x.shape[1:])
    return Raw(x=rows, kind=probe.kind, columns=probe.columns,
               notes=[*probe.notes, f"{path.name}: read row by row from disk ({len(rows):,} items; data.stream)"])


def _streamed_dataset(cfg: DataConfig, name: str, raw: Raw) -> Dataset:
    """The streamed counterpart of the in-memory path of `load_data`: the same checks, split and conditions, the
    training split left on disk, the held-out split read into memory."""
    rows: RowFile = raw.x
    everything = LazyItems(rows)
    check_min_items(everything, name)
    if raw.kind == "image" and cfg.channels != "auto" and \
            rows.shape[1] != (1 if cfg.channels == "grey" else 3) and not Path(cfg.source).is_dir():
        raise DataError(f"data.channels={cfg.channels} would convert {name}'s {rows.shape[1]}-channel images, which a "
                        "streamed .npy cannot: save the converted array, or set data.stream=off")
    if np.issubdtype(rows.dtype, np.inexact):
        check_finite_streamed(everything, name)
    if cfg.text_encoder is not None:
        if raw.captions is None:
            raise DataError(f"data.text_encoder={cfg.text_encoder!r} embeds captions, and {name} has none (put "
                            "captions.csv or captions.jsonl beside the images)")
        raw.vectors = embed_texts(cfg.text_encoder, raw.captions)
        raw.notes.append(f"{name}: captions embedded by {cfg.text_encoder} ({raw.vectors.shape[1]} values each)")
    if cfg.label_column is not None:
        raise DataError(f"data.label_column={cfg.label_column!r} applies to CSV files only; {name} is not one "
                        "(image sub-folders give conditions there)")
    train_idx, hold_idx = split_indices(len(rows), cfg.holdout, cfg.split_seed)
    labels, vectors, captions = raw.labels, raw.vectors, raw.captions
    ds = Dataset(
        name=name, kind=raw.kind, train=everything.subset(train_idx),
        holdout=np.ascontiguousarray(everything.subset(hold_idx)[:]),
        train_labels=None if labels is None else labels[train_idx],
        holdout_labels=None if labels is None else labels[hold_idx],
        class_names=raw.class_names,
        train_vectors=None if vectors is None else vectors[train_idx],
        holdout_vectors=None if vectors is None else vectors[hold_idx],
        train_captions=None if captions is None else [captions[i] for i in train_idx],
        holdout_captions=None if captions is None else [captions[i] for i in hold_idx],
        text_encoder=cfg.text_encoder, columns=raw.columns, notes=list(raw.notes), skipped=list(raw.skipped))
    if ds.kind in ("vector", "series"):
        ds.notes.extend(fit_normaliser(ds.train, ds.kind, ds.columns).notes)
    return ds


def fit_normaliser(train: np.ndarray | LazyItems, kind: str, columns: list[str] | None = None,
                   table: Table | None = None) -> Normaliser:
    """`Normaliser.fit` on the training split; streamed, in one pass over it (images: the value range, the same
    as in memory) or on a sample of FIT_SAMPLE items (vectors, series; exact below that size), which it notes."""
    if not is_lazy(train):
        return Normaliser.fit(train, kind, columns, table)
    if kind == "image":
        lo, hi = value_range(train)
        return Normaliser("image", lo=lo, hi=hi)
    _, sample = train.sample(FIT_SAMPLE, seed=0)
    norm = Normaliser.fit(sample, kind, columns, table)
    if len(sample) < len(train):
        norm.notes.append(f"normaliser fitted on {len(sample):,} of the {len(train):,} training items, drawn at random "
                          "(data.stream)")
    return norm


def image_levels(train: np.ndarray | LazyItems) -> np.ndarray | None:
    """What `Normaliser.image_step` reads the value levels from: the items, or (streamed) their distinct values
    gathered block by block (None: more than MAX_LEVELS, so not on a grid of levels)."""
    return distinct_values(train, MAX_LEVELS) if is_lazy(train) else train


def _windows(cfg: DataConfig, name: str, raw: Raw, x: np.ndarray) -> Dataset:
    """One long series x (T steps, C channels) cut into windows (N, C, window), split by time: training windows
    lie in the first T − k steps, held-out ones in the last k (k from data.holdout), so none of them overlaps
    a training window and the held-out part is the series' future."""
    if raw.kind == "series" and x.ndim == 3 and x.shape[1] == 1:  # data.kind=series read (T, C) as T one-channel items
        x = x[:, 0, :]
        raw.notes = [n for n in raw.notes if "series of one channel ×" not in n]  # that reading is undone
    if raw.kind not in ("vector", "series") or x.ndim != 2:
        raise DataError(f"data.window={cfg.window} cuts one long series (rows or the first axis are time steps, "
                        f"columns channels); {name} holds {raw.kind} items shaped {x.shape[1:]}: leave data.window "
                        "at 0 for data that is already cut into series")
    if raw.labels is not None or raw.vectors is not None or raw.captions is not None:
        raise DataError(f"{name}: data.window cuts one series into windows, which then have no class or condition; "
                        "drop data.label_column")
    steps, channels = x.shape
    w, stride = cfg.window, cfg.stride or 1
    if w > steps:
        raise DataError(f"{name} holds a series of {steps:,} steps, shorter than data.window={w}; use a shorter "
                        "window")
    k = math.floor(cfg.holdout * steps + 0.5) if cfg.holdout < 1 else int(cfg.holdout)
    split = steps - k
    if split < w:
        raise DataError(f"data.holdout={cfg.holdout:g} keeps the last {k:,} of {steps:,} steps for held-out windows, "
                        f"leaving {split:,} for training, fewer than one window of {w}; lower data.holdout or "
                        "data.window")

    short_tail = 0 < k < w  # a tail shorter than one window holds no window out: it is given back to training
    if short_tail:
        asked, k, split = k, 0, steps

    def cut(start: int, end: int) -> np.ndarray:
        starts = np.arange(start, end - w + 1, stride)
        return np.stack([x[s:s + w].T for s in starts]) if len(starts) else np.zeros((0, channels, w), np.float32)

    train, held = cut(0, split), cut(split, steps)
    if np.isnan(x).any():
        check_missing(np.concatenate([train, held]), f"{name} cut into windows of {w} steps")
    notes = list(raw.notes) + [
        f"{name}: one series of {steps:,} steps × {channels} channel(s) cut into windows of {w} steps (stride "
        f"{stride}): {len(train):,} for training from steps 0–{split - 1:,}, {len(held):,} held out from the last "
        f"{k:,} steps (split by time: no held-out window overlaps a training one)"]
    if short_tail:  # rather than hide the series' latest steps from training for nothing
        notes.append(f"data.holdout={cfg.holdout:g} would hold out the last {asked} steps, fewer than one window of "
                     f"{w}: no window could be held out, so those steps train too and nothing is held out; raise "
                     f"data.holdout to at least {w / steps:.2g} for held-out windows")
    ds = Dataset(name=name, kind="series", train=np.ascontiguousarray(train, dtype=np.float32),
                 holdout=np.ascontiguousarray(held, dtype=np.float32), columns=raw.columns, notes=notes,
                 skipped=list(raw.skipped))
    ds.notes.extend(Normaliser.fit(ds.train, "series", ds.columns).notes)
    return ds


def describe(ds: Dataset) -> str:
    """One line for the user, e.g. "digits: 1,500 train + 297 held-out images 1×8×8, values 0–16"."""
    ranges = [value_range(x) for x in (ds.train, ds.holdout) if len(x)]
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    values = f"{lo:.4g}–{hi:.4g}" if lo >= 0 else f"{lo:.4g} to {hi:.4g}"
    missing = ds.missing_share
    if missing:
        values += f", {100 * missing:.3g}% missing"
    if ds.kind == "image":
        what = "images " + "×".join(str(s) for s in ds.item_shape)
    elif ds.kind == "series":
        c, length = ds.item_shape
        what = f"series of {c} channel{'s' if c != 1 else ''} × {length} steps"
    elif ds.table is not None and ds.table.has_categories:
        what = f"rows of {len(ds.table.columns)} columns ({ds.table.width} values: categories as blocks)"
    else:
        what = f"vectors of {ds.item_shape[0]} feature{'s' if ds.item_shape[0] != 1 else ''}"
    return f"{ds.name}: {len(ds.train):,} train + {len(ds.holdout):,} held-out {what}, values {values}"


# --------------------------------------------------------------------------------------------------
# Helpers.


def _as_float32(x: np.ndarray, where: str) -> np.ndarray:
    with np.errstate(over="ignore"):  # overflow is reported below, with the item
        y = np.asarray(x, dtype=np.float32)
    overflow = np.isinf(y) & np.isfinite(x) if np.issubdtype(x.dtype, np.floating) and x.dtype.itemsize > 4 else None
    if overflow is not None and overflow.any():
        item = int(np.argwhere(overflow)[0][0])
        raise DataError(f"{where}: values beyond the float32 range (±3.4e38), the first at item {item}; "
                        "rescale the data (e.g. divide by its largest value)")
    return y


def _apply_channels(raw: Raw, channels: str, where: str) -> None:
    """Make (N, C, H, W) images grey or RGB as data.channels asks; "auto" keeps what the source has."""
    c = raw.x.shape[1]
    if channels == "grey" and c == 3:
        raw.x = luma(raw.x)
        raw.notes.append(f"{where}: converted RGB images to grey (data.channels=grey, ITU-R BT.601 weights)")
    elif channels == "rgb" and c == 1:
        raw.x = np.repeat(raw.x, 3, axis=1)
        raw.notes.append(f"{where}: repeated grey images over 3 channels (data.channels=rgb)")
    elif channels not in ("auto", "grey", "rgb"):
        raise DataError(f"data.channels must be 'auto', 'grey' or 'rgb', got {channels!r}")


def _int_label(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_floating_point() and v.dtype != torch.bool:
        return int(v.item())
    return None


def _from_torch_dataset(ds: torch.utils.data.Dataset, where: str) -> Raw:
    """Stack the items of a map-style or iterable torch Dataset; labels from integer second elements."""
    if hasattr(ds, "__len__") and hasattr(ds, "__getitem__"):
        items = (ds[i] for i in range(len(ds)))
    else:
        items = iter(ds)
    arrays: list[np.ndarray] = []
    labels: list[Any] = []
    for i, item in enumerate(items):
        label = None
        if isinstance(item, tuple | list):
            if not item:
                raise DataError(f"{where}: item {i} is an empty {type(item).__name__}; items must be arrays "
                                "or tuples (item, label)")
            if len(item) > 1:
                label = item[1] if isinstance(item[1], str) else _int_label(item[1])
                if label is None:
                    label = _float_condition(item[1], f"{where}: item {i}")
            item = item[0]
        try:
            a = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else np.asarray(item)
        except (TypeError, ValueError) as e:
            raise DataError(f"{where}: item {i} ({type(item).__name__}) cannot be read as an array ({e})") \
                from None
        if arrays and a.shape != arrays[0].shape:
            raise DataError(f"{where}: item {i} has shape {a.shape} but item 0 has {arrays[0].shape}; all "
                            "items must have one shape (resize or pad them, e.g. with a transform)")
        arrays.append(a)
        labels.append(label)
    if not arrays:
        raise DataError(f"{where}: the dataset is empty")
    raw = from_array(np.stack(arrays), where)
    if all(isinstance(v, str) for v in labels):
        empty = next((i for i, v in enumerate(labels) if not v.strip()), None)
        if empty is not None:
            raise DataError(f"{where}: item {empty} has an empty caption; give every item one")
        raw.captions = list(labels)
    elif all(isinstance(v, int) for v in labels):
        raw.labels, raw.class_names, _ = condition_from_array(np.asarray(labels, dtype=np.int64), len(arrays), where)
    elif all(isinstance(v, np.ndarray) for v in labels):
        shapes = {v.shape for v in labels}
        if len(shapes) > 1:
            first = next(i for i, v in enumerate(labels) if v.shape != labels[0].shape)
            raise DataError(f"{where}: item {first}'s condition has shape {labels[first].shape} but item 0's has "
                            f"{labels[0].shape}; give every item a condition of one shape")
        _, _, raw.vectors = condition_from_array(np.stack(labels), len(arrays), where)
    elif any(v is not None for v in labels):
        first = next(i for i, v in enumerate(labels) if type(v) is not type(labels[0]))
        raise DataError(f"{where}: item 0's second element is {_kind_of(labels[0])} but item {first}'s is "
                        f"{_kind_of(labels[first])}; every item needs the same kind of condition (an integer class "
                        "or a float vector)")
    return raw


def _kind_of(v: Any) -> str:
    kinds = {int: "an integer class", np.ndarray: "a float vector", str: "a caption"}
    return next((k for t, k in kinds.items() if isinstance(v, t)), "missing")


def _float_condition(v: Any, where: str) -> np.ndarray:
    """A float condition vector (a float tensor/array/number) as a 1-D float64 array."""
    try:
        a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
    except (TypeError, ValueError):
        a = np.asarray(None)
    if a.dtype.kind not in "fiu" or a.ndim > 1:
        raise DataError(f"{where}: its second element ({type(v).__name__}) is neither an integer class nor a float "
                        "vector; return (x, class) or (x, vector) from the Dataset")
    return a.astype(np.float64).reshape(-1)
