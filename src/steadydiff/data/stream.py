"""Items read from disk on demand: data larger than memory (data.stream).

A streamed data set never holds its training items in memory. `RowFile` reads rows of a C-ordered array on
disk (a `.npy` file, or the image cache of `data/cache.py`) with positioned reads (`os.pread`): no mapping, so
the pages read stay in the kernel's page cache and the process's resident memory does not grow with the data
set, and the object pickles as a path (DataLoader workers open their own descriptor). `LazyItems` is a split
of such a file (the training or held-out rows) in the user's units, float32, indexed like an array.

Whole-set statistics (value range, distinct levels, the fingerprint, σ_data) are computed by the streamed
passes below, block by block; what is fitted on a sample instead says so in its note.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

BLOCK_BYTES = 32 << 20  # bytes of float32 per streamed block
STREAM_ABOVE_BYTES = 2 << 30  # data.stream=auto streams a source whose items would take more float32 than this


def object_array_message(where: str) -> str:
    return (f"{where}: the array holds Python objects (dtype=object), which steadydiff never unpickles "
            "(loading pickles can run arbitrary code). Save a numeric array instead, e.g. "
            "np.save(path, np.asarray(x, dtype=np.float32)).")


@dataclass
class RowFile:
    """Rows of an (N, ...) C-ordered array stored at `offset` in `path`; read with `os.pread`, never mapped."""

    path: Path
    offset: int
    dtype: np.dtype
    shape: tuple[int, ...]  # (N, *item_shape)
    _fd: int | None = field(default=None, repr=False, compare=False)
    _pid: int | None = field(default=None, repr=False, compare=False)

    @classmethod
    def npy(cls, path: Path) -> RowFile:
        """The array of a `.npy` file, located by its header (np.lib.format), without reading the values."""
        try:  # np.load's memory map only locates the values (header, dtype, shape); no value is read through it
            m = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            if "pickle" in str(e).lower() or "object" in str(e).lower():
                raise DataError(object_array_message(path.name)) from None
            raise DataError(f"{path.name}: cannot read the .npy header ({e}); is it a valid .npy file?") from None
        except (OSError, EOFError) as e:
            raise DataError(f"{path.name}: cannot read the .npy file ({e}); is it a valid .npy file?") from None
        if not isinstance(m, np.memmap):
            raise DataError(f"{path.name}: not a .npy file that can be read row by row; set data.stream=off")
        shape, dtype, offset = m.shape, m.dtype, int(m.offset)
        fortran = not m.flags.c_contiguous
        del m
        if dtype.hasobject:
            raise DataError(object_array_message(path.name))
        if fortran and len(shape) > 1:
            raise DataError(f"{path.name}: the array is stored in Fortran order, which cannot be read row by row; "
                            "save it C-ordered (np.save(path, np.ascontiguousarray(x))) or set data.stream=off")
        rf = cls(path=Path(path), offset=offset, dtype=np.dtype(dtype), shape=tuple(int(s) for s in shape))
        expected = offset + rf.row_bytes * rf.shape[0] if rf.shape else offset
        if os.path.getsize(path) < expected:
            raise DataError(f"{path.name}: the file is truncated ({os.path.getsize(path):,} bytes, the header "
                            f"announces {expected:,}); save it again")
        return rf

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None, "_pid": None}  # a descriptor is per process

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass

    def read_range(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1 in one read."""
        n = max(stop - start, 0)
        want = n * self.row_bytes
        buf = os.pread(self._descriptor(), want, self.offset + start * self.row_bytes)
        if len(buf) != want:
            raise DataError(f"{self.path}: the file ended early (rows {start:,}–{stop - 1:,}); it was changed or "
                            "truncated while in use; rerun to read it again")
        return np.frombuffer(buf, dtype=self.dtype).reshape(n, *self.shape[1:])

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """The rows `rows` (any order, repeats allowed), read in ascending runs of adjacent rows."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        if not len(rows):
            return out
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        # runs of adjacent (or repeated) rows are read at once
        breaks = np.flatnonzero(np.diff(sorted_rows) > 1) + 1
        for run in np.split(np.arange(len(rows)), breaks):
            lo, hi = int(sorted_rows[run[0]]), int(sorted_rows[run[-1]]) + 1
            out[order[run]] = self.read_range(lo, hi)[sorted_rows[run] - lo]
        return out


class LazyItems:
    """Some rows of a `RowFile` (a split), read on demand as float32 in the user's units; indexed like an array
    (an int, a slice or an index array) and passed whole through `blocks`. `np.asarray` of it reads every row
    into memory: what streams must use `blocks` or index a bounded part."""

    def __init__(self, source: RowFile, rows: np.ndarray | None = None):
        self.source = source
        self.rows = np.arange(len(source), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.source.shape[1:])

    @property
    def ndim(self) -> int:
        return len(self.source.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * 4

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, int | np.integer):
            return self[np.asarray([key])][0]
        if isinstance(key, slice):
            picked = self.rows[key]
        else:
            key = np.asarray(key)
            if key.dtype == np.bool_:
                key = np.flatnonzero(key)
            picked = self.rows[key.astype(np.int64)]
        return self._read(picked)

    def _read(self, picked: np.ndarray) -> np.ndarray:
        if len(picked) and np.all(np.diff(picked) == 1):  # a contiguous stretch: one read
            raw = self.source.read_range(int(picked[0]), int(picked[-1]) + 1)
        else:
            raw = self.source.read_rows(picked)
        return raw.astype(np.float32)

    def subset(self, idx: np.ndarray) -> LazyItems:
        return LazyItems(self.source, self.rows[np.asarray(idx, dtype=np.int64)])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self._read(self.rows)
        return a if dtype is None else a.astype(dtype)

    def blocks(self, block_bytes: int = BLOCK_BYTES) -> Iterator[np.ndarray]:
        """Every item in order, as float32 blocks of about `block_bytes`."""
        per = max(1, block_bytes // max(1, int(np.prod(self.shape[1:], dtype=np.int64)) * 4))
        for i in range(0, len(self.rows), per):
            yield self._read(self.rows[i:i + per])

    def sample(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Up to n items drawn without replacement by `seed`, in the split's order: (indices, items)."""
        if n >= len(self):
            idx = np.arange(len(self))
        else:
            idx = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        return idx, self[idx]

    def __repr__(self) -> str:
        return f"LazyItems({self.source.path.name}, {len(self):,} items of {self.shape[1:]})"


