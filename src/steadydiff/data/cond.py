"""Conditions that come with the data: class labels (with names) and condition vectors, one per item.

A source gives labels with `class_names` (image sub-folders, the built-in digits and tables, an `.npz` `y`, a CSV's
`data.label_column`, a torch Dataset's `(x, y)`) or float `vectors` shaped (N, K). `CondSpec` is what a run records
about its condition (config.toml says whether the run is conditional, dataset.json holds the spec), so `sample` can
check what it is given. The network sees one typed value per batch (nets/cond.py): label ids with −1 for "no
condition", or normalised vectors with a NaN row for "no condition".
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..errors import DataError
from .text import Tokeniser, embed_texts

CondKind = Literal["class", "vector", "text"]
NULL_LABEL = -1  # a dropped (unconditional) class label; a dropped vector is a row of NaN


@dataclass(frozen=True)
class CondSpec:
    """A run's condition: its kind, the class names (index = label id) and shares, or the vectors' size and the
    mean/std that normalise them."""

    kind: CondKind
    classes: tuple[str, ...] = ()
    shares: tuple[float, ...] = ()  # each class's share of the training items
    dim: int = 0  # vector size
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    vocab: tuple[str, ...] = ()  # captions: the tokeniser's words (data/text.py)
    max_len: int = 0
    encoder: str = ""  # vectors that embed captions: the pretrained encoder (data.text_encoder) prompts go through
    notes: list[str] = field(default_factory=list, compare=False)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "classes": list(self.classes), "shares": list(self.shares), "dim": self.dim,
                "mean": list(self.mean), "std": list(self.std), "vocab": list(self.vocab), "max_len": self.max_len,
                "encoder": self.encoder}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CondSpec:
        return cls(kind=d["kind"], classes=tuple(d.get("classes", ())), shares=tuple(d.get("shares", ())),
                   dim=int(d.get("dim", 0)), mean=tuple(d.get("mean", ())), std=tuple(d.get("std", ())),
                   vocab=tuple(d.get("vocab", ())), max_len=int(d.get("max_len", 0)), encoder=d.get("encoder", ""))

    @classmethod
    def for_labels(cls, labels: np.ndarray, names: list[str]) -> CondSpec:
        counts = np.bincount(labels, minlength=len(names)).astype(np.float64)
        return cls(kind="class", classes=tuple(names), shares=tuple(float(c) for c in counts / counts.sum()))

    @classmethod
    def for_vectors(cls, vectors: np.ndarray) -> CondSpec:
        v = np.asarray(vectors, dtype=np.float64)
        std = v.std(0)
        std = np.where(std > 0, std, 1.0)  # a constant entry carries no information; keep it finite
        return cls(kind="vector", dim=v.shape[1], mean=tuple(float(m) for m in v.mean(0)),
                   std=tuple(float(s) for s in std))

    @classmethod
    def for_captions(cls, captions: list[str]) -> CondSpec:
        t = Tokeniser.fit(captions)
        return cls(kind="text", vocab=t.vocab, max_len=t.max_len)

    @property
    def tokeniser(self) -> Tokeniser:
        return Tokeniser(vocab=self.vocab, max_len=self.max_len)

    def describe(self) -> str:
        if self.kind == "text":
            return (f"conditional on captions ({len(self.vocab):,} words, up to {self.max_len} per caption; text "
                    "encoder trained with the run)")
        if self.encoder:
            return f"conditional on captions embedded by {self.encoder} ({self.dim} values)"
        if self.kind == "class":
            names = ", ".join(self.classes[:12]) + (", …" if self.n_classes > 12 else "")
            return f"class-conditional on {self.n_classes} classes ({names})"
        return f"conditional on vectors of {self.dim} value{'s' if self.dim != 1 else ''}"

    def normalise_vectors(self, v: np.ndarray) -> np.ndarray:
        return ((np.asarray(v, np.float64) - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)


def classes_from_values(values: np.ndarray | list[Any], where: str) -> tuple[np.ndarray, list[str]]:
    """Label ids 0..K-1 and class names from integer or text labels: the distinct values sorted (numerically when
    every value is an integer), so the ids do not depend on the order the items come in."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DataError(f"{where}: class labels must be one value per item, got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        uniq = np.unique(arr)
        return np.searchsorted(uniq, arr).astype(np.int64), [str(int(u)) for u in uniq]
    texts = [str(v).strip() for v in arr.tolist()]
    empty = [i for i, t in enumerate(texts) if not t]
    if empty:
        raise DataError(f"{where}: item {empty[0]} has an empty label; give every item a class")
    try:
        as_int = [int(t) for t in texts]
    except ValueError:
        names = sorted(set(texts))
        lookup = {n: i for i, n in enumerate(names)}
        return np.asarray([lookup[t] for t in texts], dtype=np.int64), names
    return classes_from_values(np.asarray(as_int, dtype=np.int64), where)


