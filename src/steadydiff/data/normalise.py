"""The fitted, saved, invertible map between the user's units and the network's.

Fit it on the training split only (held-out items must not leak into it), save `to_dict()` with the run,
and invert it when sampling so samples come back in the user's units.

- Images: one affine map of the data set's range [lo, hi] onto [-1, 1] (a single pair for all pixels and
  channels, so colours keep their relation); `inverse` clips to [lo, hi].
- Vectors: per-feature standardisation (x − mean) / std. A constant feature (std ≤ 1e-12 · (1 + |mean|))
  gets std 1, so it maps to 0 and back to its value exactly. Each column's kind is read from its training
  values (`column_kinds`): a column that is never negative and reaches down to within one std of 0 is
  standardised as log(x + c), c = 0.1 std, and comes back through exp(·) − c, the sliver below 0 set to 0 — so
  samples stay non-negative by the transform, not by clipping alone; a column of whole numbers comes back
  rounded, and one of at most CODE_LEVELS distinct whole numbers (class codes, counts) also within the range
  its training values span, so no new code appears.
- Tables with boolean and categorical columns (a `Table`, data/table.py): their entries are 0/1 codes in the user's
  units (one per boolean; per categorical column a one-hot block, or the binary digits of the category's index for
  more than table.BITS_ABOVE categories) and map to −1/+1 by a fixed affine map (mean 0.5, std 0.5), not a fitted
  one: the "analog bits" of Chen, Zhang & Hinton (2022), ±1 real numbers diffused as every other entry is. Fitted
  standardisation would put a category of share p at (1 − p)/√(p(1 − p)) ≈ 1/√p, a rare category far outside the
  unit scale σ_data is measured on. `inverse` decodes a boolean by its sign, a one-hot block by its argmax (one 1, the
  rest 0), as score-based models of one-hot tables do (STaSy, Kim et al. 2023), and a bit block by its bits
  thresholded at 0, as Chen et al. do, or, where those spell no category, the category whose code is nearest
  (`table.nearest_code`); TabDDPM (Kotelnikov et al. 2023) diffuses categories multinomially instead, which has no
  place in one σ-space. With one map for a whole block, argmax and nearest code are the same in either units, so
  samples hold valid categories only; a missing category (NaN in its whole block) stays NaN through `forward` and
  `inverse`.
- Series (N, C, L): per-channel standardisation, the mean and std of each channel over all items and time
  steps — never per time step, which would erase the trends and levels a series is made of.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeVar

import numpy as np
import torch

from ..errors import DataError
from .table import Table, nearest_code

Kind = Literal["vector", "image", "series"]
CODE_LEVELS = 20  # whole-number columns with at most this many distinct values are codes: kept in their range
LOG_OFFSET = 0.1  # c of log(x + c), in units of the column's std
CODE_MEAN, CODE_STD = 0.5, 0.5  # the fixed map of boolean and categorical entries: 0/1 → −1/+1 (module docstring)
Array = TypeVar("Array", np.ndarray, torch.Tensor)


class Normaliser:
    """Affine, per-data-set (images) or per-feature (vectors) normalisation; see the module docstring."""

    def __init__(
        self,
        kind: Kind,
        *,
        lo: float = 0.0,
        hi: float = 1.0,
        mean: Sequence[float] = (),
        std: Sequence[float] = (),
        notes: Sequence[str] = (),
        log_offset: Sequence[float | None] = (),
        integer: Sequence[bool] = (),
        code_range: Sequence[Sequence[float] | None] = (),
        table: Table | None = None,
    ) -> None:
        if kind not in ("vector", "image", "series"):
            raise DataError(f"normaliser kind must be 'vector', 'image' or 'series', got {kind!r}")
        self.kind: Kind = kind
        self.lo, self.hi = float(lo), float(hi)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self.notes = list(notes)
        # per column of vectors (empty: none): c of the log transform (None: none), whole numbers, the code range
        self.log_offset = [None if c is None else float(c) for c in log_offset]
        self.integer = [bool(v) for v in integer]
        self.code_range = [None if r is None else (float(r[0]), float(r[1])) for r in code_range]
        self.table = table  # a table's column types (vectors): booleans and categories decoded by `inverse`
        if kind == "image":
            if not self.hi >= self.lo:
                raise DataError(f"image normaliser needs lo ≤ hi, got lo={self.lo}, hi={self.hi}")
            # Affine map centre ± half-range → ±1; a constant data set maps to 0 with unit scale.
            self._shift = np.float64((self.lo + self.hi) / 2)
            self._scale = np.float64(2.0 / (self.hi - self.lo) if self.hi > self.lo else 1.0)
        else:
            if self.mean.ndim != 1 or self.mean.shape != self.std.shape or self.mean.size == 0:
                raise DataError(f"vector normaliser needs mean and std of one equal length, got "
                                f"{self.mean.shape} and {self.std.shape}")
            if not (self.std > 0).all():
                raise DataError("vector normaliser needs every std > 0")
            for name, v in (("log_offset", self.log_offset), ("integer", self.integer),
                            ("code_range", self.code_range)):
                if v and (kind != "vector" or len(v) != self.mean.size):
                    raise DataError(f"{name} needs one entry per feature of a vector normaliser, got {len(v)}")
            if table is not None and (kind != "vector" or table.width != self.mean.size):
                raise DataError(f"a table of {table.width} entries needs a vector normaliser of as many features, got "
                                f"{kind} of {self.mean.size}")
            self._shift = self.mean
            self._scale = 1.0 / self.std
            if kind == "series":  # per channel, broadcast over the time steps
                self._shift, self._scale = self._shift[:, None], self._scale[:, None]

    @classmethod
    def fit(
        cls, x: np.ndarray | torch.Tensor, kind: Kind, columns: Sequence[str] | None = None,
        table: Table | None = None,
    ) -> Normaliser:
        """Fit on training items `x` ((N, D) vectors or (N, C, H, W) images); `columns` names features; `table`
        (vectors read from a table) says which entries are booleans and categories (module docstring)."""
        a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        a = a.astype(np.float64)
        if a.ndim < 2 or a.shape[0] == 0:
            raise DataError(f"cannot fit a normaliser on an array of shape {a.shape}: it needs (N, ...) "
                            "items")
        if kind == "image":
            return cls("image", lo=float(a.min()), hi=float(a.max()))
        if kind not in ("vector", "series"):
            raise DataError(f"normaliser kind must be 'vector', 'image' or 'series', got {kind!r}")
        if a.ndim != (2 if kind == "vector" else 3):
            raise DataError(f"{kind} normaliser needs {'(N, D)' if kind == 'vector' else '(N, C, L)'} items, got "
                            f"shape {a.shape}")
        if table is not None and (kind != "vector" or table.width != a.shape[1]):
            raise DataError(f"a table of {table.width} entries needs (N, {table.width}) vectors, got {kind} items "
                            f"shaped {a.shape[1:]}")
        coded = table.coded() if table is not None else np.zeros(a.shape[1] if kind == "vector" else 0, bool)
        axes = 0 if kind == "vector" else (0, 2)
        kinds: dict[str, Any] = column_kinds(a, skip=coded) if kind == "vector" else {}
        if kinds:
            a = _log_columns(a, kinds["log_offset"], np)
        mean, std = np.nanmean(a, axis=axes), np.nanstd(a, axis=axes)  # over the observed entries (data.missing)
        if coded.any():
            mean, std = np.where(coded, CODE_MEAN, mean), np.where(coded, CODE_STD, std)
        constant = std <= 1e-12 * (1 + np.abs(mean))
        notes = []
        if constant.any():
            what = "feature" if kind == "vector" else "channel"
            names = [columns[j] if columns is not None else f"{what} {j}" for j in np.flatnonzero(constant)]
            notes.append(f"{len(names)} constant feature(s) ({', '.join(names)}): std set to 1, so they "
                         "stay at their single value")
            std = np.where(constant, 1.0, std)
        if kinds:
            name = [columns[j] if columns is not None else f"feature {j}" for j in range(len(mean))]
            logged = [name[j] for j, c in enumerate(kinds["log_offset"]) if c is not None]
            codes = [name[j] for j, r in enumerate(kinds["code_range"]) if r is not None]
            whole = [name[j] for j, v in enumerate(kinds["integer"]) if v and kinds["code_range"][j] is None]
            if logged:
                notes.append(f"never negative, standardised as log(x + c) so samples stay ≥ 0: {_names(logged)}")
            if codes:
                notes.append(f"codes (whole numbers, ≤ {CODE_LEVELS} values): samples rounded and kept within the "
                             f"training range: {_names(codes)}")
            if whole:
                notes.append(f"whole numbers: samples rounded: {_names(whole)}")
        if table is not None and table.has_categories:
            hot = [f"{c.name} ({c.width})" for c, _ in table.categorical() if c.encoding == "one_hot"]
            bits = [f"{c.name} ({len(c.categories)} in {c.width} bits)" for c, _ in table.categorical()
                    if c.encoding == "bits"]
            flags = [c.name for c in table.columns if c.type == "boolean"]
            if hot:
                notes.append(f"categorical, one-hot at ±1 and sampled as the largest entry (argmax): {_names(hot)}")
            if bits:
                notes.append(f"categorical, analog bits at ±1 (Chen et al. 2022) and sampled as the category whose "
                             f"code is nearest: {_names(bits)}")
            if flags:
                notes.append(f"boolean, at ±1 and sampled by sign: {_names(flags)}")
        return cls(kind, mean=mean, std=std, notes=notes, table=table, **kinds)

    @property
    def value_range(self) -> tuple[float, float] | None:
        """(lo, hi) of image data in user units (what `inverse` clips to); None for vectors."""
        return (self.lo, self.hi) if self.kind == "image" else None

    def _apply(self, x: Array, inverse: bool) -> Array:
        if self.kind == "vector" and x.shape[-1] != self.mean.size:
            raise DataError(f"normaliser fitted on {self.mean.size} features got an array of shape "
                            f"{tuple(x.shape)}")
        if self.kind == "series" and (x.ndim < 2 or x.shape[-2] != self.mean.size):
            raise DataError(f"normaliser fitted on series of {self.mean.size} channels got an array of shape "
                            f"{tuple(x.shape)}")
        if isinstance(x, torch.Tensor):
            dtype = x.dtype if x.is_floating_point() else torch.float32
            shift = torch.as_tensor(self._shift, dtype=dtype, device=x.device)
            scale = torch.as_tensor(self._scale, dtype=dtype, device=x.device)
            x = x.to(dtype)
            if not inverse:
                return (_log_columns(x, self.log_offset, torch) - shift) * scale
            y = x / scale + shift
            return y.clamp(self.lo, self.hi) if self.kind == "image" else self._typed(y, torch)
        a = np.asarray(x)
        dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.dtype(np.float32)
        shift, scale = self._shift.astype(dtype), self._scale.astype(dtype)
        a = a.astype(dtype, copy=False)
        if not inverse:
            return (_log_columns(a, self.log_offset, np) - shift) * scale
        y = a / scale + shift
        return np.clip(y, dtype.type(self.lo), dtype.type(self.hi)) if self.kind == "image" else self._typed(y, np)

    def _typed(self, y: Any, xp: Any) -> Any:
        """Standardised-back values of vectors turned into their columns' kinds (see the module docstring)."""
        if not (self.log_offset or self.integer or self.table):
            return y
        cols = []
        for j in range(y.shape[-1]):
            v = y[..., j]
            c = self.log_offset[j] if self.log_offset else None
            if c is not None:
                v = xp.clip(xp.exp(v) - c, 0.0, None) if xp is np else (v.exp() - c).clamp(min=0.0)
            if self.integer and self.integer[j]:
                v = xp.round(v)
                if self.code_range and self.code_range[j] is not None:
                    lo, hi = self.code_range[j]
                    v = xp.clip(v, lo, hi) if xp is np else v.clamp(lo, hi)
            cols.append(v)
        if self.table is not None:
            for j in self.table.bit_entries():
                cols[j] = _as(y[..., j] > 0.5, y, xp)
            for col, (a, b) in self.table.categorical():
                block = y[..., a:b]
                codes = col.codes().astype(y.dtype) if xp is np else \
                    torch.as_tensor(col.codes(), dtype=y.dtype, device=y.device)
                k = block.argmax(-1) if col.encoding == "one_hot" else nearest_code(block, codes)
                entries = xp.where(xp.isnan(block).any(-1)[..., None], xp.nan, codes[k])
                cols[a:b] = [entries[..., j] for j in range(b - a)]
        return xp.stack(cols, -1) if xp is np else torch.stack(cols, -1)

    def forward(self, x: Array) -> Array:
        """User units → network units (images in [-1, 1], vectors standardised)."""
        return self._apply(x, inverse=False)

    def inverse(self, x: Array) -> Array:
        """Network units → user units (images clipped to the fitted range)."""
        return self._apply(x, inverse=True)

    def image_step(self, train: np.ndarray) -> float | None:
        """For images: the spacing of the value levels the training pixels take (`value_step`), in network
        units; None for vectors or for pixels that are not on a grid."""
        if self.kind != "image":
            return None
        step = value_step(train)
        return None if step is None else float(step * self._scale)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe parameters; `from_dict(to_dict())` reproduces them exactly."""
        if self.kind == "image":
            return {"kind": "image", "lo": self.lo, "hi": self.hi, "notes": list(self.notes)}
        out: dict[str, Any] = {"kind": self.kind, "mean": [float(v) for v in self.mean],
                               "std": [float(v) for v in self.std], "notes": list(self.notes)}
        if self.log_offset or self.integer:
            out.update(log_offset=self.log_offset, integer=self.integer,
                       code_range=[None if r is None else list(r) for r in self.code_range])
        if self.table is not None:
            out["table"] = self.table.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normaliser:
        kind = d.get("kind")
        if kind == "image":
            return cls("image", lo=d["lo"], hi=d["hi"], notes=d.get("notes", ()))
        if kind in ("vector", "series"):
            return cls(kind, mean=d["mean"], std=d["std"], notes=d.get("notes", ()), log_offset=d.get("log_offset", ()),
                       integer=d.get("integer", ()), code_range=d.get("code_range", ()),
                       table=Table.from_dict(d["table"]) if d.get("table") else None)
        raise DataError(f"saved normaliser has unknown kind {kind!r}; expected 'vector' or 'image' (is the "
                        "run directory from another program or version?)")

    def __repr__(self) -> str:
        if self.kind == "image":
            return f"Normaliser(image, range [{self.lo:g}, {self.hi:g}] → [-1, 1])"
        what = "features" if self.kind == "vector" else "channels"
        return f"Normaliser({self.kind}, {self.mean.size} {what} standardised)"


def column_kinds(a: np.ndarray, skip: np.ndarray | None = None) -> dict[str, Any]:
    """Each column's kind from its (observed) training values (N, D): {"log_offset": c or None per column,
    "integer": whole numbers?, "code_range": (min, max) of a code column or None}; see the module docstring. The
    columns `skip` marks (a table's boolean and categorical entries) are none of these."""
    log_offset: list[float | None] = []
    integer: list[bool] = []
    code_range: list[tuple[float, float] | None] = []
    for j in range(a.shape[1]):
        if skip is not None and skip[j]:
            log_offset.append(None)
            integer.append(False)
            code_range.append(None)
            continue
        v = a[:, j][~np.isnan(a[:, j])]
        std = float(v.std())
        whole = bool(np.all(v == np.round(v)))
        levels = len(np.unique(v)) if whole else 0
        code = whole and levels <= CODE_LEVELS
        integer.append(whole)
        code_range.append((float(v.min()), float(v.max())) if code else None)
        near_zero = std > 0 and v.min() >= 0 and v.min() < std
        log_offset.append(LOG_OFFSET * std if near_zero and not code else None)
    return {"log_offset": log_offset, "integer": integer, "code_range": code_range}


def _log_columns(x: Any, offsets: Sequence[float | None], xp: Any) -> Any:
    """x (…, D) with log(x + c) in the columns that have an offset c (vectors; the rest unchanged)."""
    if not offsets or all(c is None for c in offsets):
        return x
    # a value below the column's training minimum of 0 (a held-out item, say) is read as 0
    cols = [x[..., j] if c is None else
            xp.log(xp.maximum(x[..., j], 0.0) + c) if xp is np else (x[..., j].clamp(min=0.0) + c).log()
            for j, c in enumerate(offsets)]
    return xp.stack(cols, -1) if xp is np else torch.stack(cols, -1)


def _as(flags: Any, like: Any, xp: Any) -> Any:
    """Boolean `flags` as 0/1 in the dtype of `like` (numpy or torch)."""
    return flags.astype(like.dtype) if xp is np else flags.to(like.dtype)


def _names(names: list[str]) -> str:
    return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")


MAX_LEVELS = 65_536  # more distinct values than 16-bit images hold: treat the data as continuous


def value_step(x: np.ndarray, *, rtol: float = 1e-3) -> float | None:
    """The step q of an evenly spaced grid of levels that every value of `x` lies on (lo + k·q), or None.

    8-bit images give 1 (or 1/255 once scaled to [0, 1]); scikit-learn's digits, 17 levels on 0..16,
    give 1. Data with one value, with more than MAX_LEVELS distinct values, or off any even grid (within
    rtol of a step) give None. Used to size the smallest sampling σ (DiffusionConfig.resolved_sigma_min).
    """
    levels = np.unique(np.asarray(x, dtype=np.float64))
    levels = levels[np.isfinite(levels)]
    if len(levels) < 2 or len(levels) > MAX_LEVELS:
        return None
    step = float(np.diff(levels).min())
    k = (levels - levels[0]) / step
    if step <= 0 or np.abs(k - np.round(k)).max() > rtol:
        return None
    return step