# --------------------------------------------------------------------------------------------------
# Streamed statistics: each takes an in-memory array or LazyItems and gives the same answer for both.


def is_lazy(x: Any) -> bool:
    return isinstance(x, LazyItems)


def _blocks(x: Any) -> Iterator[np.ndarray]:
    if is_lazy(x):
        yield from x.blocks()
    else:
        yield np.asarray(x)


def value_range(x: Any) -> tuple[float, float]:
    """(nanmin, nanmax) over every value."""
    lo, hi = np.inf, -np.inf
    for b in _blocks(x):
        if b.size and not np.isnan(b).all():
            lo, hi = min(lo, float(np.nanmin(b))), max(hi, float(np.nanmax(b)))
    return lo, hi


def distinct_values(x: Any, cap: int) -> np.ndarray | None:
    """The sorted distinct finite values, or None once there are more than `cap`."""
    levels = np.zeros(0)
    for b in _blocks(x):
        levels = np.union1d(levels, np.unique(np.asarray(b, dtype=np.float64)))
        levels = levels[np.isfinite(levels)]
        if len(levels) > cap:
            return None
    return levels


def fingerprint(x: Any) -> str:
    """16 hex digits of the SHA-256 of the items' float32 bytes in order (the same for a streamed split as for
    the array it would be in memory)."""
    h = hashlib.sha256()
    for b in _blocks(x):
        h.update(np.ascontiguousarray(b, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def check_finite_streamed(items: LazyItems, where: str) -> None:
    """Refuse NaN and ±Inf in a streamed split, naming the first item that holds one."""
    done = 0
    for b in items.blocks():
        bad = ~np.isfinite(b.reshape(len(b), -1)).all(1)
        if bad.any():
            item = done + int(np.argmax(bad))
            raise DataError(f"{where}: item {int(items.rows[item]):,} holds NaN or ±Inf; streamed data "
                            "(data.stream) must be complete and finite: fix the item, or set data.stream=off "
                            "(vectors and series with missing values are read into memory)")
        done += len(b)


def normalised_std(x: Any, forward: Any) -> float:
    """The standard deviation of `forward(items)` over all entries, in two streamed passes (mean, then squared
    deviations) in float64."""
    total = count = 0.0
    for b in _blocks(x):
        y = np.asarray(forward(b), dtype=np.float64)
        total, count = total + float(y.sum()), count + y.size
    mean = total / count
    ss = 0.0
    for b in _blocks(x):
        y = np.asarray(forward(b), dtype=np.float64)
        ss += float(((y - mean) ** 2).sum())
    return float(np.sqrt(ss / count))