def condition_from_array(y: np.ndarray, n: int, where: str) -> tuple[np.ndarray | None, list[str] | None,
                                                                      np.ndarray | None]:
    """(labels, class names, vectors) from an array of conditions: integers (N,) are classes, floats (N,) or
    (N, K) are condition vectors. Refuses a length that does not match the items, and NaN or Inf."""
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise DataError(f"{where}: conditions must be numbers (integer classes or float vectors), got dtype "
                        f"{y.dtype}; save class names as integer ids, or use a CSV with data.label_column")
    if len(y) != n:
        raise DataError(f"{where}: {len(y):,} conditions for {n:,} items; give exactly one per item")
    if y.dtype.kind in "iu" and y.ndim == 1:
        labels, names = classes_from_values(y, where)
        return labels, names, None
    if y.ndim not in (1, 2):
        raise DataError(f"{where}: conditions shaped {y.shape}; use (N,) integer classes or (N, K) float vectors")
    v = y.astype(np.float64).reshape(n, -1)
    bad = np.argwhere(~np.isfinite(v))
    if len(bad):
        raise DataError(f"{where}: condition of item {int(bad[0][0])} is {v[tuple(bad[0])]}; every condition must be "
                        "a finite number")
    return None, None, v.astype(np.float32)


COND_STREAM = 0xC0D  # the stream of `draw_conditions`, apart from every other use of a seed


def draw_conditions(spec: CondSpec, n: int, seed: int, train_values: np.ndarray | None = None) -> np.ndarray:
    """n conditions distributed like the training items' (classes at their shares; vectors drawn from the training
    vectors `train_values`), condition i a function of (seed, i) alone, like the sample it conditions."""
    u = np.array([np.random.default_rng([seed, COND_STREAM, i]).random() for i in range(n)])
    if spec.kind == "text":
        if train_values is None or not len(train_values):
            raise DataError("drawing captions needs the training captions (captions.json in the run directory)")
        return np.asarray(train_values, dtype=object)[np.floor(u * len(train_values)).astype(np.int64)]
    if spec.kind == "class":
        cum = np.cumsum(spec.shares)
        return np.minimum(np.searchsorted(cum, u * cum[-1], side="right"), spec.n_classes - 1).astype(np.int64)
    if train_values is None or not len(train_values):
        raise DataError("drawing condition vectors needs the training vectors (conditions.npy in the run directory)")
    return np.asarray(train_values, np.float32)[np.floor(u * len(train_values)).astype(np.int64)]


