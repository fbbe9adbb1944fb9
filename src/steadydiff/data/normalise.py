"""The fitted, saved, invertible map between the user's units and the network's.

Fit it on the training split only (held-out items must not leak into it), save `to_dict()` with the run,
and invert it when sampling so samples come back in the user's units.

- Images: one affine map of the data set's range [lo, hi] onto [-1, 1] (a single pair for all pixels and
  channels, so colours keep their relation); `inverse` clips to [lo, hi].
- Vectors: per-feature standardisation (x − mean) / std. A constant feature (std ≤ 1e-12 · (1 + |mean|))
  gets std 1, so it maps to 0 and back to its value exactly.
- Series (N, C, L): per-channel standardisation, the mean and std of each channel over all items and time
  steps — never per time step, which would erase the trends and levels a series is made of.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeVar

import numpy as np
import torch

from ..errors import DataError

Kind = Literal["vector", "image", "series"]
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
    ) -> None:
        if kind not in ("vector", "image", "series"):
            raise DataError(f"normaliser kind must be 'vector', 'image' or 'series', got {kind!r}")
        self.kind: Kind = kind
        self.lo, self.hi = float(lo), float(hi)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self.notes = list(notes)
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
            self._shift = self.mean
            self._scale = 1.0 / self.std
            if kind == "series":  # per channel, broadcast over the time steps
                self._shift, self._scale = self._shift[:, None], self._scale[:, None]

    @classmethod
    def fit(
        cls, x: np.ndarray | torch.Tensor, kind: Kind, columns: Sequence[str] | None = None
    ) -> Normaliser:
        """Fit on training items `x` ((N, D) vectors or (N, C, H, W) images); `columns` names features."""
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
        axes = 0 if kind == "vector" else (0, 2)
        mean, std = np.nanmean(a, axis=axes), np.nanstd(a, axis=axes)  # over the observed entries (data.missing)
        constant = std <= 1e-12 * (1 + np.abs(mean))
        notes = []
        if constant.any():
            what = "feature" if kind == "vector" else "channel"
            names = [columns[j] if columns is not None else f"{what} {j}" for j in np.flatnonzero(constant)]
            notes.append(f"{len(names)} constant feature(s) ({', '.join(names)}): std set to 1, so they "
                         "stay at their single value")
            std = np.where(constant, 1.0, std)
        return cls(kind, mean=mean, std=std, notes=notes)

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
                return (x - shift) * scale
            y = x / scale + shift
            return y.clamp(self.lo, self.hi) if self.kind == "image" else y
        a = np.asarray(x)
        dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.dtype(np.float32)
        shift, scale = self._shift.astype(dtype), self._scale.astype(dtype)
        a = a.astype(dtype, copy=False)
        if not inverse:
            return (a - shift) * scale
        y = a / scale + shift
        return np.clip(y, dtype.type(self.lo), dtype.type(self.hi)) if self.kind == "image" else y

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
        return {"kind": self.kind, "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std],
                "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normaliser:
        kind = d.get("kind")
        if kind == "image":
            return cls("image", lo=d["lo"], hi=d["hi"], notes=d.get("notes", ()))
        if kind in ("vector", "series"):
            return cls(kind, mean=d["mean"], std=d["std"], notes=d.get("notes", ()))
        raise DataError(f"saved normaliser has unknown kind {kind!r}; expected 'vector' or 'image' (is the "
                        "run directory from another program or version?)")

    def __repr__(self) -> str:
        if self.kind == "image":
            return f"Normaliser(image, range [{self.lo:g}, {self.hi:g}] → [-1, 1])"
        what = "features" if self.kind == "vector" else "channels"
        return f"Normaliser({self.kind}, {self.mean.size} {what} standardised)"


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