def blocked_classes(spec: CondSpec, n: int) -> np.ndarray:
    """n class ids in equal consecutive blocks (0, 0, …, 1, 1, …), for sample grids with a stretch per class."""
    return (np.arange(n) * spec.n_classes // n).astype(np.int64)


def parse_conditions(spec: CondSpec | None, cond: Any, n: int) -> np.ndarray:
    """What a user asks for as the conditions of n samples, checked against the run's condition: class ids or
    names (one, or one per sample) for a class-conditional run; a vector (K,) or vectors (n, K) for a vector one.
    Raises DataError naming what was given and what the run expects."""
    if spec is None:
        raise DataError("this run was trained without a condition (unconditional); sample without cond/--class/"
                        "--cond, or train a conditional run (train.conditional=on on data with labels or vectors)")
    if spec.kind == "text":
        prompts = [cond] if isinstance(cond, str) else list(cond) if isinstance(cond, list | tuple | np.ndarray) \
            else [cond]
        if len(prompts) not in (1, n):
            raise DataError(f"{len(prompts)} prompts for {n} samples; give one prompt, or one per sample")
        checked = [spec.tokeniser.check_prompt(t) for t in prompts]
        return np.asarray(checked * n if len(checked) == 1 else checked, dtype=object)
    if spec.kind == "class":
        values = [cond] if isinstance(cond, str | int | np.integer) else list(np.asarray(cond, dtype=object).ravel())
        if len(values) not in (1, n):
            raise DataError(f"{len(values)} class conditions for {n} samples; give one class, or one per sample")
        ids = [_class_id(spec, v) for v in values]
        return np.asarray(ids * n if len(ids) == 1 else ids, dtype=np.int64)
    if spec.encoder and (isinstance(cond, str) or (isinstance(cond, list | tuple) and cond
                                                    and all(isinstance(t, str) for t in cond))):
        prompts = [cond] if isinstance(cond, str) else list(cond)
        if len(prompts) not in (1, n):
            raise DataError(f"{len(prompts)} prompts for {n} samples; give one prompt, or one per sample")
        cond = embed_texts(spec.encoder, prompts * n if len(prompts) == 1 else prompts)
    v = np.asarray(cond)
    if v.dtype.kind not in "fiu":
        raise DataError(f"this run is conditional on vectors of {spec.dim} numbers; got {v.dtype} values")
    v = v.astype(np.float64)
    if v.ndim == 1 and v.shape[0] == spec.dim:
        v = np.broadcast_to(v, (n, spec.dim))
    if v.shape != (n, spec.dim):
        raise DataError(f"condition vectors shaped {v.shape}; this run expects ({spec.dim},) for every sample or "
                        f"({n}, {spec.dim}), one per sample")
    bad = np.argwhere(~np.isfinite(v))
    if len(bad):
        raise DataError(f"condition {int(bad[0][0])} holds {v[tuple(bad[0])]}; every condition must be a finite "
                        "number")
    return np.ascontiguousarray(v, dtype=np.float32)


def _class_id(spec: CondSpec, v: Any) -> int:
    if isinstance(v, bool | np.bool_):
        raise DataError(f"class {v!r} is a boolean; give a class name or an id 0..{spec.n_classes - 1}")
    if isinstance(v, str):
        if v in spec.classes:
            return spec.classes.index(v)
        if v.strip().lstrip("-").isdigit() and not any(c.isdigit() for c in "".join(spec.classes)):
            v = int(v)  # an id written as text, where no class name is a number
        else:
            close = difflib.get_close_matches(v, list(spec.classes), n=1)
            listing = ", ".join(spec.classes[:20]) + (" …" if spec.n_classes > 20 else "")
            raise DataError(f"unknown class {v!r}; this run's classes are {listing}"
                            + (f". Did you mean {close[0]!r}?" if close else ""))
    if isinstance(v, int | np.integer):
        if not 0 <= int(v) < spec.n_classes:
            listing = ", ".join(spec.classes[:10]) + (" …" if spec.n_classes > 10 else "")
            raise DataError(f"class id {int(v)} is out of range; this run has {spec.n_classes} classes, ids "
                            f"0..{spec.n_classes - 1} ({listing})")
        return int(v)
    raise DataError(f"class {v!r} ({type(v).__name__}) is neither a class name nor an id; this run's classes are "
                    + ", ".join(spec.classes[:20]))


def model_conditions(spec: CondSpec, values: np.ndarray) -> np.ndarray:
    """Conditions as the network takes them: class ids as int64, vectors normalised by the training mean/std,
    captions as token ids (N, max_len)."""
    if spec.kind == "class":
        return np.asarray(values, dtype=np.int64)
    if spec.kind == "text":
        return spec.tokeniser.encode([str(t) for t in values])
    return spec.normalise_vectors(values)
